"""Throughput of the pseudo-mask step at 224 px with 1 and 2 worker processes (issue 8).

Writes K synthetic 224 px JPEG frames (random rectangles) with random CAMs (70 x 14 x 14),
sounding maps and audio logits where 2 classes sound, then:

1. in this process, frame by frame, the time of the whole step (JPEG decode + scores + dense CRF
   + argmax) and of the CRF call alone, hence the share of time outside the CRF;
2. frames/s of :class:`pcas_core.pipeline.pseudo_masks.PseudoMaskPool` (as the ``pseudo_masks`` stage runs
   it: frames decoded in the workers) with 1 and 2 workers, after the pool has started, and
   their ratio (goal >= 1.8x).

CRF settings: ``pseudo_masks.crf`` of params.yaml. The ratio needs 2 idle cores; on a loaded
machine it shows the share of the cores this run got, not the code's scaling.

    python benchmarks/crf.py --frames 40
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pcas_core.method.pseudo_masks as pm  # noqa: E402
from pcas_core.pipeline.pseudo_masks import PseudoMaskPool  # noqa: E402
from pcas_core.data.chunks import FrameImages  # noqa: E402
from pcas_core.params import load_config  # noqa: E402

SIZE, GRID, K = 224, 14, 70


def synthetic(folder: Path, n: int, seed: int = 0):
    """n JPEG frames with rectangles, and matching random maps; returns (FrameImages, cams,
    sounding, logits)."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        img = np.full((SIZE, SIZE, 3), rng.integers(0, 256, 3), np.uint8)
        for _ in range(4):
            y, x = rng.integers(0, SIZE - 40, 2)
            h, w = rng.integers(20, 120, 2)
            img[y:y + h, x:x + w] = rng.integers(0, 256, 3)
        img = np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)
        paths.append(folder / f"{i}.jpg")
        Image.fromarray(img).save(paths[-1], quality=90)
    import pandas as pd
    frames = FrameImages(pd.DataFrame({"frame_path": [str(p) for p in paths],
                                       "split": ["test"] * n}), SIZE)
    cams = rng.normal(0, 1, (n, K, GRID, GRID)).astype(np.float32)
    sounding = rng.uniform(0, 1, (n, GRID, GRID)).astype(np.float32)
    logits = np.full((n, K), -5.0, np.float32)
    for i in range(n):
        logits[i, rng.choice(K, 2, replace=False)] = 3.0
    return frames, cams, sounding, logits


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=40, help="frames per measurement")
    args = ap.parse_args()
    cfg = load_config(ROOT / "params.yaml").pseudo_masks
    with tempfile.TemporaryDirectory() as tmp:
        frames, cams, sounding, logits = synthetic(Path(tmp), args.frames)

        # 1. where the time goes, in this process
        crf_time = [0.0]
        real_crf = pm.DenseCRF

        class TimedCRF(real_crf):
            def __call__(self, image, probs):
                t = time.perf_counter()
                out = super().__call__(image, probs)
                crf_time[0] += time.perf_counter() - t
                return out

        pm.DenseCRF = TimedCRF
        start = time.perf_counter()
        for i in range(len(frames)):
            pm.frame_pseudo_mask(frames[i], cams[i], sounding[i], logits[i], cfg)
        total = time.perf_counter() - start
        pm.DenseCRF = real_crf
        print(f"in-process: {total / len(frames) * 1000:.0f} ms/frame, CRF "
              f"{crf_time[0] / len(frames) * 1000:.0f} ms/frame, outside the CRF "
              f"{100 * (1 - crf_time[0] / total):.1f} % (JPEG decode, scores, upsampling, argmax)")

        # 2. the pool, as the stage runs it
        rates = {}
        loaders = [frames.loader(i) for i in range(len(frames))]
        for workers in (1, 2):
            with PseudoMaskPool(cfg, workers) as pool:
                pool.run(loaders[:2 * workers], cams[:2 * workers], sounding[:2 * workers],
                         logits[:2 * workers], (SIZE, SIZE))  # start the workers
                start = time.perf_counter()
                pool.run(loaders, cams, sounding, logits, (SIZE, SIZE))
                rates[workers] = len(frames) / (time.perf_counter() - start)
            print(f"{workers} worker(s): {rates[workers]:.2f} frames/s", flush=True)
        print(f"ratio 2/1: {rates[2] / rates[1]:.2f}x (goal >= 1.8x on 2 idle cores)")


if __name__ == "__main__":
    main()
