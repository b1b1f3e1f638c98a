"""How hard each alignment term pushes the backbone: per-term gradient norms at the start of
alignment (a script that prints, not a test).

For the first ``--batches`` training batches of the align stage's own inputs (the stage-1 visual
model and the audio store), with every term of METHOD §3 switched on, it prints the L2 norm of
each weighted term's gradient w.r.t. the trainable backbone parameters (w_cls L_cls, w_cmc L_cmc,
w_cmpc L_cmpc, w_cmcc L_cmcc), the cosine of each with the CMC gradient, and the norm of the
tokens CMPC contrasts. A term whose gradient is a small fraction of the others' barely changes
the backbone, whatever its logged value. Run it after `dvc repro train_audio`:

    python benchmarks/align_gradients.py                 # params.yaml, models/, features/
    python benchmarks/align_gradients.py --batches 10
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pcas_core  # noqa: F401  (before timm, see pcas_core.compat)
import numpy as np
import torch

from pcas_core.method.alignment import alignment_terms
from pcas_core.pipeline.align import build_align_model
from pcas_core.data.dataset import open_dataset
from pcas_core.data.table import VideoRows
from pcas_core.data.loader import video_loader
from pcas_core.models.visual import load_visual
from pcas_core.params import load_config
from pcas_core.storage.stores import read_rows

TERMS = ("cls", "cmc", "cmpc", "cmcc")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--visual-model", type=Path, default=Path("models/visual.safetensors"))
    ap.add_argument("--audio-store", type=Path, default=Path("features/audio.h5"))
    ap.add_argument("--batches", type=int, default=6)
    args = ap.parse_args()
    if args.batches < 1:
        ap.error("--batches must be >= 1")

    params = load_config(args.params)
    cfg = dataclasses.replace(params.align, cmc=True, cmpc=True, cmcc=True)
    torch.manual_seed(params.base.seed)
    data = open_dataset(params.data)
    visual, _ = load_visual(args.visual_model)
    tokens = read_rows(args.audio_store, "audio", data.frames, ["audio_token"])["audio_token"]
    model = build_align_model(visual, tokens.shape[1], cfg).train()
    train = data.split("train")
    train_tokens = torch.from_numpy(np.ascontiguousarray(tokens[data.frames_in("train")],
                                                         dtype=np.float32))
    rows = VideoRows(train.frames)
    backbone = [p for p in model.visual.backbone.parameters() if p.requires_grad]
    weights = {"cls": cfg.w_cls, "cmc": cfg.w_cmc, "cmpc": cfg.w_cmpc, "cmcc": cfg.w_cmcc}
    norms: dict[str, list[float]] = {k: [] for k in TERMS}
    cosines: dict[str, list[float]] = {k: [] for k in TERMS if k != "cmc"}
    token_norms = []
    generator = torch.Generator().manual_seed(params.base.seed)
    loader = video_loader(train.clips(visual.mean, visual.std), batch_videos=cfg.batch_videos,
                          shuffle=True, seed=params.base.seed)
    for i, batch in enumerate(loader):
        if i == args.batches:
            break
        terms = alignment_terms(model, cfg, batch["frames"], train_tokens[rows.of(batch["video"])],
                                batch["frame_video"], batch["labels"], generator)
        grads = {}
        for k in TERMS:
            g = torch.autograd.grad(weights[k] * terms[k], backbone, retain_graph=True,
                                    allow_unused=True)
            grads[k] = torch.cat([(x if x is not None else torch.zeros_like(p)).flatten()
                                  for x, p in zip(g, backbone)])
            norms[k].append(float(grads[k].norm()))
        for k in cosines:
            cosines[k].append(float(torch.nn.functional.cosine_similarity(grads[k], grads["cmc"],
                                                                          dim=0)))
        with torch.no_grad():
            final = model.visual(batch["frames"]).final_tokens
            token_norms.append(float(final.norm(dim=-1).mean()))
        print(f"batch {i}: " + " ".join(f"{k}={float(v):.4f}" for k, v in terms.items()),
              flush=True)
    n_params = sum(p.numel() for p in backbone)
    print(f"\ntrainable backbone parameters: {n_params}; mean over {len(token_norms)} batches:")
    cmc = np.mean(norms["cmc"])
    for k in TERMS:
        extra = f", cosine with CMC's {np.mean(cosines[k]):+.3f}" if k in cosines else ""
        print(f"  |grad of w_{k} L_{k}| = {np.mean(norms[k]):.4g} "
              f"({np.mean(norms[k]) / cmc:.3f} of CMC's){extra}")
    print(f"  norm of the final patch tokens CMPC contrasts: {np.mean(token_norms):.2f} "
          f"(dim {final.shape[-1]}); a cosine's gradient scales as 1 / norm")


if __name__ == "__main__":
    main()
