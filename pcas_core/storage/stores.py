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
head_rows      frame  tokens            (M, N, D) float16 (or float32), the head's input  evaluate
               frame  target            (M, S, S) uint8, pseudo-mask at train_size
               frame  audio             (M, A) float32, what a conditioned head hears
               frame  allowed           (M, C) bool, the classes the head may predict
trunk_cells    video  cells             (V, N, 512) float32, frozen aisfx trunk cells     train_audio
============== ====== ================= ================================================ =======

``head_rows`` and ``trunk_cells``: scratch stores of ``evaluate``'s training frames and
``train_audio``'s frozen-trunk cells (not DVC outputs), read in random rows every training step,
so uncompressed (:data:`RANDOM_ACCESS`).

File attributes: ``kind`` (the store name above), ``schema_version`` (:data:`SCHEMA_VERSION`; a
store of another version is refused with a message that says which stage to rerun), ``params``
(JSON of the parameters that made it) and ``pcas_version``. Writes go through
:func:`pcas_core.storage.atomic.atomic_path`, so a stage killed mid-write leaves the previous store.

Large stores are written and read in row ranges (:func:`store_writer`, :func:`open_store`), so
memory does not grow with the dataset; every dataset is chunked by row (gzip level 1).
"""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from pcas_core.storage.atomic import atomic_path

__all__ = ["SCHEMAS", "SCHEMA_VERSION", "StoreWriter", "store_writer", "write_store_batches", "concat_rows",
           "write_store", "StoreReader", "open_store", "read_store", "store_rows", "read_rows",
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
    "head_rows": ("frame", {"tokens": (3, "any_float"), "target": (3, "uint8"),
                            "audio": (2, "float32"), "allowed": (2, "bool")}),
    "trunk_cells": ("video", {"cells": (3, "float32")}),
}
ANY_FLOAT = "any_float"  # schema dtype: stored as written, float16 or float32
RANDOM_ACCESS = ("head_rows", "trunk_cells")  # kinds read in random rows: uncompressed, a chunk per row

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


class StoreWriter:
    """Rows of a store being written (see :func:`store_writer`): datasets are created at their
    full size and filled in row ranges, so a stage never holds a whole store in memory."""

    def __init__(self, f: h5py.File, path: Path, kind: str, n_rows: int,
                 shapes: dict[str, tuple[int, ...]], dtypes: dict[str, str] | None = None) -> None:
        self.path, self.kind, self.n_rows = path, kind, n_rows
        self._f = f
        self._filled = {name: 0 for name in shapes}
        self._cursor = 0
        for name, (ndim, dtype) in SCHEMAS[kind][1].items():
            shape = (n_rows, *shapes[name])
            if len(shape) != ndim:
                raise ValueError(f"{path} ({kind}): dataset '{name}' has row shape {shapes[name]}, "
                                 f"expected {ndim - 1} dims after the rows")
            if dtype == ANY_FLOAT:
                dtype = (dtypes or {}).get(name, "float32")
                if dtype not in ("float16", "float32"):
                    raise ValueError(f"{path} ({kind}): dataset '{name}' is stored as float16 or "
                                     f"float32, got {dtype}")
            # a chunk per row; HDF5 cannot chunk an empty dataset
            chunks = None if 0 in shape else (1,) + shape[1:] if ndim > 2 else True
            gzip = chunks is not None and kind not in RANDOM_ACCESS
            f.create_dataset(name, shape=shape, dtype=dtype, chunks=chunks,
                             compression="gzip" if gzip else None,
                             compression_opts=1 if gzip else None)

    def write(self, start: int, data: dict[str, np.ndarray]) -> None:
        """Write rows ``start .. start + n - 1`` of the named datasets (cast to the schema dtype).

        Raises:
            ValueError: unknown dataset, rows out of range or a wrong row shape.
        """
        for name, arr in data.items():
            if name not in self._filled:
                raise ValueError(f"{self.path} ({self.kind}): no dataset '{name}' in the schema")
            ds = self._f[name]
            arr = np.asarray(arr)
            if start < 0 or start + len(arr) > self.n_rows or arr.shape[1:] != ds.shape[1:]:
                raise ValueError(f"{self.path} ({self.kind}): rows {start}..{start + len(arr) - 1} "
                                 f"of '{name}' with row shape {arr.shape[1:]} do not fit "
                                 f"{ds.shape}")
            ds[start:start + len(arr)] = arr.astype(ds.dtype, copy=False)
            self._filled[name] += len(arr)

    def append(self, data: dict[str, np.ndarray]) -> None:
        """Write the next rows (after those appended before) of every dataset in ``data``."""
        n = {len(a) for a in data.values()}
        if len(n) != 1:
            raise ValueError(f"{self.path} ({self.kind}): appended datasets differ in rows {n}")
        self.write(self._cursor, data)
        self._cursor += n.pop()

    def check_complete(self) -> None:
        """Raise ``ValueError`` unless every dataset got exactly ``n_rows`` rows."""
        short = {n: c for n, c in self._filled.items() if c != self.n_rows}
        if short:
            raise ValueError(f"{self.path} ({self.kind}): rows written {short}, expected "
                             f"{self.n_rows} each")


@contextlib.contextmanager
def store_writer(path: Path, kind: str, keys: pd.DataFrame, shapes: dict[str, tuple[int, ...]],
                 params: dict[str, Any], dtypes: dict[str, str] | None = None) -> Iterator[StoreWriter]:
    """Write a store of ``kind`` in row ranges, atomically (the file appears when the block ends
    without error and every row of every dataset was written).

    Args:
        path: the ``.h5`` file to create (replaced if it exists).
        kind: one of :data:`SCHEMAS`.
        keys: one row per store row, columns ``uid``, ``split`` and, for frame stores, ``frame``.
        shapes: each dataset's shape after the row axis, e.g. ``{"mask": (224, 224)}``.
        params: the parameters that produced the store (saved as JSON in the ``params`` attr).
        dtypes: dtype of each :data:`ANY_FLOAT` dataset (default float32).

    Yields:
        A :class:`StoreWriter`; call ``write(start, {name: rows})``.

    Raises:
        ValueError: unknown kind, missing or extra dataset, wrong rank, rows missing at the end.
    """
    if kind not in SCHEMAS:
        raise ValueError(f"unknown store kind '{kind}', expected one of {sorted(SCHEMAS)}")
    unit, schema = SCHEMAS[kind]
    keys = _keys_frame(keys, unit, f"{path} ({kind})")
    if set(shapes) != set(schema):
        raise ValueError(f"{path} ({kind}): datasets {sorted(shapes)} != schema {sorted(schema)}")
    from pcas_core import __version__

    with atomic_path(Path(path)) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["kind"] = kind
        f.attrs["schema_version"] = SCHEMA_VERSION
        f.attrs["params"] = json.dumps(params, sort_keys=True, default=str)
        f.attrs["pcas_version"] = __version__
        f.create_dataset("uid", data=keys["uid"].astype(str).to_numpy(dtype=object), dtype=_STR)
        f.create_dataset("split", data=keys["split"].astype(str).to_numpy(dtype=object), dtype=_STR)
        f.create_dataset("frame", data=keys["frame"].to_numpy(dtype=np.int32))
        writer = StoreWriter(f, Path(path), kind, len(keys), shapes, dtypes)
        yield writer
        writer.check_complete()


def write_store_batches(path: Path, kind: str, keys: pd.DataFrame,
                        batches: Iterable[dict[str, np.ndarray]], params: dict[str, Any]) -> None:
    """Write a store of ``kind`` atomically from consecutive batches of rows (each a dict of every
    dataset, rows in ``keys`` order), holding one batch at a time.

    Raises:
        ValueError: as :func:`store_writer`; no batch, or the batches do not add up to
            ``len(keys)`` rows.
    """
    batches = iter(batches)
    first = next(batches, None)
    if first is None:
        raise ValueError(f"{path} ({kind}): no rows to write")
    with store_writer(path, kind, keys, {n: a.shape[1:] for n, a in first.items()}, params,
                      {n: str(np.asarray(a).dtype) for n, a in first.items()}) as out:
        for batch in itertools.chain([first], batches):
            out.append(batch)


def concat_rows(batches: Iterable[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """A store pass's consecutive batches of rows (each a dict of arrays, as
    :func:`write_store_batches` takes them) joined into whole arrays, in memory.

    Raises:
        ValueError: no batch.
    """
    parts = list(batches)
    if not parts:
        raise ValueError("no rows to join")
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


def write_store(path: Path, kind: str, keys: pd.DataFrame, data: dict[str, np.ndarray],
                params: dict[str, Any]) -> None:
    """Write a store of ``kind`` atomically, all rows at once (:func:`store_writer` writes it in
    row ranges).

    Args:
        path, kind, keys, params: as :func:`store_writer`.
        data: every dataset of the kind's schema, first dimension = ``len(keys)``; cast to the
            schema dtype.

    Raises:
        ValueError: unknown kind, missing or extra dataset, wrong rank or row count.
    """
    wrong = {n: a.shape for n, a in data.items() if not a.ndim or len(a) != len(keys)}
    if wrong:
        raise ValueError(f"{path} ({kind}): datasets {wrong} need {len(keys)} rows")
    with store_writer(path, kind, keys, {n: a.shape[1:] for n, a in data.items()}, params,
                      {n: str(a.dtype) for n, a in data.items()}) as out:
        out.write(0, data)


class StoreReader:
    """An open store (see :func:`open_store`): its row keys, and rows of its datasets on demand.

    Attributes:
        path: the file. kind: the store kind. keys: columns ``uid``, ``frame``, ``split``.
    """

    def __init__(self, f: h5py.File, path: Path, kind: str) -> None:
        self._f, self.path, self.kind = f, path, kind
        self.keys = pd.DataFrame({
            "uid": f["uid"].asstr()[:], "frame": f["frame"][:], "split": f["split"].asstr()[:],
        })

    def shape(self, name: str) -> tuple[int, ...]:
        """Full shape of dataset ``name`` (rows first)."""
        return tuple(self._f[name].shape)

    def rows(self, name: str, rows: np.ndarray | slice) -> np.ndarray:
        """Rows of dataset ``name`` in the order given (any order, repeats allowed).

        Reads only the rows asked for: the span ``min .. max`` in one slice when the rows fill at
        least half of it (e.g. a chunk of a store written in frame-table order), otherwise the
        sorted distinct rows, a slice per run of consecutive rows (h5py's point selection reads
        rows of one chunk each some 50 times slower: ``benchmarks/head_rows.py``).

        Args:
            name: a dataset of the schema.
            rows: (R,) int row numbers, or a slice.

        Returns:
            (R, ...) array with the schema dtype.
        """
        ds = self._f[name]
        if isinstance(rows, slice):
            return ds[rows]
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size == 0:
            return np.empty((0, *ds.shape[1:]), dtype=ds.dtype)
        lo, hi = int(rows.min()), int(rows.max()) + 1
        if lo < 0 or hi > ds.shape[0]:
            raise IndexError(f"{self.path}: rows {lo}..{hi - 1} outside 0..{ds.shape[0] - 1}")
        if hi - lo <= 2 * rows.size:
            return ds[lo:hi][rows - lo]
        unique, inverse = np.unique(rows, return_inverse=True)
        runs = np.split(unique, np.flatnonzero(np.diff(unique) != 1) + 1)
        return np.concatenate([ds[run[0]:run[-1] + 1] for run in runs])[inverse]

    def read(self, names: list[str] | None = None) -> dict[str, np.ndarray]:
        """Whole datasets (default: all of the schema)."""
        return {n: self._f[n][:] for n in (list(SCHEMAS[self.kind][1]) if names is None else names)}


@contextlib.contextmanager
def open_store(path: Path, kind: str, datasets: list[str] | None = None) -> Iterator[StoreReader]:
    """Open a store written by :func:`write_store` / :func:`store_writer` for reading in rows.

    Args:
        path: the ``.h5`` file.
        kind: the expected kind; a file of another kind is an error.
        datasets: datasets that must be present (default: all of the schema).

    Yields:
        A :class:`StoreReader` (valid inside the block).

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
        yield StoreReader(f, path, kind)


def read_store(path: Path, kind: str,
               datasets: list[str] | None = None) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Read whole datasets of a store written by :func:`write_store` (:func:`open_store` reads
    rows on demand).

    Args:
        path: the ``.h5`` file.
        kind: the expected kind; a file of another kind is an error.
        datasets: which datasets to load (default: all of the schema).

    Returns:
        ``(keys, data)``: keys has columns ``uid``, ``frame``, ``split`` (one row per store row);
        data maps dataset name to a NumPy array with the schema dtype.

    Raises:
        FileNotFoundError / ValueError: as :func:`open_store`.
    """
    with open_store(path, kind, datasets) as store:
        return store.keys, store.read(datasets)


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
    """Datasets of a store at the rows matching ``wanted`` (:func:`store_rows`), reading only
    those rows (:meth:`StoreReader.rows`): name -> array whose first dimension is
    ``len(wanted)``.

    Raises:
        FileNotFoundError / ValueError: as :func:`open_store` and :func:`store_rows`.
    """
    with open_store(path, kind, datasets) as store:
        rows = store_rows(store.keys, wanted, source=Path(path))
        return {name: store.rows(name, rows) for name in datasets}
