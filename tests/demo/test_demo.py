"""Tests of pcas_core.demo.compose: a tiny demo built from the real demo assets into tmp_path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from PIL import Image

import pcas_core  # noqa: F401  (CPU import shim before torch-vision/audio)
from pcas_core.data import avsbench as A
from pcas_core.data.problems import Problems
from pcas_core.demo.compose import _compose, build_demo_dataset
from pcas_core.data.palette import voc_palette

ASSETS = Path(__file__).resolve().parents[2] / "data" / "demo-assets"
CLASSES = ["dog", "guitar", "violin"]
CLIPS = {"single": {"train": 1}, "multi": {"train": 1, "val": 1}, "silent": {"test": 1}}
SIZE, N_FRAMES, SR = 64, 3, 16000
PAL = voc_palette()


def _build(out: Path, seed: int) -> pd.DataFrame:
    return build_demo_dataset(ASSETS, out, seed=seed, clips=CLIPS, img_size=SIZE,
                              n_frames=N_FRAMES, sample_rate=SR, classes=CLASSES)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The same demo built twice with seed 0 (a, b) and once with seed 1 (c)."""
    base = tmp_path_factory.mktemp("demo")
    stale = base / "a.tmp"
    stale.mkdir()
    (stale / "junk").write_text("left over from a crashed run")
    metas = {name: _build(base / name, seed) for name, seed in (("a", 0), ("b", 0), ("c", 1))}
    return base, metas


def test_layout_and_metadata(built):
    base, metas = built
    root, meta = base / "a", metas["a"]
    assert not (base / "a.tmp").exists()  # stale temp folder removed, build moved into place
    for name in ("metadata.csv", "label2idx.json", "LICENSES.md", "MANIFEST.csv"):
        assert (root / name).is_file()
    on_disk = pd.read_csv(root / "metadata.csv", keep_default_na=False)
    assert list(on_disk.columns) == ["vid", "uid", "s_min", "s_sec", "a_obj", "split", "label"]
    assert on_disk["uid"].tolist() == meta["uid"].tolist() and meta["uid"].is_unique
    # 3 single (per class) + 2 multi (total) + 3 silent (per class)
    kinds = meta["uid"].str.split("_").str[1]
    assert kinds.value_counts().to_dict() == {"single": 3, "multi": 2, "silent": 3}
    assert set(meta.loc[kinds == "multi", "label"]) == {"v1m"}
    assert set(meta.loc[kinds != "multi", "label"]) == {"v1s"}
    assert meta.loc[kinds == "silent", "split"].tolist() == ["test"] * 3
    for rec in meta.itertuples():
        vdir = root / rec.label / rec.uid
        assert sorted(p.name for p in (vdir / "frames").iterdir()) == ["0.jpg", "1.jpg", "2.jpg"]
        assert sorted(p.name for p in (vdir / "labels_rgb").iterdir()) == ["0.png", "1.png", "2.png"]
        with Image.open(vdir / "frames" / "0.jpg") as im:
            assert im.size == (SIZE, SIZE) and im.mode == "RGB"


def test_masks_match_a_obj(built):
    base, metas = built
    root, meta = base / "a", metas["a"]
    l2i = A.read_label2idx(root)
    for rec in meta.itertuples():
        names = rec.a_obj.split("_")
        assert len(names) == (2 if rec.label == "v1m" else 1) and len(set(names)) == len(names)
        want = {l2i[n] - 1 for n in names}
        for t in range(N_FRAMES):
            mask = A.load_mask(root / rec.label / rec.uid / "labels_rgb" / f"{t}.png", SIZE,
                               "resize", PAL)
            present = set(np.unique(mask).tolist()) - {0}
            assert present == want, (rec.uid, t)
            assert all((mask == c).sum() >= 10 for c in want)


def test_audio_format(built):
    base, metas = built
    for rec in metas["a"].itertuples():
        path = base / "a" / rec.label / rec.uid / "audio.wav"
        info = sf.info(path)
        assert (info.samplerate, info.channels, info.frames) == (SR, 1, N_FRAMES * SR)
        assert info.subtype == "PCM_16" and info.format == "WAV"
        wave, _ = sf.read(path)
        assert 0.85 <= np.abs(wave).max() <= 0.95  # peak-normalised to 0.9, no clipping


