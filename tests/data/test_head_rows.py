"""The segmentation head's training rows on disk (pcas_core.data.head_rows, storage.views.StoreDataset):
written batch by batch, read in the in-memory loop's shuffled batches with any number of
DataLoader workers, the same training as from memory; float16 tokens refused beyond their range."""

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from pcas_core.data.head_rows import (head_row_batches, head_rows_in_memory, made_with,
                                      open_head_rows, train_targets)
from pcas_core.models.heads import SegmentationHead
from pcas_core.params import EvaluateConfig
from pcas_core.pipeline.evaluate import train_head
from pcas_core.runtime.distributed import rank_batches
from pcas_core.runtime.stage import RunEnv
from pcas_core.storage.stores import write_store_batches

M, N, D, C, SIZE = 23, 4, 3, 3, 8  # frames, tokens (2 x 2 grid), channels, classes, mask side


def _rows(seed=0):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randn(M, N, D, generator=g)
    masks = torch.randint(0, C + 1, (M, 16, 16), generator=g).to(torch.uint8).numpy()
    masks[:, :3] = 255
    vector = torch.randn(M, 2, generator=g)
    allowed = torch.rand(M, C, generator=g) > 0.3
    return tokens, masks, vector, allowed


def _write(path, token_dtype="float32", batch=7):
    tokens, masks, vector, allowed = _rows()
    keys = pd.DataFrame({"uid": [f"v{i // 5}" for i in range(M)], "frame": np.arange(M) % 5,
                         "split": "train"})
    batches = head_row_batches((tokens[i:i + batch] for i in range(0, M, batch)),
                               lambda r: masks[r], lambda r: (vector[r], allowed[r]),
                               train_size=SIZE, token_dtype=token_dtype)
    write_store_batches(path, "head_rows", keys, batches, params={"made": "by"})
    return tokens, masks, vector, allowed


def test_targets_are_the_nearest_pixels():
    mask = np.arange(16, dtype=np.uint8).reshape(1, 4, 4)
    np.testing.assert_array_equal(train_targets(mask, 2)[0], [[0, 2], [8, 10]])
    masks = _rows()[1]
    want = F.interpolate(torch.from_numpy(masks)[:, None].float(), size=(SIZE, SIZE),
                         mode="nearest")[:, 0].long()
    assert torch.equal(torch.from_numpy(train_targets(masks, SIZE)).long(), want)


def test_the_store_holds_the_rows_uncompressed_one_chunk_a_row(tmp_path):
    path = tmp_path / "head_rows.h5"
    tokens, masks, vector, allowed = _write(path, "float16")
    with h5py.File(path) as f:
        assert f["tokens"].dtype == np.float16 and f["tokens"].chunks == (1, N, D)
        assert f["tokens"].compression is None and f["target"].dtype == np.uint8
    rows = open_head_rows(path)
    assert len(rows) == M and rows.row_shapes == {"tokens": (N, D), "target": (SIZE, SIZE),
                                                  "audio": (2,), "allowed": (C,)}
    x, y, a, k = rows[5]
    assert torch.equal(x, tokens[5].half()) and torch.equal(a, vector[5])
    assert torch.equal(k, allowed[5])
    assert torch.equal(y, torch.from_numpy(train_targets(masks[5:6], SIZE)[0]))
    assert made_with(path, {"made": "by"}) and not made_with(path, {"made": "other"})
    assert not made_with(tmp_path / "none.h5", {"made": "by"})


@pytest.mark.parametrize("workers", [0, 2])
def test_shuffled_batches_from_disk_are_those_from_memory(tmp_path, workers):
    """The same seeded batch sampler over the store (a batch read at once, rows in sorted order,
    put back in batch order) and over the in-memory rows gives the same batches."""
    path = tmp_path / "head_rows.h5"
    tokens, masks, vector, allowed = _write(path)
    stored, memory = open_head_rows(path), head_rows_in_memory(tokens, masks, SIZE, vector,
                                                                allowed)

    def batches(rows, num_workers):
        gen = torch.Generator().manual_seed(5)
        return list(DataLoader(rows, generator=gen, num_workers=num_workers,
                               batch_sampler=rank_batches(M, 6, shuffle=True, generator=gen)))

    want = batches(memory, 0)
    got = batches(stored, workers)
    assert len(got) == len(want) == 4
    for b, w in zip(got, want):
        for x, y in zip(b, w):
            assert torch.equal(x, y)


def _train(rows, workers=0):
    torch.manual_seed(0)
    head = SegmentationHead(in_dim=D, num_classes=C + 1, grid=(2, 2), hidden_dim=4,
                            audio_condition="film", audio_dim=2)
    cfg = EvaluateConfig(epochs=2, min_steps=0, batch_frames=6, lr=0.01, train_size=SIZE,
                         audio_condition="film")
    hist = train_head(head, rows, cfg, RunEnv(seed=3, num_workers=workers))
    return [h["loss"] for h in hist], head.state_dict()


def test_training_from_the_store_is_training_from_memory(tmp_path):
    """float32 tokens on disk: the same losses and weights, bit for bit, as from memory, with 0 or
    2 DataLoader workers; float16 tokens: the same run within float16's rounding."""
    path = tmp_path / "head_rows.h5"
    tokens, masks, vector, allowed = _write(path)
    want_loss, want_state = _train(head_rows_in_memory(tokens, masks, SIZE, vector, allowed))
    for workers in (0, 2):
        loss, state = _train(open_head_rows(path), workers)
        assert loss == want_loss
        assert all(torch.equal(state[k], want_state[k]) for k in state)
    half = tmp_path / "half.h5"
    _write(half, "float16")
    loss, _ = _train(open_head_rows(half))
    assert loss != want_loss and loss == pytest.approx(want_loss, rel=1e-2)


def test_tokens_beyond_float16_are_refused():
    tokens, masks, vector, allowed = _rows()
    big = tokens.clone()
    big[2, 1, 0] = 1e5
    batches = head_row_batches([big], lambda r: masks[r], lambda r: (vector[r], allowed[r]),
                               train_size=SIZE, token_dtype="float16")
    with pytest.raises(ValueError, match="evaluate.token_dtype: float32"):
        next(batches)
    assert next(head_row_batches([big], lambda r: masks[r], lambda r: (vector[r], allowed[r]),
                                 train_size=SIZE, token_dtype="float32"))["tokens"][2, 1, 0] == 1e5
    with pytest.raises(ValueError, match="token_dtype must be one of"):
        next(head_row_batches([big], lambda r: masks[r], lambda r: (vector[r], allowed[r]),
                              train_size=SIZE, token_dtype="bfloat16"))
    with pytest.raises(ValueError, match="23 frames of tokens, 22 pseudo-masks"):
        head_rows_in_memory(tokens, masks[1:], SIZE, vector, allowed)
