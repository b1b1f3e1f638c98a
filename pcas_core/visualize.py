"""Pictures for people: predictions beside ground truth, coloured with the AVSBench palette."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from pcas_core.data.palette import index_to_rgb

__all__ = ["overlay", "comparison_strip", "save_index_png", "labelled_overlay"]


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


def comparison_strip(path: Path, image: np.ndarray, pred: np.ndarray, gt: np.ndarray,
                     palette: np.ndarray) -> None:
    """Save ``[frame | prediction overlay | ground-truth overlay]`` side by side as a PNG."""
    strip = np.concatenate([image, overlay(image, pred, palette), overlay(image, gt, palette)], axis=1)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(strip).save(path)


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
