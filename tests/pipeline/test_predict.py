"""`pcas predict`: a demo clip muxed into an mp4 gives the masks of the pipeline's own test-time
path; bad files are refused with their name; a 1080p 30 fps stereo 44.1 kHz clip is sampled and
resampled correctly; `--root` scores another dataset as `evaluate` does."""

import json
from dataclasses import asdict
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from pcas_core.audio.fbank import ast_fbank, load_wave
from pcas_core.storage.weights import save_checkpoint
from pcas_core.data.avsbench import class_names, read_label2idx
from pcas_core.data.dataset import open_dataset
from pcas_core.demo.compose import build_demo_dataset
from pcas_core.demo.video import DemoVideo
from pcas_core.data.palette import voc_palette
from pcas_core.data.images import resize_frame
from pcas_core.method.crf import DenseCRF
from pcas_core.data.video import (VideoError, VideoWriter, open_video, sample_frames, sample_plan)
from pcas_core.pipeline.inference import segment
from pcas_core.pipeline.train_audio import encode_steps, step_prompts
from pcas_core.pipeline.train_visual import visual_pass
from pcas_core.runtime.stage import RunEnv
from pcas_core.storage.stores import concat_rows
from pcas_core.models.heads import HeadInputs, SegmentationHead, save_segmentation_head
from pcas_core.models.tvp import TVPAudioEncoder
from pcas_core.models.visual import build_visual
from pcas_core.params import CRFConfig, DemoClips, DemoConfig, FbankConfig, PredictConfig, SplitCounts
from pcas_core.pipeline.predict import load_models, predict_video, to_model_audio
from pcas_core.evaluation.scoring import Prediction, score, scored_frames
from stages.cli import app

ASSETS = Path(__file__).resolve().parents[2] / "data" / "demo-assets"
SIZE, N_FRAMES, SR = 32, 5, 16000
FBANK = FbankConfig(sample_rate=SR, num_mel_bins=32, target_length=500, frame_shift_ms=10.0,
                    front_end="ast")
