"""One handle on a dataset folder: metadata, frame table and video-level labels, by split.

Every stage opens the dataset through :func:`open_dataset` with the ``data`` section of
``params.yaml``, so ``data.root`` is the one switch between the bundled demo and a real AVSBench
folder, and every stage sees the same videos in the same order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pcas_core.data.avsbench import (SPLIT_MODES, frame_labels, frame_table, load_frame,
                                     load_mask, read_label2idx, read_metadata, video_labels)
from pcas_core.data.clips import VideoClips
from pcas_core.data.palette import voc_palette

__all__ = ["AVSData", "open_dataset"]


@dataclass(frozen=True)
class AVSData:
    """Videos of one or more splits of an AVSBench-semantic style folder.

    Attributes:
        root: dataset folder.
        label2idx: class name -> 1-based id (71 entries).
        palette: (71, 3) uint8 mask colours.
        metadata: V rows, one per video (``video`` i is row i).
        frames: M rows, one per frame, grouped by video in order (see ``frame_table``).
        labels: (V, 70) float32 video-level labels (the only supervision used in training).
        img_size: side in pixels every frame and mask is brought to.
    """

    root: Path
    label2idx: dict[str, int]
    palette: np.ndarray
    metadata: pd.DataFrame
    frames: pd.DataFrame
    labels: np.ndarray
    img_size: int

    def split(self, *names: str) -> AVSData:
        """The videos of the given splits, re-indexed 0..V'-1 in the original order.

        Raises:
            ValueError: no video in those splits (names the dataset root).
        """
        keep = self.metadata["split"].isin(names).to_numpy()
        if not keep.any():
            raise ValueError(f"{self.root}: no video in split(s) {list(names)}")
        new_index = np.full(len(keep), -1)
        new_index[keep] = np.arange(keep.sum())
        frames = self.frames[self.frames["split"].isin(names)].copy()
        frames["video"] = new_index[frames["video"].to_numpy()]
        return AVSData(self.root, self.label2idx, self.palette,
                       self.metadata[keep].reset_index(drop=True), frames.reset_index(drop=True),
                       self.labels[keep], self.img_size)

    def clips(self, mean: tuple[float, ...], std: tuple[float, ...], *, preload: bool = True,
              augment: dict | None = None, max_frames: int = 0) -> VideoClips:
        """Video dataset of these videos, normalised with ``mean``/``std`` (the backbone's);
        ``augment`` and ``max_frames`` as in ``VideoClips`` (training only)."""
        return VideoClips(self.frames, self.labels, self.img_size, mean, std, preload=preload,
                          augment=augment, max_frames=max_frames)

    def images(self) -> np.ndarray:
        """(M, S, S, 3) uint8 frames after each split's geometry, in frame-table order."""
        return np.stack([load_frame(p, self.img_size, SPLIT_MODES[s]) for p, s in
                         zip(self.frames["frame_path"], self.frames["split"])])

    def has_mask(self) -> np.ndarray:
        """(M,) bool: the frame has a ground-truth mask (evaluation only)."""
        return (self.frames["mask_path"] != "").to_numpy()

    def masks(self) -> np.ndarray:
        """(M', S, S) uint8 class-index ground truth of the annotated frames (evaluation only)."""
        ann = self.frames[self.has_mask()]
        return np.stack([load_mask(p, self.img_size, SPLIT_MODES[s], self.palette)
                         for p, s in zip(ann["mask_path"], ann["split"])]).astype(np.uint8)

    def frame_classes(self) -> np.ndarray:
        """(M, 70) float32 classes present in each frame's mask, NaN rows without a mask
        (evaluation only, e.g. of frame-level audio classification)."""
        out = np.full((len(self.frames), self.labels.shape[1]), np.nan, dtype=np.float32)
        for split in self.frames["split"].unique():
            sel = (self.frames["split"] == split).to_numpy()
            out[sel] = frame_labels(self.frames[sel], self.palette, self.img_size,
                                    SPLIT_MODES[split])
        return out


def open_dataset(data: dict[str, Any]) -> AVSData:
    """Open the dataset that the ``data`` params section describes.

    Args:
        data: ``root`` (folder), ``img_size`` (pixels), ``label_source`` (``masks`` | ``a_obj``),
            optional ``subsets`` (list of ``v1s``/``v1m``/``v2``, null for all).

    Raises:
        FileNotFoundError / ValueError: from the readers, naming the offending file.
    """
    root = Path(data["root"])
    label2idx = read_label2idx(root)
    palette = voc_palette()
    metadata = read_metadata(root, subsets=data.get("subsets"))
    frames = frame_table(root, metadata)
    labels = video_labels(metadata, frames, source=data["label_source"], label2idx=label2idx,
                          palette=palette)
    return AVSData(root, label2idx, palette, metadata, frames, labels, int(data["img_size"]))
