"""DataLoaders over video datasets: frames decoded by worker processes, results independent of
how many (``base.num_workers``).

Determinism: the batch order comes from a generator seeded with the loader's seed; each item's
randomness from its own generator seeded by (seed, video index) (:func:`pcas_core.data.clips.
item_seed`); workers additionally get NumPy/``random`` seeds derived from torch's per-worker seed,
for any third-party code that draws from them. So the same seed gives the same batches with 0, 1
or N workers.
"""

from __future__ import annotations

import random

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from pcas_core.data.clips import collate_videos
from pcas_core.runtime.distributed import rank_batches

__all__ = ["seed_worker", "video_loader"]


def seed_worker(worker_id: int) -> None:
    """``worker_init_fn``: seed NumPy and ``random`` in a worker from torch's per-worker seed
    (itself derived from the loader's generator), as the PyTorch reproducibility notes advise."""
    seed = torch.initial_seed() % 2 ** 32
    np.random.seed(seed)
    random.seed(seed)


def video_loader(clips: Dataset, *, batch_videos: int, shuffle: bool, seed: int = 0,
                 num_workers: int | None = None, ranks: bool = False) -> DataLoader:
    """Batches of whole videos (all their frames), see ``collate_videos`` for the layout.

    Args:
        clips: a video dataset (e.g. :class:`pcas_core.data.clips.VideoClips`).
        batch_videos: videos per batch.
        shuffle: draw a new video order from a generator seeded with ``seed``.
        seed: seed of the order and, for datasets with ``reseeded`` (VideoClips), of each item's
            randomness; training passes base seed + epoch, so every epoch differs reproducibly.
        num_workers: worker processes decoding frames; None takes ``clips.num_workers`` (set
            from ``base.num_workers``), else 0.
        ranks: in a distributed run, only this process's batches
            (:func:`pcas_core.runtime.distributed.rank_batches`: its share of each global batch with
            ``shuffle``, whole batches round-robin without); no effect in one process.

    Returns:
        A DataLoader yielding dicts ``frames`` (sum T, 3, H, W), ``labels`` (B, K),
        ``frame_video`` (sum T,), ``video`` (B,).
    """
    workers = int(getattr(clips, "num_workers", 0) if num_workers is None else num_workers)
    if hasattr(clips, "reseeded"):
        clips = clips.reseeded(seed)
    generator = torch.Generator().manual_seed(seed)
    batches = rank_batches(len(clips), batch_videos, shuffle=shuffle, generator=generator,
                           split=ranks)
    return DataLoader(clips, batch_sampler=batches, generator=generator,
                      collate_fn=collate_videos, num_workers=workers,
                      pin_memory=torch.cuda.is_available(),  # non-blocking copies to the GPU
                      worker_init_fn=seed_worker if workers else None)
