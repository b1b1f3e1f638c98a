"""Read AVSBench-object MS3 (multiple sound sources) as released.

Layout (``data.root`` = the release's ``Multi-sources`` folder; official loader
``avs_scripts/avs_ms3/dataloader.py``)::

    <root>/ms3_meta_data.csv     header row; columns BY POSITION: video name, split
    <root>/ms3_data/visual_frames/{vid}/{vid}.mp4_{1..5}.png      (no split level)
    <root>/ms3_data/gt_masks/{split}/{vid}/{vid}_{1..5}.png       palette PNGs, every split all 5
    <data.audio_dir>/.../{vid}.wav (or {vid}.mp4)    default <root>/ms3_data/audio_wav

Video-level labels: MS3's csv names no class, and weak supervision needs them, so they come from a
labels csv (``data.labels_csv``, default ``<root>/video_labels.csv``) with columns ``name`` (the
video name) and ``labels`` (class names separated by _ , ; or spaces, as AVSS's ``a_obj``), in the
label space of ``data.label2idx`` (default ``<root>/label2idx.json``; AVSS's 71 classes). The MS3
videos are AVSS's ``v1m`` subset, so the csv can be made from AVSS ``metadata.csv`` (``uid`` ->
``name``, ``a_obj`` -> ``labels``, rows with ``label == v1m``). Without it MS3 is refused.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pcas_core.data.audio_files import index_audio_dir
from pcas_core.data.labels import labels_from_names
from pcas_core.data.problems import DataError, Problems
from pcas_core.data.table import FrameRows, numbered_files, read_positional_csv

__all__ = ["CSV_NAME", "read_ms3_index", "ms3_frame_table", "read_labels_csv"]

CSV_NAME = "ms3_meta_data.csv"
LABELS_COLUMNS = ("name", "labels")


def read_ms3_index(root: Path, *, splits: list[str] | None = None) -> pd.DataFrame:
    """Read ``<root>/ms3_meta_data.csv`` by column position.

    Returns:
        One row per video, file order: ``uid``, ``split``, ``subset`` ("ms3"); filtered to
        ``splits`` (None = all).

    Raises:
        FileNotFoundError: the csv is missing.
        DataError: fewer than 2 columns, no rows, an unknown split, a repeated video name.
    """
    df = read_positional_csv(Path(root) / CSV_NAME, ("uid", "split"), subset="ms3",
                             folder="Multi-sources")
    if splits is not None:
        df = df[df["split"].isin(splits)]
    return df.reset_index(drop=True)


def ms3_frame_table(root: Path, index: pd.DataFrame, audio_dir: Path, problems: Problems, *,
                    frames_per_video: int | None = None) -> pd.DataFrame:
    """Frame table (:mod:`pcas_core.data.table`) of the videos in ``index``; frames 1..5, masks
    ``binary``, every split needs all 5 masks. Problems go to ``problems``."""
    data = Path(root) / "ms3_data"
    audio = index_audio_dir(audio_dir)
    rows = FrameRows(problems, frames_per_video)
    for rec in index.itertuples(index=False):
        fdir, mdir = data / "visual_frames" / rec.uid, data / "gt_masks" / rec.split / rec.uid
        rows.add_video(uid=rec.uid, subset="ms3", split=rec.split, frames_dir=fdir,
                       frames=numbered_files(fdir, f"{rec.uid}.mp4_", ".png", problems, rec.uid),
                       masks=numbered_files(mdir, f"{rec.uid}_", ".png", problems, rec.uid),
                       mask_format="binary",
                       mask_path_of=lambda n, d=mdir, v=rec.uid: d / f"{v}_{n}.png",
                       masks_required="all",
                       audio=audio.get(rec.uid, Path(audio_dir) / f"{rec.uid}.wav"))
    return rows.table()


def read_labels_csv(path: Path, uids: list[str], label2idx: dict[str, int],
                    problems: Problems) -> np.ndarray:
    """Video-level labels of ``uids`` from a labels csv (columns ``name``, ``labels``).

    Returns:
        (V, K) float32 multi-hot; K = ``len(label2idx) - 1``.

    Raises:
        FileNotFoundError: no such csv (the message says what MS3 needs and why).
        DataError: a required column is missing or a video name repeats.
        A video missing from the csv, or a class name not in ``label2idx``, is recorded as an
        error of that video in ``problems``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: MS3 video-level labels not found. MS3's csv names no class; give a csv "
            "with columns name,labels (class names of label2idx.json, separated by _ , ; or "
            "spaces), e.g. from AVSBench-semantic metadata.csv (v1m rows: uid -> name, a_obj -> "
            "labels), as data.labels_csv")
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in LABELS_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{path}: required column(s) {missing} missing (have {list(df.columns)})")
    if df["name"].duplicated().any():
        raise DataError(f"{path}: video {df.loc[df['name'].duplicated(), 'name'].iloc[0]} "
                        "listed twice")
    cells = dict(zip(df["name"], df["labels"]))
    for uid in uids:
        if uid not in cells:
            problems.error(uid, path, "video has no row in the labels csv")
    return labels_from_names(uids, [cells.get(u, "") for u in uids], label2idx,
                             source=str(path), problems=problems)
