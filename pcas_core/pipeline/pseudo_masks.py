"""Stage ``pseudo_masks`` (docs/method.md §4): the per-frame pseudo-mask formula
(:func:`pcas_core.method.pseudo_masks.frame_pseudo_mask`) over a whole dataset, chunk by chunk, in
worker processes (frames are independent).

For each chunk of :data:`pcas_core.data.chunks.CHUNK_FRAMES` frames the pass reads that chunk's
rows of the ``maps`` and ``audio`` stores, makes the pseudo-masks in the worker pool (frames are
decoded there) and yields them for the ``pseudo_masks`` store, so memory stays that of one chunk
whatever the dataset size. In a distributed run (:mod:`pcas_core.runtime.distributed`, processes
on one or several machines) chunk ``i`` is made by rank ``i % world`` and every rank gets every
chunk in order: each frame's mask depends on that frame only, so the store is the one of a single
process.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

from pathlib import Path

import numpy as np

from pcas_core.data.chunks import CHUNK_FRAMES, row_chunks
from pcas_core.data.dataset import AVSData
from pcas_core.method.pseudo_masks import frame_pseudo_mask
from pcas_core.params import PseudoMasksConfig
from pcas_core.runtime.distributed import gather_in_order, rank, world_size
from pcas_core.runtime.progress import Progress, track
from pcas_core.runtime.workers import WorkerPool
from pcas_core.evaluation.scoring import Prediction, Scores, metrics_file, scored_frames
from pcas_core.storage.stores import StoreReader, open_store, store_rows

__all__ = ["PseudoMaskPool", "pseudo_masks", "pseudo_mask_pass", "train_split_scores"]


def _frame_job(args: tuple[Any, ...]) -> np.ndarray:
    """Top-level (picklable, spawn-safe) wrapper: ``frame_pseudo_mask(*args)``; an image given as
    a callable (e.g. ``functools.partial(load_frame, path, size, mode)``) is decoded here, in the
    worker, so frames never travel between processes and decoding runs in parallel too."""
    image, *rest = args
    return frame_pseudo_mask(image() if callable(image) else image, *rest)


class PseudoMaskPool:
    """Worker processes (:class:`pcas_core.runtime.workers.WorkerPool`) that make pseudo-masks,
    kept for many calls of :meth:`run` (one per chunk of frames), or this process when
    ``workers == 1``. Use as a context manager.

    Results do not depend on ``workers``: frames are independent, computed by the same function,
    and ``Pool.imap`` keeps their order.

    Args:
        cfg: :class:`PseudoMasksConfig`.
        workers: processes to use; 1 runs in this process.
        mp_context: multiprocessing start method ("spawn" is safe with torch's thread pools).

    Raises:
        ValueError: ``workers < 1``.
    """

    def __init__(self, cfg: PseudoMasksConfig, workers: int = 1, mp_context: str = "spawn") -> None:
        self.cfg = cfg
        self._pool = WorkerPool(workers, mp_context)

    def __enter__(self) -> PseudoMaskPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.__exit__(*exc)

    def run(self, images: Sequence[Any], cams: np.ndarray, sounding: np.ndarray,
            audio_logits: np.ndarray, shape: tuple[int, int],
            progress: Progress | None = None) -> np.ndarray:
        """Pseudo-masks of m frames (:func:`pcas_core.method.pseudo_masks.frame_pseudo_mask`).

        Args:
            images: m frames, each ``(H, W, 3)`` uint8 or a callable returning one (decoded in
                the worker); every frame is ``shape`` = (H, W).
            cams: ``(m, K, h, w)`` float32 raw CAMs.
            sounding: ``(m, h, w)`` float32 sounding maps.
            audio_logits: ``(m, K)`` float32 audio logits.
            shape: (H, W) of every frame, in pixels.
            progress: updated once per frame made (:mod:`pcas_core.runtime.progress`).

        Returns:
            ``(m, H, W)`` uint8 masks.

        Raises:
            ValueError: if the leading dims disagree or a layout is wrong.
        """
        if cams.ndim != 4 or sounding.ndim != 3 or audio_logits.ndim != 2:
            raise ValueError("expected cams M x K x h x w, sounding M x h x w, audio_logits M x K")
        m = len(images)
        if not cams.shape[0] == sounding.shape[0] == audio_logits.shape[0] == m:
            counts = (m, cams.shape[0], sounding.shape[0], audio_logits.shape[0])
            raise ValueError(f"frame counts (images, cams, sounding, audio_logits) differ: {counts}")
        jobs = ((images[i], cams[i], sounding[i], audio_logits[i], self.cfg) for i in range(m))
        out = np.empty((m, *shape), dtype=np.uint8)
        chunksize = max(1, m // (self._pool.workers * 4))
        results = (map(_frame_job, jobs) if m <= 1 else
                   self._pool.imap(_frame_job, jobs, chunksize=chunksize))
        for i, mask in enumerate(results):
            out[i] = mask
            if progress is not None:
                progress.update()
        return out


def pseudo_masks(
    images: np.ndarray,
    cams: np.ndarray,
    sounding: np.ndarray,
    audio_logits: np.ndarray,
    cfg: PseudoMasksConfig,
    *,
    workers: int = 1,
    mp_context: str = "spawn",
    desc: str = "pseudo-masks",
    log: logging.Logger | None = None,
) -> np.ndarray:
    """Pseudo-masks of M independent frames, optionally over a ``multiprocessing`` pool
    (:class:`PseudoMaskPool` for one call; keep a pool for many chunks).

    Args:
        images: ``(M, H, W, 3)`` uint8 frames.
        cams: ``(M, K, h, w)`` float32 raw CAMs.
        sounding: ``(M, h, w)`` float32 sounding maps.
        audio_logits: ``(M, K)`` float32 audio logits.
        cfg: :class:`PseudoMasksConfig`.
        workers: processes to use; 1 runs in this process.
        mp_context: multiprocessing start method ("spawn" is safe with torch's thread pools).
        desc, log: what the progress lines call the pass, and where they go
            (:class:`pcas_core.runtime.progress.Progress`).

    Returns:
        ``(M, H, W)`` uint8 masks (see :func:`pcas_core.method.pseudo_masks.frame_pseudo_mask`).

    Raises:
        ValueError: if the leading dims disagree, a layout is wrong, or ``workers < 1``.
    """
    if images.ndim != 4:
        raise ValueError("expected images M x H x W x 3")
    with PseudoMaskPool(cfg, workers, mp_context) as pool, \
            Progress(len(images), desc, unit="frame", log=log) as progress:
        return pool.run(images, cams, sounding, audio_logits, images.shape[1:3], progress)


def pseudo_mask_pass(data: AVSData, maps: StoreReader, audio: StoreReader, pool: PseudoMaskPool,
                     *, chunk_frames: int = CHUNK_FRAMES,
                     log: logging.Logger | None = None) -> Iterator[dict[str, np.ndarray]]:
    """The ``pseudo_masks`` store's rows of every frame of ``data``, chunk by chunk in frame-table
    order.

    Args:
        data: the dataset; its frame table gives the rows.
        maps: open ``maps`` store (``cam``, ``sounding``) covering every frame.
        audio: open ``audio`` store (``logits``) covering every frame.
        pool: the worker pool with the pseudo-mask configuration.
        chunk_frames: frames per chunk (memory bound; results do not depend on it).
        log: where the progress lines go (frames made by this process).

    Yields:
        ``mask`` (m, img_size, img_size) uint8 class indices, 255 = ignore.

    Raises:
        ValueError: a frame missing from a store (names the store).
    """
    m_rows = store_rows(maps.keys, data.frames, source=maps.path)
    a_rows = store_rows(audio.keys, data.frames, source=audio.path)
    images = data.frame_images()
    size = (data.img_size, data.img_size)
    chunks = list(row_chunks(len(data.frames), chunk_frames))

    mine = chunks[rank()::world_size()]

    def made():
        with Progress(sum(r.stop - r.start for r in mine), "pseudo-masks", unit="frame",
                      log=log) as progress:
            for rows in mine:
                yield pool.run([images.loader(i) for i in range(rows.start, rows.stop)],
                               maps.rows("cam", m_rows[rows]).astype(np.float32),
                               maps.rows("sounding", m_rows[rows]),
                               audio.rows("logits", a_rows[rows]), size, progress)

    for masks in gather_in_order(made(), len(chunks)):
        yield {"mask": masks}


def train_split_scores(store: Path, data: AVSData, *, official_batch_videos: int,
                       chunk_frames: int = CHUNK_FRAMES,
                       log: logging.Logger | None = None) -> dict:
    """The metrics file of the pseudo-masks in ``store`` on ``data``'s train split, against the
    ground truth where a frame has it (evaluation only; both modes, per subset; the official
    S4/MS3 scores average batches of ``official_batch_videos`` videos), scored chunk by chunk of
    ``chunk_frames`` annotated frames (:class:`pcas_core.evaluation.scoring.Scores`), so memory
    does not grow with the split; progress lines (frames scored) go to ``log``."""
    train = data.split("train")
    scored = scored_frames(train.frames, require_all=False)
    annotated = np.flatnonzero(train.has_mask())  # frame-table row of each scored frame
    scores = Scores(data.dataset, batch_videos=official_batch_videos, subsets=True)
    with open_store(store, "pseudo_masks", ["mask"]) as masks:
        rows = store_rows(masks.keys, scored, source=masks.path)
        for chunk in track(row_chunks(len(scored), chunk_frames), total=len(scored),
                           desc="pseudo-mask scores", unit="frame", log=log,
                           count=lambda r: r.stop - r.start):
            scores.update(Prediction(masks.rows("mask", rows[chunk])),
                          train.masks(annotated[chunk]), scored.iloc[chunk].reset_index(drop=True))
    return metrics_file(data.dataset, "train", scores.compute(), {})
