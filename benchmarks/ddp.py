"""One process against two (torchrun, Gloo on the CPU): per-epoch loss and wall time of each stage.

Builds a small demo project (3 classes, 11 training and 7 test videos, 32 px frames, a small ViT so
that no BatchNorm keeps per-process statistics), computes its fbank once, then runs
train-visual, train-audio, align, pseudo-masks and evaluate with ``base.nproc_per_node`` 1 and 2,
exactly as ``dvc repro`` would run the commands, and prints each stage's wall time (process start
included: two processes also pay torchrun's start and a second torch import) and the epoch losses
of both runs.

    python benchmarks/ddp.py [--epochs 3] [--workdir /tmp/pcas-ddp]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from pcas_core.params import merge_params

ROOT = Path(__file__).resolve().parents[1]
STAGES = {"train-visual": "train_visual", "train-audio": "train_audio", "align": "align",
          "pseudo-masks": None, "evaluate": "evaluate"}
SMALL = {
    "data": {"img_size": 32},
    "demo": {"classes": ["dog", "guitar", "hen"], "img_size": 64,
             "clips": {"always": {"train": 3, "val": 0, "test": 2},
                       "event": {"train": 0, "val": 0, "test": 0},
                       "silent": {"train": 0, "val": 0, "test": 0},
                       "multi": {"train": 2, "val": 0, "test": 1},
                       "long": {"train": 0, "val": 0, "test": 0}}},
    "train_visual": {"backbone": "vit_tiny_patch16_224", "pretrained": False, "token_layer": -1,
                     "frozen_stages": 0,
                     "backbone_kwargs": {"patch_size": 8, "depth": 2, "embed_dim": 48,
                                         "num_heads": 3}},
    "train_audio": {"model": {"embed_dim": 32, "depth": 1, "num_heads": 2}},
    "align": {"embed_dim": 16, "crop_size": 16, "n_crops": 2},
    "pseudo_masks": {"workers": 1},
    "evaluate": {"hidden_dim": 0, "n_overlays": 1},
}


def _pcas(project: Path, *args: str) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PCAS_LOG_LEVEL": "WARNING"}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "stages.cli", *args], cwd=project, env=env,
                          capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"pcas {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - start


def _losses(project: Path, curves: str) -> list[float]:
    rows = (project / "dvclive" / curves / "plots" / "metrics" / "loss.tsv").read_text().split()
    return [float(v) for v in rows[3::2]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="pcas-ddp-"))
    params = merge_params(yaml.safe_load((ROOT / "params.yaml").read_text()), SMALL)
    for section in ("train_visual", "train_audio", "align", "evaluate"):
        params[section]["epochs"] = args.epochs
        params[section]["min_steps"] = 0  # exactly --epochs epochs
    times: dict[int, dict[str, float]] = {}
    for nproc in (1, 2):
        project = work / f"nproc{nproc}"
        project.mkdir(parents=True, exist_ok=True)
        params["base"]["nproc_per_node"] = 1
        (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        _pcas(project, "demo-data", "--assets", str(ROOT / "data" / "demo-assets"), "--out",
              "data/demo")
        _pcas(project, "fbank", "--out", "features/fbank.h5")
        params["base"]["nproc_per_node"] = nproc
        (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        times[nproc] = {stage: _pcas(project, stage) for stage in STAGES}
    print(f"{os.cpu_count()} CPU cores, Gloo; {args.epochs} epochs; global batch = params "
          "(batch_videos 8, batch_frames 32); project in", work)
    print(f"{'stage':<14}{'1 process s':>12}{'2 processes s':>15}  epoch losses (1 process | 2)")
    for stage, curves in STAGES.items():
        one = _losses(work / "nproc1", curves) if curves else []
        two = _losses(work / "nproc2", curves) if curves else []
        diff = max((abs(a - b) for a, b in zip(one, two)), default=0.0)
        losses = (" ".join(f"{v:.6f}" for v in one) + " | " + " ".join(f"{v:.6f}" for v in two)
                  + f"  (max diff {diff:.1e})") if curves else "-"
        print(f"{stage:<14}{times[1][stage]:>12.1f}{times[2][stage]:>15.1f}  {losses}")


if __name__ == "__main__":
    main()
