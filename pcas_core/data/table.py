"""The frame table every reader produces (AVSS, S4, MS3): one row per frame, and the structural
checks of a video that need only the folder listings (frames present and as many as the subset
has, the masks the split needs, the audio file).

Columns (:data:`FRAME_COLUMNS`): ``uid`` (str, the video's name), ``subset`` (str: ``v1s``,
``v1m``, ``v2``, ``s4``, ``ms3``), ``split`` (str), ``video`` (int, 0-based row of the video in
the metadata), ``frame`` (int, the frame number in its file name: 0-based for AVSS, 1-based for
S4/MS3), ``frame_path`` (str), ``mask_path`` (str, "" for an unannotated frame), ``mask_format``
(str: ``rgb`` | ``index`` | ``binary``, see :mod:`pcas_core.data.images`), ``audio_path`` (str).
An AVSS ``metadata.csv`` with a ``kind`` column (the clip kinds of the bundled demo) adds
``kind`` (str, the video's), by which the metrics files also report each score.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from pcas_core.data.problems import DataError, Problems

__all__ = ["SPLITS", "FRAME_COLUMNS", "RELEASED_FRAMES", "check_index", "read_positional_csv",
           "numbered_files", "FrameRows", "drop_videos", "VideoRows"]

SPLITS = ("train", "val", "test")

FRAME_COLUMNS = ["uid", "subset", "split", "video", "frame", "frame_path", "mask_path",
                 "mask_format", "audio_path"]

RELEASED_FRAMES = {"v1s": 5, "v1m": 5, "v2": 10, "s4": 5, "ms3": 5}
"""Frames per video of each released subset (AVSBench: one frame per second of a 5 s or 10 s clip)."""


def check_index(df: pd.DataFrame, path: Path, keys: list[str], *,
                subsets: tuple[str, ...] | None = None, subset_column: str = "") -> None:
    """Checks of a dataset's index csv (one row per video): it has rows, every ``split`` is
    train/val/test, every ``subset_column`` value is in ``subsets`` (when given), and no video
    (``keys``) repeats.

    Raises:
        DataError: naming ``path`` and the first offending values.
    """
    if df.empty:
        raise DataError(f"{path}: no videos listed (the file has no data rows)")
    bad = sorted(set(df["split"]) - set(SPLITS))
    if bad:
        raise DataError(f"{path}: unknown split value(s) {bad[:5]}; expected one of {list(SPLITS)}")
    if subsets is not None:
        bad = sorted(set(df[subset_column]) - set(subsets))
        if bad:
            raise DataError(f"{path}: unknown {subset_column} value(s) {bad[:5]}; expected one "
                            f"of {list(subsets)}")
    dup = df.duplicated(keys)
    if dup.any():
        raise DataError(f"{path}: video listed twice: {df.loc[dup, keys].iloc[0].to_dict()}")


def read_positional_csv(path: Path, columns: tuple[str, ...], *, subset: str,
                        folder: str) -> pd.DataFrame:
    """Read an AVSBench-object index csv: a header row, then columns taken BY POSITION as
    ``columns`` (the first one being the video name, ``uid``; extra columns ignored), stripped
    str, plus ``subset``; checked with :func:`check_index`.

    Args:
        path: the csv.
        columns: names given to the first ``len(columns)`` columns.
        subset: value of the added ``subset`` column ("s4", "ms3").
        folder: the release folder ``data.root`` should be (named when the csv is missing).

    Raises:
        FileNotFoundError: the csv is missing.
        DataError: too few columns, no rows, an unknown split, a repeated video name.
    """
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {path.name} not found (data.dataset: {subset} expects "
                                f"data.root = the release's {folder} folder)")
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    if raw.shape[1] < len(columns):
        named = ", ".join("name" if c == "uid" else c for c in columns)
        raise DataError(f"{path}: needs {len(columns)} columns (by position: {named}), found "
                        f"{raw.shape[1]}: {list(raw.columns)}")
    df = pd.DataFrame({c: raw.iloc[:, i].str.strip() for i, c in enumerate(columns)})
    df = df.assign(subset=subset)
    check_index(df, path, ["uid"])
    return df


def numbered_files(folder: Path, prefix: str, suffix: str, problems: Problems,
                   uid: str) -> dict[int, Path]:
    """Map N -> ``folder/<prefix>N<suffix>`` for the files of that form in ``folder``.

    A file with ``suffix`` whose name is not of that form is an error of video ``uid`` (a frame
    or mask that would otherwise be silently left out). A missing folder gives ``{}``.
    """
    if not folder.is_dir():
        return {}
    pattern = re.compile(re.escape(prefix) + r"(\d+)" + re.escape(suffix) + "$")
    out: dict[int, Path] = {}
    for path in folder.iterdir():
        if not path.name.endswith(suffix):
            continue
        match = pattern.match(path.name)
        if match is None:
            problems.error(uid, path, f"file name is not of the form {prefix}N{suffix}")
            continue
        out[int(match.group(1))] = path
    return out


class FrameRows:
    """Builds the frame table video by video, recording structural problems in ``problems``.

    Args:
        problems: collector of errors and notes.
        frames_per_video: frames every video must have; None = as released
            (:data:`RELEASED_FRAMES` of its subset).
    """

    def __init__(self, problems: Problems, frames_per_video: int | None = None) -> None:
        self.problems = problems
        self.frames_per_video = frames_per_video
        self.rows: list[tuple] = []
        self.n_videos = 0

    def add_video(self, *, uid: str, subset: str, split: str, frames_dir: Path,
                  frames: dict[int, Path], masks: dict[int, Path], mask_format: str,
                  mask_path_of: Callable[[int], Path], masks_required: str,
                  audio: Path | None) -> None:
        """Add the frames of the next video (video index = number of videos added before).

        Args:
            uid: video name.
            subset, split: as in the table.
            frames_dir: the video's frame folder (named in problems).
            frames: frame number -> image file.
            masks: frame number -> mask file (frames without a key are unannotated).
            mask_format: ``rgb`` | ``index`` | ``binary``.
            mask_path_of: frame number -> where its mask should be (named when missing).
            masks_required: ``first`` (only the first frame must be annotated, AVSBench train)
                or ``all`` (val/test, and MS3 train).
            audio: the audio file (wav or a video with an audio track), None if none was found.

        Errors recorded: no frames, a frame count other than the subset's, a required mask
        missing, the audio missing.
        """
        p = self.problems
        expected = self.frames_per_video or RELEASED_FRAMES[subset]
        if not frames:
            p.error(uid, frames_dir, "no frames found" if frames_dir.is_dir()
                    else "frames folder not found")
        elif len(frames) != expected:
            p.error(uid, frames_dir, f"{len(frames)} frames, but a video of subset {subset} has "
                    f"{expected}" + ("" if self.frames_per_video else
                                  " (data.frames_per_video overrides the released count)"))
        order = sorted(frames)
        need = order if masks_required == "all" else order[:1]
        for n in need:
            if n not in masks:
                p.error(uid, mask_path_of(n), f"mask of frame {n} not found (a {split} video "
                        + ("needs every mask)" if masks_required == "all" else
                           "needs the first frame's mask)"))
        if audio is None or not Path(audio).is_file():
            p.error(uid, audio or "<audio>", "audio file not found")
        for n in order:
            self.rows.append((uid, subset, split, self.n_videos, n, str(frames[n]),
                              str(masks[n]) if n in masks else "", mask_format,
                              str(audio) if audio else ""))
        self.n_videos += 1

    def table(self) -> pd.DataFrame:
        """The frame table (:data:`FRAME_COLUMNS`), videos in the order added."""
        return pd.DataFrame(self.rows, columns=FRAME_COLUMNS).astype(
            {"video": np.int64, "frame": np.int64})


def drop_videos(metadata: pd.DataFrame, frames: pd.DataFrame,
                keep: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Keep the videos where ``keep`` (V,) bool is True, re-indexed 0..V'-1 in their order.

    Returns:
        ``(metadata, frames)`` with fresh indices and the ``video`` column renumbered.
    """
    keep = np.asarray(keep, dtype=bool)
    new_index = np.full(len(keep), -1)
    new_index[keep] = np.arange(int(keep.sum()))
    frames = frames[keep[frames["video"].to_numpy()]].copy()
    frames["video"] = new_index[frames["video"].to_numpy()]
    return metadata[keep].reset_index(drop=True), frames.reset_index(drop=True)


class VideoRows:
    """Row numbers of each video's frames in a frame table grouped by video (e.g. to pick the
    per-frame rows of a batch of videos out of a per-frame array).

    Args:
        frames: frame table with a ``video`` column (0..V-1), rows of a video contiguous.
    """

    def __init__(self, frames: pd.DataFrame) -> None:
        video = frames["video"].to_numpy()
        if len(video) and (np.diff(video) < 0).any():
            raise ValueError("frame table must list videos in order, frames of a video together")
        self.counts = np.bincount(video, minlength=int(video.max(initial=-1)) + 1)
        self.starts = np.concatenate([[0], np.cumsum(self.counts)[:-1]])

    def of(self, videos: torch.Tensor) -> np.ndarray:
        """Frame rows of the given videos, in batch order: (sum of their frame counts,) int64."""
        return np.concatenate([np.arange(self.starts[v], self.starts[v] + self.counts[v])
                               for v in videos.tolist()])
