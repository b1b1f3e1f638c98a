"""Tests of pcas_core.data.palette, images and avsbench (AVSS) on small files written to tmp_path."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch
import pytest
from PIL import Image

from layouts import AVSS_HEADER as HEADER, ASSETS, box, make_avss, write_rgb_mask
from pcas_core.data import avsbench as A
from pcas_core.data.clips import VideoClips, collate_videos
from pcas_core.data.images import crop_box, decode_mask
from pcas_core.data.palette import IGNORE_INDEX, NUM_FG, index_to_rgb, rgb_to_index, voc_palette
from pcas_core.data.problems import DataError, Problems

PAL = voc_palette()


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


def test_off_palette_colours_background_by_default_counted_or_error(tmp_path):
    index = np.zeros((4, 5), np.uint8)
    index[0, 0] = 17
    rgb = index_to_rgb(index, PAL)
    rgb[1, 2] = rgb[1, 3] = (1, 2, 3)
    path = tmp_path / "bad_mask.png"
    Image.fromarray(rgb).save(path)
    got, note = decode_mask(path, "rgb", PAL)
    np.testing.assert_array_equal(got, index)  # (1, 2, 3) -> background, as the official loader
    assert "2 pixels" in note and "(1, 2, 3)" in note
    with pytest.raises(ValueError, match=r"bad_mask\.png.*\(1, 2, 3\)"):
        A.load_mask(path, 4, "resize", PAL, off_palette="error")


def test_palette_mode_png_is_decoded_through_its_own_palette(tmp_path):
    index = box(17, 8)
    write_rgb_mask(tmp_path / "voc.png", index, mode="P")
    got, _ = decode_mask(tmp_path / "voc.png", "rgb", PAL)
    np.testing.assert_array_equal(got, index)
    # a P image whose palette puts class 17's colour at entry 5: the colour counts, not the entry
    raw = np.where(index > 0, 5, 0).astype(np.uint8)
    img = Image.fromarray(raw, mode="P")
    pal = np.zeros((256, 3), np.uint8)
    pal[5] = PAL[17]
    img.putpalette(pal.flatten().tolist())
    img.save(tmp_path / "other.png")
    np.testing.assert_array_equal(decode_mask(tmp_path / "other.png", "rgb", PAL)[0], index)


# ---------------------------------------------------------------- tiny dataset
@pytest.fixture
def tiny(tmp_path):
    """AVSS layout (tests/layouts.py): trA v1s train dog (frame 0 annotated), trB v1m train
    guitar+man (masks: guitar), vaA val dog, teA test man, teB v2 test guitar (10 frames)."""
    root = make_avss(tmp_path / "avss")
    l2i = A.read_label2idx(root)
    return root, {n: l2i[n] - 1 for n in ("dog", "guitar", "man")}


def _table(root, meta, **kw):
    problems = Problems()
    table = A.frame_table(root, meta, problems, **kw)
    return table, problems


# ---------------------------------------------------------------- metadata / label2idx
def test_metadata_missing_column_names_file_and_column(tmp_path):
    (tmp_path / "metadata.csv").write_text("vid,uid,a_obj,label\nx,y,dog,v1s\n")
    with pytest.raises(DataError, match=r"metadata\.csv.*'split'"):
        A.read_metadata(tmp_path)


def test_metadata_unknown_split_and_filters(tiny):
    root, _ = tiny
    assert A.read_metadata(root)["uid"].tolist() == ["trA", "trB", "vaA", "teA", "teB"]
    assert A.read_metadata(root, subsets=["v1m", "v2"])["uid"].tolist() == ["trB", "teB"]
    assert A.read_metadata(root, splits=["train"])["uid"].tolist() == ["trA", "trB"]
    (root / "metadata.csv").write_text(HEADER + "a,vidA,0,0,dog,training,v1s\n")
    with pytest.raises(DataError, match=r"metadata\.csv.*training"):
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
def test_frame_table_sorts_numerically_and_marks_unannotated(tiny):
    root, _ = tiny
    table, problems = _table(root, A.read_metadata(root))
    assert not problems.items
    te_b = table[table["uid"] == "teB"]
    assert te_b["frame"].tolist() == list(range(10))
    assert [Path(p).name for p in te_b["frame_path"]] == [f"{n}.jpg" for n in range(10)]
    tr_a = table[table["uid"] == "trA"]
    assert tr_a["mask_path"].iloc[0].endswith("labels_rgb/0.png")
    assert (tr_a["mask_path"].iloc[1:] == "").all() and (tr_a["mask_format"] == "rgb").all()
    assert table["video"].tolist() == [0] * 5 + [1] * 5 + [2] * 5 + [3] * 5 + [4] * 10
    assert tr_a["audio_path"].iloc[0].endswith("trA/audio.wav")


def test_frame_table_records_every_structural_problem(tiny):
    root, _ = tiny
    (root / "v1s" / "trA" / "audio.wav").unlink()
    shutil.rmtree(root / "v1m" / "trB" / "frames")
    (root / "v1s" / "teA" / "labels_rgb" / "3.png").unlink()
    (root / "v2" / "teB" / "frames" / "9.jpg").unlink()
    (root / "v1s" / "vaA" / "frames" / "x.jpg").write_bytes(b"")
    _, problems = _table(root, A.read_metadata(root))
    text = "\n".join(map(str, problems.errors))
    assert "trA/audio.wav: audio file not found" in text
    assert "trB/frames: frames folder not found" in text
    assert "teA/labels_rgb/3.png: mask of frame 3 not found (a test video needs every mask)" in text
    assert "teB/frames: 9 frames, but a video of subset v2 has 10" in text
    assert "vaA/frames/x.jpg: file name is not of the form N.jpg" in text
    assert problems.bad_uids() == {"trA", "trB", "teA", "teB", "vaA"}


# ---------------------------------------------------------------- geometry
def _stripes(w=300, h=200):
    """Index stripes: x < 50 -> 1, 50 <= x < 250 -> 2, x >= 250 -> 3."""
    index = np.full((h, w), 2, np.uint8)
    index[:, :50], index[:, 250:] = 1, 3
    return index


def test_crop_box_rounds_as_the_official_loader():
    # short side -> size; long side int()-truncated: 300 * 100 / 200 = 150, offset round(25.0)
    assert crop_box(300, 200, 100) == (150, 100, 25, 0)
    # 335 -> int(167.5) = 167 (not round's 168); offset round(33.5) = 34 (half to even)
    assert crop_box(335, 200, 100) == (167, 100, 34, 0)
    # 331 -> int(165.5) = 165; offset round(32.5) = 32 (half to even, not 33)
    assert crop_box(331, 200, 100) == (165, 100, 32, 0)
    assert crop_box(200, 331, 100) == (100, 165, 0, 32)  # portrait: the same on the other axis
    assert crop_box(64, 64, 32) == (32, 32, 0, 0)


def test_load_mask_geometry_nearest(tmp_path):
    path = tmp_path / "m.png"
    write_rgb_mask(path, _stripes())
    # crop: 300x200 -> 150x100, centre crop x 25..124; nearest source x = 2i + 1 -> 51..249
    crop = A.load_mask(path, 100, "crop", PAL)
    assert crop.shape == (100, 100) and (crop == 2).all()
    # resize: source x = floor((i + 0.5) * 3) = 3i + 1 -> class 1 for i <= 16, 3 for i >= 83
    res = A.load_mask(path, 100, "resize", PAL)
    assert (res[:, :17] == 1).all() and (res[:, 17:83] == 2).all() and (res[:, 83:] == 3).all()
    # single-channel class-index PNG (labels_semantic style) gives the same result
    Image.fromarray(_stripes(), mode="L").save(tmp_path / "sem.png")
    np.testing.assert_array_equal(A.load_mask(tmp_path / "sem.png", 100, "resize", PAL, "index"), res)


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
    frames, _ = _table(root, meta)
    l2i = A.read_label2idx(root)
    expected = np.zeros((5, NUM_FG), np.float32)
    for video, name in enumerate(["dog", "guitar", "dog", "man", "guitar"]):
        expected[video, cls[name] - 1] = 1
    np.testing.assert_array_equal(
        A.video_labels(meta, frames, source="masks", label2idx=l2i, palette=PAL), expected)
    expected[1, cls["man"] - 1] = 1  # a_obj "guitar_man": the man sounds but has no mask here
    got = A.video_labels(meta, frames, source="a_obj", label2idx=l2i, palette=PAL)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)
    meta.loc[2, "a_obj"] = "dog_unicorn"
    with pytest.raises(DataError, match=r"metadata\.csv.*'unicorn'.*not in label2idx.*vaA"):
        A.video_labels(meta, frames, source="a_obj", label2idx=l2i, palette=PAL)


def test_frame_labels_nan_for_unannotated(tiny):
    root, cls = tiny
    frames, _ = _table(root, A.read_metadata(root))
    fl = A.frame_labels(frames, PAL, 8, "resize", 71)
    assert fl.shape == (30, NUM_FG)
    assert fl[0].sum() == 1 and fl[0, cls["dog"] - 1] == 1
    assert np.isnan(fl[1:5]).all() and not np.isnan(fl[5:]).any()
    assert fl[15, cls["man"] - 1] == 1 and fl[15, cls["dog"] - 1] == 0


def test_video_clips_and_collate(tiny):
    root, _ = tiny
    Image.new("RGB", (24, 16), (10, 20, 30)).save(root / "v1s" / "teA" / "frames" / "1.jpg")
    frames, _ = _table(root, A.read_metadata(root))
    labels = np.eye(5, NUM_FG, dtype=np.float32)
    ds = VideoClips(frames, labels, 4, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 2.0), preload=True)
    item = ds[3]
    assert item["frames"].shape == (5, 3, 4, 4) and item["video"] == 3
    # teA frame 1 is solid (10, 20, 30): values / 255, blue divided by std 2
    # (JPEG keeps a flat colour within +-2 levels)
    got = item["frames"][1, :, 0, 0].numpy()
    np.testing.assert_allclose(got, [10 / 255, 20 / 255, 30 / 510], atol=2 / 255)
    batch = collate_videos([ds[0], ds[4]])
    assert batch["frames"].shape == (15, 3, 4, 4)
    assert batch["frame_video"].tolist() == [0] * 5 + [1] * 10
    assert batch["video"].tolist() == [0, 4] and batch["labels"].shape == (2, NUM_FG)
    with pytest.raises(ValueError, match="label rows"):
        VideoClips(frames, labels[:2], 4, mean=(0, 0, 0), std=(1, 1, 1))


def test_video_clips_max_frames_keeps_time_order(tiny):
    root, _ = tiny
    frames, _ = _table(root, A.read_metadata(root))
    ds = VideoClips(frames, np.zeros((5, NUM_FG), np.float32), 4, mean=(0, 0, 0), std=(1, 1, 1),
                    preload=True, max_frames=2)
    full = VideoClips(frames, np.zeros((5, NUM_FG), np.float32), 4, mean=(0, 0, 0),
                      std=(1, 1, 1), preload=True)[4]["frames"]
    sub = ds[4]["frames"]
    assert sub.shape[0] == 2
    picked = [next(t for t in range(len(full)) if torch.equal(full[t], f)) for f in sub]
    assert picked == sorted(picked)
