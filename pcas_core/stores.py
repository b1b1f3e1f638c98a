"""HDF5 feature stores that carry data between stages: their schema, writer and reader.

Every store is one HDF5 file whose rows are either videos or frames of the dataset:

- ``uid``   (R,) UTF-8 str: the video's ``uid`` from ``metadata.csv``.
- ``frame`` (R,) int32: frame number (the ``N`` of ``frames/N.jpg``); -1 in per-video stores.
- ``split`` (R,) UTF-8 str: ``train`` / ``val`` / ``test``.

plus the datasets of its kind below (R = rows; shapes after R are fixed per store):

============== ====== ================= ================================================ =======
store          rows   dataset           shape / dtype                                    written by
============== ====== ================= ================================================ =======
fbank          video  fbank             (V, L, n_mels) float32, AST-normalised fbank     fbank
               video  n_steps           (V,) int32, frames (= seconds) of the video
visual         frame  pooled_patch      (M, D) float32, v_t = mean of patch tokens       train_visual
               frame  class_token       (M, D) float32, c_t
               frame  logits            (M, 70) float32, frame logits (CAM head)
audio          frame  audio_token       (M, Da) float32, a_t, pooled audio patch token    train_audio
               frame  logits            (M, 70) float32, step logits s_t
maps           frame  cam               (M, 70, h, w) float16, raw CAM_k per class       align
               frame  sounding          (M, h, w) float32, S_t in [0, 1]
pseudo_masks   frame  mask              (M, H, W) uint8, class index, 255 = ignore       pseudo_masks
============== ====== ================= ================================================ =======

File attributes: ``kind`` (the store name above), ``schema_version`` (:data:`SCHEMA_VERSION`; a
store of another version is refused with a message that says which stage to rerun), ``params``
(JSON of the parameters that made it) and ``pcas_version``. Writes go through
:func:`pcas_core.atomic.atomic_path`, so a stage killed mid-write leaves the previous store.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from pcas_core.atomic import atomic_path

__all__ = ["SCHEMAS", "SCHEMA_VERSION", "write_store", "read_store", "store_rows", "read_rows",
           "read_store_attrs"]

#: Version of the layout in this docstring; bump it whenever a dataset, dtype or meaning changes.
SCHEMA_VERSION = 2

#: kind -> (row unit, {dataset: (ndim including rows, dtype)})
SCHEMAS: dict[str, tuple[str, dict[str, tuple[int, str]]]] = {
    "fbank": ("video", {"fbank": (3, "float32"), "n_steps": (1, "int32")}),
    "visual": ("frame", {"pooled_patch": (2, "float32"), "class_token": (2, "float32"),
                         "logits": (2, "float32")}),
    "audio": ("frame", {"audio_token": (2, "float32"), "logits": (2, "float32")}),
    "maps": ("frame", {"cam": (4, "float16"), "sounding": (3, "float32")}),
    "pseudo_masks": ("frame", {"mask": (3, "uint8")}),
}

_STR = h5py.string_dtype("utf-8")


def _keys_frame(keys: pd.DataFrame, unit: str, where: str) -> pd.DataFrame:
    need = ["uid", "split"] + (["frame"] if unit == "frame" else [])
    missing = [c for c in need if c not in keys.columns]
    if missing:
        raise ValueError(f"{where}: row keys lack columns {missing}")
    out = keys[need].reset_index(drop=True).copy()
    if unit == "video":
        out["frame"] = -1
    return out


def write_store(path: Path, kind: str, keys: pd.DataFrame, data: dict[str, np.ndarray],
                params: dict[str, Any]) -> None:
    """Write a store of ``kind`` atomically.

    Args:
        path: the ``.h5`` file to create (replaced if it exists).
        kind: one of :data:`SCHEMAS`.
        keys: one row per store row, columns ``uid``, ``split`` and, for frame stores, ``frame``.
        data: every dataset of the kind's schema, first dimension = ``len(keys)``; cast to the
            schema dtype.
        params: the parameters that produced the store (saved as JSON in the ``params`` attr).

    Raises:
        ValueError: unknown kind, missing or extra dataset, wrong rank or row count.
    """
    if kind not in SCHEMAS:
        raise ValueError(f"unknown store kind '{kind}', expected one of {sorted(SCHEMAS)}")
    unit, schema = SCHEMAS[kind]
    keys = _keys_frame(keys, unit, f"{path} ({kind})")
    if set(data) != set(schema):
        raise ValueError(f"{path} ({kind}): datasets {sorted(data)} != schema {sorted(schema)}")
    for name, (ndim, _) in schema.items():
        arr = data[name]
        if arr.ndim != ndim or arr.shape[0] != len(keys):
            raise ValueError(f"{path} ({kind}): dataset '{name}' has shape {arr.shape}, expected "
                             f"{ndim} dims with {len(keys)} rows")
    from pcas_core import __version__

    with atomic_path(Path(path)) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["kind"] = kind
        f.attrs["schema_version"] = SCHEMA_VERSION
        f.attrs["params"] = json.dumps(params, sort_keys=True, default=str)
        f.attrs["pcas_version"] = __version__
        f.create_dataset("uid", data=keys["uid"].astype(str).to_numpy(dtype=object), dtype=_STR)
        f.create_dataset("split", data=keys["split"].astype(str).to_numpy(dtype=object), dtype=_STR)
        f.create_dataset("frame", data=keys["frame"].to_numpy(dtype=np.int32))
        for name, (_, dtype) in schema.items():
            arr = np.ascontiguousarray(data[name], dtype=dtype)
            chunks = (1,) + arr.shape[1:] if arr.ndim > 2 else True
            f.create_dataset(name, data=arr, chunks=chunks, compression="gzip", compression_opts=1)


def read_store(path: Path, kind: str,
               datasets: list[str] | None = None) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Read a store written by :func:`write_store`.

    Args:
        path: the ``.h5`` file.
        kind: the expected kind; a file of another kind is an error.
        datasets: which datasets to load (default: all of the schema).

    Returns:
        ``(keys, data)``: keys has columns ``uid``, ``frame``, ``split`` (one row per store row);
        data maps dataset name to a NumPy array with the schema dtype.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: not a pcas store, a store of another kind or schema version, or a dataset
            missing (the message names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: store not found (run the stage that writes '{kind}')")
    names = list(SCHEMAS[kind][1]) if datasets is None else datasets
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise ValueError(f"{path}: not a readable HDF5 file ({e})") from e
    with f:
        found = f.attrs.get("kind")
        if found != kind:
            raise ValueError(f"{path}: expected a '{kind}' store, file says kind={found!r}")
        version = int(f.attrs.get("schema_version", 1))
        if version != SCHEMA_VERSION:
            raise ValueError(
                f"{path}: '{kind}' store has schema version {version} (pcas "
                f"{f.attrs.get('pcas_version', '?')}), this pcas reads version {SCHEMA_VERSION}; "
                f"rebuild it with the stage that writes it (dvc repro -f <stage>)")
        missing = [n for n in ["uid", "frame", "split", *names] if n not in f]
        if missing:
            raise ValueError(f"{path}: '{kind}' store lacks datasets {missing}")
        keys = pd.DataFrame({
            "uid": f["uid"].asstr()[:], "frame": f["frame"][:], "split": f["split"].asstr()[:],
        })
        data = {n: f[n][:] for n in names}
    return keys, data


def read_store_attrs(path: Path) -> dict[str, Any]:
    """Return a store's ``params`` attribute (decoded JSON) and ``kind``."""
    with h5py.File(path, "r") as f:
        return {"kind": f.attrs["kind"], "params": json.loads(f.attrs["params"])}


