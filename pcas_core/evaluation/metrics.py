"""AVSBench metrics (Zhou et al., AVSBench, ``avs_scripts/*/utils/utility.py``), re-implemented in numpy.

Every value is a fraction in [0, 1]; nothing is multiplied by 100. Differences from the official
code are stated where they occur:

- AVSS: pixels whose label is ``ignore_index`` are excluded (the official code excludes only labels
  below 0); prediction values outside ``[0, num_classes)`` (e.g. 255 in a pseudo-mask) count in no
  class, as with the official ``torch.histc``. IoU divides by the union exactly, without the
  official ``2.2e-16`` in the denominator (only the 0/0 case differs, and it is not counted).
  Which frames are scored (the official code also scores padded frames of 5-frame videos) is the
  caller's choice.
- Binary F-score: computed over the whole test set, not maxed per batch and averaged over batches
  as in the official script (whose number therefore depends on the batch size). Thresholds are in
  float64, so the last one is ``1 - 1e-10`` rather than float32's 1.0.
- Binary inputs are probabilities; the official scripts apply a sigmoid to logits first.
"""

from __future__ import annotations

import numpy as np

from pcas_core.data.constants import IGNORE_INDEX, NUM_CLASSES

F_BETA2 = 0.3  # AVSBench's beta^2 for every F-score
#: key under which every metrics file nests its scores per clip kind (datasets whose frame table
#: has a ``kind`` column, e.g. the demo's); ``kind`` at a file's top is the dataset's kind
BY_KIND = "by_kind"


def _f_measure(precision: np.ndarray, recall: np.ndarray, beta2: float) -> np.ndarray:
    """``(1 + b2) P R / (b2 P + R)`` elementwise, NaN (0/0) -> 0 (AVSBench)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        f = (1.0 + beta2) * precision * recall / (beta2 * precision + recall)
    return np.nan_to_num(f, nan=0.0)


def avss_frame_stats(
    pred: np.ndarray, label: np.ndarray, num_classes: int = NUM_CLASSES, ignore_index: int = IGNORE_INDEX
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class intersection, prediction area and label area of one frame (AVSBench AVSS).

    Args:
        pred: ``(H, W)`` integer predicted class indices.
        label: ``(H, W)`` integer ground-truth class indices, ``ignore_index`` for unlabelled pixels.
        num_classes: number of classes (71, background = 0).
        ignore_index: label value excluded from all three counts.

    Returns:
        ``(inter, pred_area, label_area)``, each ``(num_classes,)`` int64 pixel counts.

    Raises:
        ValueError: if shapes differ, are not 2-D, or a label is outside ``[0, num_classes)``
            and is not ``ignore_index``.
    """
    if pred.ndim != 2 or pred.shape != label.shape:
        raise ValueError(f"pred and label must both be H x W, got {pred.shape} and {label.shape}")
    valid = label != ignore_index
    lab = label[valid].astype(np.int64)
    prd = pred[valid].astype(np.int64)
    if lab.size and (lab.min() < 0 or lab.max() >= num_classes):
        raise ValueError(f"label values must be in [0, {num_classes}) or {ignore_index}")
    in_range = (prd >= 0) & (prd < num_classes)
    inter = np.bincount(prd[in_range & (prd == lab)], minlength=num_classes)
    pred_area = np.bincount(prd[in_range], minlength=num_classes)
    label_area = np.bincount(lab, minlength=num_classes)
    return inter, pred_area, label_area


