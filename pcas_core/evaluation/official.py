"""AVSBench scores as the official test scripts print them, quirks included (the ``official`` mode).

:mod:`pcas_core.evaluation.metrics` holds the ``clean`` definitions; this module reproduces what
``avs_scripts/avss/test.py`` and ``avs_scripts/avs_s4/test.py`` (also ``avs_ms3``) of
OpenNLPLab/AVSBench print. Every quirk, with where it comes from:

1. **AVSS padding.** ``avss/color_dataloader.py`` (``V2Dataset.__getitem__``) pads every video to
   10 frames: a 5-frame video (``v1s``, ``v1m``) gets 5 extra input frames that are all zeros
   *after* ImageNet normalisation (so the mean colour, "black" in its comments) and 5 labels that
   are all background (class 0). ``avss/test.py`` scores all 10 frames, the padded ones with the
   model's own prediction on that input (with the audio features of the padded steps zeroed,
   ``vid_temporal_mask_flag``). :func:`padded_frames` counts them; the caller supplies each
   predictor's prediction on the padded frame (:class:`OfficialAVSSAccumulator.update` with
   ``count``).
2. **AVSS IoU** (``avss/utils/compute_color_metrics.py``, ``_batch_miou_fscore``):
   ``inter / (2.220446049250313e-16 + union)`` per frame and class, summed over frames; the count
   of class c grows where its union is non-empty; F (beta^2 = 0.3, precision = inter/pred,
   recall = inter/label, NaN -> 0) is summed the same way. ``test.py`` divides by the counts, sets
   NaN (a class that never occurs) to 0 and averages over all 71 classes.
3. **``miou_noBg`` / ``F_score_noBg``** (``avss/test.py``): ``mean(miou_pc[:-1])``, i.e. every class
   but the *last* one (index 70, ``woman`` in ``label2idx.json``), not background (index 0), which
   stays in. Reported here as ``miou_noBg`` / ``fscore_noBg`` under that exact definition.
4. **S4/MS3 mIoU** (``avs_s4/utils/utility.py``, ``mask_iou``): per test batch, the mean over its
   frames of ``inter / (union + 1e-7)`` of ``sigmoid(logit) > 0.5`` (here: probability > 0.5);
   a frame with an empty ground truth scores its correctly predicted background pixels over all
   pixels. ``test.py`` averages the batch means with equal weight (``pyutils.AverageMeter``), so a
   short last batch weighs as much as a full one.
5. **S4/MS3 F-score** (``Eval_Fmeasure``, ``_eval_pr``): per test batch, F(t) (beta^2 = 0.3) at the
   255 float32 thresholds ``torch.linspace(0, 1 - 1e-10, 255)`` (the last one rounds to 1.0),
   averaged over the batch's frames with a non-empty ground truth, maxed over t; a batch whose
   ground truths are all empty scores 0 and still counts in the average. The number therefore
   depends on the batch size (``test.sh``: ``--test_batch_size 4`` videos), a parameter here.
6. **AVSS label-255 pixels count in the prediction area** (``_batch_miou_fscore``): the code
   shifts both maps by one (``predict = argmax + 1``, ``target = label + 1``), masks the
   prediction with ``target > 0``, which every pixel passes, and histograms each over
   ``[1, 71]``. A pixel labelled 255 (target 256) is outside the label histogram and never
   equals a prediction, so its label area and intersection are unchanged, but its predicted
   class counts it in its prediction area (and union): a false positive. The clean mode drops
   such pixels. The official colour loader never produces 255 (unknown colours become
   background), but ``labels_semantic`` masks and ToCo-style ignore labels do.

Differences that remain (all below the printed precision): the official code counts in float32
(``torch.histc``, sums), this module in float64; precision/recall use ``+1e-20`` denominators
there and an exact 0 for 0/0 here (the same value); prediction values outside
``[0, num_classes)`` count in no class, as ``torch.histc`` ignores values outside its range.
"""

from __future__ import annotations

import numpy as np
import torch

from pcas_core.data.constants import IGNORE_INDEX, NUM_CLASSES
from pcas_core.evaluation.metrics import (F_BETA2, _check_binary, _f_measure, avss_frame_stats,
                                          fscore_curves)