CPU = torch.device("cpu")
ENV = RunEnv(device=CPU)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Small random models saved as checkpoints, a one-clip demo dataset, and that clip muxed
    losslessly into an mp4 (RGB h264 at qp 0, ALAC audio)."""
    base = tmp_path_factory.mktemp("predict")
    torch.manual_seed(0)
    vcfg = {"backbone": "vit_tiny_patch16_224", "num_classes": 70, "img_size": SIZE,
            "backbone_kwargs": {"patch_size": 8, "depth": 1, "embed_dim": 24, "num_heads": 2},
            "conv_stem": False, "token_layer": 0}
    acfg = {"num_classes": 70, "n_mels": 32, "target_length": 500, "patch_size": 16,
            "fstride": 16, "tstride": 16, "embed_dim": 24, "depth": 1, "num_heads": 2,
            "prompt_dim": 24, "max_steps": N_FRAMES, "frames_per_step": 100,
            "head_bias_prior": 0.5}
    paths = {k: base / f"{k}.safetensors" for k in ("visual", "audio", "aligned", "head")}
    save_checkpoint(paths["visual"], build_visual(vcfg), vcfg)
    save_checkpoint(paths["aligned"], build_visual(vcfg), vcfg)
    save_checkpoint(paths["audio"], TVPAudioEncoder(**acfg), acfg)
    head = SegmentationHead(in_dim=24, grid=(4, 4))
    torch.nn.init.normal_(head.classifier.weight, std=2.0)  # random but spatially varied masks
    save_segmentation_head(paths["head"], head, HeadInputs("patch"))
    root = base / "demo"
    none = SplitCounts()
    build_demo_dataset(ASSETS, root, DemoConfig(
        seed=0, img_size=64, sample_rate=SR, classes=["dog", "guitar"],
        clips=DemoClips(always=none, event=none, silent=none, multi=SplitCounts(test=1),
                        long=none)))
    data = open_dataset({"root": root, "img_size": SIZE, "label_source": "masks"},
                        needed_splits=("test",))
    clip = data.frames
    frames = [np.asarray(Image.open(p).convert("RGB")) for p in clip["frame_path"]]
    wave = load_wave(Path(clip["audio_path"].iloc[0]), sample_rate=SR).numpy()
    video = base / "clip.mp4"
    with VideoWriter(video, fps=1, width=64, height=64, audio=wave[None], sample_rate=SR,
                     lossless=True) as writer:
        for f in frames:
            writer.add(f)
    params = base / "params.yaml"
    params.write_text(
        "base: {seed: 0, device: cpu, amp: false, threads: 0}\n"
        f"data: {{root: {root}, img_size: {SIZE}, label_source: masks}}\n"
        f"fbank: {json.dumps(asdict(FBANK))}\n"
        f"train_audio: {{encoder: ast, model: {{max_steps: {N_FRAMES}}}}}\n"
        "evaluate: {crf: false}\n"  # the head's plain argmax; the CRF path has its own test
        "predict: {fps: 1, overlay_alpha: 0.55, batch_frames: 32, "
        f"batch_videos: 8, models: {json.dumps({k: str(v) for k, v in paths.items()})}}}\n")
    return {"base": base, "paths": paths, "data": data, "frames": frames, "wave": wave,
            "video": video, "params": params, "root": root}


def _pipeline_path(setup):
    """What the pipeline computes for the clip: masks as `evaluate` makes them (from the dataset's
    frames), audio scores as the fbank and train_audio stages make them."""
    models = load_models(**setup["paths"])
    test = setup["data"].split("test")
    masks, _ = segment(models.aligned, models.head, test.clips(models.aligned.mean, models.aligned.std),
                       features=models.features, out_size=(SIZE, SIZE), batch_videos=8,
                       batch_frames=32, env=ENV)
    fb = ast_fbank(torch.from_numpy(setup["wave"]), sample_rate=SR, num_mel_bins=32,
                   target_length=500)
    pooled = concat_rows(visual_pass(models.visual, test.clips(models.visual.mean, models.visual.std),
                                     batch_videos=8, env=ENV))["pooled_patch"]
    prompts = torch.from_numpy(step_prompts(test.frames, pooled, 1, N_FRAMES))
    _, logits = encode_steps(models.audio, fb[None], prompts, torch.tensor([N_FRAMES]),
                             batch_videos=1, env=ENV)
    return masks, torch.from_numpy(logits[0]).sigmoid().numpy()


def test_predict_on_an_mp4_gives_the_pipeline_masks(setup):
    # lossless mux: the decoded frames are the dataset's frames, pixel for pixel
    decoded = list(sample_frames(setup["video"], sample_plan(N_FRAMES, 1, N_FRAMES)["time_s"]))
    assert all(np.array_equal(a, b) for a, b in zip(decoded, setup["frames"]))
    out = setup["base"] / "out"
    result = CliRunner().invoke(app, ["predict", str(setup["video"]), "--out", str(out),
                                      "--params", str(setup["params"])])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "wall time per second of video" in result.output
    ref_masks, ref_audio = _pipeline_path(setup)
    assert len(np.unique(ref_masks)) > 2  # a varied mask, not one class everywhere
    pngs = sorted((out / "masks").glob("*.png"))
    assert len(pngs) == N_FRAMES
    got = np.stack([np.asarray(Image.open(p)) for p in pngs])
    np.testing.assert_array_equal(got, ref_masks)
    pal = Image.open(pngs[0]).getpalette()[:6]
    assert pal == [0, 0, 0, 128, 0, 0]  # AVSBench (VOC) colours
    pred = json.loads((out / "predictions.json").read_text())
    names = class_names(read_label2idx(setup["root"]))
    assert pred["n_frames"] == N_FRAMES
    for t, frame in enumerate(pred["frames"]):
        assert frame["time_s"] == t + 0.5
        for c in frame["classes"]:
            assert c["class"] == names[c["index"]]
            assert c["audio_score"] == pytest.approx(ref_audio[t, c["index"] - 1], abs=1e-4)
            assert c["area_px"] == int((ref_masks[t] == c["index"]).sum())
    with av.open(str(out / "overlay.mp4")) as ov:
        assert ov.streams.audio and ov.streams.audio[0].rate == SR
        assert sum(1 for _ in ov.decode(video=0)) == N_FRAMES


def test_evaluate_crf_refines_predict_masks_as_in_evaluate(setup, tmp_path):
    """With `evaluate.crf: true` the masks of `pcas predict` are the head's scores refined by the
    dense CRF with `pseudo_masks.crf`'s kernels on each frame, as `evaluate` refines the test
    split: the masks of :func:`segment` given the frames and that CRF, not its plain argmax."""
    params = tmp_path / "params.yaml"
    params.write_text(setup["params"].read_text().replace("evaluate: {crf: false}",
                                                          "evaluate: {crf: true}")
                      + "pseudo_masks: {crf: {iterations: 5, bilateral_compat: 10.0}}\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["predict", str(setup["video"]), "--out", str(out),
                                      "--params", str(params)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    got = np.stack([np.asarray(Image.open(p)) for p in sorted((out / "masks").glob("*.png"))])
    models = load_models(**setup["paths"])
    test = setup["data"].split("test")
    images = np.stack([resize_frame(f, SIZE) for f in setup["frames"]])
    crf = DenseCRF(CRFConfig(iterations=5, bilateral_compat=10.0))
    refined, _ = segment(models.aligned, models.head,
                         test.clips(models.aligned.mean, models.aligned.std),
                         features=models.features, out_size=(SIZE, SIZE), batch_videos=8,
                         batch_frames=32, env=ENV, images=images, crf=crf)
    plain, _ = _pipeline_path(setup)
    np.testing.assert_array_equal(got, refined)
    assert (refined != plain).mean() > 0.01  # the CRF moved pixels: it was applied


def test_a_long_clip_is_processed_window_by_window(setup, tmp_path):
    """The clip twice in a row (10 s, two windows of max_steps = 5 s): the second window gives
    the same masks and audio scores as the clip alone, so windows do not leak into each other."""
    video = tmp_path / "twice.mkv"
    with VideoWriter(video, fps=1, width=64, height=64, audio=np.tile(setup["wave"], 2)[None],
                     sample_rate=SR, lossless=True) as writer:
        for f in setup["frames"] * 2:
            writer.add(f)
    models = load_models(**setup["paths"])
    out = tmp_path / "out"
    summary = predict_video(models, video, out, PredictConfig(fps=1), fbank=FBANK,
                            audio_threshold=0.0, class_names=[str(i) for i in range(71)],
                            palette=voc_palette(), env=ENV)
    assert summary["n_frames"] == 2 * N_FRAMES
    ref_masks, ref_audio = _pipeline_path(setup)
    got = np.stack([np.asarray(Image.open(p)) for p in sorted((out / "masks").glob("*.png"))])
    np.testing.assert_array_equal(got, np.concatenate([ref_masks, ref_masks]))
    frames = json.loads((out / "predictions.json").read_text())["frames"]
    for t, frame in enumerate(frames[N_FRAMES:]):
        scores = {c["index"]: c["audio_score"] for c in frame["classes"]}  # threshold 0: all
        assert len(scores) == 70
        np.testing.assert_allclose([scores[k] for k in range(1, 71)], ref_audio[t], atol=1e-4)


def test_root_scores_another_dataset_as_evaluate_does(setup):
    out = setup["base"] / "scored"
    result = CliRunner().invoke(app, ["predict", "--root", str(setup["root"]), "--out", str(out),
                                      "--params", str(setup["params"])])
    assert result.exit_code == 0, result.output + repr(result.exception)
    metrics = json.loads((out / "metrics.json").read_text())
    ref_masks, _ = _pipeline_path(setup)
    test = setup["data"].split("test")
    scored = scored_frames(test.frames, require_all=True)
    expected = score("avss", Prediction(ref_masks[test.has_mask()]), test.masks(), scored,
                     batch_videos=4)
    assert metrics["clean"]["miou"] == pytest.approx(expected["clean"]["miou"])
    assert metrics["clean"]["n_frames"] == N_FRAMES and metrics["split"] == "test"
    assert 0.0 <= metrics["official"]["miou"] <= 1.0
    assert "clean" in metrics["baseline"]["background"]


def _mux(path: Path, video: bool, audio: bool, frames: int = 3) -> Path:
    with av.open(str(path), "w") as c:
        vs = c.add_stream("mpeg4", rate=1) if video else None
        if vs:
            vs.width, vs.height, vs.pix_fmt = 32, 32, "yuv420p"
        ast = c.add_stream("aac", rate=SR) if audio else None
        c.start_encoding()  # header even without frames
        for _ in range(frames if vs else 0):
            c.mux(vs.encode(av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), "rgb24")))
        if vs:
            c.mux(vs.encode(None))
        if ast and frames:
            f = av.AudioFrame.from_ndarray(np.zeros((1, SR * frames), np.float32), "fltp", "mono")
            f.sample_rate = SR
            c.mux(ast.encode(f))
            c.mux(ast.encode(None))
    return path


@pytest.mark.parametrize("kind, message", [
    ("no_audio", "no audio track"), ("no_video", "no video track"),
    ("garbage", "unreadable container"), ("no_samples", "zero-length"),
    ("empty_file", "zero-length file"), ("missing", "no such file")])
def test_bad_videos_are_refused_with_their_name(tmp_path, kind, message):
    path = tmp_path / f"{kind}.mp4"
    if kind == "no_audio":
        _mux(path, video=True, audio=False)
    elif kind == "no_video":
        _mux(path, video=False, audio=True)
    elif kind == "garbage":
        path.write_text("this is not a video")
    elif kind == "no_samples":  # streams declared, nothing written
        _mux(path, video=True, audio=True, frames=0)
    elif kind == "empty_file":
        path.touch()
    with pytest.raises(VideoError, match=message) as err:
        open_video(path)
    assert str(path) in str(err.value)


def test_bad_video_through_the_command(setup, tmp_path):
    path = _mux(tmp_path / "silent.mp4", video=True, audio=False)
    result = CliRunner().invoke(app, ["predict", str(path), "--out", str(tmp_path / "o"),
                                      "--params", str(setup["params"])])
    assert result.exit_code == 1
    assert f"{path}: no audio track" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "o" / "overlay.mp4").exists()


def test_1080p_30fps_stereo_44k_is_sampled_and_resampled(setup, tmp_path):
    clip = DemoVideo(ASSETS, ["dog", "cello"], width=1920, height=1080, fps=30, seconds=2.0,
                     sample_rate=44100)
    path = tmp_path / "hd.mp4"
    clip.write(path)
    src = open_video(path)
    assert (src.width, src.height, src.frame_rate, src.sample_rate) == (1920, 1080, 30.0, 44100)
    assert src.audio.shape[0] == 2 and src.duration_s == pytest.approx(2.0, abs=0.05)
    plan = sample_plan(src.duration_s, 2, N_FRAMES)
    assert plan["time_s"].tolist() == [0.25, 0.75, 1.25, 1.75]
    for t, frame in zip(plan["time_s"], sample_frames(path, plan["time_s"])):
        shown = int(t * 30)  # the frame on screen at t; h264 is lossy, so the closest of its
        near = range(shown - 3, shown + 4)  # neighbours (objects move 1-2 px per frame)
        err = [np.abs(frame[::4, ::4].astype(np.float32) - clip.frame(i)[::4, ::4]).mean()
               for i in near]
        assert near[int(np.argmin(err))] == shown
    mono = to_model_audio(src.audio, 44100, SR)
    ref = to_model_audio(clip.audio(), 44100, SR)
    assert abs(len(mono) - 2 * SR) < 0.05 * SR
    n = min(len(mono), len(ref))
    assert np.corrcoef(mono[:n], ref[:n])[0, 1] > 0.99  # AAC is lossy, but the same sound
    models = load_models(**setup["paths"])
    out = tmp_path / "out"
    summary = predict_video(models, path, out, PredictConfig(fps=2), fbank=FBANK,
                            audio_threshold=0.3, class_names=[str(i) for i in range(71)],
                            palette=voc_palette(), env=ENV)
    assert summary["n_frames"] == 4 and len(list((out / "masks").glob("*.png"))) == 4
    with av.open(str(out / "overlay.mp4")) as ov:
        assert ov.streams.audio[0].rate == 44100 and ov.streams.audio[0].channels == 2
        frames = [f.to_ndarray(format="rgb24") for f in ov.decode(video=0)]
    assert len(frames) == 4 and frames[0].shape == (1080, 1920, 3)


def _gated_paths(setup, tmp_path, threshold, condition="none", audio_input="token"):
    """The setup's models with the head saved again, gated at ``threshold`` (and conditioned)."""
    torch.manual_seed(0)
    head = SegmentationHead(in_dim=24, grid=(4, 4), audio_condition=condition,
                            audio_dim=0 if condition == "none" else
                            (24 if audio_input == "token" else 70))
    torch.nn.init.normal_(head.classifier.weight, std=2.0)
    if condition == "film":
        torch.nn.init.normal_(head.film.proj.weight, std=0.5)
    path = tmp_path / f"head_{condition}.safetensors"
    save_segmentation_head(path, head, HeadInputs("patch", audio_input, True, threshold))
    return {**setup["paths"], "head": path}


