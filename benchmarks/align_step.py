"""Speed of the alignment step (docs/method.md §3: L_cls + CMC + CMPC + CMCC) against the bare backbone.

For each row, in one run: images/s of the full alignment step (forward of the B global views and
of their B*K local crops, every loss, backward) beside a plain timm forward+backward of the same
backbone module (same truncation, same frozen stages) on the same images (B at the frame size,
B*K at the crop size; loss = mean of the tokens), and their ratio. The two alternate for
``--rounds`` rounds and each one's median is kept, so a slow stretch of a shared machine does not
fall on one side only. On CUDA also: the peak GPU memory of each, and how many times one
alignment step makes the host wait for the GPU (``torch.cuda.set_sync_debug_mode``; goal 0).
Images counted: B + B*K. No optimiser step in either. bf16 autocast on CUDA
(`pcas_core.runtime.fit.autocast`), float32 on CPU.

    python benchmarks/align_step.py                       # every row (GPU rows need CUDA)
    python benchmarks/align_step.py --backbone vit_base_patch16_224 --batch 8 --device cuda

Rows by default: the demo model of params.yaml on the CPU (B = 8 videos x 5 frames), and
ViT-B/16 at 224 px with 96 px crops, batch 8 and 32, on CUDA (skipped, and said so, without one).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
from pathlib import Path

import torch

from step_timing import align_steps, timed  # benchmarks/step_timing.py (the shared machinery)
from pcas_core.models.visual import visual_model_config
from pcas_core.params import AlignConfig, load_config
from pcas_core.runtime.fit import host_syncs

ROOT = Path(__file__).resolve().parents[1]


def run_row(name: str, visual_cfg: dict, cfg: AlignConfig, batch: int, audio_dim: int,
            device: torch.device, steps: int, warmup: int, rounds: int) -> None:
    align_step, plain_step, _, images = align_steps(visual_cfg, cfg, batch, audio_dim, device)
    size = int(visual_cfg["img_size"])
    # alternate the two in rounds and keep each one's median, so that a slower stretch of a
    # shared machine does not fall on one side only
    plain, align = [], []
    for _ in range(rounds):
        plain.append(timed(plain_step, steps, warmup, device))
        align.append(timed(align_step, steps, warmup, device))
    (t_plain, m_plain), (t_align, m_align) = (
        (statistics.median(t for t, _ in runs), max(m for _, m in runs)) for runs in (plain, align))
    syncs = host_syncs(align_step) if device.type == "cuda" else None
    print(f"{name:<42} {device.type:<5} B={batch:<3} K={cfg.n_crops} {size}px/{cfg.crop_size}px | "
          f"align {images / t_align:8.1f} img/s  plain {images / t_plain:8.1f} img/s  "
          f"ratio {t_plain / t_align:5.2f} | " + (
              f"peak GiB align {m_align:5.2f} plain {m_plain:5.2f}" if device.type == "cuda"
              else "peak GPU memory n/a (CPU)") + (
              f" | host syncs in one align step {syncs}" if syncs is not None else ""), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default: every row on "
                    "its own device: demo on the CPU, ViT-B on CUDA)")
    ap.add_argument("--backbone", default=None, help="demo (params.yaml) or a timm ViT name")
    ap.add_argument("--batch", type=int, nargs="*", default=None, help="frames per step B")
    ap.add_argument("--crop-size", type=int, default=None, help="default: params (demo), 96 (else)")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3, help="plain/align alternations; medians")
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    args = ap.parse_args()

    params = load_config(args.params)
    cfg = dataclasses.replace(params.align, cmc=True, cmpc=True, cmcc=True)
    tv = params.train_visual
    demo = visual_model_config(tv, num_classes=70, img_size=params.data.img_size)
    rows = []
    if args.backbone in (None, "demo"):
        rows.append(("demo " + tv.backbone, demo, args.batch or [8 * 5], cfg.crop_size,
                     params.train_audio.model.embed_dim, args.device or "cpu"))
    if args.backbone != "demo":
        name = args.backbone or "vit_base_patch16_224"
        visual = {"backbone": name, "img_size": 224, "num_classes": 70, "token_layer": -1}
        rows.append((name, visual, args.batch or [8, 32], 96, 768, args.device or "cuda"))
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "not available"
    print(f"torch {torch.__version__}, CPU threads {torch.get_num_threads()}, CUDA {gpu}")
    for name, visual, batches, crop, audio_dim, device in rows:
        device = torch.device(device)
        if device.type == "cuda" and not torch.cuda.is_available():
            print(f"{name}: SKIPPED, no GPU on this machine (rows for {device} need CUDA)")
            continue
        row_cfg = dataclasses.replace(cfg, crop_size=args.crop_size or crop)
        for batch in batches:
            run_row(name, visual, row_cfg, batch, audio_dim, device, args.steps, args.warmup,
                    args.rounds)


if __name__ == "__main__":
    main()
