"""Frames of a dataset in chunks and on demand, so that no stage holds every frame at once.

:data:`CHUNK_FRAMES` bounds what a chunked pass holds (at 224 px: 256 frames x 150 KB of RGB =
38 MB, plus that chunk's rows of the stores); the results do not depend on it.
"""

from __future__ import annotations

import copy
import logging
import functools
from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd

from pcas_core.data.images import SPLIT_MODES, load_frame
from pcas_core.runtime.progress import track

__all__ = ["CHUNK_FRAMES", "row_chunks", "FrameImages"]

CHUNK_FRAMES = 256


def row_chunks(n: int, size: int = CHUNK_FRAMES) -> Iterator[slice]:
    """Consecutive slices ``[0, size), [size, 2 size), ...`` covering rows ``0 .. n - 1`` once,
    in order (the last may be shorter; none when n = 0).

    Raises:
        ValueError: ``size < 1``.
    """
    if size < 1:
        raise ValueError(f"chunk size must be >= 1, got {size}")
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def _decode(path: str, size: int, mode: str) -> np.ndarray:
    """A writable copy of :func:`load_frame` (PIL's buffer is read-only, and the dense CRF
    refuses read-only images)."""
    return np.array(load_frame(path, size, mode))


class FrameImages:
    """The frames of a frame table as a read-only sequence, decoded when indexed.

    Args:
        frames: frame table (columns ``frame_path``, ``split``).
        size: side in pixels (each split's geometry, :data:`SPLIT_MODES`).

    ``images[i]`` (int): (size, size, 3) uint8 frame of row i, decoded now. ``images[a:b]``,
    ``images[rows]`` (int array) and ``images[mask]`` (bool (M,) array): another FrameImages of
    those rows, decoding nothing yet. ``images.array()``: every frame stacked. ``loader(i)``: a
    picklable callable that decodes row i (for worker processes).
    """

    def __init__(self, frames: pd.DataFrame, size: int) -> None:
        self.paths = frames["frame_path"].tolist()
        self.modes = [SPLIT_MODES[s] for s in frames["split"]]
        self.size = int(size)

    def __len__(self) -> int:
        return len(self.paths)

    def loader(self, i: int) -> Callable[[], np.ndarray]:
        """``() -> (size, size, 3) uint8`` frame of row ``i``."""
        return functools.partial(_decode, self.paths[i], self.size, self.modes[i])

    def __getitem__(self, index: int | slice | np.ndarray) -> np.ndarray | FrameImages:
        if isinstance(index, (int, np.integer)):
            return self.loader(int(index))()
        rows = np.arange(len(self))[index]
        out = copy.copy(self)
        out.paths = [self.paths[i] for i in rows]
        out.modes = [self.modes[i] for i in rows]
        return out

    def array(self) -> np.ndarray:
        """(len, size, size, 3) uint8: every frame, decoded now."""
        out = np.empty((len(self), self.size, self.size, 3), dtype=np.uint8)
        for i in track(range(len(self)), total=len(self), desc="frames", unit="frame",
                       log=logging.getLogger("pcas.data")):
            out[i] = self[i]
        return out
