"""Frame-level classification of a trained classifier (the looking stage's frame logits, the
listening stage's step logits s_t): the content of ``metrics/visual.json`` / ``metrics/audio.json``,
and the warning when a classifier has collapsed (no class at all, or no correct one)."""

from __future__ import annotations

import logging

import numpy as np

from pcas_core.data.dataset import AVSData
from pcas_core.evaluation.metrics import BY_KIND, frame_classification_from_logits

__all__ = ["VISUAL_THRESHOLD", "frame_scores_file", "predicts_no_class", "predicts_no_true_class",
           "warn_if_no_class", "trained_classifier_scores"]

#: sigmoid threshold of the visual classifier's frame-level scores (its frame logits)
VISUAL_THRESHOLD = 0.5
#: keys reported per clip kind
_KIND_KEYS = ("f1", "precision", "recall", "n_frames")


def frame_scores_file(logits: np.ndarray, data: AVSData, *, threshold: float,
                      targets: np.ndarray | None = None) -> dict:
    """Frame-level classification of every frame of ``data`` against the classes in its mask
    (:func:`pcas_core.evaluation.metrics.frame_classification_scores`, micro-averaged; frames
    without a mask are skipped).

    Args:
        logits: (M, C) float32 per-frame class logits of every frame of ``data``, in frame-table
            order (``C`` = the dataset's foreground classes).
        data: the dataset (train and test splits are scored).
        threshold: sigmoid threshold of a predicted class.
        targets: ``data.frame_classes()`` when the caller has read them already (the masks are
            read once).

    Returns:
        ``{"frame_cls_test": {...}, "frame_cls_train": {...}}`` (precision, recall, f1,
        accuracy, n_frames each) plus, when the frame table has a ``kind`` column,
        ``"by_kind": {kind: {"f1", "precision", "recall", "n_frames"}}`` over the test split.

    Raises:
        ValueError: ``logits`` does not have one row per frame and one column per class.
    """
    if logits.shape != (len(data.frames), data.labels.shape[1]):
        raise ValueError(f"expected ({len(data.frames)}, {data.labels.shape[1]}) logits, one row "
                         f"per frame, got {logits.shape}")
    targets = data.frame_classes() if targets is None else targets
    out = {}
    for split in ("test", "train"):
        rows = data.frames_in(split)
        out[f"frame_cls_{split}"] = frame_classification_from_logits(
            logits[rows], targets[rows], threshold=threshold)
    if "kind" in data.frames:
        test = data.frames_in("test")
        kinds = data.frames["kind"].to_numpy()
        out[BY_KIND] = {}
        for name in sorted(set(kinds[test])):
            rows = test & (kinds == name)
            scores = frame_classification_from_logits(logits[rows], targets[rows],
                                                      threshold=threshold)
            out[BY_KIND][str(name)] = {k: scores[k] for k in _KIND_KEYS}
    return out


def _predicted(logits: np.ndarray, threshold: float) -> np.ndarray:
    """(M, C) bool: sigmoid(logits) >= threshold."""
    return 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64))) >= threshold


def predicts_no_class(logits: np.ndarray, threshold: float) -> bool:
    """True when no row of ``logits`` ((M, C) float) has a class with sigmoid >= ``threshold``
    (also for M = 0)."""
    if not len(logits):
        return True
    return not bool(_predicted(logits, threshold).any())


def predicts_no_true_class(logits: np.ndarray, targets: np.ndarray, threshold: float) -> bool:
    """True when no frame gets a class right: no (frame, class) of ``logits`` ((M, C) float) with
    sigmoid >= ``threshold`` is a class of ``targets`` ((M, C) float or bool, > 0 marks the
    frame's classes; NaN rows, frames without a mask, hold none: ``AVSData.frame_classes``). False
    when ``targets`` holds no class (nothing to get right)."""
    targets = np.nan_to_num(np.asarray(targets, dtype=np.float64)) > 0
    if not targets.any():
        return False
    return not bool((_predicted(logits, threshold) & targets).any())


def warn_if_no_class(logits: np.ndarray, *, stage: str, split: str, threshold: float,
                     logger: logging.Logger, threshold_key: str | None = None,
                     targets: np.ndarray | None = None) -> bool:
    """Log a WARNING when a trained classifier predicts no class on any frame of ``split`` (it
    has collapsed to background, e.g. too few optimiser steps on a small dataset) or, given
    ``targets``, no correct class on any frame (frame F1 0: it learnt nothing of the split);
    every stage after it inherits that.

    Args:
        logits: (M, C) float frame logits of the split's frames.
        stage: the stage that trained it (``train_visual``, ``train_audio``), named in the
            message with its ``min_steps`` / ``epochs`` keys.
        split: the split the logits are of.
        threshold: the sigmoid threshold of a predicted class; ``threshold_key`` the params key
            that sets it, if any.
        targets: optional (M, C) classes of each frame (as :func:`predicts_no_true_class`), for
            the second check.

    Returns:
        Whether it warned.
    """
    key = f" ({threshold_key})" if threshold_key else ""
    advice = f"Train with more optimiser steps: raise {stage}.min_steps or {stage}.epochs."
    if predicts_no_class(logits, threshold):
        logger.warning("%s: no class reaches sigmoid >= %s%s on any of the %d %s frames: the "
                       "trained classifier has collapsed to background, and every later stage "
                       "inherits it. %s", stage, threshold, key, len(logits), split, advice)
        return True
    if targets is not None and predicts_no_true_class(logits, targets, threshold):
        logger.warning("%s: no frame of the %d %s frames gets a correct class at sigmoid >= %s%s "
                       "(frame F1 0): the trained classifier learnt nothing of the %s split, and "
                       "every later stage inherits it. %s", stage, len(logits), split, threshold,
                       key, split, advice)
        return True
    return False


def trained_classifier_scores(logits: np.ndarray, data: AVSData, *, stage: str, threshold: float,
                              logger: logging.Logger, threshold_key: str | None = None) -> dict:
    """What ``train_visual`` and ``train_audio`` report of their trained classifier: the collapse
    warning on the training split (:func:`warn_if_no_class`, with the frames' classes) and
    :func:`frame_scores_file`, the masks read once for both.

    Args:
        logits: (M, C) float32 per-frame class logits of every frame of ``data``.
        data: the dataset.
        stage, threshold, logger, threshold_key: as :func:`warn_if_no_class`.

    Returns:
        :func:`frame_scores_file`'s dict.

    Raises:
        ValueError: as :func:`frame_scores_file`.
    """
    targets = data.frame_classes()
    train = data.frames_in("train")
    if logits.shape == targets.shape:  # else frame_scores_file raises its error below
        warn_if_no_class(logits[train], stage=stage, split="train", threshold=threshold,
                         logger=logger, threshold_key=threshold_key, targets=targets[train])
    return frame_scores_file(logits, data, threshold=threshold, targets=targets)
