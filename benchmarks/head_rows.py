"""Where the segmentation head of ``evaluate`` gets its training rows: read from disk, or recomputed.

The head trains for many epochs on the same frozen tokens of every training frame. Keeping them in
memory grows with the dataset (AVSS in the paper's setting: ~65,000 frames x 196 x 768 float32 =
38 GB), so ``evaluate`` writes them once to a ``head_rows`` scratch store and reads a shuffled
batch of rows every step (:mod:`pcas_core.data.head_rows`). The other way is to recompute a
batch's tokens every step: decode its frames and run the backbone. This prints, per frame, on
this machine:

- ``recompute``: JPEG decode of a frame at the model's size plus the backbone's forward to the
  head's tokens (eval, no grad, batches of ``--batch``), for the demo's model (``params.yaml``:
  ``train_visual``, ``data.img_size``, random weights) and ViT-B/16 at 224 px (the paper's);
- ``write``: the rows written batch by batch, as ``evaluate`` does once;
- ``read warm`` / ``read cold``: a training batch of ``evaluate.batch_frames`` rows drawn at random
  from a store of ``--rows`` rows and read as ``train_head`` reads it (the distinct rows in
  sorted order, one HDF5 chunk each); cold: the file evicted from the page cache
  (``posix_fadvise(DONTNEED)``) before every batch, as when the store is larger than memory;

each for the tokens' row shape in float16 and float32.

    python benchmarks/head_rows.py                   # both models, 1024-row stores under /tmp
    python benchmarks/head_rows.py --rows 4096 --work /data/scratch

Timings depend on the disk and the machine's load.
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
from pathlib import Path

import pcas_core  # noqa: F401  (before timm, see pcas_core.compat)
import numpy as np
import pandas as pd
import torch
from PIL import Image

from pcas_core.data.head_rows import head_row_batches, open_head_rows
from pcas_core.models.visual import build_visual, visual_model_config
from pcas_core.params import load_config
from pcas_core.storage.stores import write_store_batches

ROOT = Path(__file__).resolve().parents[1]


def recompute_ms(config: dict, size: int, batch: int, steps: int) -> tuple[float, tuple]:
    """ms per frame of JPEG decode + the backbone's forward to the head's patch tokens, and the
    tokens' row shape (N, D)."""
    torch.manual_seed(0)
    model = build_visual({**config, "pretrained": False}).eval()
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, "JPEG",
                                                                               quality=90)
    jpeg = buf.getvalue()

    def step() -> torch.Tensor:
        frames = [np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB")) for _ in range(batch)]
        x = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255.0
        with torch.no_grad():
            patch, _, _ = model.forward_features(x)
        return patch

    shape = tuple(step().shape[1:])
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return 1000 * (time.perf_counter() - start) / (steps * batch), shape


def store_ms(path: Path, shape: tuple, dtype: str, rows: int, batch: int,
             n_batches: int) -> tuple[float, float, float]:
    """ms per frame: writing ``rows`` rows, reading random batches warm and cold."""
    keys = pd.DataFrame({"uid": [f"v{i}" for i in range(rows)], "frame": 0, "split": "train"})
    gen = torch.Generator().manual_seed(0)
    chunk = 64
    tokens = (torch.randn(min(chunk, rows - i), *shape, generator=gen)
              for i in range(0, rows, chunk))
    zeros = np.zeros((rows, 8, 8), np.uint8)
    start = time.perf_counter()
    write_store_batches(path, "head_rows", keys, head_row_batches(
        tokens, lambda r: zeros[r], lambda r: (torch.zeros(r.stop - r.start, 0),
                                               torch.ones(r.stop - r.start, 70, dtype=torch.bool)),
        train_size=8, token_dtype=dtype), params={})
    write = 1000 * (time.perf_counter() - start) / rows
    data = open_head_rows(path)
    rng = np.random.default_rng(1)
    out = []
    for cold in (False, True):
        total = 0.0
        for _ in range(n_batches):
            index = rng.choice(rows, size=batch, replace=False).tolist()
            if cold:
                data.close()  # HDF5's own chunk cache goes with the handle
                with open(path, "rb") as f:
                    os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
            start = time.perf_counter()
            data.__getitems__(index)
            total += time.perf_counter() - start
        out.append(1000 * total / (n_batches * batch))
    data.close()
    return write, out[0], out[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1024, help="rows of each test store")
    ap.add_argument("--batch", type=int, default=8, help="frames per backbone forward")
    ap.add_argument("--steps", type=int, default=3, help="timed forwards per model")
    ap.add_argument("--reads", type=int, default=20, help="random batches read, warm and cold")
    ap.add_argument("--work", type=Path, default=None, help="folder of the test stores")
    args = ap.parse_args()
    p = load_config(ROOT / "params.yaml")
    batch_frames = p.evaluate.batch_frames
    models = {
        f"demo {p.train_visual.backbone} {p.data.img_size}px": (visual_model_config(
            p.train_visual, num_classes=70, img_size=p.data.img_size), p.data.img_size),
        "paper vit_base_patch16_224 224px": ({"backbone": "vit_base_patch16_224",
                                              "num_classes": 70, "img_size": 224,
                                              "token_layer": -1}, 224),
    }
    print(f"torch threads {torch.get_num_threads()}; read: batches of {batch_frames} random rows "
          f"(evaluate.batch_frames) from {args.rows}-row stores\n")
    print(f"{'model':40s} {'tokens':>10s} {'recompute':>10s} | {'dtype':7s} {'KB/row':>7s} "
          f"{'write':>7s} {'read warm':>9s} {'read cold':>9s}   (ms per frame)")
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        for name, (config, size) in models.items():
            ms, shape = recompute_ms(config, size, args.batch, args.steps)
            for dtype in ("float16", "float32"):
                path = Path(tmp) / f"rows-{dtype}.h5"
                write, warm, cold = store_ms(path, shape, dtype, args.rows, batch_frames,
                                             args.reads)
                kb = np.prod(shape) * np.dtype(dtype).itemsize / 1024
                print(f"{name:40s} {'x'.join(map(str, shape)):>10s} {ms:10.2f} | {dtype:7s} "
                      f"{kb:7.0f} {write:7.3f} {warm:9.3f} {cold:9.3f}", flush=True)
                path.unlink()


if __name__ == "__main__":
    main()
