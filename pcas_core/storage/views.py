"""Rows of a store read lazily: as a tensor-like sequence, or as a map-style torch dataset.

Training code that takes whole tensors (``TensorDataset(fbank, ...)``, ``len(fbank)``,
``fbank[train]``) can be given a :class:`StoreRowsView` instead: it reads a row from the HDF5
file only when the row is indexed, so a store far larger than memory (AVSS fbank: 12,000 videos
x 1024 x 128 float32 = 6 GB) is streamed batch by batch. :class:`StoreDataset` gives a
``DataLoader`` the rows of several datasets of a store, a whole batch read at once (the head of
``evaluate``: its tokens, targets and audio, in shuffled batches).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from pcas_core.storage.stores import StoreReader, open_store

__all__ = ["StoreRowsView", "StoreDataset"]


class StoreRowsView:
    """Rows ``rows`` of dataset ``name`` of an open store, in that order.

    Behaves like a tensor where ``torch.utils.data.TensorDataset`` and loaders need it:
    ``len(view)``, ``view.size(0)``, ``view.shape``; ``view[i]`` (int) reads one row as a
    float32/int tensor; ``view[mask]`` (bool (R,) tensor or array), ``view[int array]`` and
    ``view[a:b]`` give a sub-view without reading anything.

    Args:
        store: an open :class:`pcas_core.storage.stores.StoreReader` (must stay open while used).
        name: a dataset of its schema.
        rows: (R,) int64 store row of each view row (e.g. from :func:`pcas_core.storage.stores.store_rows`).
    """

    def __init__(self, store: StoreReader, name: str, rows: np.ndarray) -> None:
        self.store, self.name = store, name
        self.rows = np.asarray(rows, dtype=np.int64)
        self._row_shape = store.shape(name)[1:]

    @property
    def shape(self) -> tuple[int, ...]:
        """(R, *row shape)."""
        return (len(self.rows), *self._row_shape)

    def size(self, dim: int | None = None) -> tuple[int, ...] | int:
        """As ``Tensor.size``."""
        return self.shape if dim is None else self.shape[dim]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)) or (torch.is_tensor(index) and index.ndim == 0):
            return torch.from_numpy(np.ascontiguousarray(
                self.store.rows(self.name, self.rows[int(index):int(index) + 1])[0]))
        if torch.is_tensor(index):
            index = index.numpy()
        return StoreRowsView(self.store, self.name, self.rows[index])


class StoreDataset(Dataset):
    """Datasets ``names`` of the store at ``path`` as a map-style torch dataset: item ``i`` is
    the tuple of row ``i`` of each, as tensors of the stored dtypes.

    A ``DataLoader`` with a batch sampler reads each batch at once (``__getitems__``: the
    batch's distinct rows in sorted order, :meth:`StoreReader.rows`, then put in the batch's
    order), so a shuffled batch costs one read per row and memory holds one batch. The file is
    opened on first use in each process (DataLoader workers open their own; no HDF5 handle
    crosses a fork).

    Args:
        path: a store file. kind: its kind. names: datasets of its schema, in item order.

    Raises:
        FileNotFoundError / ValueError: as :func:`pcas_core.storage.stores.open_store`.
    """

    def __init__(self, path: Path, kind: str, names: list[str]) -> None:
        self.path, self.kind, self.names = Path(path), kind, list(names)
        with open_store(self.path, kind, self.names) as store:
            self.n_rows = len(store.keys)
            self.row_shapes = {n: store.shape(n)[1:] for n in self.names}
            self.dtypes = {n: store.rows(n, slice(0, 0)).dtype for n in self.names}
        self._open: tuple[int, contextlib.ExitStack, StoreReader] | None = None

    def __len__(self) -> int:
        return self.n_rows

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_open": None}  # a spawned worker opens its own handle

    def _store(self) -> StoreReader:
        if self._open is None or self._open[0] != os.getpid():
            stack = contextlib.ExitStack()
            self._open = (os.getpid(), stack, stack.enter_context(
                open_store(self.path, self.kind, self.names)))
        return self._open[2]

    def close(self) -> None:
        """Close this process's handle (reopened on the next read)."""
        if self._open is not None and self._open[0] == os.getpid():
            self._open[1].close()
        self._open = None

    def __getitems__(self, index: list[int]) -> list[tuple[torch.Tensor, ...]]:
        store = self._store()
        rows = np.asarray(index, dtype=np.int64)
        columns = [torch.from_numpy(  # HDF5 cannot select rows of an empty dataspace
            store.rows(n, rows) if all(self.row_shapes[n]) else
            np.empty((len(rows), *self.row_shapes[n]), dtype=self.dtypes[n]))
            for n in self.names]
        return [tuple(c[i] for c in columns) for i in range(len(rows))]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        return self.__getitems__([int(i)])[0]
