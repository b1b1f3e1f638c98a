"""Frames and ground-truth masks from image files, with AVSBench's geometry.

Geometry (official AVSS loader, ``avs_scripts/avss/color_dataloader.py``: ``crop_resize_img`` and
``resize_img``): train resizes the short side to ``size`` (the long side ``int()``-truncated from
``1.0 * long * size / short``) and centre-crops (offset ``int(round((side - size) / 2.))``, Python's
round-half-even); val/test resize straight to ``size`` x ``size``. Bilinear for images, nearest for
masks (:data:`SPLIT_MODES`).

Mask formats (``mask_format`` column of the frame table):

- ``rgb``: AVSS ``labels_rgb/N.png``. Any PNG mode is converted to RGB first (a palette-mode PNG
  through its own palette), then each pixel's class is found by exact colour match with the
  VOC palette; a colour outside it is background (the official loader's behaviour) and counted,
  or an error with ``off_palette="error"``.
- ``index``: AVSS ``labels_semantic/N.png`` (COMBO, CAVP): single-channel pixel values are class
  indices (255 = ignore).
- ``binary``: S4/MS3 ``gt_masks``: converted to RGB (through a palette PNG's own palette); a pixel
  is foreground (1) when its brightest channel is >= 128, else background (0). For the released
  0/255 (S4) and palette (MS3) masks this equals the official ``convert('1')`` / ``convert('P')``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from pcas_core.data.palette import IGNORE_INDEX, describe_colours, match_colours

__all__ = ["SPLIT_MODES", "MASK_FORMATS", "OFF_PALETTE", "crop_box", "apply_geometry",
           "resize_frame", "open_image", "load_frame", "decode_mask", "load_mask", "truncated"]

SPLIT_MODES = {"train": "crop", "val": "resize", "test": "resize"}
"""Frame/mask geometry per split: "crop" = short side to size + centre crop, "resize" = straight."""

MASK_FORMATS = ("rgb", "index", "binary")
OFF_PALETTE = ("background", "error")
"""What a mask colour outside the palette becomes (``data.off_palette``)."""

_TAILS = {".jpg": b"\xff\xd9", ".jpeg": b"\xff\xd9", ".png": b"IEND"}
_TAIL_BYTES = 1024


def crop_box(width: int, height: int, size: int) -> tuple[int, int, int, int]:
    """Resized size and crop offset of the official train geometry.

    Returns:
        ``(new_w, new_h, left, top)``: the short side becomes ``size``, the long side
        ``int(1.0 * long * size / short)``; ``left``/``top`` = ``int(round((new - size) / 2.))``.
    """
    if width > height:
        nh, nw = size, int(1.0 * width * size / height)
    else:
        nw, nh = size, int(1.0 * height * size / width)
    return nw, nh, int(round((nw - size) / 2.0)), int(round((nh - size) / 2.0))


def apply_geometry(img: Image.Image, size: int, mode: str, resample: int) -> Image.Image:
    """AVSBench geometry: "crop" (short side -> size, centre crop) or "resize" (size x size).

    Raises:
        ValueError: unknown ``mode``.
    """
    if mode == "resize":
        return img.resize((size, size), resample)
    if mode != "crop":
        raise ValueError(f"geometry mode must be 'crop' or 'resize', got {mode!r}")
    nw, nh, left, top = crop_box(*img.size, size)
    return img.resize((nw, nh), resample).crop((left, top, left + size, top + size))


def open_image(path: str | Path) -> Image.Image:
    """Open and fully decode an image file.

    Raises:
        ValueError: the file is missing, unreadable or truncated (the message names it).
    """
    try:
        img = Image.open(path)
        img.load()  # decodes every pixel (a truncated file fails here) and closes the file
        return img
    except (OSError, ValueError, SyntaxError) as err:
        raise ValueError(f"{path}: cannot read image ({err})") from err


def truncated(path: str | Path) -> bool:
    """Cheap truncation test of a JPEG/PNG: its end marker (JPEG EOI, PNG IEND) is missing from the
    last kilobyte. Reads only the file's tail; other suffixes return False."""
    marker = _TAILS.get(Path(path).suffix.lower())
    if marker is None:
        return False
    with open(path, "rb") as f:
        f.seek(0, 2)
        f.seek(max(0, f.tell() - _TAIL_BYTES))
        return marker not in f.read()


