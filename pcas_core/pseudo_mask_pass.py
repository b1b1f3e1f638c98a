"""The pseudo-mask pass over a whole dataset, chunk by chunk (stage ``pseudo_masks``).

For each chunk of :data:`pcas_core.data.chunks.CHUNK_FRAMES` frames it reads that chunk's rows of
the ``maps`` and ``audio`` stores, makes the pseudo-masks in the worker pool (frames are decoded
there) and writes them to the ``pseudo_masks`` store, so memory stays that of one chunk whatever
the dataset size.
"""

from __future__ import annotations

import numpy as np

from pcas_core.data.chunks import CHUNK_FRAMES, row_chunks
from pcas_core.data.dataset import AVSData
from pcas_core.pseudo_masks import PseudoMaskPool
from pcas_core.stores import StoreReader, StoreWriter, store_rows

__all__ = ["write_pseudo_masks"]


def write_pseudo_masks(data: AVSData, maps: StoreReader, audio: StoreReader, out: StoreWriter,
                       pool: PseudoMaskPool, *, chunk_frames: int = CHUNK_FRAMES) -> None:
    """Pseudo-masks of every frame of ``data`` (frame-table order) into ``out``.

    Args:
        data: the dataset; its frame table gives the rows of ``out``.
        maps: open ``maps`` store (``cam``, ``sounding``) covering every frame.
        audio: open ``audio`` store (``logits``) covering every frame.
        out: writer of a ``pseudo_masks`` store with ``len(data.frames)`` rows of
            (img_size, img_size).
        pool: the worker pool with the pseudo-mask configuration.
        chunk_frames: frames per chunk (memory bound; results do not depend on it).

    Raises:
        ValueError: a frame missing from a store (names the store).
    """
    m_rows = store_rows(maps.keys, data.frames, source=maps.path)
    a_rows = store_rows(audio.keys, data.frames, source=audio.path)
    images = data.frame_images()
    size = (data.img_size, data.img_size)
    for rows in row_chunks(len(data.frames), chunk_frames):
        masks = pool.run([images.loader(i) for i in range(rows.start, rows.stop)],
                         maps.rows("cam", m_rows[rows]).astype(np.float32),
                         maps.rows("sounding", m_rows[rows]), audio.rows("logits", a_rows[rows]),
                         size)
        out.write(rows.start, {"mask": masks})
