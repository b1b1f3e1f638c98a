"""Time per batch of the TVP audio encoder with each patch embedding (``train_audio.encoder``).

Builds the encoder of ``params.yaml``'s ``train_audio`` section on the demo's input shapes, once
with ``encoder: ast`` (AST patches of the 512 x 128 fbank) and once with ``encoder: aisfx`` (the
aisfx conv blocks on the 221 x 96 log-mel; random conv weights, timing does not depend on them),
and prints the median wall time of a training step (forward, backward, Adam) and of an inference
forward on one batch of ``train_audio.batch_videos`` clips, plus the trainable parameters. With
``--frozen-blocks`` other than the params value it also times that freezing. Numbers are this
machine's and this load's; a loaded machine inflates both sides.

    python benchmarks/audio_encoders.py --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pcas_core.audio.front_end import front_end_shape, front_end_timing  # noqa: E402
from pcas_core.models.tvp import TVPAudioEncoder  # noqa: E402
from pcas_core.pipeline.train_audio import tvp_model_config  # noqa: E402
from pcas_core.params import load_config  # noqa: E402
from step_timing import tvp_steps  # noqa: E402  (benchmarks/step_timing.py, the shared machinery)


def _median_s(step, repeats: int) -> float:
    step()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_encoder(params, encoder: str, frozen_blocks: int, repeats: int) -> dict[str, float]:
    fbank = replace(params.fbank, front_end="aisfx" if encoder == "aisfx" else "ast")
    cfg = replace(params.train_audio, encoder=encoder,
                  aisfx=replace(params.train_audio.aisfx, frozen_blocks=frozen_blocks))
    (frames, bins), clock = front_end_shape(fbank), front_end_timing(fbank)
    config = tvp_model_config(cfg, num_classes=8, target_length=frames, n_mels=bins,
                              prompt_dim=112, frames_per_second=clock.frames_per_second,
                              frame_offset=clock.frame_offset, front_end=clock.front_end)
    torch.manual_seed(0)
    model = TVPAudioEncoder(**config)
    train_step, forward, _ = tvp_steps(model, cfg.batch_videos, frames, bins, 112,
                                       torch.device("cpu"))

    return {"train_step_s": _median_s(train_step, repeats), "forward_s": _median_s(forward, repeats),
            "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "tokens": model.patch_embed.num_patches}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--frozen-blocks", type=int, nargs="*", default=[])
    args = parser.parse_args()
    params = load_config(args.params)
    runs = [("ast", 0), ("aisfx", params.train_audio.aisfx.frozen_blocks)]
    runs += [("aisfx", k) for k in args.frozen_blocks if k != params.train_audio.aisfx.frozen_blocks]
    print(f"batch of {params.train_audio.batch_videos} clips, torch threads {torch.get_num_threads()}")
    for encoder, frozen in runs:
        r = time_encoder(params, encoder, frozen, args.repeats)
        label = encoder if encoder == "ast" else f"aisfx, {frozen} frozen blocks"
        print(f"{label:26s} tokens {r['tokens']:4d}  trainable {r['trainable']:9d}  "
              f"train step {r['train_step_s']:.3f} s  forward {r['forward_s']:.3f} s")


if __name__ == "__main__":
    main()
