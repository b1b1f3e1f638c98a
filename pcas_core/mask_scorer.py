"""The scores of :func:`pcas_core.scoring.score_masks`, accumulated over chunks of frames, so that
scoring a whole split never needs all its masks in memory at once."""

from __future__ import annotations

import numpy as np

from pcas_core.metrics import AVSSAccumulator, binary_f_sums, binary_miou, foreground_binary

__all__ = ["MaskScorer"]


class MaskScorer:
    """Adds up AVSS and foreground-binary scores chunk by chunk.

    ``compute()`` after ``update`` on every chunk gives the numbers of
    :func:`pcas_core.scoring.score_masks` on all the frames at once (up to float rounding of the
    binary mIoU's mean): every AVSBench score here is a sum over frames
    (:class:`pcas_core.metrics.AVSSAccumulator`, per-frame binary IoU, per-frame F(t) curves).
    """

    def __init__(self) -> None:
        self.avss = AVSSAccumulator()
        self.iou_sum = 0.0
        self.n_frames = 0
        self.f_total: np.ndarray | None = None
        self.f_count = 0

    def update(self, preds: np.ndarray, gts: np.ndarray,
               foreground: np.ndarray | None = None) -> None:
        """Add a chunk of frames.

        Args:
            preds: (m, H, W) uint8 predicted class indices.
            gts: (m, H, W) uint8 ground-truth class indices (255 ignored).
            foreground: (m, H, W) float32 foreground probabilities for the binary F-score, or
                None for the hard foreground of ``preds`` (as ``score_masks``).

        Raises:
            ValueError: shapes differ or are not (m, H, W).
        """
        if preds.shape != gts.shape or preds.ndim != 3:
            raise ValueError(f"expected two equal (m, H, W) mask stacks, got {preds.shape}, "
                             f"{gts.shape}")
        if len(preds) == 0:
            return
        for p, g in zip(preds, gts):
            self.avss.update(p, g)
        fg_pred = np.stack([foreground_binary(p) for p in preds]).astype(np.float32)
        fg_gt = np.stack([foreground_binary(g) for g in gts])
        self.iou_sum += binary_miou(fg_pred, fg_gt) * len(preds)
        self.n_frames += len(preds)
        total, n = binary_f_sums(fg_pred if foreground is None else foreground, fg_gt)
        self.f_total = total if self.f_total is None else self.f_total + total
        self.f_count += n

    def compute(self) -> dict:
        """The keys of ``score_masks``: ``miou``, ``fscore``, ``miou_present``,
        ``fscore_present``, ``fg_miou``, ``fg_fscore``, ``n_frames``, ``per_class_iou``.

        Raises:
            ValueError: no frame was added.
        """
        if self.n_frames == 0:
            raise ValueError("no frame to score")
        out = self.avss.compute()
        out.pop("per_class_fscore", None)
        out["fg_miou"] = self.iou_sum / self.n_frames
        out["fg_fscore"] = float((self.f_total / self.f_count).max()) if self.f_count else 0.0
        return out
