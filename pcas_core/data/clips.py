"""Videos as torch dataset items: all (or some) frames of a clip with its video-level labels.

Frames are decoded when an item is asked for (by DataLoader workers, ``base.num_workers``), so
memory does not grow with the dataset. An item's randomness (frame subset, augmentation) comes
from a generator seeded by ``(seed, video index)`` (:func:`item_seed`), never from a global or a
per-worker random state, so the same seed gives the same items whatever the number of workers
and whichever worker decodes an item.
"""

from __future__ import annotations

import copy
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from pcas_core.data.augment import augment_clip
from pcas_core.data.images import SPLIT_MODES, load_frame

__all__ = ["item_seed", "VideoClips", "ArrayClips", "normalise_frames", "collate_videos"]


def item_seed(seed: int, index: int) -> int:
    """A 64-bit seed for item ``index`` under ``seed`` (``numpy.random.SeedSequence``, so nearby
    pairs give unrelated streams)."""
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(index)])
               .generate_state(1, np.uint64)[0])


def normalise_frames(raw: np.ndarray, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """(T, H, W, 3) uint8 RGB -> (T, 3, H, W) float32, scaled to [0, 1] then ``(x - mean) / std``
    with (1, 3, 1, 1) per-channel ``mean``/``std``."""
    x = torch.from_numpy(np.ascontiguousarray(raw)).permute(0, 3, 1, 2).float().div_(255.0)
    return (x - mean) / std


class VideoClips(torch.utils.data.Dataset):
    """Videos as items: all frames of one video, normalised, with its video-level labels.

    Geometry of each video follows its split (:data:`SPLIT_MODES`). Pixel values are scaled to
    [0, 1] and then normalised ``(x - mean) / std`` per RGB channel.

    Args:
        frames: table from :func:`frame_table`; ``video`` must cover 0..V-1.
        labels: (V, K) float32 video labels, K foreground classes (AVSS 70, S4 23).
        size: frame side in pixels.
        mean: 3 per-channel means on the [0, 1] scale (e.g. the backbone's data config).
        std: 3 per-channel standard deviations on the [0, 1] scale.
        preload: load all frames into memory as uint8 at construction (V*T*size*size*3 bytes;
            only for tiny sets: by default frames are decoded per item).
        augment: keyword arguments of :func:`pcas_core.data.augment.augment_clip` to augment
            each clip (training only), or None for the frames as they are.
        max_frames: if > 0, an item holds a random subset of at most this many of the video's
            frames, in time order (training only: video labels hold for the whole clip, and
            neighbouring frames of a clip are nearly alike); 0 keeps every frame.
        seed: seed of the items' randomness (:func:`item_seed`); loaders set it per epoch
            with :meth:`reseeded`.
        num_workers: DataLoader worker processes that decode these frames
            (:func:`pcas_core.data.loader.video_loader`; ``base.num_workers``).

    Item ``i``: dict ``frames`` float32 (T, 3, size, size), ``labels`` float32 (K,),
    ``video`` int.

    Raises:
        ValueError: ``labels`` not 2-D, a video index without frames, or bad mean/std.
    """

    def __init__(self, frames: pd.DataFrame, labels: np.ndarray, size: int,
                 mean: Sequence[float], std: Sequence[float], preload: bool = False,
                 augment: dict | None = None, max_frames: int = 0, seed: int = 0,
                 num_workers: int = 0) -> None:
        labels = np.asarray(labels, dtype=np.float32)
        if labels.ndim != 2:
            raise ValueError(f"VideoClips: labels must be (V, K), got {labels.shape}")
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"VideoClips: mean/std must be 3 values, std > 0; got {mean}, {std}")
        groups = {int(v): g.sort_values("frame") for v, g in frames.groupby("video")}
        missing = sorted(set(range(len(labels))) - set(groups))
        if missing or set(groups) - set(range(len(labels))):
            raise ValueError(f"VideoClips: frame table videos do not match {len(labels)} label rows "
                             f"(videos without frames: {missing[:5]})")
        self.paths = [groups[v]["frame_path"].tolist() for v in range(len(labels))]
        self.modes = [SPLIT_MODES[groups[v]["split"].iloc[0]] for v in range(len(labels))]
        self.labels = torch.from_numpy(labels)
        self.size = int(size)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        self.cache = [self._load(v) for v in range(len(labels))] if preload else None
        self.augment = augment
        self.max_frames = int(max_frames)
        self.seed = int(seed)
        self.num_workers = int(num_workers)

    def reseeded(self, seed: int) -> VideoClips:
        """A shallow copy whose items draw their randomness under ``seed`` (e.g. base seed +
        epoch), sharing paths, labels and any preloaded frames."""
        out = copy.copy(self)
        out.seed = int(seed)
        return out

    def _load(self, video: int) -> np.ndarray:
        """(T, size, size, 3) uint8 frames of one video."""
        return np.stack([load_frame(p, self.size, self.modes[video]) for p in self.paths[video]])

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict:
        raw = self.cache[i] if self.cache is not None else self._load(i)
        rng = torch.Generator().manual_seed(item_seed(self.seed, i))
        if 0 < self.max_frames < len(raw):
            raw = raw[np.sort(torch.randperm(len(raw), generator=rng)[:self.max_frames].numpy())]
        x = normalise_frames(raw, self.mean, self.std)
        if self.augment is not None:
            x = augment_clip(x, **self.augment, generator=rng)
        return {"frames": x, "labels": self.labels[i], "video": int(i)}


class ArrayClips(torch.utils.data.Dataset):
    """Videos already in memory as items, normalised exactly as :class:`VideoClips` does.

    Args:
        videos: one (T, S, S, 3) uint8 RGB array per video (frames already at model size).
        mean, std: 3 per-channel values on the [0, 1] scale (the backbone's data config).

    Item ``i``: dict ``frames`` float32 (T, 3, S, S), ``labels`` float32 (0,) (a user's video
    has no labels, and the label space is the models'),
    ``video`` int; batches with :func:`collate_videos`.
    """

    def __init__(self, videos: Sequence[np.ndarray], mean: Sequence[float],
                 std: Sequence[float]) -> None:
        if any(v.ndim != 4 or v.shape[-1] != 3 or v.dtype != np.uint8 for v in videos):
            raise ValueError("ArrayClips: every video must be a (T, S, S, 3) uint8 array")
        self.videos = list(videos)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, i: int) -> dict:
        return {"frames": normalise_frames(self.videos[i], self.mean, self.std),
                "labels": torch.zeros(0), "video": int(i)}


def collate_videos(batch: list[dict]) -> dict[str, torch.Tensor]:
    """Collate :class:`VideoClips` items with different frame counts.

    Returns:
        dict ``frames`` float32 (sum T, 3, H, W), ``labels`` float32 (B, K), ``frame_video``
        int64 (sum T,) index of each frame's video within the batch (0..B-1), ``video`` int64 (B,)
        dataset video indices.
    """
    counts = torch.tensor([item["frames"].shape[0] for item in batch], dtype=torch.long)
    return {
        "frames": torch.cat([item["frames"] for item in batch]),
        "labels": torch.stack([item["labels"] for item in batch]),
        "frame_video": torch.repeat_interleave(torch.arange(len(batch)), counts),
        "video": torch.tensor([item["video"] for item in batch], dtype=torch.long),
    }
