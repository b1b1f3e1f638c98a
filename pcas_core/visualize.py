"""Pictures for people: predictions beside ground truth, coloured with the AVSBench palette."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from pcas_core.data.palette import index_to_rgb

__all__ = ["overlay", "comparison_strip"]


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
