"""The pseudo-mask pass over a whole dataset, chunk by chunk (stage ``pseudo_masks``).

For each chunk of :data:`pcas_core.data.chunks.CHUNK_FRAMES` frames it reads that chunk's rows of
the ``maps`` and ``audio`` stores, makes the pseudo-masks in the worker pool (frames are decoded
there) and writes them to the ``pseudo_masks`` store, so memory stays that of one chunk whatever
the dataset size. In a distributed run (:mod:`pcas_core.runtime.distributed`, processes on one or several
machines) chunk ``i`` is made by rank ``i % world`` and rank 0 writes every chunk in order: each
frame's mask depends on that frame only, so the store is the one of a single process.
"""

from __future__ import annotations

import numpy as np

from pcas_core.data.chunks import CHUNK_FRAMES, row_chunks
from pcas_core.data.dataset import AVSData
from pcas_core.runtime.distributed import gather_in_order, rank, world_size
from pcas_core.method.pseudo_masks import PseudoMaskPool
from pcas_core.storage.stores import StoreReader, StoreWriter, store_rows

__all__ = ["write_pseudo_masks"]


def write_pseudo_masks(data: AVSData, maps: StoreReader, audio: StoreReader,
                       out: StoreWriter | None, pool: PseudoMaskPool, *,
                       chunk_frames: int = CHUNK_FRAMES) -> None:
    """Pseudo-masks of every frame of ``data`` (frame-table order) into ``out``.

    Args:
        data: the dataset; its frame table gives the rows of ``out``.
        maps: open ``maps`` store (``cam``, ``sounding``) covering every frame.
        audio: open ``audio`` store (``logits``) covering every frame.
        out: writer of a ``pseudo_masks`` store with ``len(data.frames)`` rows of
            (img_size, img_size); None on the ranks other than 0 of a distributed run.
        pool: the worker pool with the pseudo-mask configuration.
        chunk_frames: frames per chunk (memory bound; results do not depend on it).

    Raises:
        ValueError: a frame missing from a store (names the store).
    """
    m_rows = store_rows(maps.keys, data.frames, source=maps.path)
    a_rows = store_rows(audio.keys, data.frames, source=audio.path)
    images = data.frame_images()
    size = (data.img_size, data.img_size)
    chunks = list(row_chunks(len(data.frames), chunk_frames))

    def made():
        for rows in chunks[rank()::world_size()]:
            yield pool.run([images.loader(i) for i in range(rows.start, rows.stop)],
                           maps.rows("cam", m_rows[rows]).astype(np.float32),
                           maps.rows("sounding", m_rows[rows]),
                           audio.rows("logits", a_rows[rows]), size)

    for rows, masks in zip(chunks, gather_in_order(made(), len(chunks))):
        if out is not None:
            out.write(rows.start, {"mask": masks})
