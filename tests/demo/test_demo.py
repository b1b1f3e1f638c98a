"""Tests of pcas_core.demo.compose: a small demo built from the real demo assets into tmp_path,
checked against MANIFEST.csv (pools), its own ``sounding`` column (masks and audio second by
second) and the AVSS reader."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from PIL import Image

import pcas_core  # noqa: F401  (CPU import shim before torch-vision/audio)
from pcas_core.data import avsbench as A
from pcas_core.data.dataset import open_dataset
from pcas_core.data.palette import voc_palette
from pcas_core.data.table import RELEASED_FRAMES
from pcas_core.demo.assets import SPLIT_POOL
from pcas_core.demo.compose import (KIND_SUBSETS, METADATA_COLUMNS, build_demo_dataset,
                                    parse_sounding)
from pcas_core.demo.scene import compose_frames
from pcas_core.demo.soundtrack import MIN_SOUNDING_DBFS, dbfs
from pcas_core.params import (ConfigError, DataConfig, DemoClips, DemoConfig, PcasParams,
                              SplitCounts as S, TrainAudioConfig, TVPModelConfig, check_couplings)

ASSETS = Path(__file__).resolve().parents[2] / "data" / "demo-assets"
CLASSES = ["dog", "guitar", "hen"]
NONE = S()
CLIPS = DemoClips(always=S(1, 0, 1), event=S(2, 0, 1), silent=S(0, 0, 1), multi=S(1, 1, 1),
                  long=S(2, 0, 2))
SIZE, SR, NOISE = 48, 16000, -60.0
CFG = DemoConfig(seed=0, img_size=SIZE, sample_rate=SR, noise_dbfs=NOISE, classes=CLASSES,
                 clips=CLIPS)
PAL = voc_palette()


def _clips(**kinds: S) -> DemoClips:
    return DemoClips(**{k: kinds.get(k, NONE) for k in KIND_SUBSETS})


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The same demo built twice with seed 0 (a, b) and once with seed 1 (c)."""
    base = tmp_path_factory.mktemp("demo")
    stale = base / "a.tmp"
    stale.mkdir()
    (stale / "junk").write_text("left over from a crashed run")
    metas = {name: build_demo_dataset(ASSETS, base / name, replace(CFG, seed=seed))
             for name, seed in (("a", 0), ("b", 0), ("c", 1))}
    return base, metas


def _masks(root: Path, rec) -> np.ndarray:
    n = RELEASED_FRAMES[rec.label]
    return np.stack([A.load_mask(root / rec.label / rec.uid / "labels_rgb" / f"{t}.png", SIZE,
                                 "resize", PAL) for t in range(n)])


