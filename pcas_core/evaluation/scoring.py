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

import copy
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pcas_core.data.constants import IGNORE_INDEX
from pcas_core.evaluation.metrics import (BY_KIND, AVSSAccumulator, BinaryAccumulator,
                                          absent_class_count, foreground_binary)
from pcas_core.evaluation.official import (OfficialAVSSAccumulator, OfficialBinaryAccumulator,
                                        padded_frames)

__all__ = ["KINDS", "MODES", "BY_KIND", "Prediction", "scored_frames", "FrameScores", "Scores",
           "score", "score_by_kind", "score_by_subset", "report", "metrics_file",
           "scored_class_names", "scored_labels"]

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


class FrameScores:
    """:func:`score` of one predictor accumulated chunk by chunk of frames in test order, so
    memory holds one chunk, not the test set: every definition is a sum over frames (the clean
    and official AVSS accumulators, the binary mIoU and F-score sums, the absent-class count),
    or over official S4/MS3 test batches of whole videos, kept one batch at a time.

    Args:
        kind: ``avss`` | ``s4`` | ``ms3`` (:data:`KINDS`).
        batch_videos: videos per official test batch (binary kinds only).
        padded_mask: the predictor's (H, W) uint8 prediction on the official padded frame (AVSS);
            None = background everywhere.

    Raises:
        ValueError: unknown kind.
    """

    def __init__(self, kind: str, *, batch_videos: int,
                 padded_mask: np.ndarray | None = None) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown dataset kind {kind!r}, expected one of {sorted(KINDS)}")
        self.kind, self.padded_mask = kind, padded_mask
        self.semantic = KINDS[kind] == "semantic"
        self.clean = AVSSAccumulator() if self.semantic else AVSSAccumulator(num_classes=2)
        self.official = (OfficialAVSSAccumulator() if self.semantic
                         else OfficialBinaryAccumulator(batch_videos))
        self.binary = BinaryAccumulator()  # AVSS: the foreground's; S4/MS3: the scores
        self.absent = self.n_pad = self.n_frames = 0
        self.shape: tuple[int, ...] | None = None
        self._last_uid = None

    def update(self, pred: Prediction, gts: np.ndarray, frames: pd.DataFrame) -> None:
        """Add the next frames in test order (a video may continue in the next call).

        Args:
            pred: the predictor's output on the rows of ``frames``.
            gts: (B, H, W) uint8 ground truth (class indices; binary kinds: {0, 1}; 255 ignored).
            frames: B rows of :func:`scored_frames`, videos contiguous.

        Raises:
            ValueError: shapes that disagree (names them).
        """
        if pred.masks.shape != gts.shape or gts.ndim != 3 or len(frames) != len(gts):
            raise ValueError(f"expected (M, H, W) predictions and ground truth for the "
                             f"{len(frames)} scored frames, got {pred.masks.shape} and {gts.shape}")
        if not len(gts):
            return
        self.shape, self.n_frames = gts.shape[1:], self.n_frames + len(gts)
        fg_gt = np.stack([foreground_binary(g) for g in gts])
        fg_hard = np.stack([foreground_binary(p) for p in pred.masks])
        soft = fg_hard.astype(np.float32) if pred.foreground is None else pred.foreground
        if not self.semantic:
            for p, g in zip(fg_hard, gts):
                self.clean.update(p, g)  # background / foreground, for the per-class plot
            self.binary.update(soft, fg_gt)
            self.official.update(soft, fg_gt, frames["uid"].to_numpy())
            return
        for p, g in zip(pred.masks, gts):
            self.clean.update(p, g)
            self.official.update(p, g)
        uids, counts = frames["uid"].to_numpy(), frames["n_video_frames"].to_numpy()
        for i in np.flatnonzero(np.r_[True, uids[1:] != uids[:-1]]):
            if uids[i] != self._last_uid:  # a video's first frame: its padded frames
                self.n_pad += int(padded_frames(counts[i]))
                self._last_uid = uids[i]
        self.binary.add_iou(fg_hard.astype(np.float32), fg_gt)
        self.binary.add_fscore(soft, fg_gt)
        self.absent += absent_class_count(pred.masks, gts)

    def compute(self) -> dict[str, dict]:
        """The scores of the frames so far, as :func:`score` returns them.

        Raises:
            ValueError: no frame was added.
        """
        if not self.n_frames:
            raise ValueError("no scored frame")
        if not self.semantic:
            return {"clean": {"miou": self.binary.miou(), "fscore": self.binary.fscore(),
                              "per_class_iou": self.clean.compute()["per_class_iou"],
                              "n_frames": self.n_frames},
                    "official": self.official.compute()}
        official = copy.deepcopy(self.official)  # the padded frames go in at the end
        if self.n_pad:
            pad = (np.zeros(self.shape, dtype=np.uint8) if self.padded_mask is None
                   else self.padded_mask)
            official.update(pad, np.zeros(self.shape, dtype=np.uint8), count=self.n_pad)
        out = {"clean": self.clean.compute(), "official": {**official.compute(),
                                                          "n_padded": self.n_pad}}
        out["clean"]["fg_miou"] = self.binary.miou()
        out["clean"]["fg_fscore"] = self.binary.fscore()
        out["clean"]["absent_class_frames"] = self.absent / self.n_frames
        return out


