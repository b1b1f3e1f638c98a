"""Class-index constants and the PASCAL-VOC colour palette used by AVSBench-semantic masks.

AVSBench-semantic stores masks as RGB PNGs (``labels_rgb/N.png``) coloured with the PASCAL-VOC
bit-shuffle palette over 71 class indices; a pixel's class is recovered by exact colour match.
Class index ``c`` of a pixel is ``label2idx[name] - 1`` (background = 0). Models predict
``NUM_FG = 70`` foreground logits: logit column ``k`` <-> class index ``k + 1``.
"""

from __future__ import annotations

import numpy as np

from pcas_core.data.constants import IGNORE_INDEX, NUM_CLASSES, NUM_FG

__all__ = ["NUM_CLASSES", "NUM_FG", "IGNORE_INDEX", "voc_palette", "match_colours",
           "describe_colours", "rgb_to_index", "index_to_rgb"]


def voc_palette(num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Build the PASCAL-VOC bit-shuffle colour palette.

    For class ``j`` the bits of ``j`` are dealt three at a time, from the least significant, to the
    R, G and B channels, each group filling the next lower bit from bit 7 down. Index 0 is black,
    1 = (128, 0, 0), 2 = (0, 128, 0), 3 = (128, 128, 0), 4 = (0, 0, 128), ...

    Source: ``get_v2_pallete`` / ``_getpallete`` in the AVSBench code (``avss/utils/pyutils.py``),
    itself the PASCAL-VOC devkit ``VOClabelcolormap``.

    Args:
        num_classes: number of palette entries (71 for AVSBench-semantic); 1..256.

    Returns:
        (num_classes, 3) uint8 array of RGB colours, row = class index.

    Raises:
        ValueError: if ``num_classes`` is outside 1..256 (colours would no longer be unique).
    """
    if not 1 <= int(num_classes) <= 256:
        raise ValueError(f"voc_palette: num_classes must be in 1..256, got {num_classes}")
    palette = np.zeros((num_classes, 3), dtype=np.uint8)
    for j in range(num_classes):
        lab, shift = j, 7
        r = g = b = 0
        while lab > 0:
            r |= ((lab >> 0) & 1) << shift
            g |= ((lab >> 1) & 1) << shift
            b |= ((lab >> 2) & 1) << shift
            shift -= 1
            lab >>= 3
        palette[j] = (r, g, b)
    return palette


def _pack(rgb: np.ndarray) -> np.ndarray:
    """Pack (..., 3) uint8 RGB into (...) int32 keys ``R << 16 | G << 8 | B``."""
    rgb = rgb.astype(np.int32, copy=False)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def _check_palette(palette: np.ndarray) -> np.ndarray:
    palette = np.asarray(palette)
    if palette.ndim != 2 or palette.shape[1] != 3 or palette.shape[0] > 256:
        raise ValueError(f"palette must have shape (N<=256, 3), got {palette.shape}")
    return palette.astype(np.uint8, copy=False)


def match_colours(rgb: np.ndarray, palette: np.ndarray, *,
                  source: str = "<array>") -> tuple[np.ndarray, np.ndarray]:
    """Class index of every pixel by exact colour match; colours outside the palette -> 0.

    Vectorised: colours are packed into int32 keys and matched with ``np.searchsorted`` against the
    sorted palette keys, so a 224x224 mask takes well under a millisecond.

    Args:
        rgb: (H, W, 3) uint8 colour mask.
        palette: (N, 3) uint8 palette, row = class index (see :func:`voc_palette`).
        source: name of the file the mask came from, used in error messages.

    Returns:
        ``(index, unknown)``: (H, W) uint8 class indices (0 = background where the colour is not
        in the palette, as AVSBench's ``color_mask_to_label`` does through its argmax over no
        match) and (H, W) bool, True where the colour is not in the palette.

    Raises:
        ValueError: if ``rgb`` is not (H, W, 3).
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"{source}: colour mask must have shape (H, W, 3), got {rgb.shape}")
    palette = _check_palette(palette)
    keys = _pack(palette)
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    pixels = _pack(rgb)
    pos = np.minimum(np.searchsorted(sorted_keys, pixels), len(sorted_keys) - 1)
    ok = sorted_keys[pos] == pixels
    return np.where(ok, order[pos], 0).astype(np.uint8), ~ok


def describe_colours(rgb: np.ndarray, unknown: np.ndarray, limit: int = 5) -> str:
    """``"N pixels (K distinct colours), e.g. RGB [(r, g, b), ...]"`` of the ``unknown`` pixels."""
    bad = np.unique(_pack(np.asarray(rgb))[unknown])
    shown = [((int(k) >> 16) & 255, (int(k) >> 8) & 255, int(k) & 255) for k in bad[:limit]]
    return f"{int(unknown.sum())} pixels ({len(bad)} distinct colours), e.g. RGB {shown}"


def rgb_to_index(rgb: np.ndarray, palette: np.ndarray, *, source: str = "<array>",
                 unknown: str = "error") -> np.ndarray:
    """Decode an RGB colour mask into class indices by exact colour match (:func:`match_colours`).

    Args:
        rgb: (H, W, 3) uint8 colour mask.
        palette: (N, 3) uint8 palette, row = class index (see :func:`voc_palette`).
        source: name of the file the mask came from, used in error messages.
        unknown: ``"error"`` (raise on a colour outside the palette) or ``"background"`` (map it
            to class 0, as the official AVSBench loader does).

    Returns:
        (H, W) uint8 class indices.

    Raises:
        ValueError: if ``rgb`` is not (H, W, 3), ``unknown`` is not one of the two values, or
            (``unknown="error"``) a colour is not in the palette (the message names ``source``
            and lists up to 5 offending colours).
    """
    if unknown not in ("error", "background"):
        raise ValueError(f"unknown must be 'error' or 'background', got {unknown!r}")
    index, bad = match_colours(rgb, palette, source=source)
    if unknown == "error" and bad.any():
        raise ValueError(f"{source}: colours not in the {len(palette)}-entry palette: "
                         f"{describe_colours(rgb, bad)}")
    return index


def index_to_rgb(index: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Colour a class-index mask with a palette.

    Pixels equal to ``IGNORE_INDEX`` (255) are painted white (255, 255, 255) so ignored regions stay
    visible; note white is therefore not decodable back by :func:`rgb_to_index`.

    Args:
        index: (H, W) integer class indices, each in ``0..len(palette)-1`` or ``IGNORE_INDEX``.
        palette: (N, 3) uint8 palette, row = class index.

    Returns:
        (H, W, 3) uint8 RGB image.

    Raises:
        ValueError: if ``index`` is not 2-D or holds an index outside the palette (and not 255).
    """
    index = np.asarray(index)
    if index.ndim != 2:
        raise ValueError(f"index_to_rgb: expected an (H, W) index mask, got shape {index.shape}")
    palette = _check_palette(palette)
    lut = np.full((256, 3), 255, dtype=np.uint8)
    lut[: len(palette)] = palette
    idx = index.astype(np.int64, copy=False)
    valid = ((idx >= 0) & (idx < len(palette))) | (idx == IGNORE_INDEX)
    if not valid.all():
        bad = np.unique(idx[~valid])[:5].tolist()
        raise ValueError(f"index_to_rgb: indices outside the {len(palette)}-entry palette: {bad}")
    out = lut[idx]
    out[idx == IGNORE_INDEX] = 255
    return out