def _seconds_dbfs(root: Path, rec) -> np.ndarray:
    wave, rate = sf.read(root / rec.label / rec.uid / "audio.wav", dtype="float64")
    return np.array([dbfs(wave[t * rate:(t + 1) * rate]) for t in range(len(wave) // rate)])


def test_layout_kinds_and_metadata(built):
    base, metas = built
    root, meta = base / "a", metas["a"]
    assert not (base / "a.tmp").exists()  # stale temp folder removed, build moved into place
    for name in ("metadata.csv", "label2idx.json", "LICENSES.md", "MANIFEST.csv"):
        assert (root / name).is_file()
    on_disk = pd.read_csv(root / "metadata.csv", keep_default_na=False)
    assert list(on_disk.columns) == METADATA_COLUMNS
    assert on_disk["uid"].tolist() == meta["uid"].tolist() and meta["uid"].is_unique
    # always/event/silent per class (3 classes), multi/long in total
    counts = meta.groupby(["kind", "split"]).size().to_dict()
    assert counts == {("always", "train"): 3, ("always", "test"): 3, ("event", "train"): 6,
                      ("event", "test"): 3, ("silent", "test"): 3, ("multi", "train"): 1,
                      ("multi", "val"): 1, ("multi", "test"): 1, ("long", "train"): 2,
                      ("long", "test"): 2}
    assert (meta["uid"].str.split("_").str[1] == meta["kind"]).all()
    assert (meta["label"] == meta["kind"].map(KIND_SUBSETS)).all()
    for rec in meta.itertuples():
        n = 10 if rec.kind == "long" else 5
        vdir = root / rec.label / rec.uid
        assert sorted(int(p.stem) for p in (vdir / "frames").iterdir()) == list(range(n))
        assert sorted(int(p.stem) for p in (vdir / "labels_rgb").iterdir()) == list(range(n))
        info = sf.info(vdir / "audio.wav")
        assert (info.samplerate, info.channels, info.frames) == (SR, 1, n * SR)
        assert info.subtype == "PCM_16"
        with Image.open(vdir / "frames" / "0.jpg") as im:
            assert im.size == (SIZE, SIZE) and im.mode == "RGB"
        sounding = parse_sounding(rec.sounding)
        assert all(len(bits) == n for bits in sounding.values())
        # a_obj = the classes that sound at some time, in object order
        assert rec.a_obj.split("_") == [c for c, bits in sounding.items() if bits.any()]
        assert len(rec.images.split(";")) == len(sounding)
        assert len(rec.sounds.split(";")) == len(rec.a_obj.split("_"))


def test_train_and_test_clips_use_disjoint_pools(built):
    base, metas = built
    manifest = pd.read_csv(ASSETS / "MANIFEST.csv", keep_default_na=False).set_index("path")
    used = {"train": set(), "test": set()}
    for rec in metas["a"].itertuples():
        files = rec.images.split(";") + rec.sounds.split(";") + [rec.background]
        pools = set(manifest.loc[files, "pool"])
        assert pools == {SPLIT_POOL[rec.split]}, (rec.uid, rec.split, files)
        classes = manifest.loc[rec.images.split(";") + rec.sounds.split(";"), "class"]
        assert set(classes) <= set(parse_sounding(rec.sounding))
        used[SPLIT_POOL[rec.split]].update(files)
    assert used["train"] and used["test"] and not used["train"] & used["test"]


def test_event_clip_is_masked_and_heard_exactly_in_its_sounding_seconds(built):
    base, metas = built
    root, meta = base / "a", metas["a"]
    l2i = A.read_label2idx(root)
    events = meta[meta["kind"].isin(["event", "long"]) & ~meta["a_obj"].str.contains("_")]
    assert len(events) >= 9
    for rec in events.itertuples():
        bits = parse_sounding(rec.sounding)[rec.a_obj]
        n = len(bits)
        assert 1 <= bits.sum() <= n - 1  # one run, never the whole clip
        start = int(np.argmax(bits))
        assert bits[start:start + bits.sum()].all()  # contiguous
        masks = _masks(root, rec)
        present = [set(np.unique(m).tolist()) - {0} for m in masks]
        for t in range(n):
            assert present[t] == ({l2i[rec.a_obj] - 1} if bits[t] else set()), (rec.uid, t)
        level = _seconds_dbfs(root, rec)
        # a silent second is the noise floor alone; a sounding one is >= -45 dBFS
        np.testing.assert_allclose(level[~bits], NOISE, atol=0.5)
        assert (level[bits] >= MIN_SOUNDING_DBFS - 0.5).all(), (rec.uid, level)
        assert (level[bits] >= NOISE + 14).all()


def test_multi_clip_masks_follow_who_sounds(built):
    base, metas = built
    root, meta = base / "a", metas["a"]
    l2i = A.read_label2idx(root)
    two = meta[meta["a_obj"].str.contains("_")]
    assert set(two["kind"]) == {"multi", "long"}
    for rec in two.itertuples():
        sounding = parse_sounding(rec.sounding)
        assert len(sounding) == 2 and all(bits.any() for bits in sounding.values())
        masks = _masks(root, rec)
        for t, mask in enumerate(masks):
            want = {l2i[c] - 1 for c, bits in sounding.items() if bits[t]}
            assert set(np.unique(mask).tolist()) - {0} == want, (rec.uid, t)
        level = _seconds_dbfs(root, rec)
        heard = np.any(list(sounding.values()), axis=0)
        np.testing.assert_allclose(level[~heard], NOISE, atol=0.5)
        assert (level[heard] >= MIN_SOUNDING_DBFS - 0.5).all()


def test_silent_distractor_is_visible_but_never_masked_nor_in_a_obj(built):
    base, metas = built
    root, meta = base / "a", metas["a"]
    l2i = A.read_label2idx(root)
    silent = meta[meta["kind"] == "silent"]
    assert sorted(silent["a_obj"]) == CLASSES  # each class sounds in one silent clip
    for rec in silent.itertuples():
        sounding = parse_sounding(rec.sounding)
        (quiet,) = [c for c, bits in sounding.items() if not bits.any()]
        assert quiet != rec.a_obj and sounding[rec.a_obj].all()
        assert quiet not in rec.a_obj.split("_")
        assert rec.images.split(";")[0].split("/")[1] == quiet  # its cut-out, behind
        masks = _masks(root, rec)
        assert not (masks == l2i[quiet] - 1).any()
        assert all((m == l2i[rec.a_obj] - 1).sum() >= 10 for m in masks)


def test_silent_object_visible_but_not_in_mask():
    """Compose on a flat grey background: silent red square behind a blue one that sounds in
    frames 0 and 2 only."""
    rng = np.random.default_rng(0)
    bg = np.full((64, 64, 3), 128.0, np.float32)
    red = np.zeros((20, 20, 4), np.uint8)
    red[..., 0], red[..., 3] = 255, 255
    blue = np.zeros((16, 16, 4), np.uint8)
    blue[..., 2], blue[..., 3] = 255, 255
    blue[:4, :4, 3] = 100  # alpha <= 127: blended into the frame but not in the mask
    sounding = np.array([[False, False, False], [True, False, True]])
    frames, masks = compose_frames(rng, bg, [red, blue], sounding, [5, 17])
    assert frames.shape == (3, 64, 64, 3) and masks.shape == (3, 64, 64)
    for t in range(3):
        is_red = (frames[t, ..., 0] > 200) & (frames[t, ..., 2] < 50)
        is_blue = (frames[t, ..., 2] > 200) & (frames[t, ..., 0] < 50)
        assert is_red.sum() >= 0.3 * 400 and is_blue.sum() >= 0.3 * 256  # both visible
        assert (masks[t][is_red] == 0).all()
        if sounding[1, t]:
            np.testing.assert_array_equal(masks[t] == 17, is_blue)
            assert set(np.unique(masks[t]).tolist()) == {0, 17}
        else:  # visible but silent: background
            assert not masks[t].any()


def test_long_clips_read_back_as_v2(built):
    base, _ = built
    data = open_dataset({"root": base / "a", "img_size": 32, "label_source": "masks"})
    long = data.metadata["kind"] == "long"
    assert set(data.metadata.loc[long, "subset"]) == {"v2"}
    assert set(data.metadata.loc[~long, "subset"]) <= {"v1s", "v1m"}
    per_video = data.frames.groupby("video").size().to_numpy()
    np.testing.assert_array_equal(per_video, np.where(long, 10, 5))
    _, steps = data.audio_tracks()
    np.testing.assert_array_equal(steps, per_video)
    # the kind travels with every frame (scores per kind) and metadata keeps the media columns
    np.testing.assert_array_equal(data.frames["kind"], data.metadata["kind"].to_numpy()[
        data.frames["video"].to_numpy()])
    assert {"sounding", "images", "sounds", "background"} <= set(data.metadata.columns)
    # video labels from the masks = a_obj: silent objects never, event objects somewhere
    from_aobj = open_dataset({"root": base / "a", "img_size": 32, "label_source": "a_obj"})
    np.testing.assert_array_equal(data.labels, from_aobj.labels)


def test_same_seed_same_bytes_different_seed_differs(built):
    base, metas = built
    files = sorted(p.relative_to(base / "a") for p in (base / "a").rglob("*") if p.is_file())
    assert len(files) > 100
    for r in files:
        assert (base / "a" / r).read_bytes() == (base / "b" / r).read_bytes(), r
    first = metas["a"].iloc[0]
    assert metas["c"].iloc[0]["uid"] == first["uid"]  # always clips of sorted classes come first
    for r in ("frames/0.jpg", "audio.wav"):
        p = Path(first["label"], first["uid"], r)
        assert (base / "a" / p).read_bytes() != (base / "c" / p).read_bytes(), p


def test_rebuild_replaces_existing_output(tmp_path):
    out = tmp_path / "demo"
    (out / "old").mkdir(parents=True)
    build_demo_dataset(ASSETS, out, DemoConfig(seed=3, img_size=32, classes=["dog"],
                                               clips=_clips(always=S(val=1))))
    assert not (out / "old").exists() and (out / "metadata.csv").is_file()
    assert not (tmp_path / "demo.tmp").exists()


@pytest.mark.parametrize("classes, clips, message", [
    (["horse"], _clips(always=S(test=1)),
     r"MANIFEST.csv: class 'horse' has no cut-outs in the 'test' pool"),
    (["unicorn"], _clips(always=S(train=1)), r"no foreground class named \['unicorn'\]"),
    (["accordion"], _clips(always=S(train=1)), r"class 'accordion' has no cut-outs in the 'train'"),
    (["dog"], _clips(multi=S(train=1)), r"demo.clips.multi needs at least 2 classes"),
])
def test_requests_the_assets_cannot_meet_are_refused(tmp_path, classes, clips, message):
    with pytest.raises(ValueError, match=message):
        build_demo_dataset(ASSETS, tmp_path / "x", DemoConfig(img_size=32, classes=classes,
                                                              clips=clips))
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.tmp").exists()


def test_a_class_with_a_train_pool_only_makes_train_clips(tmp_path):
    meta = build_demo_dataset(ASSETS, tmp_path / "x", DemoConfig(
        img_size=32, classes=["horse"], clips=_clips(event=S(train=1))))
    assert meta["split"].tolist() == ["train"] and meta["a_obj"].tolist() == ["horse"]


def test_clip_frames_agree_with_the_subsets_and_the_coupling():
    for kind, subset in KIND_SUBSETS.items():
        assert DemoClips.FRAMES[kind] == RELEASED_FRAMES[subset]
    assert CLIPS.longest() == 10 and _clips(multi=S(1)).longest() == 5
    assert _clips().longest() == 0
    check_couplings(PcasParams())  # the shipped demo (long clips) fits max_steps 10
    short = PcasParams(train_audio=TrainAudioConfig(model=TVPModelConfig(max_steps=5)))
    with pytest.raises(ConfigError, match=r"demo.clips ask for 10-frame clips .*max_steps is 5"):
        check_couplings(short)
    check_couplings(PcasParams(demo=DemoConfig(clips=_clips(event=S(1))),
                               train_audio=short.train_audio))
    # a data.root other than the demo's is not the demo: demo.clips do not bind max_steps
    check_couplings(PcasParams(data=DataConfig(root="/data/avss"), train_audio=short.train_audio))
