"""A clip at a glance: every frame with its ground truth and its prediction, above a timeline of
which classes sound in each second (ground truth) against what the audio encoder hears in that
second, sigmoid(s_t) (docs/method.md §2, §4). Finding *when* a class sounds is what TVP and the
audio gate K_t = {k : sigmoid(s_t,k) >= theta_a} are for; the strip shows both at once.

:func:`clip_timeline` computes the timeline's content (tested on its own), :func:`strip_figure`
draws it with matplotlib, :func:`write_strips` saves one PNG per clip.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display, no GUI toolkit

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Patch, Rectangle  # noqa: E402

from pcas_core.evaluation.visualize import (MIN_PANEL, mask_classes, mask_to_size,  # noqa: E402
                                            overlay)

__all__ = ["ClipTimeline", "ClipStrip", "clip_timeline", "strip_figure", "write_strips"]


@dataclass(frozen=True)
class ClipTimeline:
    """Rows of a clip's timeline, one per class shown.

    Attributes:
        names: row names. classes: each row's class index in the ground truth's label space
            (-1 for a class the binary truth cannot name: S4/MS3 score rows).
        sounding: (K, T) bool, the class is in second t's ground-truth mask (it sounds and is
            visible: AVSBench masks only sounding objects).
        scores: (K, T) float32 audio score sigmoid(s_t) of the row's class, NaN where the row
            has none (the binary truth's "sounding object" row).
    """

    names: list[str]
    classes: list[int]
    sounding: np.ndarray
    scores: np.ndarray


@dataclass(frozen=True)
class ClipStrip:
    """One clip to draw.

    Attributes:
        uid: the clip. images: T (H0, W0, 3) uint8 frames at their own size. gts, preds:
            (T, H, W) uint8 class indices (scored label space). scores: (T, C - 1) float32
            sigmoid(s_t), column k = class k + 1 of the dataset's label space.
    """

    uid: str
    images: list[np.ndarray]
    gts: np.ndarray
    preds: np.ndarray
    scores: np.ndarray


def clip_timeline(gts: np.ndarray, scores: np.ndarray, truth_names: list[str],
                  score_names: list[str], *, theta: float) -> ClipTimeline:
    """Which classes sound in each second and what the audio hears, for a clip of T seconds.

    Semantic truth (AVSS: ``truth_names`` is ``score_names``): one row per class that is in a
    ground-truth mask of the clip or whose audio score reaches ``theta`` in some second, and the
    clip's highest-scoring class, in class order. Binary truth (S4/MS3: ``truth_names`` is
    ``["background", "foreground"]``): a row "sounding object" from the truth, then a score row
    per class reaching ``theta`` (and the highest-scoring one).

    Args:
        gts: (T, H, W) uint8 ground truth (255 ignored). scores: (T, C - 1) float32 audio scores.
        truth_names: names of the truth's label space. score_names: names of the scores' label
            space, index = column + 1.
        theta: theta_a (``pseudo_masks.audio_threshold``).

    Raises:
        ValueError: ``gts`` and ``scores`` of different T, or scores wider than the names.
    """
    if gts.ndim != 3 or scores.ndim != 2 or len(gts) != len(scores):
        raise ValueError(f"expected (T, H, W) masks and (T, C - 1) scores, got {gts.shape} and "
                         f"{scores.shape}")
    if scores.shape[1] > len(score_names) - 1:
        raise ValueError(f"{scores.shape[1]} score columns but {len(score_names)} class names")
    t = len(gts)
    present = [set(mask_classes(g, len(truth_names))) for g in gts]
    heard = {int(k) + 1 for k in np.flatnonzero((scores >= theta).any(axis=0))}
    heard.add(int(np.argmax(scores.max(axis=0))) + 1)
    names, classes, sounding, rows = [], [], [], []
    if truth_names is score_names or list(truth_names) == list(score_names):
        for c in sorted(set().union(*present) | heard):
            names.append(truth_names[c])
            classes.append(c)
            sounding.append([c in p for p in present])
            rows.append(scores[:, c - 1])
    else:
        names.append("sounding object")
        classes.append(1)
        sounding.append([1 in p for p in present])
        rows.append(np.full(t, np.nan, np.float32))
        for c in sorted(heard):
            names.append(score_names[c])
            classes.append(-1)
            sounding.append([False] * t)
            rows.append(scores[:, c - 1])
    return ClipTimeline(names, classes, np.array(sounding, bool).reshape(len(names), t),
                        np.array(rows, np.float32).reshape(len(names), t))


def _panel(image: np.ndarray, mask: np.ndarray, palette: np.ndarray) -> np.ndarray:
    scale = max(1, math.ceil(MIN_PANEL / 2 / min(image.shape[:2])))
    frame = image.repeat(scale, 0).repeat(scale, 1)
    return overlay(frame, mask_to_size(mask, *frame.shape[:2]), palette)


def _colour(palette: np.ndarray, c: int) -> tuple[float, float, float]:
    rgb = palette[c] if 0 < c < len(palette) else np.array([110, 110, 110])
    return tuple(float(v) / 255 for v in rgb)


def strip_figure(strip: ClipStrip, timeline: ClipTimeline, palette: np.ndarray,
                 class_names: list[str], *, theta: float) -> Figure:
    """The strip of one clip: a row of its frames with the ground truth, a row with the
    prediction (a frame whose truth is background only is titled "nothing sounds"), and the
    timeline: per row (class) and second a cell in the class's colour where the truth says it
    sounds, the audio score as a line from 0 (row bottom) to 1 (row top) and theta_a dashed.

    Args:
        palette: display colours by class index (:func:`pcas_core.evaluation.visualize.display_palette`).
        class_names: names of the truth's label space (legends).

    Returns:
        The figure; the timeline is its axes labelled ``"timeline"``, whose patches are the
        sounding cells (``Rectangle((t - 0.5, row), 1, 1)``).
    """
    t, k = len(strip.gts), len(timeline.names)
    fig = plt.figure(figsize=(1.0 + 2.25 * t + 2.6, 6.0 + 0.42 * k))
    grid = fig.add_gridspec(3, t + 1, height_ratios=[2.6, 2.6, 0.5 + 0.42 * k],
                            width_ratios=[2.25] * t + [2.4], hspace=0.22, wspace=0.04,
                            left=0.6 / (3.6 + 2.25 * t), right=0.98)
    n = len(class_names)
    for row, (masks, label) in enumerate([(strip.gts, "ground truth"),
                                          (strip.preds, "prediction")]):
        for s in range(t):
            ax = fig.add_subplot(grid[row, s])
            ax.imshow(_panel(strip.images[s], masks[s], palette), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                silent = not mask_classes(strip.gts[s], n)
                ax.set_title(f"second {s + 1}" + ("\nnothing sounds" if silent else ""),
                             fontsize=9, color="#a00000" if silent else "black")
            if s == 0:
                ax.set_ylabel(label, fontsize=10)
        shown = sorted(set().union(*(mask_classes(m, n) for m in masks)))
        truth = set().union(*(mask_classes(m, n) for m in strip.gts))
        legend = fig.add_subplot(grid[row, t])
        legend.axis("off")
        legend.legend(handles=[Patch(color=_colour(palette, c), label=class_names[c] + (
            "" if row == 0 or c in truth else " (not sounding)")) for c in shown],
            loc="center left", fontsize=9, frameon=False,
            title="truth" if row == 0 else "predicted", title_fontsize=9)
    ax = fig.add_subplot(grid[2, :t], label="timeline")
    for r in range(k):
        for s in np.flatnonzero(timeline.sounding[r]):
            ax.add_patch(Rectangle((s - 0.5, r), 1, 1, color=_colour(palette, timeline.classes[r]),
                                   alpha=0.75, linewidth=0))
        if not np.isnan(timeline.scores[r]).all():
            ax.plot(np.arange(t), r + 1 - timeline.scores[r], color="black", marker="o",
                    markersize=3, linewidth=1)
            ax.plot([-0.5, t - 0.5], [r + 1 - theta] * 2, color="0.4", linestyle="--",
                    linewidth=0.8)
        ax.axhline(r, color="0.8", linewidth=0.5)
    ax.set_xlim(-0.5, t - 0.5)
    ax.set_ylim(k, 0)
    ax.set_yticks(np.arange(k) + 0.5, timeline.names, fontsize=9)
    ax.set_xticks(range(t), [str(s + 1) for s in range(t)], fontsize=8)
    ax.set_xlabel("second", fontsize=9)
    note = fig.add_subplot(grid[2, t])
    note.axis("off")
    note.text(0.0, 0.5, f"cell: the truth says\nthe class sounds\nline: audio score\n"
              f"sigmoid(s_t), 0 to 1\ndashed: theta_a {theta:g}", fontsize=8, va="center")
    fig.suptitle(strip.uid, fontsize=11)
    return fig


def write_strips(folder: Path, strips: list[ClipStrip], palette: np.ndarray,
                 truth_names: list[str], score_names: list[str], *, theta: float) -> None:
    """One :func:`strip_figure` PNG per clip, ``<folder>/<uid>_clip.png``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for strip in strips:
        timeline = clip_timeline(strip.gts, strip.scores, truth_names, score_names, theta=theta)
        fig = strip_figure(strip, timeline, palette, truth_names, theta=theta)
        fig.savefig(folder / f"{strip.uid}_clip.png", dpi=100)
        plt.close(fig)
