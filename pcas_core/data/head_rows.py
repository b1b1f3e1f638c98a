"""The segmentation head's training rows on disk: written once, read in shuffled batches.

``evaluate`` trains its head on every training frame: the frozen aligned model's tokens, the
pseudo-mask brought to ``evaluate.train_size`` and what the head hears (its audio vector and the
classes it may predict). Held in memory they grow with the dataset: AVSBench-semantic in the
paper's setting has some 65,000 training frames of 196 tokens x 768 channels (38 GB in float32).
So the stage writes them once, batch by batch, to a scratch ``head_rows`` store
(:mod:`pcas_core.storage.stores`: uncompressed, one HDF5 chunk per row; tokens in
``evaluate.token_dtype``) and every training step reads its batch of rows from it
(:class:`pcas_core.storage.views.StoreDataset`: the batch's rows in sorted order, one read each).

The batches are exactly those of the in-memory loop: the same seeded permutation per epoch
(:func:`pcas_core.runtime.distributed.rank_batches`), so the head sees the same rows in the same
order whatever ``base.num_workers`` (DataLoader processes reading batches ahead) and whether its
rows come from the store or from memory (:func:`head_rows_in_memory`, for a handful of frames).
Reading a random row costs far less than recomputing it (a backbone forward of the frame, after
decoding it): ``python benchmarks/head_rows.py`` prints both.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from pcas_core.storage.stores import read_store_attrs
from pcas_core.storage.views import StoreDataset

__all__ = ["HEAD_ROWS", "TOKEN_DTYPES", "train_targets", "head_row_batches", "made_with",
           "open_head_rows", "head_rows_in_memory"]

#: datasets of a ``head_rows`` store, in the order of each item: tokens (N, D) float16/float32,
#: target (S, S) uint8, audio (A,) float32, allowed (C,) bool
HEAD_ROWS = ("tokens", "target", "audio", "allowed")
TOKEN_DTYPES = ("float16", "float32")


def train_targets(masks: np.ndarray, size: int) -> np.ndarray:
    """Pseudo-masks at the head's loss resolution: (m, H, W) uint8 class indices (255 ignored)
    -> (m, size, size) uint8, nearest-neighbour (``F.interpolate(mode="nearest")``)."""
    small = F.interpolate(torch.from_numpy(np.ascontiguousarray(masks))[:, None].float(),
                          size=(size, size), mode="nearest")[:, 0]
    return small.to(torch.uint8).numpy()


def head_row_batches(tokens: Iterable[torch.Tensor], masks: Callable[[slice], np.ndarray],
                     audio: Callable[[slice], tuple[torch.Tensor, torch.Tensor]], *,
                     train_size: int, token_dtype: str) -> Iterator[dict[str, np.ndarray]]:
    """The rows of a ``head_rows`` store, batch by batch in frame order (for
    :func:`pcas_core.storage.stores.write_store_batches`).

    Args:
        tokens: the frames' head input tokens, consecutive (B, N, D) float32 batches.
        masks: frame rows -> their (B, H, W) uint8 pseudo-masks.
        audio: frame rows -> their ((B, A) float32 audio vector, (B, C) bool allowed classes).
        train_size: side of the stored targets (:func:`train_targets`).
        token_dtype: ``float16`` | ``float32`` (:data:`TOKEN_DTYPES`).

    Yields:
        ``tokens``, ``target``, ``audio``, ``allowed`` of each batch.

    Raises:
        ValueError: an unknown ``token_dtype``, or finite tokens beyond float16's range (names
            ``evaluate.token_dtype``).
    """
    if token_dtype not in TOKEN_DTYPES:
        raise ValueError(f"evaluate.token_dtype must be one of {list(TOKEN_DTYPES)}, got "
                         f"{token_dtype!r}")
    start = 0
    for batch in tokens:
        rows = slice(start, start + len(batch))
        start = rows.stop
        with np.errstate(over="ignore"):  # checked below
            stored = batch.numpy().astype(token_dtype)
        if not np.isfinite(stored).all() and torch.isfinite(batch).all():
            raise ValueError(f"head tokens reach {float(batch.abs().max()):.4g}, beyond float16's "
                             "range (65504): set evaluate.token_dtype: float32")
        vector, allowed = audio(rows)
        yield {"tokens": stored, "target": train_targets(masks(rows), train_size),
               "audio": vector.numpy(), "allowed": allowed.numpy()}


def made_with(path: Path, made_by: dict[str, Any]) -> bool:
    """Whether the ``head_rows`` store at ``path`` exists and was written with ``made_by`` (the
    params and input files recorded as its ``params`` attribute), so a resumed run may reuse it."""
    if not Path(path).is_file():
        return False
    try:
        attrs = read_store_attrs(path)
    except (OSError, KeyError, ValueError):
        return False
    return attrs["kind"] == "head_rows" and attrs["params"] == json.loads(
        json.dumps(made_by, sort_keys=True, default=str))


def open_head_rows(path: Path) -> StoreDataset:
    """The ``head_rows`` store at ``path`` as a dataset of (tokens, target, audio, allowed) rows.

    Raises:
        FileNotFoundError / ValueError: no such store, or another kind or schema version.
    """
    return StoreDataset(path, "head_rows", list(HEAD_ROWS))


def head_rows_in_memory(tokens: torch.Tensor, masks: np.ndarray, train_size: int,
                        vector: torch.Tensor, allowed: torch.Tensor) -> TensorDataset:
    """The same rows as :func:`open_head_rows` gives, held in memory (a few frames: tests, a
    clip): tokens (M, N, D) float32, pseudo-masks (M, H, W) uint8 (targets at ``train_size``,
    :func:`train_targets`), audio vectors (M, A) float32 and allowed classes (M, C) bool.

    Raises:
        ValueError: the four do not have the same number of frames.
    """
    counts = {len(tokens), len(masks), len(vector), len(allowed)}
    if len(counts) != 1:
        raise ValueError(f"{len(tokens)} frames of tokens, {len(masks)} pseudo-masks, "
                         f"{len(vector)} audio vectors and {len(allowed)} allowed-class rows")
    return TensorDataset(tokens, torch.from_numpy(train_targets(masks, train_size)), vector,
                         allowed)
