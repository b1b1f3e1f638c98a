"""Video-level and frame-level class labels (the weak supervision of PCAS), for any label space.

A label space is ``label2idx`` (class name -> 1-based id, ``background`` = 1; class index =
id - 1). Labels are multi-hot over the K = ``len(label2idx) - 1`` foreground classes: column k is
class index k + 1. AVSS: K = 70; S4: K = 23 (its categories); MS3: the label space of its labels
csv (AVSS's 70 by default).
"""

from __future__ import annotations

import os
import re

import numpy as np
import pandas as pd

from pcas_core.data.images import decode_mask, load_mask
from pcas_core.data.label_cache import cached_presence
from pcas_core.data.problems import Problems

__all__ = ["NAME_SEPARATORS", "class_names", "multi_hot", "mask_presence", "labels_from_masks",
           "labels_from_names", "frame_labels"]

NAME_SEPARATORS = re.compile(r"[_,;\s]+")
"""Separators of class names in one cell (AVSS ``a_obj``, MS3 labels csv): _ , ; or whitespace."""


def class_names(label2idx: dict[str, int]) -> list[str]:
    """Class names ordered by class index (``label2idx[name] - 1``); [0] = "background"."""
    names = [""] * len(label2idx)
    for name, idx in label2idx.items():
        names[idx - 1] = name
    return names


def multi_hot(classes: np.ndarray, num_classes: int) -> np.ndarray:
    """Class indices (any shape) -> (num_classes - 1,) float32 presence of classes 1..K
    (background 0 and the ignore index are left out)."""
    out = np.zeros(num_classes - 1, dtype=np.float32)
    fg = classes[(classes > 0) & (classes < num_classes)].astype(np.int64)
    out[np.unique(fg) - 1] = 1.0
    return out


def mask_presence(paths: list[str], fmts: list[str], decode, *, width: int,
                  key: dict) -> list[tuple[np.ndarray, str] | ValueError]:
    """Presence vectors of mask files through :func:`pcas_core.data.label_cache.cached_presence`
    (each file decoded once, then remembered while it is unchanged).

    Args:
        paths: mask files; fmts: their formats (``rgb`` | ``index`` | ``binary``).
        decode: ``(path, fmt) -> (presence (width,), note)``; may raise ``ValueError``.
        width: vector length. key: what else the vectors depend on (geometry, label space).

    Returns:
        Per file, ``(presence (width,) uint8, note)`` or the ``ValueError`` its decoding raised.
    """
    out: list = [None] * len(paths)
    root = os.path.commonpath([os.path.abspath(p) for p in paths]) if paths else ""
    for fmt in sorted(set(fmts)):
        idx = [i for i, f in enumerate(fmts) if f == fmt]
        got = cached_presence([paths[i] for i in idx], lambda p, f=fmt: decode(p, f),
                              width=width, key={**key, "root": root, "format": fmt})
        for i, result in zip(idx, got):
            out[i] = result
    return out


