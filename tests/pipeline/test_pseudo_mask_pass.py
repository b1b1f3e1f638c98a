"""Chunked paths (issue 8, full scale): stores written and read in row ranges, frames decoded on
demand, the pseudo-mask pass chunk by chunk."""

import numpy as np
import pandas as pd
import pytest

from pcas_core.data.chunks import row_chunks
from pcas_core.data.dataset import open_dataset
from pcas_core.data.images import SPLIT_MODES, load_frame
from pcas_core.pipeline.pseudo_masks import PseudoMaskPool, pseudo_mask_pass, pseudo_masks
from pcas_core.params import PseudoMasksConfig
from pcas_core.storage.stores import (open_store, read_rows, read_store, store_writer, write_store,
                              write_store_batches)
from layouts import make_avss


def _keys(n):
    return pd.DataFrame({"uid": [f"v{i // 3}" for i in range(n)], "frame": np.arange(n) % 3,
                         "split": ["train"] * n})


def _maps(n, seed=0):
    rng = np.random.default_rng(seed)
    return {"cam": rng.normal(size=(n, 70, 2, 2)).astype(np.float16),
            "sounding": rng.uniform(size=(n, 2, 2)).astype(np.float32)}


def test_chunked_read_equals_whole_read(tmp_path):
    path = tmp_path / "maps.h5"
    data = _maps(40)
    write_store(path, "maps", _keys(40), data, params={})
    _, whole = read_store(path, "maps")
    with open_store(path, "maps") as store:
        for rows in ([5, 6, 7], [39, 0, 0, 17], np.arange(40)[::-1], [3], [0, 39], []):
            np.testing.assert_array_equal(store.rows("cam", rows), whole["cam"][rows])
        parts = [store.rows("sounding", np.arange(40)[s]) for s in row_chunks(40, 7)]
        np.testing.assert_array_equal(np.concatenate(parts), whole["sounding"])
        np.testing.assert_array_equal(store.rows("cam", slice(10, 13)), data["cam"][10:13])
    wanted = _keys(40).iloc[[31, 2, 2]]
    np.testing.assert_array_equal(read_rows(path, "maps", wanted, ["cam"])["cam"],
                                  whole["cam"][[31, 2, 2]])


def test_store_written_in_batches_equals_one_write(tmp_path):
    data = _maps(10)
    write_store(tmp_path / "a.h5", "maps", _keys(10), data, params={"p": 1})
    write_store_batches(tmp_path / "b.h5", "maps", _keys(10),
                        ({k: v[s] for k, v in data.items()} for s in row_chunks(10, 4)),
                        params={"p": 1})
    ka, a = read_store(tmp_path / "a.h5", "maps")
    kb, b = read_store(tmp_path / "b.h5", "maps")
    assert ka.equals(kb)
    for name in data:
        np.testing.assert_array_equal(a[name], b[name])


def test_incomplete_store_is_not_written(tmp_path):
    path = tmp_path / "masks.h5"
    with pytest.raises(ValueError, match="rows written"):
        with store_writer(path, "pseudo_masks", _keys(6), {"mask": (4, 4)}, params={}) as out:
            out.write(0, {"mask": np.zeros((5, 4, 4), np.uint8)})
    with pytest.raises(ValueError, match="do not fit"):
        with store_writer(path, "pseudo_masks", _keys(6), {"mask": (4, 4)}, params={}) as out:
            out.write(4, {"mask": np.zeros((3, 4, 4), np.uint8)})
    assert not path.exists() and list(tmp_path.iterdir()) == []


def test_row_chunks_cover_every_row_once_in_order():
    for n, size in [(10, 3), (9, 3), (1, 5), (0, 4), (7, 1)]:
        rows = [i for s in row_chunks(n, size) for i in range(s.start, s.stop)]
        assert rows == list(range(n))
        assert all(s.stop - s.start <= size for s in row_chunks(n, size))
    with pytest.raises(ValueError):
        list(row_chunks(3, 0))


