"""The demo's pictures: moving cut-outs pasted on a background photo, and the masks of the
objects that sound in each frame (AVSBench-semantic semantics: an object is in a frame's mask
only in the seconds it sounds; visible but silent, it is background there)."""

from __future__ import annotations

import numpy as np
from PIL import Image

__all__ = ["random_background", "random_object", "compose_frames", "MIN_VISIBLE"]

_SCALE = (0.35, 0.60)  # object's longer side as a fraction of the frame side
_MAX_DRIFT = 0.02  # largest drift per frame per axis, as a fraction of the frame side
#: each object keeps >= this fraction of its own area unoccluded in every frame
MIN_VISIBLE = 0.3


def random_background(rng: np.random.Generator, photo: Image.Image, size: int) -> np.ndarray:
    """A random square crop of ``photo`` (60-100 % of its short side) resized to
    (size, size, 3) float32 RGB in [0, 255]."""
    w, h = photo.size
    side = int(round(min(w, h) * rng.uniform(0.6, 1.0)))
    left, top = int(rng.integers(w - side + 1)), int(rng.integers(h - side + 1))
    crop = photo.crop((left, top, left + side, top + side)).resize((size, size), Image.BILINEAR)
    return np.asarray(crop, dtype=np.float32)


def random_object(rng: np.random.Generator, rgba: np.ndarray, size: int) -> np.ndarray:
    """A cut-out ((h, w, 4) uint8 RGBA) randomly flipped and scaled so that its longer side is
    35-60 % of a ``size``-pixel frame -> (h', w', 4) uint8 RGBA."""
    if rng.random() < 0.5:
        rgba = rgba[:, ::-1]
    h, w = rgba.shape[:2]
    scale = rng.uniform(*_SCALE) * size / max(h, w)
    nw, nh = max(1, int(round(w * scale))), max(1, int(round(h * scale)))
    return np.asarray(Image.fromarray(np.ascontiguousarray(rgba)).resize((nw, nh), Image.BILINEAR))


def _track(rng: np.random.Generator, extent: int, size: int, n_frames: int,
           column: tuple[float, float]) -> np.ndarray:
    """Integer positions (n_frames,) along one axis: start + velocity * t, object kept in frame.

    The start is drawn so the object's centre lies in ``column`` (pixels) when possible.
    """
    room = size - extent
    v = rng.uniform(-_MAX_DRIFT, _MAX_DRIFT) * size
    span = v * (n_frames - 1)
    lo, hi = max(0.0, -span), min(float(room), room - span)
    if hi < lo:
        v, lo, hi = 0.0, 0.0, float(room)
    clo, chi = max(lo, column[0] - extent / 2), min(hi, column[1] - extent / 2)
    if chi >= clo:
        lo, hi = clo, chi
    start = rng.uniform(lo, hi)
    return np.rint(start + v * np.arange(n_frames)).astype(np.int64)


def compose_frames(rng: np.random.Generator, bg: np.ndarray, objects: list[np.ndarray],
                   sounding: np.ndarray, class_idx: list[int]
                   ) -> tuple[np.ndarray, np.ndarray] | None:
    """Paste ``objects`` on ``bg`` over T frames, each drifting linearly from a start in its own
    column of the frame (objects later in the list are in front).

    Args:
        rng: the composition's generator.
        bg: (S, S, 3) float32 background.
        objects: RGBA cut-outs ((h, w, 4) uint8), back to front, each smaller than the frame.
        sounding: (n_objects, T) bool: object j sounds in second (= frame) t.
        class_idx: class index (label2idx value - 1) of each object.

    Returns:
        ``(frames (T, S, S, 3) uint8, masks (T, S, S) uint8)``: mask pixel = class of the topmost
        object with alpha > 127 there if that object sounds in the frame, else 0 (background).
        None when some object is less than :data:`MIN_VISIBLE` unoccluded in some frame (the
        caller redraws).
    """
    sounding = np.asarray(sounding, dtype=bool)
    if sounding.shape[0] != len(objects) or len(class_idx) != len(objects):
        raise ValueError(f"{len(objects)} objects, {sounding.shape[0]} sounding rows and "
                         f"{len(class_idx)} classes")
    n_frames = sounding.shape[1]
    size = bg.shape[0]
    cols = rng.permutation(len(objects))
    tracks = []
    for j, obj in enumerate(objects):
        h, w = obj.shape[:2]
        column = (cols[j] * size / len(objects), (cols[j] + 1) * size / len(objects))
        tracks.append((_track(rng, h, size, n_frames, (0.0, float(size))),
                       _track(rng, w, size, n_frames, column)))
    frames = np.empty((n_frames, size, size, 3), dtype=np.uint8)
    masks = np.zeros((n_frames, size, size), dtype=np.uint8)
    for t in range(n_frames):
        img = bg.copy()
        owner = np.full((size, size), -1, dtype=np.int64)
        for j, obj in enumerate(objects):
            y, x = int(tracks[j][0][t]), int(tracks[j][1][t])
            h, w = obj.shape[:2]
            alpha = obj[..., 3:].astype(np.float32) / 255.0
            region = img[y:y + h, x:x + w]
            region[:] = alpha * obj[..., :3] + (1.0 - alpha) * region
            owner[y:y + h, x:x + w][obj[..., 3] > 127] = j
        for j, obj in enumerate(objects):
            area = int((obj[..., 3] > 127).sum())
            if area == 0 or (owner == j).sum() < MIN_VISIBLE * area:
                return None
            if sounding[j, t]:
                masks[t][owner == j] = class_idx[j]
        frames[t] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return frames, masks