@pytest.mark.parametrize("condition, audio_input", [("none", "token"), ("film", "token"),
                                                    ("concat", "scores")])
def test_gated_predict_paints_no_class_outside_k_t(setup, tmp_path, condition, audio_input):
    """With the gate, every mask pixel is background or a class of its frame's K_t
    (sigmoid(s_t) >= theta_a, theta_a from the head's checkpoint), the masks are those of the
    pipeline's own path with the same audio, and the gate changes the masks."""
    _, ref_audio = _pipeline_path(setup)
    theta = float(np.quantile(ref_audio, 0.9))  # a few classes per frame
    paths = _gated_paths(setup, tmp_path, theta, condition, audio_input)
    models = load_models(**paths)
    assert models.inputs.audio_gate and models.inputs.audio_threshold == theta
    out = tmp_path / "out"
    predict_video(models, setup["video"], out, PredictConfig(fps=1), fbank=FBANK,
                  audio_threshold=theta, class_names=[str(i) for i in range(71)],
                  palette=voc_palette(), env=ENV)
    got = np.stack([np.asarray(Image.open(p)) for p in sorted((out / "masks").glob("*.png"))])
    allowed = ref_audio >= theta
    assert allowed.any(axis=1).all() and not allowed.all(axis=1).any()
    for t in range(N_FRAMES):
        painted = set(np.unique(got[t]).tolist()) - {0}
        assert painted <= set((np.flatnonzero(allowed[t]) + 1).tolist()), t
    assert (got > 0).any()  # not background everywhere
    if condition == "none":  # the same head without its gate
        test = setup["data"].split("test")
        ungated, _ = segment(models.aligned, models.head,
                             test.clips(models.aligned.mean, models.aligned.std),
                             features="patch", out_size=(SIZE, SIZE), batch_videos=8,
                             batch_frames=32, env=ENV)
        assert not np.array_equal(got, ungated)
        # where the ungated head painted a heard class, the gated one paints it too
        heard = np.take_along_axis(np.c_[np.ones(N_FRAMES, bool), allowed][:, :, None, None]
                                   .repeat(SIZE, 2).repeat(SIZE, 3),
                                   ungated[:, None].astype(np.int64), 1)[:, 0]
        np.testing.assert_array_equal(got[heard & (ungated > 0)], ungated[heard & (ungated > 0)])