def test_frame_images_decode_each_frame_in_order(tmp_path):
    data = open_dataset({"root": str(make_avss(tmp_path / "avss")), "img_size": 16})
    images = data.frame_images()
    assert len(images) == len(data.frames) == 30
    expected = np.stack([load_frame(p, 16, SPLIT_MODES[s])
                         for p, s in zip(data.frames["frame_path"], data.frames["split"])])
    np.testing.assert_array_equal(np.concatenate([images[s].array() for s in row_chunks(30, 7)]),
                                  expected)
    np.testing.assert_array_equal(images[12], expected[12])
    np.testing.assert_array_equal(data.images(np.array([29, 3])), expected[[29, 3]])
    has = data.has_mask()
    np.testing.assert_array_equal(images[has].array(), expected[has])
    np.testing.assert_array_equal(data.masks(np.flatnonzero(has)[[4, 1]]), data.masks()[[4, 1]])
    with pytest.raises(ValueError, match="no ground-truth mask"):
        data.masks(np.flatnonzero(~has)[:1])


def test_pseudo_mask_pass_in_chunks_equals_whole_arrays(tmp_path):
    data = open_dataset({"root": str(make_avss(tmp_path / "avss")), "img_size": 16})
    m = len(data.frames)
    maps = _maps(m, seed=2)
    logits = np.random.default_rng(3).normal(0, 2, (m, 70)).astype(np.float32)
    write_store(tmp_path / "maps.h5", "maps", data.frames, maps, params={})
    # the audio store lists the frames in another order: rows are matched by key
    order = np.random.default_rng(4).permutation(m)
    write_store(tmp_path / "audio.h5", "audio", data.frames.iloc[order],
                {"audio_token": np.zeros((m, 3), np.float32), "logits": logits[order]}, params={})
    cfg = PseudoMasksConfig(audio_threshold=0.5, bg_score=0.3, use_crf=True)
    expected = pseudo_masks(data.images(), maps["cam"].astype(np.float32), maps["sounding"],
                            logits, cfg)
    with open_store(tmp_path / "maps.h5", "maps") as mp, \
            open_store(tmp_path / "audio.h5", "audio") as au, \
            PseudoMaskPool(cfg, workers=1) as pool:
        chunks = [b["mask"] for b in pseudo_mask_pass(data, mp, au, pool, chunk_frames=4)]
    assert [len(c) for c in chunks] == [4] * (m // 4) + ([m % 4] if m % 4 else [])
    np.testing.assert_array_equal(np.concatenate(chunks), expected)
    assert len(np.unique(expected)) > 2  # several classes won somewhere: a real test


def test_train_split_scores_chunk_by_chunk_equal_the_whole_split(tmp_path):
    """The pseudo_masks stage scores the train split's annotated frames (v1s train: frame 0 only)
    a few at a time: the metrics file of scoring them all at once."""
    from pcas_core.evaluation.scoring import (Prediction, metrics_file, score_by_subset,
                                              scored_frames)
    from pcas_core.pipeline.pseudo_masks import train_split_scores

    data = open_dataset({"root": str(make_avss(tmp_path / "avss")), "img_size": 16})
    masks = np.random.default_rng(5).integers(0, 90, (len(data.frames), 16, 16)).astype(np.uint8)
    write_store(tmp_path / "pm.h5", "pseudo_masks", data.frames, {"mask": masks}, params={})
    train = data.split("train")
    scored = scored_frames(train.frames, require_all=False)
    assert len(scored) == 6  # trA: frame 0 of 5; trB (v1m): every frame
    want = metrics_file("avss", "train", score_by_subset(
        "avss", Prediction(masks[data.frames_in("train") & data.has_mask()]), train.masks(),
        scored, batch_videos=4), {})
    got = train_split_scores(tmp_path / "pm.h5", data, official_batch_videos=4, chunk_frames=4)
    assert set(got) >= {"v1s", "v1m"}
    flat = lambda d: pd.json_normalize(d).iloc[0].to_dict()
    got, want = flat(got), flat(want)
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert got[key] == (pytest.approx(value, rel=1e-12) if isinstance(value, float)
                            else value), key