def load_frame(path: str | Path, size: int, mode: str) -> np.ndarray:
    """Load a frame as RGB with AVSBench geometry.

    Args:
        path: image file (any PIL-readable format).
        size: output side in pixels.
        mode: "crop" (train) or "resize" (val/test); see the module docstring.

    Returns:
        (size, size, 3) uint8 RGB.

    Raises:
        ValueError: the file cannot be read as an image, or ``mode`` is unknown.
    """
    img = open_image(path).convert("RGB")
    return np.asarray(apply_geometry(img, size, mode, Image.BILINEAR))


def resize_frame(rgb: np.ndarray, size: int, mode: str = "resize") -> np.ndarray:
    """An in-memory (H, W, 3) uint8 RGB frame with AVSBench geometry, exactly as
    :func:`load_frame` treats a decoded image file (``mode`` as there; "resize" = val/test).

    Returns:
        (size, size, 3) uint8 RGB.

    Raises:
        ValueError: ``rgb`` is not (H, W, 3) uint8.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 frame, got {rgb.dtype} {rgb.shape}")
    return np.asarray(apply_geometry(Image.fromarray(rgb), size, mode, Image.BILINEAR))


def decode_mask(path: str | Path, fmt: str, palette: np.ndarray, *,
                off_palette: str = "background") -> tuple[np.ndarray, str]:
    """Read a mask at its original resolution (formats in the module docstring).

    Args:
        path: PNG file.
        fmt: ``rgb``, ``index`` or ``binary``.
        palette: (N, 3) uint8 class colours (``rgb`` and the range check of ``index``).
        off_palette: ``background`` or ``error`` (``rgb`` only).

    Returns:
        ``(mask, note)``: (H, W) uint8 class indices (``binary``: 0/1), and "" or a description
        of the pixels whose colour is outside the palette (mapped to background).

    Raises:
        ValueError: unreadable file, unknown ``fmt``, an index outside the palette (``index``),
            or an off-palette colour with ``off_palette="error"``; the message names the file.
    """
    img = open_image(path)
    if fmt == "index":
        if img.mode not in ("L", "P"):
            raise ValueError(f"{path}: class-index mask must be single-channel (L or P), "
                             f"got mode {img.mode!r}")
        index = np.array(img, dtype=np.uint8)
        bad = (index >= len(palette)) & (index != IGNORE_INDEX)
        if bad.any():
            raise ValueError(f"{path}: class indices {np.unique(index[bad])[:5].tolist()} outside "
                             f"0..{len(palette) - 1} (or {IGNORE_INDEX})")
        return index, ""
    rgb = np.asarray(img.convert("RGB"))
    if fmt == "binary":
        return (rgb.max(axis=2) >= 128).astype(np.uint8), ""
    if fmt != "rgb":
        raise ValueError(f"mask format must be one of {MASK_FORMATS}, got {fmt!r}")
    if off_palette not in OFF_PALETTE:
        raise ValueError(f"data.off_palette must be one of {OFF_PALETTE}, got {off_palette!r}")
    index, unknown = match_colours(rgb, palette, source=str(path))
    if not unknown.any():
        return index, ""
    what = f"colours not in the {len(palette)}-entry palette: {describe_colours(rgb, unknown)}"
    if off_palette == "error":
        raise ValueError(f"{path}: {what}")
    return index, f"{what}, mapped to background"


def load_mask(path: str | Path, size: int, mode: str, palette: np.ndarray, fmt: str = "rgb", *,
              off_palette: str = "background") -> np.ndarray:
    """Load a mask (:func:`decode_mask`) with AVSBench geometry (nearest neighbour, so no new
    classes appear).

    Returns:
        (size, size) uint8 class indices (``binary``: 0/1; ``IGNORE_INDEX`` kept as is).

    Raises:
        ValueError: as :func:`decode_mask`, or unknown ``mode``.
    """
    index, _ = decode_mask(path, fmt, palette, off_palette=off_palette)
    return np.asarray(apply_geometry(Image.fromarray(index, mode="L"), size, mode, Image.NEAREST))
