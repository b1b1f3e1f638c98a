"""Read AVSBench-object S4 (single sound source) as released.

Layout (``data.root`` = the release's ``Single-source`` folder; official loader
``avs_scripts/avs_s4/dataloader.py``)::

    <root>/s4_meta_data.csv     header row; columns BY POSITION: video name, start, category, split
    <root>/s4_data/visual_frames/{split}/{category}/{vid}/{vid}_{1..5}.png
    <root>/s4_data/gt_masks/{split}/{category}/{vid}/{vid}_{k}.png   binary; train: only k = 1
    <data.audio_dir>/.../{vid}.wav (or {vid}.mp4)   default <root>/s4_data/audio_wav

Label space: background + the categories of the csv (all splits), sorted by name, so class index
c >= 1 is the c-th category; a video's label is its category. Masks are binary (``binary``
format); the video's class is known, so binary ground truth is all S4 needs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pcas_core.data.audio_files import index_audio_dir
from pcas_core.data.problems import DataError, Problems
from pcas_core.data.table import FrameRows, numbered_files, read_positional_csv

__all__ = ["CSV_NAME", "read_s4_index", "s4_label2idx", "s4_frame_table", "s4_labels"]

CSV_NAME = "s4_meta_data.csv"


def read_s4_index(root: Path, *, splits: list[str] | None = None) -> pd.DataFrame:
    """Read ``<root>/s4_meta_data.csv`` by column position.

    Returns:
        One row per video, file order: ``uid`` (name), ``category``, ``split``, ``subset``
        ("s4"); filtered to ``splits`` (None = all).

    Raises:
        FileNotFoundError: the csv is missing.
        DataError: fewer than 4 columns, no rows, an unknown split, a repeated video name.
    """
    path = Path(root) / CSV_NAME
    df = read_positional_csv(path, ("uid", "start", "category", "split"), subset="s4",
                             folder="Single-source")
    if (df["category"] == "").any():
        raise DataError(f"{path}: video {df.loc[df['category'] == '', 'uid'].iloc[0]} has "
                        "an empty category")
    if splits is not None:
        df = df[df["split"].isin(splits)]
    return df.reset_index(drop=True)


def s4_label2idx(index: pd.DataFrame, root: Path) -> dict[str, int]:
    """Label space of S4: ``{"background": 1, <category>: 2.., sorted}`` from the index of every
    split (:func:`read_s4_index` of ``root``), so it does not depend on a split selection."""
    categories = sorted(set(index["category"]))
    if "background" in categories:
        raise DataError(f"{Path(root) / CSV_NAME}: 'background' cannot be a category")
    return {"background": 1, **{c: i + 2 for i, c in enumerate(categories)}}


def s4_frame_table(root: Path, index: pd.DataFrame, audio_dir: Path, problems: Problems, *,
                   frames_per_video: int | None = None) -> pd.DataFrame:
    """Frame table (:mod:`pcas_core.data.table`) of the videos in ``index``; frames 1..5,
    masks ``binary``; train needs mask 1, val/test every mask. Problems go to ``problems``."""
    data = Path(root) / "s4_data"
    audio = index_audio_dir(audio_dir)
    rows = FrameRows(problems, frames_per_video)
    for rec in index.itertuples(index=False):
        rel = Path(rec.split) / rec.category / rec.uid
        fdir, mdir = data / "visual_frames" / rel, data / "gt_masks" / rel
        rows.add_video(uid=rec.uid, subset="s4", split=rec.split, frames_dir=fdir,
                       frames=numbered_files(fdir, f"{rec.uid}_", ".png", problems, rec.uid),
                       masks=numbered_files(mdir, f"{rec.uid}_", ".png", problems, rec.uid),
                       mask_format="binary",
                       mask_path_of=lambda n, d=mdir, v=rec.uid: d / f"{v}_{n}.png",
                       masks_required="first" if rec.split == "train" else "all",
                       audio=audio.get(rec.uid, Path(audio_dir) / f"{rec.uid}.wav"))
    return rows.table()


def s4_labels(index: pd.DataFrame, label2idx: dict[str, int]) -> np.ndarray:
    """(V, K) float32 one-hot video labels: the video's category (column = class index - 1).

    Raises:
        DataError: a category outside ``label2idx``.
    """
    out = np.zeros((len(index), len(label2idx) - 1), dtype=np.float32)
    for video, (uid, category) in enumerate(zip(index["uid"], index["category"])):
        if category not in label2idx:
            raise DataError(f"{CSV_NAME}: video {uid}: category {category!r} is not a class")
        out[video, label2idx[category] - 2] = 1.0
    return out
