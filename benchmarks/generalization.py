"""How well the visual classifier and the audio encoder recognise each class on the training
split (seen instances) and on the test split (unseen cut-outs and recordings of the demo's test
pool): top-1 accuracy per class over the frames where exactly one class sounds, read from the
``visual`` and ``audio`` stores of the last ``dvc repro``.

    python benchmarks/generalization.py [--params params.yaml] [--features features]

A frame counts as right when the class with the largest logit is the one in its mask. Chance is
about 1 / (classes visible in the frame): 1 for single-object clips, 1/2 with a silent
distractor or a second source, so the numbers are a diagnostic, not a benchmark metric.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import pcas_core  # noqa: F401  (import shim before timm/torchaudio)
from pcas_core.data.dataset import open_dataset
from pcas_core.params import load_config
from pcas_core.storage.stores import read_rows


def top1_by_class(logits: np.ndarray, classes: np.ndarray, names: list[str]) -> dict[str, float]:
    """Top-1 accuracy per class over frames with exactly one class in ``classes`` ((M, C) 0/1)."""
    single = np.flatnonzero(classes.sum(1) == 1)
    truth, top = classes[single].argmax(1), logits[single].argmax(1)
    return {names[k + 1]: float(np.mean(top[truth == k] == k)) for k in sorted(set(truth.tolist()))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--features", type=Path, default=Path("features"))
    args = ap.parse_args()
    data = open_dataset(load_config(args.params).data)
    for split in ("train", "test"):
        part = data.split(split)
        classes = part.frame_classes()
        print(f"{split} split, {int((classes.sum(1) == 1).sum())} frames with one sounding class")
        for store in ("visual", "audio"):
            logits = read_rows(args.features / f"{store}.h5", store, part.frames, ["logits"])["logits"]
            acc = top1_by_class(logits, classes, data.class_names)
            print(f"  {store:<6} top-1 {np.mean(list(acc.values())):.2f} (class mean): "
                  + " ".join(f"{k} {v:.2f}" for k, v in acc.items()))


if __name__ == "__main__":
    main()
