"""Tests of pcas_core.data.palette and pcas_core.data.avsbench on small files written to tmp_path."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch
import pytest
from PIL import Image

from pcas_core.data import avsbench as A
from pcas_core.data.clips import VideoClips, collate_videos
from pcas_core.data.palette import IGNORE_INDEX, NUM_FG, index_to_rgb, rgb_to_index, voc_palette

ASSETS = Path(__file__).resolve().parents[1] / "data" / "demo-assets"
PAL = voc_palette()
HEADER = "vid,uid,s_min,s_sec,a_obj,split,label\n"


# ---------------------------------------------------------------- palette
def test_voc_palette_known_colours():
    assert PAL.shape == (71, 3) and PAL.dtype == np.uint8
    # j=1: bit0 -> R bit7; j=2: bit1 -> G bit7; j=3: bits 0,1 -> R, G bit7; j=4: bit2 -> B bit7
    assert PAL[0].tolist() == [0, 0, 0]
    assert PAL[1].tolist() == [128, 0, 0]
    assert PAL[2].tolist() == [0, 128, 0]
    assert PAL[3].tolist() == [128, 128, 0]
    assert PAL[4].tolist() == [0, 0, 128]
    # j=8 = 0b001_000: second group (bit 3) -> R bit 6 = 64; j=9 -> 128 + 64
    assert PAL[8].tolist() == [64, 0, 0]
    assert PAL[9].tolist() == [192, 0, 0]
    assert len({tuple(c) for c in PAL}) == 71


def test_rgb_index_round_trip_and_ignore_white():
    rng = np.random.default_rng(0)
    index = rng.integers(0, 71, size=(17, 23)).astype(np.uint8)
    rgb = index_to_rgb(index, PAL)
    assert rgb.shape == (17, 23, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb_to_index(rgb, PAL), index)
    index[0, 0] = IGNORE_INDEX
    assert index_to_rgb(index, PAL)[0, 0].tolist() == [255, 255, 255]
    with pytest.raises(ValueError, match="outside"):
        index_to_rgb(np.full((2, 2), 80, np.uint8), PAL)


def test_unknown_colour_error_names_file(tmp_path):
    rgb = index_to_rgb(np.zeros((4, 5), np.uint8), PAL)
    rgb[1, 2] = (1, 2, 3)
    path = tmp_path / "bad_mask.png"
    Image.fromarray(rgb).save(path)
    with pytest.raises(ValueError, match=r"bad_mask\.png.*\(1, 2, 3\)"):
        A.load_mask(path, 4, "resize", PAL)


# ---------------------------------------------------------------- tiny dataset helpers
def _solid(path: Path, colour, size=(8, 6)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def _mask(path: Path, index: np.ndarray):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(index_to_rgb(index, PAL)).save(path)


def _video(root: Path, label: str, uid: str, n_frames: int, masks: dict[int, np.ndarray]):
    vdir = root / label / uid
    for n in range(n_frames):
        _solid(vdir / "frames" / f"{n}.jpg", (10 * n, 20, 30))
    for n, index in masks.items():
        _mask(vdir / "labels_rgb" / f"{n}.png", index)
    (vdir / "audio.wav").write_bytes(b"")  # frame_table only checks that it exists


@pytest.fixture
def tiny(tmp_path):
    """3 videos: v1s 'dog' (mask on frame 0 only), v1m 'guitar,man', v2 without label or mask."""
    root = tmp_path / "avss"
    root.mkdir()
    shutil.copyfile(ASSETS / "label2idx.json", root / "label2idx.json")
    dog, guitar, man = 17, 28, 41  # class index = label2idx - 1
    m0 = np.zeros((6, 8), np.uint8)
    m0[1:3, 1:4] = dog
    g = np.zeros((6, 8), np.uint8)
    g[0:2, 0:2] = guitar
    gm = g.copy()
    gm[4:, 5:] = man
    _video(root, "v1s", "vidA", 2, {0: m0})
    _video(root, "v1m", "vidB", 2, {0: g, 1: gm})
    _video(root, "v2", "vidC", 3, {})
    (root / "metadata.csv").write_text(
        HEADER + "a,vidA,0,0,dog,train,v1s\nb,vidB,0,0,\"guitar,man\",val,v1m\nc,vidC,0,0,,test,v2\n"
    )
    return root, {"dog": dog, "guitar": guitar, "man": man}


# ---------------------------------------------------------------- metadata / label2idx
def test_metadata_missing_column_names_file_and_column(tmp_path):
    (tmp_path / "metadata.csv").write_text("vid,uid,a_obj,label\nx,y,dog,v1s\n")
    with pytest.raises(ValueError, match=r"metadata\.csv.*'split'"):
        A.read_metadata(tmp_path)


def test_metadata_unknown_split_and_filters(tiny):
    root, _ = tiny
    assert A.read_metadata(root)["uid"].tolist() == ["vidA", "vidB", "vidC"]
    assert A.read_metadata(root, subsets=["v1m", "v2"])["uid"].tolist() == ["vidB", "vidC"]
    assert A.read_metadata(root, splits=["train"])["uid"].tolist() == ["vidA"]
    (root / "metadata.csv").write_text(HEADER + "a,vidA,0,0,dog,training,v1s\n")
    with pytest.raises(ValueError, match=r"metadata\.csv.*training"):
        A.read_metadata(root)


def test_label2idx_validation(tmp_path):
    data = json.loads((ASSETS / "label2idx.json").read_text())
    names = A.class_names(data)
    assert len(names) == 71 and names[0] == "background" and names[17] == "dog"
    data["background"], data["accordion"] = 2, 1
    (tmp_path / "label2idx.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"label2idx\.json.*background"):
        A.read_label2idx(tmp_path)


# ---------------------------------------------------------------- frame table
def test_frame_table_sorts_numerically_and_marks_missing_masks(tmp_path):
    _video(tmp_path, "v2", "long", 11, {0: np.zeros((6, 8), np.uint8)})
    (tmp_path / "metadata.csv").write_text(HEADER + "l,long,0,0,,val,v2\n")
    table = A.frame_table(tmp_path, A.read_metadata(tmp_path))
    assert table["frame"].tolist() == list(range(11))
    assert [Path(p).name for p in table["frame_path"]] == [f"{n}.jpg" for n in range(11)]
    assert table["mask_path"].iloc[0].endswith("labels_rgb/0.png")
    assert (table["mask_path"].iloc[1:] == "").all()
    assert set(table["video"]) == {0} and table["audio_path"].iloc[0].endswith("long/audio.wav")


def test_frame_table_missing_frames_and_audio(tiny):
    root, _ = tiny
    meta = A.read_metadata(root)
    (root / "v1s" / "vidA" / "audio.wav").unlink()
    with pytest.raises(FileNotFoundError, match=r"vidA/audio\.wav"):
        A.frame_table(root, meta)
    shutil.rmtree(root / "v1m" / "vidB" / "frames")
    with pytest.raises(FileNotFoundError, match=r"vidB/frames"):
        A.frame_table(root, meta.iloc[1:])


# ---------------------------------------------------------------- geometry
def _stripes(w=300, h=200):
    """Index stripes: x < 50 -> 1, 50 <= x < 250 -> 2, x >= 250 -> 3."""
    index = np.full((h, w), 2, np.uint8)
    index[:, :50], index[:, 250:] = 1, 3
    return index


def test_load_mask_geometry_nearest(tmp_path):
    path = tmp_path / "m.png"
    _mask(path, _stripes())
    # crop: 300x200 -> 150x100, centre crop x 25..124; nearest source x = 2i + 1 -> 51..249
    crop = A.load_mask(path, 100, "crop", PAL)
    assert crop.shape == (100, 100) and (crop == 2).all()
    # resize: source x = floor((i + 0.5) * 3) = 3i + 1 -> class 1 for i <= 16, 3 for i >= 83
    res = A.load_mask(path, 100, "resize", PAL)
    assert (res[:, :17] == 1).all() and (res[:, 17:83] == 2).all() and (res[:, 83:] == 3).all()
    # single-channel class-index PNG (labels_semantic style) gives the same result
    Image.fromarray(_stripes(), mode="L").save(tmp_path / "sem.png")
    np.testing.assert_array_equal(A.load_mask(tmp_path / "sem.png", 100, "resize", PAL), res)


def test_load_frame_geometry_bilinear(tmp_path):
    colours = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)
    path = tmp_path / "f.png"
    Image.fromarray(colours[_stripes()]).save(path)
    crop = A.load_frame(path, 100, "crop")
    assert crop.shape == (100, 100, 3) and crop.dtype == np.uint8
    # red/blue stripes are cut off; only the filter support (2 px) at the edges may blend
    assert (np.abs(crop[:, 2:-2].astype(int) - [0, 255, 0]) <= 1).all()
    assert crop[:, 0, 0].max() > 0  # bilinear blends the red edge in at column 0
    res = A.load_frame(path, 100, "resize")
    assert (np.abs(res[:, :15].astype(int) - [255, 0, 0]) <= 1).all()
    assert (np.abs(res[:, 19:81].astype(int) - [0, 255, 0]) <= 1).all()
    assert (np.abs(res[:, 85:].astype(int) - [0, 0, 255]) <= 1).all()
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match=r"broken\.jpg"):
        A.load_frame(tmp_path / "broken.jpg", 100, "resize")


# ---------------------------------------------------------------- labels
def test_video_labels_both_sources(tiny):
    root, cls = tiny
    meta = A.read_metadata(root)
    frames = A.frame_table(root, meta)
    l2i = A.read_label2idx(root)
    expected = np.zeros((3, NUM_FG), np.float32)
    expected[0, cls["dog"] - 1] = 1
    expected[1, [cls["guitar"] - 1, cls["man"] - 1]] = 1
    for source in ("masks", "a_obj"):
        got = A.video_labels(meta, frames, source=source, label2idx=l2i, palette=PAL)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, expected)
    meta.loc[2, "a_obj"] = "dog_unicorn"
    with pytest.raises(ValueError, match=r"metadata\.csv.*vidC.*unicorn"):
        A.video_labels(meta, frames, source="a_obj", label2idx=l2i, palette=PAL)


def test_frame_labels_nan_for_unannotated(tiny):
    root, cls = tiny
    frames = A.frame_table(root, A.read_metadata(root))
    fl = A.frame_labels(frames, PAL, 8, "resize")
    assert fl.shape == (7, NUM_FG)
    assert fl[0].sum() == 1 and fl[0, cls["dog"] - 1] == 1
    assert np.isnan(fl[1]).all() and np.isnan(fl[4:]).all()
    assert fl[3, cls["man"] - 1] == 1 and fl[2, cls["man"] - 1] == 0


def test_video_clips_and_collate(tiny):
    root, _ = tiny
    frames = A.frame_table(root, A.read_metadata(root))
    labels = np.eye(3, NUM_FG, dtype=np.float32)
    ds = VideoClips(frames, labels, 4, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 2.0), preload=True)
    item = ds[2]
    assert item["frames"].shape == (3, 3, 4, 4) and item["video"] == 2
    # vidC frame 1 is solid (10, 20, 30): values / 255, blue divided by std 2
    # (JPEG keeps a flat colour within +-2 levels)
    got = item["frames"][1, :, 0, 0].numpy()
    np.testing.assert_allclose(got, [10 / 255, 20 / 255, 30 / 510], atol=2 / 255)
    batch = collate_videos([ds[0], ds[2]])
    assert batch["frames"].shape == (5, 3, 4, 4)
    assert batch["frame_video"].tolist() == [0, 0, 1, 1, 1]
    assert batch["video"].tolist() == [0, 2] and batch["labels"].shape == (2, NUM_FG)
    with pytest.raises(ValueError, match="label rows"):
        VideoClips(frames, labels[:2], 4, mean=(0, 0, 0), std=(1, 1, 1))


def test_video_clips_max_frames_keeps_time_order(tiny):
    root, _ = tiny
    frames = A.frame_table(root, A.read_metadata(root))
    ds = VideoClips(frames, np.zeros((3, NUM_FG), np.float32), 4, mean=(0, 0, 0), std=(1, 1, 1),
                    preload=True, max_frames=2)
    full = VideoClips(frames, np.zeros((3, NUM_FG), np.float32), 4, mean=(0, 0, 0),
                      std=(1, 1, 1), preload=True)[2]["frames"]
    sub = ds[2]["frames"]
    assert sub.shape[0] == 2
    picked = [next(t for t in range(len(full)) if torch.equal(full[t], f)) for f in sub]
    assert picked == sorted(picked)
