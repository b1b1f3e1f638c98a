"""Read the AVSBench-semantic (AVSS) layout: metadata, frames, colour masks, audio paths, labels.

Layout (as released; the bundled demo dataset uses the same one)::

    <root>/metadata.csv                  vid,uid,s_min,s_sec,a_obj,split,label (one row per video)
    <root>/label2idx.json                71 entries, "background": 1 ... (class index = value - 1)
    <root>/<label>/<uid>/frames/N.jpg    N = 0, 1, ... (one frame per second)
    <root>/<label>/<uid>/audio.wav       16 kHz mono
    <root>/<label>/<uid>/labels_rgb/N.png       RGB VOC-palette masks (may be absent for a frame)
    <root>/<label>/<uid>/labels_semantic/N.png  (some releases) single-channel class-index masks

Geometry (AVSBench): train resizes the short side to ``size`` then centre-crops; val/test resize
straight to ``size`` x ``size``; bilinear for images, nearest for masks (:data:`SPLIT_MODES`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
import numpy as np
import pandas as pd
from PIL import Image

from pcas_core.data.palette import IGNORE_INDEX, NUM_CLASSES, NUM_FG, rgb_to_index

__all__ = [
    "SPLITS", "SUBSETS", "SPLIT_MODES", "read_label2idx", "class_names", "read_metadata",
    "frame_table", "load_frame", "resize_frame", "load_mask", "video_labels", "frame_labels",
]

SPLITS = ("train", "val", "test")
SUBSETS = ("v1s", "v1m", "v2")
SPLIT_MODES = {"train": "crop", "val": "resize", "test": "resize"}
"""Frame/mask geometry per split: "crop" = short side to size + centre crop, "resize" = straight."""

_REQUIRED_COLUMNS = ("uid", "split", "label")
_A_OBJ_SEP = re.compile(r"[_,;\s]+")


def read_label2idx(root: Path) -> dict[str, int]:
    """Read and validate ``<root>/label2idx.json``.

    Returns:
        Mapping class name -> 1-based id (71 entries, ids 1..71 unique, "background" -> 1).
        Class index of a name is ``id - 1``.

    Raises:
        FileNotFoundError: if the file is missing.
        ValueError: if it is not a JSON object of 71 unique ids 1..71 with "background" = 1.
    """
    path = Path(root) / "label2idx.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: label2idx.json not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(data, dict) or not all(isinstance(v, int) for v in data.values()):
        raise ValueError(f"{path}: expected a JSON object of class name -> integer id")
    if len(data) != NUM_CLASSES:
        raise ValueError(f"{path}: expected {NUM_CLASSES} entries, found {len(data)}")
    if sorted(data.values()) != list(range(1, NUM_CLASSES + 1)):
        raise ValueError(f"{path}: ids must be exactly 1..{NUM_CLASSES}, each once")
    if data.get("background") != 1:
        raise ValueError(f"{path}: 'background' must map to 1, got {data.get('background')}")
    return dict(data)


def class_names(label2idx: dict[str, int]) -> list[str]:
    """Class names ordered by class index (``label2idx[name] - 1``); length 71, [0] = "background"."""
    names = [""] * len(label2idx)
    for name, idx in label2idx.items():
        names[idx - 1] = name
    return names


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
        DataFrame with a fresh 0..V-1 index (row i = video i downstream).

    Raises:
        FileNotFoundError: if metadata.csv is missing.
        ValueError: a required column is missing, a split value is not train/val/test, a
            (label, uid) pair repeats, or ``subsets``/``splits`` name unknown values.
    """
    path = Path(root) / "metadata.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: metadata.csv not found")
    text_cols = {c: str for c in (*_REQUIRED_COLUMNS, "a_obj")}
    df = pd.read_csv(path, dtype=text_cols, keep_default_na=False, na_values={})
    for col in _REQUIRED_COLUMNS:
        if col not in df.columns:
            raise ValueError(f"{path}: required column '{col}' is missing (have {list(df.columns)})")
    bad = sorted(set(df["split"]) - set(SPLITS))
    if bad:
        raise ValueError(f"{path}: unknown split value(s) {bad}; expected one of {list(SPLITS)}")
    dup = df.duplicated(["label", "uid"])
    if dup.any():
        raise ValueError(f"{path}: duplicated (label, uid) rows, e.g. uid {df.loc[dup, 'uid'].iloc[0]}")
    for name, wanted, allowed in (("subsets", subsets, SUBSETS), ("splits", splits, SPLITS)):
        if wanted is not None and set(wanted) - set(allowed):
            raise ValueError(f"read_metadata: unknown {name} {sorted(set(wanted) - set(allowed))}")
    keep = df["label"].isin(subsets if subsets is not None else df["label"])
    keep &= df["split"].isin(splits if splits is not None else SPLITS)
    return df[keep].reset_index(drop=True)