class AVSSAccumulator:
    """Accumulates AVSBench's 71-class mIoU and F-score over frames.

    Per class c: ``IoU_c = inter / union`` and ``F_c`` (precision = inter/pred, recall = inter/label,
    beta^2 = 0.3, NaN -> 0) are summed over frames where c's union is non-empty and divided by that
    count (AVSBench ``_batch_miou_fscore``).

    Args:
        num_classes: number of classes (71).
        ignore_index: label value excluded from scoring.
        beta2: F-score beta^2.
    """

    def __init__(
        self, num_classes: int = NUM_CLASSES, ignore_index: int = IGNORE_INDEX, beta2: float = F_BETA2
    ) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.beta2 = beta2
        self.iou_sum = np.zeros(num_classes, dtype=np.float64)
        self.f_sum = np.zeros(num_classes, dtype=np.float64)
        self.count = np.zeros(num_classes, dtype=np.int64)
        self.n_frames = 0

    def update(self, pred: np.ndarray, label: np.ndarray) -> None:
        """Add one frame: ``(H, W)`` integer class-index ``pred`` and ``label`` (:func:`avss_frame_stats`)."""
        stats = avss_frame_stats(pred, label, self.num_classes, self.ignore_index)
        inter, area_p, area_l = (a.astype(np.float64) for a in stats)
        union = area_p + area_l - inter
        present = union > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = np.where(present, inter / union, 0.0)
            precision, recall = inter / area_p, inter / area_l
        self.iou_sum += iou
        self.f_sum += np.where(present, _f_measure(precision, recall, self.beta2), 0.0)
        self.count += present
        self.n_frames += 1

    def compute(self) -> dict:
        """Return the scores so far, all fractions in [0, 1].

        Returns:
            dict with ``miou`` and ``fscore`` (mean over all classes, never-occurring classes
            count 0, as the official code), ``miou_present`` and ``fscore_present`` (mean over
            classes whose union was non-empty in at least one frame; NaN if none), ``per_class_iou``
            and ``per_class_fscore`` (lists of ``num_classes`` floats, NaN for never-occurring
            classes) and ``n_frames``.
        """
        present = self.count > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = np.where(present, self.iou_sum / self.count, np.nan)
            fsc = np.where(present, self.f_sum / self.count, np.nan)
        any_present = bool(present.any())
        return {
            "miou": float(np.nan_to_num(iou, nan=0.0).mean()),
            "fscore": float(np.nan_to_num(fsc, nan=0.0).mean()),
            "miou_present": float(iou[present].mean()) if any_present else float("nan"),
            "fscore_present": float(fsc[present].mean()) if any_present else float("nan"),
            "per_class_iou": [float(v) for v in iou],
            "per_class_fscore": [float(v) for v in fsc],
            "n_frames": self.n_frames,
        }


def _check_binary(preds: np.ndarray, gts: np.ndarray) -> None:
    """Raise ``ValueError`` unless preds and gts are both ``M x H x W``."""
    if preds.ndim != 3 or preds.shape != gts.shape:
        raise ValueError(f"preds and gts must both be M x H x W, got {preds.shape} and {gts.shape}")


