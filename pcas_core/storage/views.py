"""Rows of a store dataset as a lazily read, tensor-like sequence.

Training code that takes whole tensors (``TensorDataset(fbank, ...)``, ``len(fbank)``,
``fbank[train]``) can be given a :class:`StoreRowsView` instead: it reads a row from the HDF5
file only when the row is indexed, so a store far larger than memory (AVSS fbank: 12,000 videos
x 1024 x 128 float32 = 6 GB) is streamed batch by batch.
"""

from __future__ import annotations

import numpy as np
import torch

from pcas_core.storage.stores import StoreReader

__all__ = ["StoreRowsView"]


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
