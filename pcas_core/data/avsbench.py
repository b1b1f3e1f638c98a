"""Read the AVSBench-semantic (AVSS) layout: metadata, frames, colour masks, audio paths, labels.

Layout (as released; the bundled demo dataset uses the same one)::

    <root>/metadata.csv                  vid,uid,s_min,s_sec,a_obj,split,label (one row per video)
    <root>/label2idx.json                71 entries, "background": 1 ... (class index = value - 1)
    <root>/<label>/<uid>/frames/N.jpg    N = 0, 1, ... (one frame per second)
    <root>/<label>/<uid>/audio.wav       16 kHz mono
    <root>/<label>/<uid>/labels_rgb/N.png       VOC-palette colour masks (any PNG mode)
    <root>/<label>/<uid>/labels_semantic/N.png  (some releases) single-channel class-index masks

Frames per video: 5 (``v1s``, ``v1m``) or 10 (``v2``). Masks: every frame of a val/test video
(the official loader asserts it); a train video needs its first frame's mask (``v1s`` train has
only that one). ``labels_rgb`` is preferred over ``labels_semantic`` when both exist. Geometry and
mask decoding: :mod:`pcas_core.data.images`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from pcas_core.data.images import SPLIT_MODES, load_frame, load_mask
from pcas_core.data.labels import class_names, frame_labels, labels_from_masks, labels_from_names
from pcas_core.data.problems import DataError, Problems
from pcas_core.data.table import SPLITS, FrameRows, check_index, numbered_files

__all__ = [
    "SPLITS", "SUBSETS", "SPLIT_MODES", "read_label2idx", "class_names", "read_metadata",
    "frame_table", "load_frame", "load_mask", "video_labels", "frame_labels",
]

SUBSETS = ("v1s", "v1m", "v2")

_REQUIRED_COLUMNS = ("uid", "split", "label")


def read_label2idx(path: Path) -> dict[str, int]:
    """Read and validate a ``label2idx.json`` (``path``: the file, or a folder holding it).

    Returns:
        Mapping class name -> 1-based id (N entries, ids 1..N unique, "background" -> 1; AVSS has
        N = 71). Class index of a name is ``id - 1``.

    Raises:
        FileNotFoundError: if the file is missing.
        ValueError: not a JSON object of N <= 256 unique ids 1..N with "background" = 1.
    """
    path = Path(path)
    path = path / "label2idx.json" if path.is_dir() or not path.suffix else path
    if not path.is_file():
        raise FileNotFoundError(f"{path}: label2idx.json not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(data, dict) or not all(isinstance(v, int) for v in data.values()):
        raise ValueError(f"{path}: expected a JSON object of class name -> integer id")
    if not 2 <= len(data) <= 256:
        raise ValueError(f"{path}: expected 2..256 entries (AVSS: 71), found {len(data)}")
    if sorted(data.values()) != list(range(1, len(data) + 1)):
        raise ValueError(f"{path}: ids must be exactly 1..{len(data)}, each once")
    if data.get("background") != 1:
        raise ValueError(f"{path}: 'background' must map to 1, got {data.get('background')}")
    return dict(data)


def read_metadata(
    root: Path, *, subsets: list[str] | None = None, splits: list[str] | None = None
) -> pd.DataFrame:
    """Read ``<root>/metadata.csv``, keeping file order, optionally filtered.

    Columns ``uid``, ``split``, ``label`` are required and read as str; ``a_obj`` (if present) is
    read as str with empty cells as ""; extra columns are kept as pandas parses them.

    Args:
        root: dataset root.
        subsets: keep rows whose ``label`` is in this list (``v1s``, ``v1m``, ``v2``); None = all.
        splits: keep rows whose ``split`` is in this list (``train``, ``val``, ``test``); None = all.

    Returns:
        DataFrame with a fresh 0..V-1 index (row i = video i downstream), plus a ``subset``
        column (= ``label``).

    Raises:
        FileNotFoundError: if metadata.csv is missing.
        DataError: a required column is missing, a split or label value is unknown, a
            (label, uid) pair repeats, the file has no rows, or ``subsets``/``splits`` name
            unknown values (the message names the file).
    """
    path = Path(root) / "metadata.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: metadata.csv not found")
    text_cols = {c: str for c in (*_REQUIRED_COLUMNS, "a_obj")}
    df = pd.read_csv(path, dtype=text_cols, keep_default_na=False, na_values={})
    for col in _REQUIRED_COLUMNS:
        if col not in df.columns:
            raise DataError(f"{path}: required column '{col}' is missing (have {list(df.columns)})")
    check_index(df, path, ["label", "uid"], subsets=SUBSETS, subset_column="label")
    for name, wanted, allowed in (("subsets", subsets, SUBSETS), ("splits", splits, SPLITS)):
        if wanted is not None and set(wanted) - set(allowed):
            raise DataError(f"read_metadata: unknown {name} {sorted(set(wanted) - set(allowed))}")
    keep = df["label"].isin(subsets if subsets is not None else df["label"])
    keep &= df["split"].isin(splits if splits is not None else SPLITS)
    return df[keep].reset_index(drop=True).assign(subset=lambda d: d["label"])


def frame_table(root: Path, metadata: pd.DataFrame, problems: Problems, *,
                frames_per_video: int | None = None) -> pd.DataFrame:
    """List every frame of every video in ``metadata`` (columns: :mod:`pcas_core.data.table`).

    Frames ``frames/N.jpg`` are sorted numerically (0, 1, ..., 9, 10). The mask of frame N is
    ``labels_rgb/N.png`` (format ``rgb``), else ``labels_semantic/N.png`` (``index``), else ""
    (unannotated). Problems (missing folder, audio or required mask, wrong frame count, badly
    named files) are recorded in ``problems`` with their paths; the rows are listed anyway.

    Args:
        root: dataset root.
        metadata: table from :func:`read_metadata` (row order defines ``video``).
        problems: collector of errors.
        frames_per_video: None = as released (5 for v1s/v1m, 10 for v2).
    """
    root = Path(root)
    rows = FrameRows(problems, frames_per_video)
    for rec in metadata[["uid", "split", "label"]].itertuples(index=False):
        vdir = root / rec.label / rec.uid
        masks = numbered_files(vdir / "labels_semantic", "", ".png", problems, rec.uid)
        fmt = {n: "index" for n in masks}
        rgb = numbered_files(vdir / "labels_rgb", "", ".png", problems, rec.uid)
        masks.update(rgb)
        fmt.update({n: "rgb" for n in rgb})
        if len(set(fmt.values())) > 1:
            problems.error(rec.uid, vdir, "frames annotated partly in labels_rgb, partly in "
                           "labels_semantic; use one of them")
        rows.add_video(uid=rec.uid, subset=rec.label, split=rec.split, frames_dir=vdir / "frames",
                       frames=numbered_files(vdir / "frames", "", ".jpg", problems, rec.uid),
                       masks=masks, mask_format=next(iter(fmt.values()), "rgb"),
                       mask_path_of=lambda n, d=vdir: d / "labels_rgb" / f"{n}.png",
                       masks_required="first" if rec.split == "train" else "all",
                       audio=vdir / "audio.wav")
    return rows.table()


def video_labels(metadata: pd.DataFrame, frames: pd.DataFrame, *, source: str,
                 label2idx: dict[str, int], palette: np.ndarray, off_palette: str = "background",
                 problems: Problems | None = None) -> np.ndarray:
    """AVSS video-level multi-hot labels (the weak supervision of PCAS).

    ``source="masks"``: :func:`pcas_core.data.labels.labels_from_masks`. ``source="a_obj"``: the
    class names of the ``a_obj`` metadata column (:func:`pcas_core.data.labels.labels_from_names`).

    Args:
        metadata: (V rows) table from :func:`read_metadata`.
        frames: table from :func:`frame_table` built on the same ``metadata``.
        source: "masks" or "a_obj".
        label2idx: class name -> 1-based id.
        palette: (N, 3) uint8 palette.
        off_palette: ``background`` | ``error`` (see :mod:`pcas_core.data.images`).
        problems: collector; None = raise at once on an unknown class name.

    Returns:
        (V, N - 1) float32; column k <-> class index k + 1.

    Raises:
        ValueError: unknown ``source``; ``a_obj`` column missing; mask decoding errors;
            DataError: unknown class names when ``problems`` is None.
    """
    if source == "masks":
        return labels_from_masks(frames, len(metadata), label2idx, palette,
                                 off_palette=off_palette, problems=problems)
    if source != "a_obj":
        raise ValueError(f"data.label_source must be 'masks' or 'a_obj', got {source!r}")
    if "a_obj" not in metadata.columns:
        raise DataError("metadata.csv: column 'a_obj' is missing, needed for label_source a_obj")
    own = problems if problems is not None else Problems()
    out = labels_from_names(list(metadata["uid"]), list(metadata["a_obj"]), label2idx,
                            source="metadata.csv a_obj", problems=own)
    if problems is None:
        own.raise_if_errors("metadata.csv")
    return out
