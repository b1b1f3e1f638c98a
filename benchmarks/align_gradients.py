"""How hard each alignment term pushes the backbone: per-term gradient norms at the start of
alignment (a script that prints, not a test).

For the first ``--batches`` training batches of the align stage's own inputs (the stage-1 visual
model and the audio store), with every term of docs/method.md §3 switched on (``--as-configured``: only
those params.yaml switches on), it prints the L2 norm of each weighted term's gradient w.r.t. the
trainable backbone parameters (w_cls L_cls, w_cmc L_cmc, w_cmpc L_cmpc, w_cmcc L_cmcc), its share
of the sum of those norms, the cosine of each with the CMC gradient, and the norm of the final
tokens CMPC contrasts (before ``align.token_norm``). The computation is the stage's own
(:func:`pcas_core.pipeline.align.measure_gradient_shares`, which the align stage writes to
``metrics/align.json`` at its start and end). Run it after `dvc repro train_audio`:

    python benchmarks/align_gradients.py                 # params.yaml, models/, features/
    python benchmarks/align_gradients.py --batches 10 --set token_norm=layernorm --set cmpc_labels=cam
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path

import pcas_core  # noqa: F401  (before timm, see pcas_core.compat)
import torch
import yaml

from pcas_core.data.dataset import open_dataset
from pcas_core.models.visual import load_visual
from pcas_core.params import load_config
from pcas_core.params.parsing import parse, to_dict
from pcas_core.pipeline.align import build_align_model, measure_gradient_shares, training_inputs
from pcas_core.runtime.stage import RunEnv
from pcas_core.storage.stores import read_rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--visual-model", type=Path, default=Path("models/visual.safetensors"))
    ap.add_argument("--audio-store", type=Path, default=Path("features/audio.h5"))
    ap.add_argument("--batches", type=int, default=6)
    ap.add_argument("--as-configured", action="store_true",
                    help="keep params.yaml's cmc/cmpc/cmcc switches (default: all on)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override an align key (YAML value), e.g. token_norm=layernorm")
    args = ap.parse_args()
    if args.batches < 1:
        ap.error("--batches must be >= 1")

    params = load_config(args.params)
    section = to_dict(params.align)
    if not args.as_configured:
        section.update(cmc=True, cmpc=True, cmcc=True)
    for item in args.set:
        key, _, value = item.partition("=")
        section[key] = yaml.safe_load(value)
    cfg = dataclasses.replace(parse(type(params.align), section, "align"),
                              grad_share_batches=args.batches)
    torch.manual_seed(params.base.seed)
    data = open_dataset(params.data)
    visual, _ = load_visual(args.visual_model)
    tokens = read_rows(args.audio_store, "audio", data.frames, ["audio_token"])["audio_token"]
    model = build_align_model(visual, tokens.shape[1], cfg)
    env = RunEnv(seed=params.base.seed, log=logging.getLogger("align_gradients"))
    result = measure_gradient_shares(model, training_inputs(model, data, tokens, cfg, env), cfg,
                                     env)
    n_params = sum(p.numel() for p in model.visual.backbone.parameters() if p.requires_grad)
    print(f"token_norm={cfg.token_norm} cmpc_labels={cfg.cmpc_labels}; trainable backbone "
          f"parameters: {n_params}; mean over {result['batches']} batches:")
    cmc = result["norm"].get("cmc")
    for k, norm in result["norm"].items():
        extra = f" ({norm / cmc:.3f} of CMC's)" if cmc else ""
        if k in result["cos_cmc"]:
            extra += f", cosine with CMC's {result['cos_cmc'][k]:+.3f}"
        print(f"  |grad of w_{k} L_{k}| = {norm:.4g}, share {result['share'][k]:.3f}{extra}")
    if "final_token_norm" in result:
        print(f"  norm of the final patch tokens: {result['final_token_norm']:.2f}")


if __name__ == "__main__":
    main()
