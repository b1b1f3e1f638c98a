"""Score predicted masks against ground truth in both metric modes, by dataset kind.

Modes (every metrics file holds both, side by side):

- ``clean``: the AVSBench definitions (:mod:`pcas_core.evaluation.metrics`) over the real frames only; the
  binary F-score over the whole set; beside the official mean over all 71 classes, the mean over
  the classes that occur (``miou_present``).
- ``official``: what the official test scripts print, quirks included
  (:mod:`pcas_core.evaluation.official`): AVSS videos padded to 10 frames and the padded frames
  scored with each predictor's own prediction on the padded input, ``miou_noBg`` dropping the
  last class, S4/MS3 scores averaged over test batches of ``batch_videos`` videos.

Kinds: ``avss`` (71-class class-index masks) is scored as semantic segmentation; ``s4`` and
``ms3`` (binary masks) as binary segmentation, so wiring a binary dataset is one argument.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pcas_core.data.constants import IGNORE_INDEX
from pcas_core.evaluation.metrics import (BY_KIND, AVSSAccumulator, absent_class_frames,
                                          binary_fscore, binary_miou,
                                          foreground_binary)
from pcas_core.evaluation.official import (OfficialAVSSAccumulator, official_binary_scores,
                                        padded_frames)

__all__ = ["KINDS", "MODES", "BY_KIND", "Prediction", "scored_frames", "score", "score_by_kind",
           "score_by_subset", "report", "metrics_file", "scored_class_names", "scored_labels"]

#: dataset kind -> how it is scored
KINDS = {"avss": "semantic", "s4": "binary", "ms3": "binary"}
MODES = ("clean", "official")

#: keys a metrics file reports, per scoring type, role and mode (kept few, so that
#: ``dvc metrics show`` stays readable). ``method``: the predictions the file is about;
#: ``subset``: the same per AVSS subset; ``reference``: baselines and pseudo-masks beside them.
KEYS = {
    "semantic": {
        "method": {"clean": ("miou", "fscore", "miou_present", "fscore_present", "fg_miou",
                             "fg_fscore", "absent_class_frames", "n_frames"),
                   "official": ("miou", "fscore", "miou_noBg", "fscore_noBg", "n_frames",
                                "n_padded")},
        "subset": {"clean": ("miou", "fscore", "miou_present", "absent_class_frames"),
                   "official": ("miou", "fscore")},
        "reference": {"clean": ("miou", "fscore", "miou_present", "fscore_present", "fg_miou",
                                "absent_class_frames"),
                      "official": ("miou", "fscore")},
    },
    "binary": {
        "method": {"clean": ("miou", "fscore", "n_frames"),
                   "official": ("miou", "fscore", "n_frames", "n_batches")},
        "subset": {"clean": ("miou", "fscore"), "official": ("miou", "fscore")},
        "reference": {"clean": ("miou", "fscore"), "official": ("miou", "fscore")},
    },
}


@dataclass(frozen=True)
class Prediction:
    """One predictor's output on the scored frames and on the official padded frame.

    Attributes:
        masks: (M, H, W) uint8 class indices (0 background; values >= 71, e.g. 255, count in no
            class). Binary kinds use its foreground (class > 0) unless ``foreground`` is given.
        foreground: (M, H, W) float32 foreground probability in [0, 1] for the binary scores
            (the F-score sweeps thresholds over it), or None for the hard foreground of ``masks``.
        padded_mask: (H, W) uint8 prediction on the official padded input (all zeros after
            normalisation, no audio); None = background everywhere.
        padded_foreground: (H, W) float32 foreground probability on the padded input, or None.
    """

    masks: np.ndarray
    foreground: np.ndarray | None = None
    padded_mask: np.ndarray | None = None
    padded_foreground: np.ndarray | None = None

    def subset(self, rows: np.ndarray) -> Prediction:
        """The same predictor on the frames selected by ``rows`` ((M,) bool)."""
        return Prediction(self.masks[rows], None if self.foreground is None else
                          self.foreground[rows], self.padded_mask, self.padded_foreground)


def scored_frames(frames: pd.DataFrame, *, require_all: bool) -> pd.DataFrame:
    """The annotated rows of one split's frame table, with what official scoring needs.

    Args:
        frames: frame table (columns ``uid``, ``frame``, ``mask_path``; ``subset`` for AVSS
            subsets), every frame of each video of the split.
        require_all: raise unless every frame has a mask (the official AVSS loader asserts this
            for val/test videos).

    Returns:
        The annotated rows (index reset) plus ``n_video_frames``: frames of the row's video.

    Raises:
        ValueError: ``require_all`` and some frame lacks a mask (names an example), or no frame
            is annotated.
    """
    has = (frames["mask_path"] != "").to_numpy()
    if require_all and not has.all():
        bad = frames[~has].iloc[0]
        raise ValueError(f"official scoring needs a mask for every test frame (the official loader "
                         f"asserts it); {int((~has).sum())} frames lack one, e.g. uid {bad['uid']} "
                         f"frame {bad['frame']}")
    if not has.any():
        raise ValueError("no annotated frame to score")
    counts = frames.groupby("uid", sort=False)["frame"].transform("size").to_numpy()
    out = frames[has].copy()
    out["n_video_frames"] = counts[has]
    return out.reset_index(drop=True)


def _semantic(pred: Prediction, gts: np.ndarray, frames: pd.DataFrame) -> dict:
    clean, official = AVSSAccumulator(), OfficialAVSSAccumulator()
    for p, g in zip(pred.masks, gts):
        clean.update(p, g)
        official.update(p, g)
    n_videos = frames.drop_duplicates("uid")["n_video_frames"].to_numpy()
    n_pad = int(padded_frames(n_videos).sum())
    if n_pad:
        pad = np.zeros(gts.shape[1:], dtype=np.uint8) if pred.padded_mask is None else pred.padded_mask
        official.update(pad, np.zeros(gts.shape[1:], dtype=np.uint8), count=n_pad)
    out = {"clean": clean.compute(), "official": {**official.compute(), "n_padded": n_pad}}
    fg_gt = np.stack([foreground_binary(g) for g in gts])
    fg_hard = np.stack([foreground_binary(p) for p in pred.masks]).astype(np.float32)
    out["clean"]["fg_miou"] = binary_miou(fg_hard, fg_gt)
    out["clean"]["fg_fscore"] = binary_fscore(fg_hard if pred.foreground is None else
                                              pred.foreground, fg_gt)
    out["clean"]["absent_class_frames"] = absent_class_frames(pred.masks, gts)
    return out


def _binary(pred: Prediction, gts: np.ndarray, frames: pd.DataFrame, batch_videos: int) -> dict:
    fg_gt = np.stack([foreground_binary(g) for g in gts])
    fg_hard = np.stack([foreground_binary(p) for p in pred.masks])
    fg = fg_hard.astype(np.float32) if pred.foreground is None else pred.foreground
    per_class = AVSSAccumulator(num_classes=2)  # background / foreground, for the per-class plot
    for p, g in zip(fg_hard, gts):
        per_class.update(p, g)
    return {"clean": {"miou": binary_miou(fg, fg_gt), "fscore": binary_fscore(fg, fg_gt),
                      "per_class_iou": per_class.compute()["per_class_iou"], "n_frames": len(fg)},
            "official": official_binary_scores(fg, fg_gt, frames["uid"].to_numpy(), batch_videos)}


def scored_class_names(kind: str, names: list[str]) -> list[str]:
    """Names of the classes the ground truth of ``kind`` holds, by class index: the dataset's
    ``names`` for semantic kinds (AVSS); ``["background", "foreground"]`` for binary kinds
    (S4/MS3 masks are 0/1, whatever class a model predicts).

    Raises:
        ValueError: unknown kind.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown dataset kind {kind!r}, expected one of {sorted(KINDS)}")
    return list(names) if KINDS[kind] == "semantic" else ["background", "foreground"]


