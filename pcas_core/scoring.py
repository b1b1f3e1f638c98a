"""Score predicted masks against ground truth the AVSBench way, plus the sanity baseline.

The AVSS numbers come from :class:`pcas_core.metrics.AVSSAccumulator` (71 classes, background
included); the binary numbers treat any sounding class as foreground, as S4/MS3 do.
"""

from __future__ import annotations

import numpy as np

from pcas_core.metrics import AVSSAccumulator, binary_fscore, binary_miou, foreground_binary

__all__ = ["METRIC_MODE", "HEADLINE", "COMPARISON", "score_masks", "background_baseline",
           "pick"]

#: What the metrics files hold: official per-class definitions over the real (unpadded) frames,
#: binary F-score over the whole set rather than averaged over test batches.
METRIC_MODE = "clean"

#: Keys a metrics file reports for the predictions it is about (kept few, so that
#: ``dvc metrics show`` stays readable), and for the references printed beside them.
HEADLINE = ("miou", "fscore", "miou_present", "fscore_present", "fg_miou", "fg_fscore", "n_frames")
COMPARISON = ("miou", "miou_present", "fg_miou")


def pick(scores: dict, keys: tuple[str, ...]) -> dict:
    """The entries of ``scores`` named in ``keys``, in that order."""
    return {k: scores[k] for k in keys}


def score_masks(preds: np.ndarray, gts: np.ndarray, foreground: np.ndarray | None = None) -> dict:
    """AVSS and foreground-binary scores of (M, H, W) uint8 class-index masks.

    Args:
        preds: (M, H, W) uint8 predicted class indices.
        gts: (M, H, W) uint8 ground-truth class indices (255 ignored).
        foreground: (M, H, W) float32 foreground probability in [0, 1] for the binary F-score,
            whose threshold sweep needs scores (AVSBench applies it to sigmoid maps). Without it,
            the hard foreground of ``preds`` is used, and the sweep's lowest threshold (which
            calls every pixel foreground) usually sets the maximum.

    Returns:
        dict: ``miou``, ``fscore``, ``miou_present``, ``fscore_present`` (AVSS), ``fg_miou``,
        ``fg_fscore`` (binary), ``n_frames``, ``per_class_iou`` (71 values, NaN for absent classes).

    Raises:
        ValueError: shapes differ or no frame given.
    """
    if preds.shape != gts.shape or preds.ndim != 3 or len(preds) == 0:
        raise ValueError(f"expected two equal (M, H, W) mask stacks, got {preds.shape}, {gts.shape}")
    acc = AVSSAccumulator()
    for p, g in zip(preds, gts):
        acc.update(p, g)
    out = acc.compute()
    fg_pred = np.stack([foreground_binary(p) for p in preds]).astype(np.float32)
    fg_gt = np.stack([foreground_binary(g) for g in gts])
    out["fg_miou"] = binary_miou(fg_pred, fg_gt)
    out["fg_fscore"] = binary_fscore(fg_pred if foreground is None else foreground, fg_gt)
    out.pop("per_class_fscore", None)
    return out


def background_baseline(gts: np.ndarray) -> dict:
    """Scores of predicting background everywhere on the same frames (the floor to beat)."""
    return score_masks(np.zeros_like(gts), gts)