__all__ = ["OFFICIAL_AVSS_FRAMES", "AVSS_IOU_EPS", "BINARY_IOU_EPS", "padded_frames",
           "OfficialAVSSAccumulator", "official_thresholds", "official_frame_ious", "batch_mask_iou",
           "batch_fmeasure", "OfficialBinaryAccumulator", "official_binary_scores"]

OFFICIAL_AVSS_FRAMES = 10
"""Frames every AVSS video is padded to (``color_dataloader.py``)."""

AVSS_IOU_EPS = 2.220446049250313e-16
"""Added to the union in the AVSS IoU (``_batch_miou_fscore``)."""

BINARY_IOU_EPS = 1e-7
"""Added to the union in the S4/MS3 IoU (``mask_iou``)."""


def padded_frames(n_frames: np.ndarray | int) -> np.ndarray:
    """Padded frames the official AVSS loader adds to videos of ``n_frames`` frames: ``max(10 - n, 0)``.

    Args:
        n_frames: ``(V,)`` int frames per video (or one int).

    Returns:
        ``(V,)`` int64 padded-frame counts (5 for a 5-frame v1s/v1m video, 0 for a 10-frame v2 one).

    Raises:
        ValueError: a count below 1.
    """
    n = np.asarray(n_frames, dtype=np.int64)
    if (n < 1).any():
        raise ValueError(f"every video needs at least one frame, got counts {n.tolist()}")
    return np.maximum(OFFICIAL_AVSS_FRAMES - n, 0)


class OfficialAVSSAccumulator:
    """71-class mIoU and F-score as ``avss/test.py`` prints them (quirks 2, 3 and 6 above).

    Args:
        num_classes: number of classes (71).
        ignore_index: label value outside every label area and intersection, whose pixels
            still count in the prediction area of their predicted class (quirk 6).
        beta2: F-score beta^2 (0.3).
    """

    def __init__(self, num_classes: int = NUM_CLASSES, ignore_index: int = IGNORE_INDEX,
                 beta2: float = F_BETA2) -> None:
        self.num_classes, self.ignore_index, self.beta2 = num_classes, ignore_index, beta2
        self.iou_sum = np.zeros(num_classes, dtype=np.float64)
        self.f_sum = np.zeros(num_classes, dtype=np.float64)
        self.count = np.zeros(num_classes, dtype=np.int64)
        self.n_frames = 0

    def update(self, pred: np.ndarray, label: np.ndarray, count: int = 1) -> None:
        """Add a frame ``count`` times (``count`` > 1 for identical padded frames).

        Args:
            pred: ``(H, W)`` integer predicted class indices.
            label: ``(H, W)`` integer ground-truth class indices (``ignore_index``: quirk 6).
            count: how many identical frames this stands for (>= 0).

        Raises:
            ValueError: bad shapes or labels (:func:`pcas_core.evaluation.metrics.avss_frame_stats`), or a
                negative ``count``.
        """
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        inter, _, area_l = (a.astype(np.float64) for a in
                            avss_frame_stats(pred, label, self.num_classes, self.ignore_index))
        every = np.asarray(pred).reshape(-1).astype(np.int64)  # ignore-labelled pixels too
        area_p = np.bincount(every[(every >= 0) & (every < self.num_classes)],
                             minlength=self.num_classes).astype(np.float64)
        union = area_p + area_l - inter
        with np.errstate(divide="ignore", invalid="ignore"):
            precision, recall = inter / area_p, inter / area_l
        self.iou_sum += count * inter / (AVSS_IOU_EPS + union)
        self.f_sum += count * _f_measure(precision, recall, self.beta2)
        self.count += count * (union > 0)
        self.n_frames += count

    def compute(self) -> dict:
        """Return ``miou``, ``fscore`` (mean over all classes, never-occurring ones 0),
        ``miou_noBg``, ``fscore_noBg`` (the same over all classes but the last) and ``n_frames``;
        scores are fractions in [0, 1]."""
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = np.nan_to_num(self.iou_sum / self.count, nan=0.0)
            fsc = np.nan_to_num(self.f_sum / self.count, nan=0.0)
        return {"miou": float(iou.mean()), "fscore": float(fsc.mean()),
                "miou_noBg": float(iou[:-1].mean()), "fscore_noBg": float(fsc[:-1].mean()),
                "n_frames": self.n_frames}


