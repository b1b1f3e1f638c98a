"""Every kind of bad input is refused when the dataset is opened (before any long work), with a
message naming the file and the problem; `data.skip_bad` leaves the bad videos out instead."""

from __future__ import annotations

import numpy as np
import pytest

from layouts import AVSS_HEADER, make_avss, make_ms3, make_s4, write_frame, write_wav
from pcas_core.data.dataset import open_dataset
from pcas_core.data.problems import DataError


def _open(root, **kw):
    return open_dataset({"root": root, "img_size": 16, **kw})


def _truncate(path, keep=0.6):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _video(root, subset, uid):
    return root / subset / uid


def _drop_last_frame(vdir):
    (vdir / "frames" / "4.jpg").unlink()
    (vdir / "labels_rgb" / "4.png").unlink()


# name -> (break the AVSS fixture, regex of the message, needs data.verify)
AVSS_CASES = {
    "missing frame": (lambda r: (_video(r, "v2", "teB") / "frames" / "4.jpg").unlink(),
                      r"teB/frames: 9 frames, but a video of subset v2 has 10", False),
    "missing audio": (lambda r: (_video(r, "v1s", "trA") / "audio.wav").unlink(),
                      r"trA/audio\.wav: audio file not found", False),
    "missing mask": (lambda r: (_video(r, "v1s", "teA") / "labels_rgb" / "2.png").unlink(),
                     r"teA/labels_rgb/2\.png: mask of frame 2 not found \(a test video needs "
                     r"every mask\)", False),
    "missing first train mask": (
        lambda r: (_video(r, "v1s", "trA") / "labels_rgb" / "0.png").unlink(),
        r"trA/labels_rgb/0\.png: mask of frame 0 not found \(a train video needs the first "
        r"frame's mask\)", False),
    "unreadable jpg": (lambda r: (_video(r, "v1s", "vaA") / "frames" / "1.jpg").write_bytes(
        b"GIF89a not a picture"), r"vaA/frames/1\.jpg: (truncated image|cannot read image)", False),
    "truncated jpg": (lambda r: _truncate(_video(r, "v1s", "vaA") / "frames" / "1.jpg", 0.9),
                      r"vaA/frames/1\.jpg: truncated image", False),
    "truncated png": (lambda r: _truncate(_video(r, "v1m", "trB") / "labels_rgb" / "3.png"),
                      r"trB/labels_rgb/3\.png: truncated image", False),
    "unreadable wav": (lambda r: (_video(r, "v1s", "teA") / "audio.wav").write_bytes(b"RIFFxx"),
                       r"teA/audio\.wav: unreadable or truncated audio", False),
    "truncated wav": (lambda r: _truncate(_video(r, "v1s", "teA") / "audio.wav"),
                      r"teA/audio\.wav: unreadable or truncated audio \(data chunk declares "
                      r"\d+ bytes but the file holds \d+\)", False),
    "frame count": (lambda r: _drop_last_frame(_video(r, "v1m", "trB")),
                    r"trB/frames: 4 frames, but a video of subset v1m has 5", False),
    "silent audio": (lambda r: write_wav(_video(r, "v1s", "teA") / "audio.wav",
                                         wave=np.zeros(5 * 16000, np.float32)),
                     r"teA/audio\.wav: audio is silent \(every sample is 0\)", True),
    "nan audio": (lambda r: write_wav(_video(r, "v1s", "teA") / "audio.wav", subtype="FLOAT",
                                      wave=np.full(5 * 16000, np.nan, np.float32)),
                  r"teA/audio\.wav: audio holds 80000 NaN or infinite samples", True),
    "off-palette with off_palette error": (
        lambda r: write_frame(_video(r, "v1s", "vaA") / "labels_rgb" / "0.png", seed=0),
        r"vaA/labels_rgb/0\.png: .*colours not in the 71-entry palette", True),
}


@pytest.mark.parametrize("case", sorted(AVSS_CASES))
def test_avss_bad_input_is_named_at_open(tmp_path, case):
    root = make_avss(tmp_path / "avss")
    breaker, pattern, verify = AVSS_CASES[case]
    breaker(root)
    kw = {"verify": verify, "off_palette": "error" if "off_palette" in case else "background"}
    with pytest.raises(DataError, match=pattern):
        _open(root, **kw)
    ds = _open(root, skip_bad=True, **kw)  # the bad video is left out and listed
    assert len(ds.metadata) == 4 and len(ds.skipped) >= 1
    assert ds.labels.shape[0] == 4 and set(ds.frames["video"]) == {0, 1, 2, 3}