def frame_ious(preds: np.ndarray, gts: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """AVSBench S4/MS3 IoU of each frame (``mask_iou``) of ``pred > threshold``: ``(M,)``
    float64; a frame with an empty GT scores the fraction of its pixels predicted background.

    Args:
        preds: ``(M, H, W)`` float foreground probabilities in [0, 1].
        gts: ``(M, H, W)`` {0, 1} ground-truth masks.

    Raises:
        ValueError: on mismatched or non-3-D shapes.
    """
    _check_binary(preds, gts)
    p = (preds > threshold).reshape(preds.shape[0], -1)
    g = gts.reshape(gts.shape[0], -1) > 0
    inter = (p & g).sum(1)
    union = (p | g).sum(1)
    empty = g.sum(1) == 0
    true_bg = (~p & ~g).sum(1)
    return np.where(empty, true_bg / p.shape[1], inter / np.maximum(union, 1))


def binary_miou(preds: np.ndarray, gts: np.ndarray, threshold: float = 0.5) -> float:
    """AVSBench S4/MS3 mIoU (``mask_iou``): mean over frames of the IoU of ``pred > threshold``
    (:func:`frame_ious`).

    A frame with an empty GT scores the fraction of its pixels predicted background.

    Args:
        preds: ``(M, H, W)`` float foreground probabilities in [0, 1].
        gts: ``(M, H, W)`` {0, 1} ground-truth masks.
        threshold: binarisation threshold (0.5 in AVSBench).

    Returns:
        mIoU in [0, 1].

    Raises:
        ValueError: on mismatched or non-3-D shapes, or M = 0.
    """
    _check_binary(preds, gts)
    if preds.shape[0] == 0:
        raise ValueError("binary_miou needs at least one frame")
    return float(frame_ious(preds, gts, threshold).mean())


def _frame_pr_curve(
    pred: np.ndarray, gt: np.ndarray, thresholds: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Precision, recall of ``pred >= t`` per threshold t (AVSBench ``_eval_pr``); 0 where undefined."""
    pred = pred.ravel().astype(np.float64)
    pos = np.sort(pred[gt.ravel() > 0])
    all_sorted = np.sort(pred)
    tp = pos.size - np.searchsorted(pos, thresholds, side="left")
    n_pred = all_sorted.size - np.searchsorted(all_sorted, thresholds, side="left")
    precision = np.where(n_pred > 0, tp / np.maximum(n_pred, 1), 0.0)
    recall = tp / pos.size
    return precision, recall


def fscore_curves(preds: np.ndarray, gts: np.ndarray, thresholds: np.ndarray,
                  beta2: float = F_BETA2, out: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Sum over the frames with a non-empty GT of F(t) of ``pred >= t`` (AVSBench
    ``Eval_Fmeasure``, NaN -> 0), added frame by frame in order, and how many frames that is.

    Args:
        preds: ``(M, H, W)`` float foreground probabilities in [0, 1].
        gts: ``(M, H, W)`` {0, 1} ground-truth masks.
        thresholds: ``(T,)`` float64 thresholds.
        out: ``(T,)`` float64 running sum to add to in place (so sums over chunks of frames are
            those over all frames, bit for bit); None starts from zeros.

    Returns:
        ``(sum (T,) float64, frames counted)``.

    Raises:
        ValueError: on mismatched or non-3-D shapes.
    """
    _check_binary(preds, gts)
    total, n = np.zeros(len(thresholds), dtype=np.float64) if out is None else out, 0
    for pred, gt in zip(preds, gts):
        if not (gt > 0).any():
            continue
        total += _f_measure(*_frame_pr_curve(pred, gt, thresholds), beta2)
        n += 1
    return total, n


def binary_fscore(
    preds: np.ndarray, gts: np.ndarray, beta2: float = F_BETA2, n_thresholds: int = 255
) -> float:
    """AVSBench S4/MS3 F-score (``Eval_Fmeasure``) over the whole set.

    For thresholds ``linspace(0, 1 - 1e-10, n_thresholds)``, each frame with a non-empty GT gets
    F(t) from precision and recall of ``pred >= t`` (NaN -> 0); F(t) is averaged over those frames
    and the maximum over t is returned. The official script takes this maximum per test batch and
    averages over batches; this computes it once over the whole test set.

    Args:
        preds: ``(M, H, W)`` float foreground probabilities in [0, 1].
        gts: ``(M, H, W)`` {0, 1} ground-truth masks.
        beta2: beta^2 (0.3). n_thresholds: number of thresholds (255).

    Returns:
        F-score in [0, 1]; 0.0 if every GT is empty.

    Raises:
        ValueError: on mismatched or non-3-D shapes.
    """
    acc = BinaryAccumulator(beta2=beta2, n_thresholds=n_thresholds)
    acc.add_fscore(preds, gts)
    return acc.fscore()


class BinaryAccumulator:
    """AVSBench's S4/MS3 mIoU (:func:`binary_miou`) and whole-set F-score (:func:`binary_fscore`)
    accumulated chunk by chunk of frames: memory does not grow with the frames.

    :meth:`update` adds frames to both; :meth:`add_iou` and :meth:`add_fscore` to one (e.g. the
    hard foreground to the IoU and the foreground probabilities to the F-score).

    Args:
        threshold: binarisation threshold of the IoU (0.5). beta2: F-score beta^2 (0.3).
        n_thresholds: thresholds of the F-score sweep (255).
    """

    def __init__(self, threshold: float = 0.5, beta2: float = F_BETA2,
                 n_thresholds: int = 255) -> None:
        self.threshold, self.beta2 = threshold, beta2
        self.thresholds = np.linspace(0.0, 1.0 - 1e-10, n_thresholds)
        self.iou_sum, self.n_iou = 0.0, 0
        self.f_sum, self.n_f = np.zeros(n_thresholds, dtype=np.float64), 0

    def add_iou(self, preds: np.ndarray, gts: np.ndarray) -> None:
        """Add ``(B, H, W)`` probabilities and ``(B, H, W)`` {0, 1} GTs to the mIoU."""
        self.iou_sum += float(frame_ious(preds, gts, self.threshold).sum())
        self.n_iou += len(preds)

    def add_fscore(self, preds: np.ndarray, gts: np.ndarray) -> None:
        """Add ``(B, H, W)`` probabilities and ``(B, H, W)`` {0, 1} GTs to the F-score."""
        self.n_f += fscore_curves(preds, gts, self.thresholds, self.beta2, out=self.f_sum)[1]

    def update(self, preds: np.ndarray, gts: np.ndarray) -> None:
        """:meth:`add_iou` and :meth:`add_fscore` of the same frames."""
        self.add_iou(preds, gts)
        self.add_fscore(preds, gts)

    def miou(self) -> float:
        """Mean IoU over the frames added (NaN when none)."""
        return self.iou_sum / self.n_iou if self.n_iou else float("nan")

    def fscore(self) -> float:
        """max_t of F(t) averaged over the frames added with a non-empty GT; 0.0 when none."""
        return float((self.f_sum / self.n_f).max()) if self.n_f else 0.0


def foreground_binary(mask: np.ndarray, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """Binary foreground of a class-index mask: 1 for any class > 0, 0 for background and ignore.

    Args:
        mask: ``(H, W)`` uint8 class indices. ignore_index: value mapped to 0.

    Returns:
        ``(H, W)`` uint8 in {0, 1}.

    Raises:
        ValueError: if ``mask`` is not 2-D.
    """
    if mask.ndim != 2:
        raise ValueError(f"mask must be H x W, got shape {mask.shape}")
    return ((mask != 0) & (mask != ignore_index)).astype(np.uint8)


def absent_class_count(preds: np.ndarray, gts: np.ndarray,
                       ignore_index: int = IGNORE_INDEX) -> int:
    """Frames whose predicted mask holds a foreground class that the frame's ground truth does
    not (pixels the ground truth ignores are not looked at): the numerator of
    :func:`absent_class_frames`.

    Args:
        preds, gts: (M, H, W) uint8 class-index masks (0 background).

    Raises:
        ValueError: shapes differ.
    """
    if preds.shape != gts.shape:
        raise ValueError(f"predictions {preds.shape} and ground truth {gts.shape} differ")
    absent = 0
    for p, g in zip(preds, gts):
        seen = p[g != ignore_index]
        if np.setdiff1d(np.unique(seen[seen > 0]), np.unique(g)).size:
            absent += 1
    return absent


def absent_class_frames(preds: np.ndarray, gts: np.ndarray,
                        ignore_index: int = IGNORE_INDEX) -> float:
    """Share of frames whose predicted mask holds a foreground class that the frame's ground
    truth does not: a silent object painted, or a class confused for another (pcas's own
    diagnostic, not an AVSBench metric; pixels the ground truth ignores are not looked at).

    Args:
        preds, gts: (M, H, W) uint8 class-index masks (0 background).

    Returns:
        A fraction in [0, 1]; 0 for no frame.

    Raises:
        ValueError: shapes differ.
    """
    absent = absent_class_count(preds, gts, ignore_index)
    return absent / len(preds) if len(preds) else 0.0


def frame_classification_scores(probs: np.ndarray, targets: np.ndarray, threshold: float = 0.5) -> dict:
    """Micro-averaged multi-label scores of per-frame class predictions (docs/method.md §2, TVP audio).

    Predicted set: ``probs >= threshold``; target set: ``targets > 0.5``. Rows of ``targets``
    containing NaN (frames without a ground-truth mask) are skipped.

    Args:
        probs: ``(M, K)`` float probabilities (sigmoid of the step logits).
        targets: ``(M, K)`` float {0, 1} classes present in each frame's mask, NaN rows unknown.
        threshold: decision threshold on ``probs``.

    Returns:
        dict with ``precision`` = TP/(TP+FP), ``recall`` = TP/(TP+FN), ``f1`` (0 where undefined),
        ``accuracy`` (fraction of frames whose predicted set equals the target set exactly) and
        ``n_frames`` (frames scored); all scores NaN-free fractions in [0, 1].

    Raises:
        ValueError: if the shapes differ or are not 2-D.
    """
    if probs.ndim != 2 or probs.shape != targets.shape:
        raise ValueError(f"probs and targets must both be M x K, got {probs.shape} and {targets.shape}")
    keep = ~np.isnan(targets).any(axis=1)
    pred = probs[keep] >= threshold
    tgt = targets[keep] > 0.5
    tp = float((pred & tgt).sum())
    fp = float((pred & ~tgt).sum())
    fn = float((~pred & tgt).sum())
    precision = tp / (tp + fp) if tp + fp > 0 else 0.0
    recall = tp / (tp + fn) if tp + fn > 0 else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    n = int(keep.sum())
    accuracy = float((pred == tgt).all(axis=1).mean()) if n else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "accuracy": accuracy, "n_frames": n}


def frame_classification_from_logits(logits: np.ndarray, targets: np.ndarray,
                                     threshold: float = 0.5) -> dict:
    """:func:`frame_classification_scores` of ``sigmoid(logits)``: ``logits`` (M, K) float."""
    probs = 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))
    return frame_classification_scores(probs, targets, threshold)