def official_thresholds(n_thresholds: int = 255) -> np.ndarray:
    """The official float32 thresholds ``torch.linspace(0, 1 - 1e-10, n)``, as float64 values."""
    return torch.linspace(0.0, 1.0 - 1e-10, n_thresholds, dtype=torch.float32).double().numpy()


def official_frame_ious(preds: np.ndarray, gts: np.ndarray) -> np.ndarray:
    """Official ``mask_iou`` terms of each frame: ``inter / (union + 1e-7)`` of ``pred > 0.5``,
    (B,) float64; a frame with an empty ground truth scores its true-negative pixels over all
    pixels.

    Args:
        preds: ``(B, H, W)`` float foreground probabilities. gts: ``(B, H, W)`` {0, 1}.

    Raises:
        ValueError: on mismatched or non-3-D shapes.
    """
    _check_binary(preds, gts)
    p = (preds > 0.5).reshape(len(preds), -1)
    g = gts.reshape(len(gts), -1) > 0
    empty = ~g.any(axis=1)
    inter = np.where(empty, (~p & ~g).sum(1), (p & g).sum(1)).astype(np.float64)
    union = np.where(empty, p.shape[1], (p | g).sum(1)).astype(np.float64)
    return inter / (union + BINARY_IOU_EPS)


def batch_mask_iou(preds: np.ndarray, gts: np.ndarray) -> float:
    """Official ``mask_iou`` of one test batch: mean over frames of ``inter / (union + 1e-7)``
    (:func:`official_frame_ious`).

    Args:
        preds: ``(B, H, W)`` float foreground probabilities (binarised at ``> 0.5``).
        gts: ``(B, H, W)`` {0, 1} ground truth.

    Returns:
        The batch mean in [0, 1]; a frame with an empty ground truth scores its true-negative
        pixels over all pixels.

    Raises:
        ValueError: on mismatched or non-3-D shapes, or an empty batch.
    """
    _check_binary(preds, gts)
    if len(preds) == 0:
        raise ValueError("a test batch needs at least one frame")
    return float(official_frame_ious(preds, gts).mean())


def batch_fmeasure(preds: np.ndarray, gts: np.ndarray, beta2: float = F_BETA2,
                   n_thresholds: int = 255) -> float:
    """Official ``Eval_Fmeasure`` of one test batch.

    F(t) at :func:`official_thresholds`, averaged over the frames with a non-empty ground truth,
    maxed over t.

    Args:
        preds: ``(B, H, W)`` float foreground probabilities in [0, 1].
        gts: ``(B, H, W)`` {0, 1} ground truth.

    Returns:
        F in [0, 1]; 0.0 when every ground truth of the batch is empty (the official ``score``
        stays all zeros).

    Raises:
        ValueError: on mismatched or non-3-D shapes.
    """
    total, n = fscore_curves(preds.astype(np.float32), gts, official_thresholds(n_thresholds),
                             beta2)
    return float((total / n).max()) if n else 0.0


