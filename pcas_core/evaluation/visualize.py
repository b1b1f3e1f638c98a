"""Pictures for people: prediction beside ground truth, each with its own legend, in display
colours that tell the classes of a picture apart; the choice of frames to show; and
confusion-matrix rows for ``dvc plots``. Mask files keep the AVSBench palette
(:func:`save_index_png`); only pictures use the display colours (:func:`display_palette`)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from pcas_core.data.constants import IGNORE_INDEX
from pcas_core.data.palette import index_to_rgb

__all__ = ["MIN_PANEL", "DISPLAY_COLOURS", "display_palette", "overlay", "mask_to_size",
           "Overlay", "mask_classes", "comparison_strip", "write_overlays", "pick_overlay_frames",
           "confusion_pairs", "confusion_table", "confusion_rows", "save_index_png",
           "labelled_overlay"]

MIN_PANEL = 320
"""Smallest side, in pixels, of each panel of a comparison strip: a frame smaller than this is
upscaled by the smallest integer factor that reaches it, nearest neighbour, so pixels and mask
edges stay sharp; a larger frame is drawn at its own size."""

#: colours of the classes in pictures (Sasha Trubetskoy's "20 simple, distinct colours", 2017),
#: ordered so that the first 8 are bright and far apart (red, green, blue, yellow, purple, cyan,
#: magenta, brown); the AVSBench (PASCAL-VOC) palette gives many classes dark or near colours
#: (guitar (64, 64, 128), pig (0, 64, 64); hen (0, 0, 192) beside sheep (0, 64, 192)) that
#: vanish on photos
DISPLAY_COLOURS = np.array([
    (230, 25, 75), (60, 180, 75), (0, 130, 200), (255, 225, 25), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (170, 110, 40), (245, 130, 48), (210, 245, 60),
    (0, 128, 128), (128, 128, 0), (128, 0, 0), (0, 0, 128), (250, 190, 212), (220, 190, 255),
    (170, 255, 195), (255, 215, 180), (255, 250, 200), (128, 128, 128)], dtype=np.uint8)

_PAD = 4


def display_palette(classes: Iterable[int], num_classes: int) -> np.ndarray:
    """Display colours by class index: the i-th smallest of ``classes`` (background, index 0,
    excluded) gets ``DISPLAY_COLOURS[i]``, so up to 20 classes shown together get 20 distinct
    colours (beyond 20 they repeat); any other class gets ``DISPLAY_COLOURS[c % 20]``;
    background is black (never drawn).

    Args:
        classes: class indices to tell apart (e.g. every class in the pictures of one run).
        num_classes: size of the label space (AVSS 71).

    Returns:
        (num_classes, 3) uint8.
    """
    n = len(DISPLAY_COLOURS)
    out = DISPLAY_COLOURS[np.arange(num_classes) % n].copy()
    shown = sorted({int(c) for c in classes if 0 < int(c) < num_classes})
    for i, c in enumerate(shown):
        out[c] = DISPLAY_COLOURS[i % n]
    out[0] = 0
    return out


def overlay(image: np.ndarray, mask: np.ndarray, palette: np.ndarray, alpha: float = 0.5,
            outline: bool = True) -> np.ndarray:
    """Blend class colours over a frame where the mask is not background, and draw each
    region's edge in its full colour (``outline``), so a class stays visible on any photo.

    Args:
        image: (H, W, 3) uint8 frame.
        mask: (H, W) uint8 class indices (0 background, 255 ignore shown white).
        palette: (K, 3) uint8 colours by class index (:func:`display_palette`).
        alpha: colour weight on labelled pixels.
        outline: draw the pixels where the class changes to a neighbour's in full colour.

    Returns:
        (H, W, 3) uint8.

    Raises:
        ValueError: ``image`` and ``mask`` of different (H, W).
    """
    if image.shape[:2] != mask.shape or image.ndim != 3:
        raise ValueError(f"image {image.shape} and mask {mask.shape} must share (H, W)")
    colours = index_to_rgb(mask, palette).astype(np.float32)
    out = image.astype(np.float32)
    on = mask > 0
    out[on] = (1 - alpha) * out[on] + alpha * colours[on]
    if outline:
        edge = np.zeros_like(on)
        edge[1:] |= mask[1:] != mask[:-1]
        edge[:-1] |= mask[:-1] != mask[1:]
        edge[:, 1:] |= mask[:, 1:] != mask[:, :-1]
        edge[:, :-1] |= mask[:, :-1] != mask[:, 1:]
        edge &= on
        out[edge] = colours[edge]
    return out.round().clip(0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Overlay:
    """One test frame to draw as ``frame | ground truth | prediction``.

    Attributes:
        name: ``<uid>_<frame>``. image: (H0, W0, 3) uint8, the frame at its own size (as its
            file holds it). gt, pred: (H, W) uint8 class indices in the scored label space
            (binary datasets: foreground 1) at the models' size; drawn at the frame's size.
        second: the frame's index in its clip (its second, AVSBench's 1 frame per second).
    """

    name: str
    image: np.ndarray
    gt: np.ndarray
    pred: np.ndarray
    second: int = 0


def mask_to_size(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """(h, w) uint8 class indices -> (height, width), nearest neighbour (no new class appears)."""
    if mask.shape == (height, width):
        return mask
    return np.asarray(Image.fromarray(np.asarray(mask, np.uint8)).resize((width, height),
                                                                          Image.NEAREST))


def mask_classes(mask: np.ndarray, n: int) -> list[int]:
    """Foreground class indices below ``n`` present in ``mask`` (255 ignore excluded), sorted."""
    return [int(c) for c in np.unique(mask) if 0 < c != IGNORE_INDEX and c < n]


def comparison_strip(path: Path, image: np.ndarray, gt: np.ndarray, pred: np.ndarray,
                     palette: np.ndarray, class_names: list[str], title: str = "") -> None:
    """Save ``[frame | ground truth | prediction]`` as a PNG, each mask panel with its own
    legend.

    The frame is drawn at its own size, upscaled by the smallest integer factor (nearest
    neighbour) that makes its short side at least :data:`MIN_PANEL`; the masks are brought to that
    size by nearest neighbour. The header holds ``title`` and, when the ground truth has no
    foreground, "nothing sounds in this frame"; the panels are named "frame", "ground truth
    (sounding)" and "prediction". Under the ground truth panel a legend "truth:" lists its
    classes, under the prediction panel "predicted:" lists the predicted ones, a class the
    truth lacks marked "(not sounding)". Text scales with the panel (at least 14 px).

    Args:
        path: the PNG to write (parent folders are created).
        image: (H0, W0, 3) uint8 frame. gt, pred: (H, W) uint8 class indices (255 ignore).
        palette: (K, 3) uint8 colours by class index (:func:`display_palette`).
        class_names: names by class index.
        title: first header line ("" for none).

    Raises:
        ValueError: ``gt`` and ``pred`` of different shapes, or an image that is not (H, W, 3).
    """
    if gt.shape != pred.shape or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image {image.shape}, gt {gt.shape} and pred {pred.shape}: expected an "
                         "(H, W, 3) image and masks of one shape")
    scale = max(1, math.ceil(MIN_PANEL / min(image.shape[:2])))
    frame = image.repeat(scale, 0).repeat(scale, 1)
    height, width = frame.shape[:2]
    gt_big, pred_big = mask_to_size(gt, height, width), mask_to_size(pred, height, width)
    panels = [frame, overlay(frame, gt_big, palette), overlay(frame, pred_big, palette)]
    size = max(14, width // 22)
    font = ImageFont.load_default(size=size)
    line = size + 2 * _PAD
    n = len(class_names)
    truth, predicted = mask_classes(gt, n), mask_classes(pred, n)
    silent = not truth
    notes = [t for t in (title, "nothing sounds in this frame (ground truth: background only)"
                         if silent else "") if t]
    names = [[(c, class_names[c]) for c in truth],
             [(c, class_names[c] + ("" if c in truth else " (not sounding)")) for c in predicted]]
    legends = [_legend_layout(entries, font, width - 2 * _PAD) for entries in names]
    rows = 1 + max(len(legend) for legend in legends)
    top = line * (len(notes) + 1)
    gap = 2 * _PAD
    canvas = Image.new("RGB", (3 * width + 2 * gap, top + height + line * rows), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for k, text in enumerate(notes):
        draw.text((_PAD, k * line + _PAD), text, fill=(160, 0, 0) if "nothing" in text else
                  (0, 0, 0), font=font)
    heads = ["frame", "ground truth (sounding)", "prediction"]
    for i, (panel, head) in enumerate(zip(panels, heads)):
        x0 = i * (width + gap)
        canvas.paste(Image.fromarray(panel), (x0, top))
        draw.text((x0 + _PAD, top - line + _PAD), head, fill=(0, 0, 0), font=font)
    y0 = top + height
    for i, (label, legend, entries) in enumerate(zip(["truth:", "predicted:"], legends, names)):
        x0 = (i + 1) * (width + gap)
        draw.text((x0 + _PAD, y0 + _PAD), label + ("" if entries else " background only"),
                  fill=(0, 0, 0), font=font)
        for r, row in enumerate(legend):
            for x, (c, text) in row:
                y = y0 + (r + 1) * line + _PAD
                draw.rectangle([x0 + _PAD + x, y, x0 + _PAD + x + size, y + size],
                               fill=tuple(int(v) for v in palette[c]), outline=(0, 0, 0))
                draw.text((x0 + 2 * _PAD + x + size, y), text, fill=(0, 0, 0), font=font)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)


def write_overlays(folder: Path, overlays: list[Overlay], palette: np.ndarray,
                   class_names: list[str]) -> None:
    """One :func:`comparison_strip` PNG per overlay, ``<folder>/<name>.png``, titled with its
    name and second."""
    for o in overlays:
        comparison_strip(Path(folder) / f"{o.name}.png", o.image, o.gt, o.pred, palette,
                         class_names, title=f"{o.name}: second {o.second + 1}")


def _legend_layout(entries: list[tuple[int, str]], font: ImageFont.FreeTypeFont,
                   width: int) -> list[list[tuple[int, tuple[int, str]]]]:
    """Rows of ``(x offset, (class, text))`` legend entries that fit ``width`` pixels."""
    rows: list[list[tuple[int, tuple[int, str]]]] = [[]]
    x = 0
    swatch = font.size + 3 * _PAD
    for entry in entries:
        w = swatch + int(font.getlength(entry[1])) + 2 * _PAD
        if x + w > width and rows[-1]:
            rows.append([])
            x = 0
        rows[-1].append((x, entry))
        x += w
    return rows if rows[0] else []


def pick_overlay_frames(frames: pd.DataFrame, n: int, uid_contains: list[str],
                        sounding: np.ndarray | None = None) -> np.ndarray:
    """A fixed, deterministic choice of at most ``n`` frames to draw, one per video.

    First, for each string of ``uid_contains`` in turn, the first not yet chosen video whose
    ``uid`` contains it (e.g. ``"silent"`` and ``"multi"`` pick a demo clip with a silent object
    and a multi-source clip), then one video of each AVSS subset (``subset``) not yet shown, then
    videos evenly spaced over the rest. Each video shows the middle one of its frames where
    something sounds (``sounding``), or its middle frame when nothing sounds in any.

    Args:
        frames: scored frame rows (columns ``uid``, ``frame``; ``subset`` optional), grouped by video.
        n: frames wanted (>= 0). uid_contains: substrings of uids to include first.
        sounding: (M,) bool, the frame's ground truth has a foreground class; None: every frame.

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
    heard = np.ones(len(frames), bool) if sounding is None else np.asarray(sounding, bool)
    rows = []
    for uid in chosen:
        own = (frames["uid"] == uid).to_numpy()
        pos = np.flatnonzero(own & heard)
        pos = pos if len(pos) else np.flatnonzero(own)
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
