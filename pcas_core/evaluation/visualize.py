"""Pictures for people: prediction beside ground truth coloured with the AVSBench palette, a
legend of class names, the choice of frames to show, and confusion-matrix rows for ``dvc plots``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from pcas_core.data.constants import IGNORE_INDEX
from pcas_core.data.palette import index_to_rgb

__all__ = ["MIN_PANEL", "overlay", "Overlay", "comparison_strip", "write_overlays",
           "pick_overlay_frames", "confusion_pairs", "confusion_table", "confusion_rows",
           "save_index_png", "labelled_overlay"]

MIN_PANEL = 224
"""Smallest side, in pixels, of each panel of a comparison strip (frames are upscaled by an
integer factor, nearest neighbour, so mask edges stay exact)."""

_FONT_SIZE = 14
_PAD = 4


def overlay(image: np.ndarray, mask: np.ndarray, palette: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """Blend class colours over a frame where the mask is not background.

    Args:
        image: (H, W, 3) uint8 frame.
        mask: (H, W) uint8 class indices (0 background, 255 ignore shown white).
        palette: (71, 3) uint8 colours.
        alpha: colour weight on labelled pixels.

    Returns:
        (H, W, 3) uint8.
    """
    if image.shape[:2] != mask.shape or image.ndim != 3:
        raise ValueError(f"image {image.shape} and mask {mask.shape} must share (H, W)")
    colours = index_to_rgb(mask, palette).astype(np.float32)
    out = image.astype(np.float32)
    on = mask > 0
    out[on] = (1 - alpha) * out[on] + alpha * colours[on]
    return out.round().clip(0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Overlay:
    """One test frame to draw as ``frame | ground truth | prediction``.

    Attributes:
        name: ``<uid>_<frame>``. image: (H, W, 3) uint8. gt, pred: (H, W) uint8 class indices
            in the scored label space (binary datasets: foreground 1).
    """

    name: str
    image: np.ndarray
    gt: np.ndarray
    pred: np.ndarray


def comparison_strip(path: Path, image: np.ndarray, gt: np.ndarray, pred: np.ndarray,
                     palette: np.ndarray, class_names: list[str], title: str = "") -> None:
    """Save ``[frame | ground truth | prediction]`` as a PNG, with a legend of the classes shown.

    Each panel is upscaled (nearest) by the smallest integer factor that makes it at least
    :data:`MIN_PANEL` pixels wide; a header holds ``title`` (e.g. the clip) on its own line, then
    the panel names; the legend below has one colour swatch and name per class present in ``gt`` or ``pred``.

    Args:
        path: the PNG to write (parent folders are created).
        image: (H, W, 3) uint8 frame. gt, pred: (H, W) uint8 class indices (255 ignore).
        palette: (71, 3) uint8 colours. class_names: 71 names, index = class index.
        title: first header line ("" for none).

    Raises:
        ValueError: shapes that disagree.
    """
    if not image.shape[:2] == gt.shape == pred.shape:
        raise ValueError(f"image {image.shape}, gt {gt.shape} and pred {pred.shape} must share (H, W)")
    scale = max(1, math.ceil(MIN_PANEL / min(gt.shape)))
    panels = [image, overlay(image, gt, palette), overlay(image, pred, palette)]
    strip = np.concatenate([p.repeat(scale, 0).repeat(scale, 1) for p in panels], axis=1)
    font = ImageFont.load_default(size=_FONT_SIZE)
    line = _FONT_SIZE + 2 * _PAD
    classes = [int(c) for c in np.union1d(np.unique(gt), np.unique(pred)) if 0 < c != IGNORE_INDEX
               and c < len(class_names)]
    width = strip.shape[1]
    legend_rows = _legend_layout(classes, class_names, font, width)
    top = line * (2 if title else 1)
    canvas = Image.new("RGB", (width, top + strip.shape[0] + line * max(1, len(legend_rows))),
                       (255, 255, 255))
    canvas.paste(Image.fromarray(strip), (0, top))
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((_PAD, _PAD), title, fill=(0, 0, 0), font=font)
    for i, name in enumerate(["frame", "ground truth", "prediction"]):
        draw.text((i * (width // 3) + _PAD, top - line + _PAD), name, fill=(0, 0, 0), font=font)
    y0 = top + strip.shape[0]
    if not classes:
        draw.text((_PAD, y0 + _PAD), "background only", fill=(0, 0, 0), font=font)
    for r, row in enumerate(legend_rows):
        for x, c in row:
            y = y0 + r * line + _PAD
            draw.rectangle([x, y, x + _FONT_SIZE, y + _FONT_SIZE], fill=tuple(int(v) for v in palette[c]),
                           outline=(0, 0, 0))
            draw.text((x + _FONT_SIZE + _PAD, y), class_names[c], fill=(0, 0, 0), font=font)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)


def write_overlays(folder: Path, overlays: list[Overlay], palette: np.ndarray,
                   class_names: list[str]) -> None:
    """One :func:`comparison_strip` PNG per overlay, ``<folder>/<name>.png``, titled with its
    name."""
    for o in overlays:
        comparison_strip(Path(folder) / f"{o.name}.png", o.image, o.gt, o.pred, palette,
                         class_names, title=o.name)


def _legend_layout(classes: list[int], names: list[str], font: ImageFont.FreeTypeFont,
                   width: int) -> list[list[tuple[int, int]]]:
    """Rows of ``(x, class)`` legend entries that fit ``width`` pixels."""
    rows: list[list[tuple[int, int]]] = [[]]
    x = _PAD
    for c in classes:
        w = _FONT_SIZE + 3 * _PAD + int(font.getlength(names[c]))
        if x + w > width and rows[-1]:
            rows.append([])
            x = _PAD
        rows[-1].append((x, c))
        x += w
    return rows if rows[0] else []


def pick_overlay_frames(frames: pd.DataFrame, n: int, uid_contains: list[str]) -> np.ndarray:
    """A fixed, deterministic choice of at most ``n`` frames to draw, one per video.

    First, for each string of ``uid_contains`` in turn, the first not yet chosen video whose
    ``uid`` contains it (e.g. ``"silent"`` and ``"multi"`` pick a demo clip with a silent object
    and a multi-source clip), then one video of each AVSS subset (``subset``) not yet shown, then
    videos evenly spaced over the rest. Each video shows its middle scored frame.

    Args:
        frames: scored frame rows (columns ``uid``, ``frame``; ``subset`` optional), grouped by video.
        n: frames wanted (>= 0). uid_contains: substrings of uids to include first.

    Returns:
        (k,) int64 row positions into ``frames``, k = min(n, number of videos), in row order.
    """
    videos = frames["uid"].drop_duplicates().tolist()
    chosen: list[str] = []

    def take(candidates):
        for uid in candidates:
            if uid not in chosen and len(chosen) < n:
                chosen.append(uid)
                return

    for text in uid_contains:
        take(u for u in videos if text in u)
    if "subset" in frames:
        first = frames.drop_duplicates("uid")
        for name in sorted(first["subset"].unique()):
            if name not in set(first[first["uid"].isin(chosen)]["subset"]):
                take(first[first["subset"] == name]["uid"])
    rest = [u for u in videos if u not in chosen]
    k = max(0, min(n - len(chosen), len(rest)))
    chosen += [rest[i] for i in np.linspace(0, len(rest) - 1, k).round().astype(int)] if k else []
    rows = []
    for uid in chosen:
        pos = np.flatnonzero((frames["uid"] == uid).to_numpy())
        rows.append(int(pos[len(pos) // 2]))
    return np.array(sorted(rows), dtype=np.int64)


def confusion_pairs(preds: np.ndarray, gts: np.ndarray, n_classes: int,
                    stride: int) -> tuple[np.ndarray, np.ndarray]:
    """The sampled pixels of :func:`confusion_rows` as class indices: ``(actual (R,) int64,
    predicted (R,) int64)``, in frame then raster order (two integers a row, so a pass over a
    large test set can keep them chunk by chunk and name them once, :func:`confusion_table`).

    Args:
        preds, gts: (M, H, W) uint8 class indices. n_classes: classes that have a name.
        stride: grid step in pixels (>= 1).

    Raises:
        ValueError: shapes differ or ``stride < 1``.
    """
    if preds.shape != gts.shape or preds.ndim != 3:
        raise ValueError(f"preds and gts must both be M x H x W, got {preds.shape} and {gts.shape}")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    p = preds[:, ::stride, ::stride].ravel().astype(np.int64)
    g = gts[:, ::stride, ::stride].ravel().astype(np.int64)
    keep = (g != IGNORE_INDEX) & ((g > 0) | (p > 0)) & (p < n_classes)
    return g[keep], p[keep]


def confusion_table(actual: np.ndarray, predicted: np.ndarray,
                    class_names: list[str]) -> pd.DataFrame:
    """Columns ``actual``, ``predicted`` (class names, categorical: a byte or two a row in
    memory) of :func:`confusion_pairs` output, for ``to_csv``."""
    def named(codes: np.ndarray) -> pd.Categorical:
        return pd.Categorical.from_codes(np.asarray(codes, dtype=np.int64),
                                         categories=pd.Index(class_names, dtype=object))

    return pd.DataFrame({"actual": named(actual), "predicted": named(predicted)})


def confusion_rows(preds: np.ndarray, gts: np.ndarray, class_names: list[str],
                   stride: int) -> list[dict[str, str]]:
    """Rows ``{"actual": name, "predicted": name}`` for DVC's ``confusion`` template.

    The template counts rows per (actual, predicted) pair, so one row per pixel would be far too
    many: pixels are sampled on a fixed grid (every ``stride``-th row and column of each frame,
    a systematic sample whose counts are proportional to the full pixel counts), and only those
    where the ground truth or the prediction is foreground are kept (background predicted as
    background says nothing about classes). Ignored label pixels are skipped.

    Args:
        preds, gts: (M, H, W) uint8 class indices. class_names: index -> name.
        stride: grid step in pixels (>= 1).

    Returns:
        List of dicts, in frame then raster order.

    Raises:
        ValueError: shapes differ or ``stride < 1``.
    """
    actual, predicted = confusion_pairs(preds, gts, len(class_names), stride)
    return [{"actual": class_names[a], "predicted": class_names[b]}
            for a, b in zip(actual.tolist(), predicted.tolist())]


def save_index_png(path: Path, mask: np.ndarray, palette: np.ndarray) -> None:
    """Save a (H, W) uint8 class-index mask as a palette PNG: pixel values are the class indices
    and viewers show the AVSBench colours (converted to RGB it is an AVSBench ``labels_rgb`` mask)."""
    img = Image.fromarray(np.asarray(mask, dtype=np.uint8), mode="P")
    img.putpalette(np.asarray(palette, dtype=np.uint8).reshape(-1).tolist())
    img.save(path)


def labelled_overlay(image: np.ndarray, mask: np.ndarray, palette: np.ndarray,
                     labels: dict[int, str], alpha: float = 0.55) -> np.ndarray:
    """Class colours blended over a frame of any size, each class of ``labels`` named at the top
    left of its region; the same picture as :func:`overlay` (nearest-neighbour upscaled mask),
    computed with PIL so that a 1080p frame takes milliseconds.

    Args:
        image: (H, W, 3) uint8 frame.
        mask: (h, w) uint8 class indices, h <= H and w <= W (e.g. the models' frame size); it is
            brought to (H, W) with nearest-neighbour sampling.
        palette: (71, 3) uint8 colours.
        labels: class index -> text (e.g. ``"dog 0.93"``); classes absent from the mask are skipped.
        alpha: colour weight on labelled pixels.

    Returns:
        (H, W, 3) uint8. Text height is 1/30 of the frame height (at least 10 px), white on the
        class colour.
    """
    height, width = image.shape[:2]
    small = Image.fromarray(np.asarray(mask, dtype=np.uint8), mode="P")
    small.putpalette(np.asarray(palette, dtype=np.uint8).reshape(-1).tolist())
    big = small.resize((width, height), Image.NEAREST)
    frame = Image.fromarray(image)
    coloured = Image.blend(frame, big.convert("RGB"), alpha)
    out = Image.composite(coloured, frame, big.point(lambda v: 255 if v > 0 else 0, mode="L"))
    draw = ImageDraw.Draw(out)
    font = ImageFont.load_default(size=max(10, height // 30))
    for k, text in labels.items():
        ys, xs = np.nonzero(mask == k)
        if len(ys) == 0:
            continue
        x, y = int(xs.min() * width / mask.shape[1]), int(ys.min() * height / mask.shape[0])
        box = draw.textbbox((x, y), text, font=font)
        draw.rectangle((box[0] - 2, box[1] - 2, box[2] + 2, box[3] + 2),
                       fill=tuple(int(c) for c in palette[k]))
        draw.text((x, y), text, fill=(255, 255, 255), font=font)
    return np.asarray(out)