def _numbered(folder: Path, suffix: str) -> dict[int, Path]:
    """Map N -> folder/N<suffix> for files named by an integer; other names raise ValueError."""
    out: dict[int, Path] = {}
    for p in folder.glob(f"*{suffix}"):
        if not p.stem.isdigit():
            raise ValueError(f"{p}: file name must be a frame number N{suffix}")
        out[int(p.stem)] = p
    return out


def frame_table(root: Path, metadata: pd.DataFrame) -> pd.DataFrame:
    """List every frame of every video in ``metadata``.

    Frames are sorted numerically (0, 1, ..., 9, 10). The mask of frame N is
    ``labels_rgb/N.png``, else ``labels_semantic/N.png``, else "" (unannotated, e.g. AVSBench v1s
    train frames after the first).

    Args:
        root: dataset root.
        metadata: table from :func:`read_metadata` (row order defines ``video``).

    Returns:
        DataFrame, one row per frame, columns ``uid`` (str), ``subset`` (str, the ``label``
        column), ``split`` (str), ``video`` (int, 0-based row in ``metadata``), ``frame`` (int),
        ``frame_path`` (str), ``mask_path`` (str or ""), ``audio_path`` (str).

    Raises:
        FileNotFoundError: a video's ``frames/`` folder is missing or holds no .jpg, or its
            ``audio.wav`` is missing.
        ValueError: a frame or mask file is not named by an integer.
    """
    root = Path(root)
    rows = []
    for video, rec in enumerate(metadata[["uid", "split", "label"]].itertuples(index=False)):
        vdir = root / rec.label / rec.uid
        fdir = vdir / "frames"
        if not fdir.is_dir():
            raise FileNotFoundError(f"{fdir}: frames folder not found")
        frames = _numbered(fdir, ".jpg")
        if not frames:
            raise FileNotFoundError(f"{fdir}: no .jpg frames in folder")
        audio = vdir / "audio.wav"
        if not audio.is_file():
            raise FileNotFoundError(f"{audio}: audio file not found")
        masks = _numbered(vdir / "labels_semantic", ".png")
        masks.update(_numbered(vdir / "labels_rgb", ".png"))
        for n in sorted(frames):
            rows.append((rec.uid, rec.label, rec.split, video, n, str(frames[n]),
                         str(masks[n]) if n in masks else "", str(audio)))
    cols = ["uid", "subset", "split", "video", "frame", "frame_path", "mask_path", "audio_path"]
    return pd.DataFrame(rows, columns=cols).astype({"video": np.int64, "frame": np.int64})


def _geometry(img: Image.Image, size: int, mode: str, resample: int) -> Image.Image:
    """Apply AVSBench geometry: "crop" (short side -> size, centre crop) or "resize" (size x size)."""
    if mode == "resize":
        return img.resize((size, size), resample)
    if mode != "crop":
        raise ValueError(f"geometry mode must be 'crop' or 'resize', got {mode!r}")
    w, h = img.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    img = img.resize((nw, nh), resample)
    left, top = (nw - size) // 2, (nh - size) // 2
    return img.crop((left, top, left + size, top + size))


def load_frame(path: str | Path, size: int, mode: str) -> np.ndarray:
    """Load a frame as RGB with AVSBench geometry.

    Args:
        path: image file (any PIL-readable format).
        size: output side in pixels.
        mode: "crop" (resize short side to ``size`` bilinearly, then centre crop; train) or
            "resize" (bilinear resize to ``size`` x ``size``; val/test).

    Returns:
        (size, size, 3) uint8 RGB.

    Raises:
        ValueError: the file cannot be read as an image, or ``mode`` is unknown.
    """
    try:
        with Image.open(path) as im:
            img = im.convert("RGB")
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: cannot read image ({err})") from err
    return np.asarray(_geometry(img, size, mode, Image.BILINEAR))


def resize_frame(rgb: np.ndarray, size: int, mode: str = "resize") -> np.ndarray:
    """An in-memory (H, W, 3) uint8 RGB frame with AVSBench geometry, exactly as
    :func:`load_frame` treats a decoded image file (``mode`` as there; "resize" = val/test).

    Returns:
        (size, size, 3) uint8 RGB.
    """
    return np.asarray(_geometry(Image.fromarray(rgb), size, mode, Image.BILINEAR))


def _decode_mask(path: str | Path, palette: np.ndarray) -> np.ndarray:
    """Read a mask at its original resolution -> (H, W) uint8 class indices (see load_mask)."""
    try:
        img = Image.open(path)
        img.load()
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: cannot read mask ({err})") from err
    if img.mode in ("L", "P"):
        index = np.asarray(img, dtype=np.uint8)
        bad = (index >= len(palette)) & (index != IGNORE_INDEX)
        if bad.any():
            raise ValueError(f"{path}: class indices {np.unique(index[bad])[:5].tolist()} outside "
                             f"0..{len(palette) - 1} (or {IGNORE_INDEX})")
        return index.copy()
    if img.mode not in ("RGB", "RGBA"):
        raise ValueError(f"{path}: unsupported mask image mode {img.mode!r} (need RGB, L or P)")
    return rgb_to_index(np.asarray(img.convert("RGB")), palette, source=str(path))