def scored_labels(kind: str, masks: np.ndarray) -> np.ndarray:
    """Predicted (M, H, W) uint8 class-index masks in the ground truth's label space, for
    pictures and confusion rows: unchanged for semantic kinds; binary kinds: 1 wherever any
    foreground class is predicted (:func:`pcas_core.evaluation.metrics.foreground_binary`), as they are scored.

    Raises:
        ValueError: unknown kind, or masks not (M, H, W).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown dataset kind {kind!r}, expected one of {sorted(KINDS)}")
    if masks.ndim != 3:
        raise ValueError(f"masks must be M x H x W, got shape {masks.shape}")
    if KINDS[kind] == "semantic":
        return masks
    return ((masks != 0) & (masks != IGNORE_INDEX)).astype(np.uint8)


def score(kind: str, pred: Prediction, gts: np.ndarray, frames: pd.DataFrame, *,
          batch_videos: int) -> dict[str, dict]:
    """Scores of one predictor in both modes.

    Args:
        kind: ``avss`` | ``s4`` | ``ms3`` (:data:`KINDS`).
        pred: the predictor's output on the rows of ``frames``.
        gts: (M, H, W) uint8 ground truth (class indices; binary kinds: {0, 1}; 255 ignored).
        frames: M rows from :func:`scored_frames`, videos contiguous, in test order.
        batch_videos: videos per official test batch (binary kinds only).

    Returns:
        ``{"clean": {...}, "official": {...}}``. Semantic: clean ``miou``, ``fscore``,
        ``miou_present``, ``fscore_present``, ``per_class_iou``, ``per_class_fscore``,
        ``fg_miou``, ``fg_fscore``, ``n_frames``; official ``miou``, ``fscore``, ``miou_noBg``,
        ``fscore_noBg``, ``n_frames`` (padded included), ``n_padded``. Binary: ``miou``,
        ``fscore``, ``n_frames`` in both, ``n_batches`` in official, and clean ``per_class_iou``
        of (background, foreground) (:func:`scored_class_names`; AVSBench's per-frame mean).

    Raises:
        ValueError: unknown kind, or shapes that disagree (names them).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown dataset kind {kind!r}, expected one of {sorted(KINDS)}")
    if pred.masks.shape != gts.shape or gts.ndim != 3 or len(frames) != len(gts) or not len(gts):
        raise ValueError(f"expected (M, H, W) predictions and ground truth for the {len(frames)} "
                         f"scored frames, got {pred.masks.shape} and {gts.shape}")
    if KINDS[kind] == "semantic":
        return _semantic(pred, gts, frames)
    return _binary(pred, gts, frames, batch_videos)


def _groups(kind: str, pred: Prediction, gts: np.ndarray, frames: pd.DataFrame, column: str,
            batch_videos: int) -> dict[str, dict]:
    """:func:`score` of the frames of each value of ``frames[column]``, by value (sorted)."""
    out = {}
    for name in sorted(frames[column].unique()):
        rows = (frames[column] == name).to_numpy()
        out[str(name)] = score(kind, pred.subset(rows), gts[rows],
                               frames[rows].reset_index(drop=True), batch_videos=batch_videos)
    return out


def score_by_kind(kind: str, pred: Prediction, gts: np.ndarray, frames: pd.DataFrame, *,
                  batch_videos: int) -> dict[str, dict]:
    """:func:`score` over all frames plus, when ``frames`` has a ``kind`` column (the clip kind
    of each frame's video, e.g. the demo's ``always``/``event``/``silent``/``multi``/``long``),
    over each kind: ``{"clean", "official", "by_kind": {"event": {"clean", "official"}, ...}}``
    (:data:`BY_KIND`; ``kind`` at the top of a metrics file is the dataset's). Without the
    column it is :func:`score`."""
    out = score(kind, pred, gts, frames, batch_videos=batch_videos)
    if "kind" in frames:
        out[BY_KIND] = _groups(kind, pred, gts, frames, "kind", batch_videos)
    return out


def score_by_subset(kind: str, pred: Prediction, gts: np.ndarray, frames: pd.DataFrame, *,
                    batch_videos: int) -> dict[str, dict]:
    """:func:`score_by_kind` plus, when ``frames`` has more than one ``subset`` (AVSS subset
    ``v1s``/``v1m``/``v2``), :func:`score` over each subset: ``{"clean", "official", "v1s":
    {"clean", "official"}, ..., "by_kind": {...}}``."""
    out = score_by_kind(kind, pred, gts, frames, batch_videos=batch_videos)
    subsets = sorted(frames["subset"].unique()) if "subset" in frames else []
    if len(subsets) > 1:
        out.update(_groups(kind, pred, gts, frames, "subset", batch_videos))
    return out


def report(kind: str, scores: dict[str, dict], role: str) -> dict[str, dict]:
    """The keys of :data:`KEYS` for ``role`` (``method`` | ``reference``) from :func:`score`,
    :func:`score_by_kind` or :func:`score_by_subset` output; subsets (role ``subset``) nested
    under their names, clip kinds (role ``subset``) under ``by_kind.<name>``."""
    keys = KEYS[KINDS[kind]]

    def part(sub: dict, role: str) -> dict:
        return {mode: {k: sub[mode][k] for k in keys[role][mode]} for mode in MODES}

    out = part(scores, role)
    for name, sub in scores.items():
        if name == BY_KIND:
            out[BY_KIND] = {k: part(v, "subset") for k, v in sub.items()}
        elif name not in MODES:
            out[name] = part(sub, "subset")
    return out


def metrics_file(kind: str, split: str, method: dict[str, dict],
                 references: dict[str, dict[str, dict]]) -> dict:
    """The content of a metrics JSON: ``split``, ``kind``, the method's :func:`report` at the top
    level (``clean.miou``, ``official.miou``, ``v1s.clean.miou``, ``by_kind.event.clean.miou``,
    ...) and each reference's under its name (``pseudo_masks.official.miou``,
    ``baseline.background.clean.miou``, ``pseudo_masks.by_kind.silent.clean.miou_present``, ...).

    Args:
        method: :func:`score_by_subset` output of the predictions the file is about.
        references: name -> :func:`score` or :func:`score_by_kind` output; a name with a dot
            nests (``baseline.looking``).
    """
    out: dict = {"split": split, "kind": kind, **report(kind, method, "method")}
    for name, scores in references.items():
        node = out
        *parents, leaf = name.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = report(kind, scores, "reference")
    return out
