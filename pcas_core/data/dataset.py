"""One handle on a dataset folder: metadata, frame table, label space and video-level labels.

Every stage opens the dataset through :func:`open_dataset` with the ``data`` section of
``params.yaml``: ``data.dataset`` (``avss`` | ``s4`` | ``ms3``) picks the reader, ``data.root``
the folder, so every stage sees the same videos in the same order whatever the subset.

Opening checks the folder before any long work: the structure (:mod:`pcas_core.data.table`), every
file's header (:func:`pcas_core.data.validate.check_headers`), with ``data.verify: true`` every
file's contents too, and the labels. All errors are raised together (:class:`DataError`), or with
``data.skip_bad: true`` the bad videos are left out and listed in the log.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pcas_core.runtime.progress import track
from pcas_core.runtime.stage import get_logger
from pcas_core.data import ms3, s4
from pcas_core.data.avsbench import read_label2idx, read_metadata, frame_table, video_labels
from pcas_core.data.chunks import FrameImages
from pcas_core.data.clips import VideoClips
from pcas_core.data.images import SPLIT_MODES, load_mask
from pcas_core.data.labels import class_names, frame_labels
from pcas_core.data.palette import voc_palette
from pcas_core.data.problems import DataError, Problem, Problems
from pcas_core.data.table import drop_videos
from pcas_core.data.validate import check_contents, check_headers
from pcas_core.params.inputs import DataConfig

__all__ = ["DATASETS", "BINARY_DATASETS", "NEEDED_SPLITS", "AVSData", "read_dataset",
           "split_problems", "open_dataset"]

DATASETS = ("avss", "s4", "ms3")
BINARY_DATASETS = ("s4", "ms3")
"""Datasets scored with the binary (S4/MS3) metrics; their masks are 0/1."""
NEEDED_SPLITS = ("train", "test")
"""Splits the DAG cannot run without (training and scoring)."""
_NOTES_LOGGED = 5


@dataclass(frozen=True)
class AVSData:
    """Videos of one or more splits of an AVSS, S4 or MS3 folder.

    Attributes:
        root: dataset folder.
        label2idx: the label space, class name -> 1-based id (AVSS: 71 entries; S4: background +
            23 categories; MS3: that of its labels csv). Class index = id - 1.
        palette: (N, 3) uint8 mask colours (VOC palette).
        metadata: V rows, one per video (``video`` i is row i); columns ``uid``, ``split``,
            ``subset`` and the reader's own.
        frames: M rows, one per frame, grouped by video in order (:mod:`pcas_core.data.table`).
        labels: (V, N - 1) float32 video-level labels (the only supervision used in training).
        img_size: side in pixels every frame and mask is brought to.
        dataset: ``avss`` | ``s4`` | ``ms3``; S4/MS3 are scored with the binary metrics.
        off_palette: what an AVSS mask colour outside the palette becomes (``background``|``error``).
        skipped: errors of the videos left out by ``data.skip_bad`` (empty otherwise).
    """

    root: Path
    label2idx: dict[str, int]
    palette: np.ndarray
    metadata: pd.DataFrame
    frames: pd.DataFrame
    labels: np.ndarray
    img_size: int
    dataset: str = "avss"
    off_palette: str = "background"
    skipped: tuple[Problem, ...] = ()

    @property
    def class_names(self) -> list[str]:
        """Class names by class index; [0] = "background"."""
        return class_names(self.label2idx)

    @property
    def num_classes(self) -> int:
        """Classes including background (AVSS 71, S4 24)."""
        return len(self.label2idx)

    @property
    def binary(self) -> bool:
        """True for S4/MS3: ground truth is binary and so is the official scoring."""
        return self.dataset in BINARY_DATASETS

    def _with(self, metadata: pd.DataFrame, frames: pd.DataFrame, labels: np.ndarray) -> AVSData:
        return AVSData(self.root, self.label2idx, self.palette, metadata, frames, labels,
                       self.img_size, self.dataset, self.off_palette, self.skipped)

    def split(self, *names: str) -> AVSData:
        """The videos of the given splits, re-indexed 0..V'-1 in the original order.

        Raises:
            DataError: no video in those splits (names the dataset root).
        """
        keep = self.metadata["split"].isin(names).to_numpy()
        if not keep.any():
            raise DataError(f"{self.root}: no video in split(s) {list(names)}")
        return self._with(*drop_videos(self.metadata, self.frames, keep), self.labels[keep])

    def frames_in(self, split: str) -> np.ndarray:
        """(M,) bool: the frame-table rows of ``split`` (rows of per-frame arrays of this data)."""
        return (self.frames["split"] == split).to_numpy()

    def videos_in(self, split: str) -> np.ndarray:
        """(V,) bool: the metadata rows (videos) of ``split`` (rows of per-video arrays)."""
        return (self.metadata["split"] == split).to_numpy()

    def audio_tracks(self) -> tuple[list[Path], np.ndarray]:
        """Each video's audio file (metadata order) and (V,) int32 its number of frames, i.e.
        of one-second time steps the audio is cut into (docs/method.md §2)."""
        per_video = self.frames.groupby("video", sort=True)
        return ([Path(p) for p in per_video["audio_path"].first()],
                per_video.size().to_numpy(dtype=np.int32))

    def clips(self, mean: tuple[float, ...], std: tuple[float, ...], *, preload: bool = False,
              augment: dict | None = None, max_frames: int = 0,
              num_workers: int = 0) -> VideoClips:
        """Video dataset of these videos, normalised with ``mean``/``std`` (the backbone's),
        frames decoded per item by ``num_workers`` loader processes (``base.num_workers``);
        ``augment`` and ``max_frames`` as in ``VideoClips`` (training only)."""
        return VideoClips(self.frames, self.labels, self.img_size, mean, std, preload=preload,
                          augment=augment, max_frames=max_frames, num_workers=num_workers)

    def frame_images(self) -> FrameImages:
        """The frames after each split's geometry, in frame-table order, decoded when indexed
        (:class:`pcas_core.data.chunks.FrameImages`)."""
        return FrameImages(self.frames, self.img_size)

    def images(self, rows: np.ndarray | slice | None = None) -> np.ndarray:
        """(R, S, S, 3) uint8 frames of frame-table ``rows`` (int array, slice or (M,) bool mask;
        default: all M frames, only for small sets: passes over a whole dataset use
        :meth:`frame_images` chunk by chunk)."""
        return self.frame_images()[slice(None) if rows is None else rows].array()

    def has_mask(self) -> np.ndarray:
        """(M,) bool: the frame has a ground-truth mask (evaluation only)."""
        return (self.frames["mask_path"] != "").to_numpy()

    def masks(self, rows: np.ndarray | None = None) -> np.ndarray:
        """(R, S, S) uint8 ground truth (evaluation only): class indices for AVSS, 0/1
        (1 = sounding object) for S4/MS3 (see :attr:`binary`).

        Args:
            rows: frame-table rows, each with a mask; default: every annotated frame.

        Raises:
            ValueError: a requested row has no mask (names the frame).
        """
        ann = self.frames[self.has_mask()] if rows is None else self.frames.iloc[rows]
        if (ann["mask_path"] == "").any():
            bad = ann[ann["mask_path"] == ""].iloc[0]
            raise ValueError(f"{bad['frame_path']}: frame has no ground-truth mask")
        out = np.empty((len(ann), self.img_size, self.img_size), dtype=np.uint8)
        rows = zip(ann["mask_path"], ann["split"], ann["mask_format"])
        for k, (p, s, f) in enumerate(track(rows, total=len(ann), desc="ground-truth masks",
                                            unit="mask", log=get_logger("pcas.data"))):
            out[k] = load_mask(p, self.img_size, SPLIT_MODES[s], self.palette, f,
                               off_palette=self.off_palette)
        return out

    def frame_classes(self) -> np.ndarray:
        """(M, N - 1) float32 classes present in each frame, NaN rows without a mask (evaluation
        only, e.g. of frame-level audio classification). AVSS: the classes in the frame's mask;
        S4/MS3 (binary masks): the video's labels where the mask has foreground, else zeros."""
        out = np.full((len(self.frames), self.labels.shape[1]), np.nan, dtype=np.float32)
        for split in self.frames["split"].unique():
            sel = self.frames_in(split)
            if not self.binary:
                out[sel] = frame_labels(self.frames[sel], self.palette, self.img_size,
                                        SPLIT_MODES[split], self.num_classes,
                                        off_palette=self.off_palette)
                continue
            part = self.frames[sel].assign(mask_format="binary")
            fg = frame_labels(part, self.palette, self.img_size, SPLIT_MODES[split], 2)
            rows = self.labels[part["video"].to_numpy()]
            out[sel] = np.where(np.isnan(fg), np.nan, np.where(fg > 0, rows, 0.0))
        return out


def _path(value: Any, default: Path) -> Path:
    return Path(value) if value else default


def read_dataset(data: dict[str, Any], problems: Problems) -> tuple[AVSData, pd.DataFrame]:
    """Read the folder ``data`` describes and check every file's header
    (:func:`pcas_core.data.validate.check_headers`, before any mask is decoded for labels),
    recording per-video problems in ``problems`` (nothing is dropped or raised for them).
    Keys: see :func:`open_dataset`.

    Returns:
        The dataset and its audio facts (one row per video, see ``check_headers``).

    Raises:
        FileNotFoundError / DataError: for problems of the whole dataset (missing or malformed
            index csv, label2idx.json, audio folder, labels csv, unknown ``data.dataset``).
    """
    kind = data.get("dataset", "avss")
    root = Path(data["root"])
    per_video = data.get("frames_per_video")
    per_video = int(per_video) if per_video else None
    off_palette = data.get("off_palette", "background")
    if kind == "avss":
        label2idx = read_label2idx(_path(data.get("label2idx"), root))
        metadata = read_metadata(root, subsets=data.get("subsets"))
        frames = frame_table(root, metadata, problems, frames_per_video=per_video)
        if "kind" in metadata.columns:  # clip kinds (the demo's), for scores per kind
            frames["kind"] = metadata["kind"].astype(str).to_numpy()[frames["video"].to_numpy()]
        labels = None  # from masks or a_obj, once the files are checked
    elif kind == "s4":
        metadata = s4.read_s4_index(root)
        label2idx = s4.s4_label2idx(metadata, root)
        frames = s4.s4_frame_table(root, metadata, _path(data.get("audio_dir"),
                                                         root / "s4_data" / "audio_wav"),
                                   problems, frames_per_video=per_video)
        labels = s4.s4_labels(metadata, label2idx)
    elif kind == "ms3":
        label2idx = read_label2idx(_path(data.get("label2idx"), root))
        metadata = ms3.read_ms3_index(root)
        frames = ms3.ms3_frame_table(root, metadata, _path(data.get("audio_dir"),
                                                           root / "ms3_data" / "audio_wav"),
                                     problems, frames_per_video=per_video)
        labels = ms3.read_labels_csv(_path(data.get("labels_csv"), root / "video_labels.csv"),
                                     list(metadata["uid"]), label2idx, problems)
    else:
        raise DataError(f"data.dataset must be one of {list(DATASETS)}, got {kind!r}")
    palette = voc_palette(len(label2idx))
    audio = check_headers(frames, problems)
    if labels is None:
        bad = {p.path for p in problems.errors}
        usable = frames.assign(mask_path=frames["mask_path"].where(
            ~frames["mask_path"].isin(bad), ""))
        labels = video_labels(metadata, usable, source=data.get("label_source", "masks"),
                              label2idx=label2idx, palette=palette, off_palette=off_palette,
                              problems=problems)
    return AVSData(root, label2idx, palette, metadata, frames, labels, int(data["img_size"]),
                   kind, off_palette), audio


def split_problems(ds: AVSData, problems: Problems, needed: tuple[str, ...]) -> None:
    """An error for each split the caller needs that has no video (``open_dataset`` and
    ``pcas check-data``)."""
    for split in needed:
        if not ds.videos_in(split).any():
            problems.error("", ds.root, f"split '{split}' has no video (the pipeline trains on "
                           "train and scores test)")


def open_dataset(data: dict[str, Any] | DataConfig, *,
                 needed_splits: tuple[str, ...] = NEEDED_SPLITS) -> AVSData:
    """Open and check the dataset that the ``data`` params section describes.

    Args:
        data: the typed ``data`` section (:class:`pcas_core.params.DataConfig`), or a mapping
            with its keys: ``root`` (folder), ``img_size`` (pixels), and optionally ``dataset`` (``avss`` |
            ``s4`` | ``ms3``, default avss), ``label_source`` (AVSS: ``masks`` | ``a_obj``),
            ``subsets`` (AVSS: list of ``v1s``/``v1m``/``v2``, null for all), ``audio_dir``
            (S4/MS3 audio folder), ``labels_csv`` (MS3 labels), ``label2idx`` (AVSS/MS3 label
            space file), ``frames_per_video`` (null = as released), ``off_palette``
            (``background`` | ``error``), ``verify`` (decode every file, default false),
            ``skip_bad`` (leave out bad videos, default false).
        needed_splits: splits that must hold a video (the DAG: train and test; scoring trained
            models on another dataset: test only).

    Returns:
        The dataset, without the bad videos when ``skip_bad`` (listed in ``skipped`` and logged).

    Raises:
        FileNotFoundError / DataError: naming each offending file and its problem.
    """
    if isinstance(data, DataConfig):
        data = asdict(data)
    log = get_logger("pcas.data")
    problems = Problems()
    ds, _ = read_dataset(data, problems)
    if data.get("verify", False):
        check_contents(ds.frames, ds.palette, problems, off_palette=ds.off_palette)
    notes = problems.notes
    if notes:
        log.info("%s: %d note(s), e.g. %s (`pcas check-data` lists all)", ds.root, len(notes),
                 "; ".join(map(str, notes[:_NOTES_LOGGED])))
    if data.get("skip_bad", False):
        bad = problems.bad_uids()
        if bad:
            keep = ~ds.metadata["uid"].isin(bad).to_numpy()
            ds = replace(ds._with(*drop_videos(ds.metadata, ds.frames, keep), ds.labels[keep]),
                         skipped=tuple(problems.errors))
            log.warning("%s: skipping %d bad video(s) (data.skip_bad): %s", ds.root, len(bad),
                        "; ".join(map(str, problems.errors)))
        problems = Problems([p for p in problems.items if not p.uid])
    split_problems(ds, problems, needed_splits)
    problems.raise_if_errors(str(ds.root))
    return ds