def load_mask(path: str | Path, size: int, mode: str, palette: np.ndarray) -> np.ndarray:
    """Load a mask as class indices with AVSBench geometry (nearest neighbour).

    RGB/RGBA PNGs (``labels_rgb``) are decoded by exact palette colour match at the original
    resolution; single-channel L or P PNGs (``labels_semantic`` style) are taken as class indices
    directly (a P image's palette is ignored; its pixel values are the indices). Geometry is then
    that of :func:`load_frame` with NEAREST resampling, so no new classes appear.

    Args:
        path: PNG file.
        size: output side in pixels.
        mode: "crop" or "resize" (see :func:`load_frame`).
        palette: (71, 3) uint8 palette from :func:`~pcas_core.data.palette.voc_palette`.

    Returns:
        (size, size) uint8 class indices (0 = background, ``IGNORE_INDEX`` kept as is).

    Raises:
        ValueError: unreadable file, unknown colour, index out of range, or unknown ``mode``.
    """
    index = _decode_mask(path, palette)
    return np.asarray(_geometry(Image.fromarray(index, mode="L"), size, mode, Image.NEAREST))


def _multi_hot(classes: np.ndarray) -> np.ndarray:
    """Class indices (any shape) -> (70,) float32 presence of foreground classes 1..70."""
    out = np.zeros(NUM_FG, dtype=np.float32)
    fg = classes[(classes > 0) & (classes < NUM_CLASSES)].astype(np.int64)
    out[np.unique(fg) - 1] = 1.0
    return out


def video_labels(
    metadata: pd.DataFrame,
    frames: pd.DataFrame,
    *,
    source: str,
    label2idx: dict[str, int],
    palette: np.ndarray,
) -> np.ndarray:
    """Video-level multi-hot labels (the weak supervision of PCAS).

    ``source="masks"``: a class is present if any pixel of any annotated frame's mask of the video
    has it (masks read at original resolution; presence only, no areas or locations: the standard
    weak-label protocol of weakly supervised AVS). ``source="a_obj"``: the class names of the
    ``a_obj`` metadata column, separated by "_", ",", ";" or whitespace ("background" is ignored).
    A video with no foreground class (no annotated frame, or empty ``a_obj``) gets an all-zero row.

    Args:
        metadata: (V rows) table from :func:`read_metadata`.
        frames: table from :func:`frame_table` built on the same ``metadata``.
        source: "masks" or "a_obj".
        label2idx: class name -> 1-based id.
        palette: (71, 3) uint8 palette.

    Returns:
        (V, 70) float32; column k <-> class index k + 1.

    Raises:
        ValueError: unknown ``source``; ``a_obj`` column missing or naming an unknown class (the
            message names metadata.csv and the uid); mask decoding errors.
    """
    n_videos = len(metadata)
    out = np.zeros((n_videos, NUM_FG), dtype=np.float32)
    if source == "masks":
        annotated = frames[frames["mask_path"] != ""]
        for video, group in annotated.groupby("video"):
            if not 0 <= video < n_videos:
                raise ValueError(f"frame table video {video} outside metadata's {n_videos} rows")
            for path in group["mask_path"]:
                out[video] = np.maximum(out[video], _multi_hot(_decode_mask(path, palette)))
        return out
    if source != "a_obj":
        raise ValueError(f"video_labels: source must be 'masks' or 'a_obj', got {source!r}")
    if "a_obj" not in metadata.columns:
        raise ValueError("metadata.csv: column 'a_obj' is missing, needed for source='a_obj'")
    for video, (uid, a_obj) in enumerate(zip(metadata["uid"], metadata["a_obj"])):
        text = "" if pd.isna(a_obj) else str(a_obj)
        for name in filter(None, _A_OBJ_SEP.split(text.strip())):
            if name not in label2idx:
                raise ValueError(f"metadata.csv: uid {uid}: unknown class {name!r} in a_obj {text!r}")
            if label2idx[name] > 1:
                out[video, label2idx[name] - 2] = 1.0
    return out


def frame_labels(frames: pd.DataFrame, palette: np.ndarray, size: int, mode: str) -> np.ndarray:
    """Per-frame multi-hot foreground presence after geometry (evaluation only).

    Args:
        frames: table from :func:`frame_table` (M rows).
        palette: (71, 3) uint8 palette.
        size: mask side in pixels after geometry.
        mode: "crop" or "resize" (see :func:`load_frame`).

    Returns:
        (M, 70) float32; row of NaN for a frame without a mask.

    Raises:
        ValueError: as :func:`load_mask`.
    """
    out = np.full((len(frames), NUM_FG), np.nan, dtype=np.float32)
    for i, path in enumerate(frames["mask_path"]):
        if path:
            out[i] = _multi_hot(load_mask(path, size, mode, palette))
    return out