def test_root_with_a_gated_head_hears_the_dataset_audio(setup, tmp_path):
    """`--root` runs fbank and the audio encoder on the other dataset: the frames' logits are
    those of the pipeline's own audio path, and the scored masks obey the gate."""
    from pcas_core.pipeline.predict_dataset import dataset_audio, score_dataset
    _, ref_audio = _pipeline_path(setup)
    theta = float(np.quantile(ref_audio, 0.9))
    models = load_models(**_gated_paths(setup, tmp_path, theta))
    test = setup["data"].split("test")
    tokens, logits = dataset_audio(models, test, FBANK, batch_videos=8, env=ENV)
    assert tokens.shape == (N_FRAMES, 24) and logits.shape == (N_FRAMES, 70)
    np.testing.assert_allclose(torch.from_numpy(logits).sigmoid().numpy(), ref_audio, atol=1e-6)
    metrics = score_dataset(models, setup["data"], PredictConfig(), fbank=FBANK,
                            official_batch_videos=4, env=ENV)
    assert metrics["clean"]["n_frames"] == N_FRAMES
    assert metrics["official"]["n_padded"] == N_FRAMES
    # the official padded frame has no audio: the gated head paints background there
    from pcas_core.pipeline.inference import padded_prediction, predict_test_split
    heard = models.head_audio(logits, tokens)
    _, pad_mask, _ = padded_prediction(models.aligned, models.head, test.img_size,
                                       features="patch", env=ENV, audio=heard)
    chunks = list(predict_test_split(models.aligned, models.head, test, features="patch",
                                     batch_videos=8, batch_frames=32, env=ENV, audio=heard))
    assert (pad_mask == 0).all() and any((c.masks > 0).any() for c in chunks)


def test_a_head_that_hears_another_width_is_refused(setup, tmp_path):
    head = SegmentationHead(in_dim=24, grid=(4, 4), audio_condition="film", audio_dim=23)
    path = tmp_path / "wrong.safetensors"
    save_segmentation_head(path, head, HeadInputs("patch", "token"))
    with pytest.raises(ValueError, match="vectors of width 23") as err:
        load_models(**{**setup["paths"], "head": path})
    assert str(path) in str(err.value)