class Scores:
    """:func:`score_by_kind` (``subsets`` false) or :func:`score_by_subset` (true) of one
    predictor, accumulated chunk by chunk (:class:`FrameScores` over all frames and over the
    frames of each clip kind and AVSS subset met).

    Args:
        kind, batch_videos, padded_mask: as :class:`FrameScores`.
        subsets: also score each ``subset`` (reported when there is more than one).
    """

    def __init__(self, kind: str, *, batch_videos: int, padded_mask: np.ndarray | None = None,
                 subsets: bool = False) -> None:
        self._new = lambda: FrameScores(kind, batch_videos=batch_videos, padded_mask=padded_mask)
        self.all = self._new()
        self.groups: dict[str, dict] = {"kind": {}, **({"subset": {}} if subsets else {})}

    def update(self, pred: Prediction, gts: np.ndarray, frames: pd.DataFrame) -> None:
        """:meth:`FrameScores.update` of the whole and of each group of these frames."""
        self.all.update(pred, gts, frames)
        for column, groups in self.groups.items():
            if column not in frames:
                continue
            values = frames[column].to_numpy()
            for name in pd.unique(values):
                rows = values == name
                if name not in groups:
                    groups[name] = self._new()
                groups[name].update(pred.subset(rows), gts[rows],
                                    frames[rows].reset_index(drop=True))

    def compute(self) -> dict[str, dict]:
        """``{"clean", "official"[, "by_kind": {kind: ...}][, subset: {...}, ...]}``: groups by
        sorted value; subsets only when more than one was met."""
        out = self.all.compute()
        kinds = self.groups["kind"]
        if kinds:
            out[BY_KIND] = {str(k): kinds[k].compute() for k in sorted(kinds)}
        subsets = self.groups.get("subset", {})
        if len(subsets) > 1:
            out.update({str(k): subsets[k].compute() for k in sorted(subsets)})
        return out


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
    acc = FrameScores(kind, batch_videos=batch_videos, padded_mask=pred.padded_mask)
    acc.update(pred, gts, frames)
    if not len(gts):
        raise ValueError(f"expected (M, H, W) predictions and ground truth for the {len(frames)} "
                         f"scored frames, got {pred.masks.shape} and {gts.shape}")
    return acc.compute()


def score_by_kind(kind: str, pred: Prediction, gts: np.ndarray, frames: pd.DataFrame, *,
                  batch_videos: int) -> dict[str, dict]:
    """:func:`score` over all frames plus, when ``frames`` has a ``kind`` column (the clip kind
    of each frame's video, e.g. the demo's ``always``/``event``/``silent``/``multi``/``long``),
    over each kind: ``{"clean", "official", "by_kind": {"event": {"clean", "official"}, ...}}``
    (:data:`BY_KIND`; ``kind`` at the top of a metrics file is the dataset's). Without the
    column it is :func:`score`. (:class:`Scores` accumulates the same chunk by chunk.)"""
    acc = Scores(kind, batch_videos=batch_videos, padded_mask=pred.padded_mask)
    acc.update(pred, gts, frames)
    return acc.compute()


def score_by_subset(kind: str, pred: Prediction, gts: np.ndarray, frames: pd.DataFrame, *,
                    batch_videos: int) -> dict[str, dict]:
    """:func:`score_by_kind` plus, when ``frames`` has more than one ``subset`` (AVSS subset
    ``v1s``/``v1m``/``v2``), :func:`score` over each subset: ``{"clean", "official", "v1s":
    {"clean", "official"}, ..., "by_kind": {...}}``. (:class:`Scores` with ``subsets``
    accumulates the same chunk by chunk.)"""
    acc = Scores(kind, batch_videos=batch_videos, padded_mask=pred.padded_mask, subsets=True)
    acc.update(pred, gts, frames)
    return acc.compute()


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
