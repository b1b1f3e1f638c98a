"""The readers end to end on tiny datasets in each released layout (AVSS, S4, MS3), and the first
stages of the DAG (fbank, train_visual) on S4."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from layouts import S4_VIDEOS, make_avss, make_ms3, make_s4
from pcas_core.audio.front_end import front_end_shape
from pcas_core.data.dataset import open_dataset
from pcas_core.params import load_config
from stages.cli import app

ROOT = Path(__file__).resolve().parents[2]


def test_avss_end_to_end(tmp_path):
    ds = open_dataset({"root": make_avss(tmp_path / "avss"), "img_size": 16})
    assert ds.dataset == "avss" and not ds.binary and ds.num_classes == 71
    assert ds.metadata["uid"].tolist() == ["trA", "trB", "vaA", "teA", "teB"]
    assert ds.labels.shape == (5, 70)
    test = ds.split("test")
    masks = test.masks()
    assert masks.shape == (15, 16, 16)
    man, guitar = ds.label2idx["man"] - 1, ds.label2idx["guitar"] - 1
    assert set(np.unique(masks[:5])) == {0, man} and set(np.unique(masks[5:])) == {0, guitar}
    assert ds.split("train").clips((0, 0, 0), (1, 1, 1))[1]["frames"].shape == (5, 3, 16, 16)


def test_rows_of_a_split_and_audio_tracks(tmp_path):
    ds = open_dataset({"root": make_avss(tmp_path / "avss"), "img_size": 16})
    assert ds.videos_in("test").tolist() == [False, False, False, True, True]
    frames = ds.frames_in("test")  # 5 + 5 + 5 frames of v1s/v1m videos, then 5 + 10 of teA/teB
    assert frames.tolist() == [False] * 15 + [True] * 15
    paths, n_steps = ds.audio_tracks()
    assert [p.parent.name for p in paths] == ["trA", "trB", "vaA", "teA", "teB"]
    assert all(p.name == "audio.wav" and p.is_file() for p in paths)
    assert n_steps.dtype == np.int32 and n_steps.tolist() == [5, 5, 5, 5, 10]


def test_s4_end_to_end(tmp_path):
    ds = open_dataset({"root": make_s4(tmp_path / "s4"), "img_size": 8, "dataset": "s4"})
    assert ds.dataset == "s4" and ds.binary
    assert ds.class_names == ["background", "baby_laughter", "dog_barking"]
    assert ds.metadata["uid"].tolist() == [v for v, _, _ in S4_VIDEOS]
    cats = [c for _, c, _ in S4_VIDEOS]
    np.testing.assert_array_equal(ds.labels.argmax(1) + 1, [ds.label2idx[c] - 1 for c in cats])
    assert ds.labels.sum() == len(S4_VIDEOS)
    # train: only frame 1 annotated; val/test: all 5
    annotated = ds.frames.groupby("uid")["mask_path"].apply(lambda m: int((m != "").sum()))
    assert annotated.to_dict() == {"s4a": 1, "s4b": 1, "s4c": 1, "s4d": 5, "s4e": 5, "s4f": 5}
    assert ds.frames["frame"].tolist()[:5] == [1, 2, 3, 4, 5]
    masks = ds.masks()
    assert masks.dtype == np.uint8 and set(np.unique(masks)) == {0, 1}
    # the box covers the centre 4x4 of 8x8 on frames 1-4; frame 5's mask is empty
    assert masks.sum(axis=(1, 2)).tolist() == [16] * 3 + ([16] * 4 + [0]) * 3
    fc = ds.frame_classes()
    e = ds.frames.index[ds.frames["uid"] == "s4e"]
    np.testing.assert_array_equal(fc[e[0]], ds.labels[4])
    np.testing.assert_array_equal(fc[e[4]], np.zeros(2))  # empty mask: no class in this frame
    assert np.isnan(fc[1]).all()  # unannotated train frame


def test_s4_audio_from_source_videos(tmp_path):
    root = make_s4(tmp_path / "s4", audio="mp4")
    ds = open_dataset({"root": root, "img_size": 8, "dataset": "s4",
                       "audio_dir": root / "videos"})
    paths = ds.frames.groupby("video")["audio_path"].first()
    assert [Path(p).name for p in paths] == [f"{v}.mp4" for v, _, _ in S4_VIDEOS]


def test_ms3_end_to_end(tmp_path):
    ds = open_dataset({"root": make_ms3(tmp_path / "ms3"), "img_size": 16, "dataset": "ms3"})
    assert ds.dataset == "ms3" and ds.binary and ds.num_classes == 71
    names = [[ds.class_names[k + 1] for k in np.flatnonzero(row)] for row in ds.labels]
    assert names == [["guitar", "man"], ["dog"], ["man"], ["dog", "guitar"], ["man"]]
    assert (ds.frames["mask_path"] != "").all()
    assert ds.frames["frame_path"].iloc[0].endswith("visual_frames/m3a/m3a.mp4_1.png")
    masks = ds.split("test").masks()
    assert masks.shape == (10, 16, 16) and masks.sum() == 10 * 64  # palette index 1 -> white


def _tiny_params(tmp_path: Path, data: dict) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["base"].update(device="cpu", amp=False)
    params["data"].update({k: str(v) if isinstance(v, Path) else v for k, v in data.items()})
    params["train_visual"].update(epochs=1, min_steps=0, batch_videos=2,
                                  backbone="vit_tiny_patch16_224",
                                  pretrained=False, token_layer=-1, frozen_stages=0,
                                  backbone_kwargs={"patch_size": 8, "depth": 1, "embed_dim": 24,
                                                   "num_heads": 2})
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_fbank_and_train_visual_run_on_s4(tmp_path):
    root = make_s4(tmp_path / "s4")
    params = _tiny_params(tmp_path, {"root": root, "dataset": "s4", "img_size": 32})
    run = CliRunner()
    out = run.invoke(app, ["fbank", "--params", str(params), "--out", str(tmp_path / "fb.h5")])
    assert out.exit_code == 0, out.output + repr(out.exception)
    with h5py.File(tmp_path / "fb.h5") as f:
        # the shipped front end (aisfx: 10.24 s = 442 frames of 96 bands; AST would be 1024 x 128)
        assert f["fbank"].shape == (6, *front_end_shape(load_config(params).fbank)) == (6, 442, 96)
        assert f["n_steps"][:].tolist() == [5] * 6
    out = run.invoke(app, ["train-visual", "--params", str(params),
                           "--model-out", str(tmp_path / "v.safetensors"),
                           "--store-out", str(tmp_path / "v.h5"),
                           "--metrics-out", str(tmp_path / "v.json"),
                           "--curves-out", str(tmp_path / "curves")])
    assert out.exit_code == 0, out.output + repr(out.exception)
    with h5py.File(tmp_path / "v.h5") as f:
        assert f["logits"].shape == (30, 2)  # 6 videos x 5 frames, 2 S4 categories here
    assert "frame_cls_test" in json.loads((tmp_path / "v.json").read_text())


@pytest.mark.parametrize("maker,kind", [(make_avss, "avss"), (make_s4, "s4"), (make_ms3, "ms3")])
def test_check_data_cli_on_each_layout(tmp_path, maker, kind):
    root = maker(tmp_path / kind)
    out = CliRunner().invoke(app, ["check-data", str(root), "--dataset", kind,
                                   "--params", str(tmp_path / "none.yaml")])
    assert out.exit_code == 0, out.output + repr(out.exception)
    assert out.output.startswith(f"dataset {kind} at {root}")
    assert "frames per video: 5: " in out.output and out.output.rstrip().endswith("OK")
    assert "audio sample rates (Hz): 16000:" in out.output


def test_check_data_reports_problems_and_skip_bad(tmp_path):
    root = make_avss(tmp_path / "avss")
    (root / "v1s" / "teA" / "labels_rgb" / "2.png").unlink()
    bad = root / "v1s" / "vaA" / "labels_rgb" / "0.png"
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[0, :3] = (1, 2, 3)
    from PIL import Image

    Image.fromarray(rgb).save(bad)
    args = ["check-data", str(root), "--params", str(tmp_path / "none.yaml")]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 1
    assert f"ERROR {root}/v1s/teA/labels_rgb/2.png: mask of frame 2 not found" in out.output
    assert (f"note  {bad}: colours not in the 71-entry palette: 3 pixels (1 distinct colours), "
            "e.g. RGB [(1, 2, 3)], mapped to background (video vaA)") in out.output
    assert out.output.rstrip().endswith("FAILED")
    out = CliRunner().invoke(app, args + ["--skip-bad"])
    assert out.exit_code == 0 and "these videos are left out: teA" in out.output