def test_same_seed_same_bytes_different_seed_differs(built):
    base, metas = built
    rec = metas["a"].iloc[-1]
    rel = [Path(rec["label"], rec["uid"], p) for p in ("frames/1.jpg", "labels_rgb/1.png",
                                                       "audio.wav")] + [Path("metadata.csv")]
    for r in rel:
        assert (base / "a" / r).read_bytes() == (base / "b" / r).read_bytes(), r
    first = metas["a"].iloc[0]
    assert metas["c"].iloc[0]["uid"] == first["uid"]  # single clips of sorted classes come first
    for r in ("frames/0.jpg", "labels_rgb/0.png", "audio.wav"):
        p = Path(first["label"], first["uid"], r)
        assert (base / "a" / p).read_bytes() != (base / "c" / p).read_bytes(), p


def test_rebuild_replaces_existing_output(built, tmp_path):
    out = tmp_path / "demo"
    (out / "old").mkdir(parents=True)
    build_demo_dataset(ASSETS, out, seed=3, clips={"single": {"val": 1}}, img_size=32,
                       n_frames=2, classes=["dog"])
    assert not (out / "old").exists() and (out / "metadata.csv").is_file()
    assert not (tmp_path / "demo.tmp").exists()


def test_silent_object_visible_but_not_in_mask():
    """Compose on a flat grey background: silent red square behind a sounding blue one."""
    rng = np.random.default_rng(0)
    bg = np.full((64, 64, 3), 128.0, np.float32)
    red = np.zeros((20, 20, 4), np.uint8)
    red[..., 0], red[..., 3] = 255, 255
    blue = np.zeros((16, 16, 4), np.uint8)
    blue[..., 2], blue[..., 3] = 255, 255
    blue[:4, :4, 3] = 100  # alpha <= 127: blended into the frame but not in the mask
    frames, masks = _compose(rng, bg, [red, blue], [False, True], [5, 17], 3)
    assert frames.shape == (3, 64, 64, 3) and masks.shape == (3, 64, 64)
    for t in range(3):
        is_red = (frames[t, ..., 0] > 200) & (frames[t, ..., 2] < 50)
        is_blue = (frames[t, ..., 2] > 200) & (frames[t, ..., 0] < 50)
        assert is_red.sum() >= 0.3 * 400  # silent object visible
        assert set(np.unique(masks[t]).tolist()) == {0, 17}
        assert (masks[t][is_red] == 0).all()
        np.testing.assert_array_equal(masks[t] == 17, is_blue)


def test_silent_clip_metadata(built):
    base, metas = built
    silent = metas["a"][metas["a"]["uid"].str.startswith("demo_silent_")]
    # one sounding class per silent clip, named in its uid; each class sounds once
    assert sorted(silent["a_obj"]) == CLASSES
    assert all(uid.split("_")[2] == a for uid, a in zip(silent["uid"], silent["a_obj"]))


def test_avsbench_reads_demo(built):
    base, _ = built
    root = base / "a"
    meta = A.read_metadata(root)
    problems = Problems()
    frames = A.frame_table(root, meta, problems, frames_per_video=N_FRAMES)
    assert not problems.items
    assert len(frames) == len(meta) * N_FRAMES and (frames["mask_path"] != "").all()
    l2i = A.read_label2idx(root)
    from_masks = A.video_labels(meta, frames, source="masks", label2idx=l2i, palette=PAL)
    from_aobj = A.video_labels(meta, frames, source="a_obj", label2idx=l2i, palette=PAL)
    np.testing.assert_array_equal(from_masks, from_aobj)
    assert from_masks.sum(axis=1).tolist() == [1, 1, 1, 2, 2, 1, 1, 1]


def test_missing_class_assets_error(tmp_path):
    with pytest.raises(ValueError, match=r"images/accordion"):
        build_demo_dataset(ASSETS, tmp_path / "x", seed=0, clips={"single": {"train": 1}},
                           classes=["accordion"])
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.tmp").exists()