def store_rows(keys: pd.DataFrame, wanted: pd.DataFrame, *, source: Path) -> np.ndarray:
    """Row numbers of ``keys`` (a store's keys) matching each row of ``wanted``.

    Matching is on ``uid`` and, when ``wanted`` has a ``frame`` column and the store is per frame,
    on ``frame`` too; for a per-video store (frame = -1) only ``uid`` is used.

    Returns:
        (len(wanted),) int64 row indices into the store.

    Raises:
        ValueError: some wanted rows are not in the store (names the store file and an example),
            which means the store was built from another dataset or split selection.
    """
    per_video = bool((keys["frame"] == -1).all())
    on = ["uid"] if per_video or "frame" not in wanted.columns else ["uid", "frame"]
    index = pd.Series(np.arange(len(keys)), index=pd.MultiIndex.from_frame(keys[on]))
    if not index.index.is_unique:
        raise ValueError(f"{source}: duplicate rows for keys {on}")
    look = pd.MultiIndex.from_frame(wanted[on].astype({"uid": str}))
    rows = index.reindex(look)
    if rows.isna().any():
        bad = wanted[on][rows.isna().to_numpy()].iloc[0].to_dict()
        raise ValueError(f"{source}: {int(rows.isna().sum())} requested rows are not in the store, "
                         f"e.g. {bad}; rebuild it from the same dataset")
    return rows.to_numpy(dtype=np.int64)


def read_rows(path: Path, kind: str, wanted: pd.DataFrame, datasets: list[str]) -> dict[str, np.ndarray]:
    """Datasets of a store at the rows matching ``wanted`` (:func:`read_store` then
    :func:`store_rows`): name -> array whose first dimension is ``len(wanted)``.

    Raises:
        FileNotFoundError / ValueError: as :func:`read_store` and :func:`store_rows`.
    """
    keys, data = read_store(path, kind, datasets)
    rows = store_rows(keys, wanted, source=Path(path))
    return {name: data[name][rows] for name in datasets}