def labels_from_masks(frames: pd.DataFrame, n_videos: int, label2idx: dict[str, int],
                      palette: np.ndarray, *, off_palette: str = "background",
                      problems: Problems | None = None) -> np.ndarray:
    """A class is present in a video if any pixel of any of its annotated masks has it (masks at
    their original resolution; presence only: the weak-label protocol of weakly supervised AVS).
    Each mask's classes are decoded once and cached (:func:`mask_presence`).

    Args:
        frames: frame table (columns ``video``, ``mask_path``, ``mask_format``, ``uid``).
        n_videos: V.
        label2idx: the label space.
        palette: (N, 3) uint8 mask colours.
        off_palette: as :func:`pcas_core.data.images.decode_mask`.
        problems: where to record masks with off-palette colours (notes) and masks that cannot
            be decoded (errors); None: notes dropped, errors raised.

    Returns:
        (V, K) float32; a video without an annotated frame gets an all-zero row.

    Raises:
        ValueError: a mask cannot be decoded and ``problems`` is None (names the file).
    """
    n = len(label2idx)
    out = np.zeros((n_videos, n - 1), dtype=np.float32)
    annotated = frames[frames["mask_path"] != ""]

    def decode(path: str, fmt: str) -> tuple[np.ndarray, str]:
        mask, note = decode_mask(path, fmt, palette, off_palette=off_palette)
        return multi_hot(mask, n), note

    results = mask_presence(list(annotated["mask_path"]), list(annotated["mask_format"]), decode,
                            width=n - 1, key={"what": "video labels", "classes": n,
                                              "palette": palette.tolist(),
                                              "off_palette": off_palette})
    for video, uid, path, result in zip(annotated["video"], annotated["uid"],
                                        annotated["mask_path"], results):
        if isinstance(result, ValueError):
            if problems is None:
                raise result
            problems.error(uid, path, str(result).split(": ", 1)[-1])
            continue
        presence, note = result
        if note and problems is not None:
            problems.note(uid, path, note)
        out[video] = np.maximum(out[video], presence)
    return out


def labels_from_names(uids: list[str], cells: list[object], label2idx: dict[str, int], *,
                      source: str, problems: Problems) -> np.ndarray:
    """Multi-hot labels from cells of class names (``NAME_SEPARATORS``; "background" ignored).

    Args:
        uids: V video names (for messages).
        cells: V cells of class names (NaN/"" = no foreground class).
        label2idx: the label space.
        source: the file the cells come from (named in messages, e.g. metadata.csv).
        problems: a name not in ``label2idx`` is recorded as an error of that video.

    Returns:
        (V, K) float32.
    """
    out = np.zeros((len(uids), len(label2idx) - 1), dtype=np.float32)
    for video, (uid, cell) in enumerate(zip(uids, cells)):
        text = "" if cell is None or (isinstance(cell, float) and np.isnan(cell)) else str(cell)
        for name in filter(None, NAME_SEPARATORS.split(text.strip())):
            if name not in label2idx:
                problems.error(uid, source, f"class {name!r} (in {text!r}) is not in label2idx.json")
            elif label2idx[name] > 1:
                out[video, label2idx[name] - 2] = 1.0
    return out


def frame_labels(frames: pd.DataFrame, palette: np.ndarray, size: int, mode: str,
                 num_classes: int, *, off_palette: str = "background") -> np.ndarray:
    """Per-frame multi-hot foreground presence after geometry (evaluation only); each mask is
    decoded once and cached (:func:`mask_presence`).

    Args:
        frames: frame table (M rows) of masks (``rgb``/``index`` formats: classes; ``binary``:
            a single column, 1 where the mask has foreground).
        palette: (N, 3) uint8 palette.
        size: mask side in pixels after geometry.
        mode: "crop" or "resize".
        num_classes: classes including background (``binary``: 2).

    Returns:
        (M, num_classes - 1) float32; a row of NaN for a frame without a mask.

    Raises:
        ValueError: as :func:`pcas_core.data.images.load_mask`.
    """
    out = np.full((len(frames), num_classes - 1), np.nan, dtype=np.float32)
    has = (frames["mask_path"] != "").to_numpy()

    def decode(path: str, fmt: str) -> tuple[np.ndarray, str]:
        mask = load_mask(path, size, mode, palette, fmt, off_palette=off_palette)
        return multi_hot(mask, num_classes), ""

    results = mask_presence(list(frames["mask_path"][has]), list(frames["mask_format"][has]),
                            decode, width=num_classes - 1,
                            key={"what": "frame classes", "classes": num_classes, "size": size,
                                 "mode": mode, "palette": palette.tolist(),
                                 "off_palette": off_palette})
    for i, result in zip(np.flatnonzero(has), results):
        if isinstance(result, ValueError):
            raise result
        out[i] = result[0]
    return out