def test_class_name_not_in_label2idx(tmp_path):
    root = make_avss(tmp_path / "avss")
    meta = root / "metadata.csv"
    meta.write_text(meta.read_text().replace('"man"', '"unicorn"'))
    with pytest.raises(DataError, match=r"metadata\.csv a_obj: class 'unicorn' \(in 'unicorn'\) "
                       r"is not in label2idx\.json \(video teA\)"):
        _open(root, label_source="a_obj")
    ms3 = make_ms3(tmp_path / "ms3")
    (ms3 / "video_labels.csv").write_text("name,labels\nm3a,guitar\nm3b,dragon\nm3c,man\n"
                                          "m3d,dog\nm3e,man\n")
    with pytest.raises(DataError, match=r"video_labels\.csv: class 'dragon' .*\(video m3b\)"):
        _open(ms3, dataset="ms3")


def test_csv_missing_a_required_column(tmp_path):
    root = make_avss(tmp_path / "avss")
    (root / "metadata.csv").write_text("vid,uid,a_obj,label\nx,trA,dog,v1s\n")
    with pytest.raises(DataError, match=r"metadata\.csv: required column 'split' is missing"):
        _open(root)
    s4 = make_s4(tmp_path / "s4")
    (s4 / "s4_meta_data.csv").write_text("name,start,category\ns4a,0,dog_barking\n")
    with pytest.raises(DataError, match=r"s4_meta_data\.csv: needs 4 columns \(by position: "
                       r"name, start, category, split\), found 3"):
        _open(s4, dataset="s4")
    ms3 = make_ms3(tmp_path / "ms3")
    (ms3 / "video_labels.csv").write_text("name,classes\nm3a,dog\n")
    with pytest.raises(DataError, match=r"video_labels\.csv: required column\(s\) \['labels'\]"):
        _open(ms3, dataset="ms3")


def test_short_audio_is_a_note_not_an_error(tmp_path, caplog):
    root = make_avss(tmp_path / "avss")
    write_wav(_video(root, "v1s", "teA") / "audio.wav", seconds=3.5)
    with caplog.at_level("INFO", logger="pcas.data"):
        ds = _open(root)
    assert len(ds.metadata) == 5
    assert "teA/audio.wav: audio is 3.50 s, shorter than the 5 s clip; its fbank is " \
           "zero-padded" in caplog.text


def test_empty_split_and_empty_csv(tmp_path):
    root = make_avss(tmp_path / "avss")
    with pytest.raises(DataError, match=r"split 'test' has no video"):
        _open(root, subsets=["v1m"])  # v1m has only a train video
    (root / "metadata.csv").write_text(AVSS_HEADER)
    with pytest.raises(DataError, match=r"metadata\.csv: no videos listed"):
        _open(root)


def test_ms3_without_labels_is_refused_clearly(tmp_path):
    root = make_ms3(tmp_path / "ms3")
    (root / "video_labels.csv").unlink()
    with pytest.raises(FileNotFoundError, match=r"video_labels\.csv: MS3 video-level labels not "
                       r"found.*data\.labels_csv"):
        _open(root, dataset="ms3")
    (root / "video_labels.csv").write_text("name,labels\nm3a,dog\n")
    with pytest.raises(DataError, match=r"video_labels\.csv: video has no row in the labels csv "
                       r"\(video m3b\)"):
        _open(root, dataset="ms3")


def test_s4_missing_audio_and_mask(tmp_path):
    root = make_s4(tmp_path / "s4")
    (root / "s4_data" / "audio_wav" / "test" / "dog_barking" / "s4e.wav").unlink()
    (root / "s4_data" / "gt_masks" / "test" / "baby_laughter" / "s4f" / "s4f_3.png").unlink()
    with pytest.raises(DataError, match=r"(?s)s4e\.wav: audio file not found.*"
                       r"s4f/s4f_3\.png: mask of frame 3 not found"):
        _open(root, dataset="s4")