class OfficialBinaryAccumulator:
    """S4/MS3 ``mIoU`` and ``F-score`` as ``avs_s4/test.py`` / ``avs_ms3/test.py`` print them
    (quirks 4 and 5), accumulated chunk by chunk of frames in test order.

    Frames form test batches of ``batch_videos`` consecutive videos (in the order the videos
    first appear); each batch gets :func:`batch_mask_iou` and :func:`batch_fmeasure` when it is
    complete, and both are averaged over batches with equal weight. Memory holds one batch's
    per-frame terms, not the frames.

    Args:
        batch_videos: videos per official test batch (4 in the released ``test.sh``).
        beta2: F-score beta^2 (0.3). n_thresholds: thresholds (255).

    Raises:
        ValueError: ``batch_videos < 1``.
    """

    def __init__(self, batch_videos: int, beta2: float = F_BETA2, n_thresholds: int = 255) -> None:
        if batch_videos < 1:
            raise ValueError(f"batch_videos must be >= 1, got {batch_videos}")
        self.batch_videos, self.beta2 = batch_videos, beta2
        self.thresholds = official_thresholds(n_thresholds)
        self.ious: list[float] = []  # one per finished batch
        self.fs: list[float] = []
        self.n_frames = 0
        self._seen: set = set()  # videos met so far (each must be contiguous)
        self._last = None
        self._videos = 0  # videos in the open batch
        self._iou: list[np.ndarray] = []  # the open batch's per-frame IoU terms
        self._f, self._nf = np.zeros(n_thresholds, dtype=np.float64), 0

    def _close(self) -> None:
        if self._videos:
            self.ious.append(float(np.concatenate(self._iou).mean()))
            self.fs.append(float((self._f / self._nf).max()) if self._nf else 0.0)
        self._videos, self._iou, self._nf = 0, [], 0
        self._f = np.zeros_like(self._f)

    def update(self, preds: np.ndarray, gts: np.ndarray, videos: np.ndarray) -> None:
        """Add the next frames in test order.

        Args:
            preds: ``(B, H, W)`` float foreground probabilities in [0, 1].
            gts: ``(B, H, W)`` {0, 1} ground truth.
            videos: ``(B,)`` video id of each frame; a video's frames must be contiguous (they
                may continue in the next call).

        Raises:
            ValueError: on mismatched shapes, or a video met again after another one.
        """
        _check_binary(preds, gts)
        videos = np.asarray(videos)
        if len(videos) != len(preds):
            raise ValueError(f"need one video id per frame, got {len(videos)} ids for "
                             f"{len(preds)} frames")
        starts = np.flatnonzero(np.r_[True, videos[1:] != videos[:-1]])
        for lo, hi in zip(starts, np.r_[starts[1:], len(videos)]):
            video = videos[lo]
            if video != self._last:
                if video in self._seen:
                    raise ValueError("the frames of each video must be contiguous")
                self._seen.add(video)
                self._last = video
                if self._videos == self.batch_videos:
                    self._close()
                self._videos += 1
            self._iou.append(official_frame_ious(preds[lo:hi], gts[lo:hi]))
            self._nf += fscore_curves(preds[lo:hi].astype(np.float32), gts[lo:hi],
                                      self.thresholds, self.beta2, out=self._f)[1]
        self.n_frames += len(preds)

    def compute(self) -> dict:
        """``miou``, ``fscore`` (fractions in [0, 1]), ``n_frames``, ``n_batches`` of the frames
        so far (the open batch counts as the last one).

        Raises:
            ValueError: no frame.
        """
        if not self.n_frames:
            raise ValueError("need at least one frame")
        ious, fs = list(self.ious), list(self.fs)
        if self._videos:
            ious.append(float(np.concatenate(self._iou).mean()))
            fs.append(float((self._f / self._nf).max()) if self._nf else 0.0)
        return {"miou": float(np.mean(ious)), "fscore": float(np.mean(fs)),
                "n_frames": self.n_frames, "n_batches": len(ious)}


def official_binary_scores(preds: np.ndarray, gts: np.ndarray, videos: np.ndarray,
                           batch_videos: int) -> dict:
    """S4/MS3 ``mIoU`` and ``F-score`` as ``avs_s4/test.py`` / ``avs_ms3/test.py`` print them
    (:class:`OfficialBinaryAccumulator` over all frames at once).

    Frames are grouped into test batches of ``batch_videos`` consecutive videos (in the order the
    videos first appear in ``videos``); each batch gets :func:`batch_mask_iou` and
    :func:`batch_fmeasure`, and both are averaged over batches with equal weight.

    Args:
        preds: ``(M, H, W)`` float foreground probabilities in [0, 1].
        gts: ``(M, H, W)`` {0, 1} ground truth.
        videos: ``(M,)`` video id of each frame; a video's frames must be contiguous.
        batch_videos: videos per official test batch (4 in the released ``test.sh``).

    Returns:
        dict ``miou``, ``fscore`` (fractions in [0, 1]), ``n_frames``, ``n_batches``.

    Raises:
        ValueError: on mismatched shapes, ``batch_videos < 1``, no frame, or a video whose frames
            are not contiguous.
    """
    if len(np.asarray(videos)) != len(preds) or len(preds) == 0:
        raise ValueError(f"need one video id per frame and at least one frame, got "
                         f"{len(np.asarray(videos))} ids for {len(preds)} frames")
    acc = OfficialBinaryAccumulator(batch_videos)
    acc.update(preds, gts, videos)
    return acc.compute()
