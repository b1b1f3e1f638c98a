"""`pcas predict`: the trained models on a user's own video (another dataset folder:
:mod:`pcas_core.pipeline.predict_dataset`).

On a video (:func:`predict_video`): frames are sampled at ``fps`` (:func:`sample_plan`), the
clip is cut into windows of the audio encoder's ``max_steps`` seconds, and each window goes through
:func:`predict_clip`: the whole test-time path, whose masks come from
:func:`pcas_core.pipeline.inference.segment` as the ``evaluate`` stage's do. Written
to the output folder:

- ``masks/<frame>.png``: class-index mask per sampled frame at the models' frame size (palette PNG,
  AVSBench colours; converted to RGB it reads as an AVSBench ``labels_rgb`` mask);
- ``overlay.mp4``: the sampled frames at full size with the predicted classes coloured and
  labelled, one per ``1 / fps`` seconds, with the original audio;
- ``predictions.json``: per frame, each class that is in the mask or audible (audio score >=
  ``audio_threshold``), with its audio score, visual score and pixel area.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from dataclasses import dataclass
from typing import Any

from pcas_core.audio.front_end import front_end_features, front_end_shape, front_end_timing
from pcas_core.audio.resample import resample
from pcas_core.data.clips import ArrayClips
from pcas_core.data.images import resize_frame
from pcas_core.data.video import (VideoSource, VideoWriter, open_video, sample_frames, sample_plan,
                                  wave_segment)
from pcas_core.evaluation.visualize import labelled_overlay, save_index_png
from pcas_core.models.heads import HeadInputs, SegmentationHead, load_segmentation_head, needs_audio
from pcas_core.models.tvp import TVPAudioEncoder, load_audio_encoder
from pcas_core.models.visual import VisualClassifier, load_visual
from pcas_core.params import FbankConfig, PredictConfig
from pcas_core.pipeline.inference import CRF, HeadAudio, head_audio, segment
from pcas_core.pipeline.train_audio import encode_steps
from pcas_core.pipeline.train_visual import visual_pass
from pcas_core.runtime.progress import Progress
from pcas_core.runtime.stage import RunEnv
from pcas_core.storage.atomic import atomic_path
from pcas_core.storage.stores import concat_rows

__all__ = ["TrainedModels", "load_models", "ClipPrediction", "predict_clip", "check_fbank_params",
           "to_model_audio", "predict_video"]


@dataclass
class TrainedModels:
    """The four trained models of the test-time path.

    Attributes:
        visual: stage-1 classifier (its v_t are the TVP prompts it was trained with).
        audio: TVP audio encoder.
        aligned: the visual model after contrastive alignment (patch tokens, visual scores).
        head: segmentation head on the aligned model's ``inputs.features`` tokens.
        inputs: what the head reads (:class:`pcas_core.models.heads.HeadInputs`: visual
            features, audio input, audio gate and its theta_a).
        img_size: frame side in pixels the visual models take.
        audio_config: the encoder's config (``target_length``, ``n_mels``, ``max_steps``, ...).
    """

    visual: VisualClassifier
    audio: TVPAudioEncoder
    aligned: VisualClassifier
    head: SegmentationHead
    inputs: HeadInputs
    img_size: int
    audio_config: dict[str, Any]

    @property
    def features(self) -> str:
        """``patch`` | ``final`` | ``patch+final`` (see :func:`head_inputs`)."""
        return self.inputs.features

    def head_audio(self, logits: np.ndarray, tokens: np.ndarray) -> HeadAudio:
        """What the head hears of M frames from the encoder's (M, C) step logits and (M, D)
        step tokens (:func:`pcas_core.pipeline.inference.head_audio`)."""
        return head_audio(self.inputs, conditioned=self.head.audio_condition != "none",
                          n_frames=len(logits), num_foreground=self.head.num_classes - 1,
                          logits=logits, tokens=tokens)


def load_models(*, visual: Path, audio: Path, aligned: Path, head: Path) -> TrainedModels:
    """Load the checkpoints of the last ``dvc repro`` (or any compatible set) and check that they
    fit together.

    Raises:
        FileNotFoundError / ValueError: a checkpoint is missing or unreadable, or the models do not
            fit (prompt width, frame size, patch grid, head width, the width of the audio the head
            hears, the classes of its gate); the message names the files.
    """
    vis, vis_cfg = load_visual(visual)
    enc, enc_cfg = load_audio_encoder(audio)
    ali, ali_cfg = load_visual(aligned)
    seg, inputs = load_segmentation_head(head)
    if enc.use_prompts and enc.prompt_dim != vis.embed_dim:
        raise ValueError(f"{audio} takes prompts of width {enc.prompt_dim} but {visual} gives "
                         f"v_t of width {vis.embed_dim}: not models of the same run")
    if int(vis_cfg["img_size"]) != int(ali_cfg["img_size"]):
        raise ValueError(f"{visual} takes {vis_cfg['img_size']} px frames, {aligned} "
                         f"{ali_cfg['img_size']} px: not models of the same run")
    width = ali.embed_dim * (2 if inputs.features == "patch+final" else 1)
    if tuple(seg.grid) != tuple(ali.grid) or seg.in_dim != width:
        raise ValueError(f"{head} (grid {seg.grid}, {seg.in_dim} channels) does not fit "
                         f"{aligned} (grid {ali.grid}, {inputs.features} tokens of width {width})")
    if needs_audio(seg, inputs) and seg.num_classes - 1 != enc.num_classes:
        raise ValueError(f"{head} hears {seg.num_classes - 1} foreground classes, {audio} scores "
                         f"{enc.num_classes}: not models of the same run")
    heard = enc.embed_dim if inputs.audio_input == "token" else enc.num_classes
    if seg.audio_condition != "none" and seg.audio_dim != heard:
        raise ValueError(f"{head} hears {inputs.audio_input} vectors of width {seg.audio_dim}, "
                         f"{audio} gives {heard}: not models of the same run")
    return TrainedModels(vis.eval(), enc, ali.eval(), seg, inputs, int(ali_cfg["img_size"]),
                         enc_cfg)


@dataclass
class ClipPrediction:
    """What :func:`predict_clip` returns for T frames (C = 70 foreground classes).

    Attributes:
        masks: (T, S, S) uint8 class index at the models' frame size S.
        foreground: (T, S, S) float32, 1 - p(background).
        audio_scores: (T, C) float32, sigmoid(s_t) of each frame's second.
        visual_scores: (T, C) float32, sigmoid of the aligned model's frame logits.
    """

    masks: np.ndarray
    foreground: np.ndarray
    audio_scores: np.ndarray
    visual_scores: np.ndarray


def predict_clip(models: TrainedModels, frames: np.ndarray, fbank: torch.Tensor,
                 phase: np.ndarray, step: np.ndarray, *, batch_frames: int,
                 env: RunEnv, crf: CRF | None = None) -> ClipPrediction:
    """The whole test-time path on one clip; a head that hears gets each frame's a_t and s_t
    (its K_t when gated, :meth:`TrainedModels.head_audio`).

    A clip holds P phases of up to ``max_steps`` seconds: phase p is one TVP input (its own fbank,
    one prompt per second). At 1 frame per second P = 1 and frame t is step t, as in AVSBench;
    at f frames per second, phase p holds the p-th frame of every second, with the audio second
    centred on those frames (see :mod:`pcas_core.data.video`).

    Args:
        frames: (T, S, S, 3) uint8 RGB at the models' frame size.
        fbank: (P, target_length, n_mels) float32 normalised fbank per phase
            (:func:`pcas_core.audio.front_end.front_end_features`).
        phase: (T,) int, phase of each frame, in [0, P).
        step: (T,) int, second of each frame within the clip; per phase, steps 0..n-1 each once.
        crf: the dense CRF that refines the head's scores on each frame (``evaluate.crf``), as
            in ``evaluate``; None: the head's argmax.

    Raises:
        ValueError: shapes disagree, or a phase's steps are not 0..n-1 with n <= max_steps.
    """
    phase, step = np.asarray(phase, dtype=np.int64), np.asarray(step, dtype=np.int64)
    if not (len(frames) == len(phase) == len(step)) or fbank.ndim != 3:
        raise ValueError(f"frames {frames.shape}, phase {phase.shape}, step {step.shape} and "
                         f"fbank {tuple(fbank.shape)} do not describe one clip")
    n_phases, max_steps = len(fbank), int(models.audio.max_steps)
    n_steps = np.bincount(phase, minlength=n_phases)
    for p in range(n_phases):
        if sorted(step[phase == p].tolist()) != list(range(n_steps[p])) or n_steps[p] > max_steps:
            raise ValueError(f"phase {p}: steps {sorted(step[phase == p].tolist())} are not "
                             f"0..n-1 with n <= max_steps={max_steps}")
    size = (models.img_size, models.img_size)
    prompts = None
    if models.audio.use_prompts:
        clip = ArrayClips([frames], models.visual.mean, models.visual.std)
        pooled = concat_rows(visual_pass(models.visual, clip, batch_videos=1,
                                         env=env))["pooled_patch"]
        prompts = np.zeros((n_phases, int(n_steps.max()), pooled.shape[1]), dtype=np.float32)
        prompts[phase, step] = pooled
        prompts = torch.from_numpy(prompts)
    tokens, logits = encode_steps(models.audio, fbank.float(), prompts,
                                  torch.from_numpy(n_steps.astype(np.int64)),
                                  batch_videos=n_phases, env=env)
    clips = ArrayClips([frames], models.aligned.mean, models.aligned.std)
    masks, foreground = segment(models.aligned, models.head, clips, features=models.features,
                                out_size=size, batch_videos=1, batch_frames=batch_frames, env=env,
                                audio=models.head_audio(logits[phase, step], tokens[phase, step]),
                                images=frames if crf is not None else None, crf=crf)
    visual_logits = concat_rows(visual_pass(models.aligned, clips, batch_videos=1,
                                            env=env))["logits"]
    return ClipPrediction(masks, foreground,
                          torch.from_numpy(logits[phase, step]).sigmoid().numpy(),
                          torch.from_numpy(visual_logits).sigmoid().numpy())


def check_fbank_params(models: TrainedModels, fbank: FbankConfig) -> None:
    """The ``fbank`` params must be those the audio encoder was trained with.

    Raises:
        ValueError: the front end, its frames or bins (``fbank.target_length``/``num_mel_bins``)
            differ from the encoder's config, or its frame clock (``frame_shift_ms``) does not
            give the encoder's ``frames_per_step`` frames per second (names keys).
    """
    cfg = models.audio_config
    (frames, bins), clock = front_end_shape(fbank), front_end_timing(fbank)
    pairs = [("front_end", fbank.front_end, cfg.get("front_end", "ast")),
             ("target_length", frames, cfg["target_length"]),
             ("num_mel_bins", bins, cfg["n_mels"]),
             ("frame_shift_ms", clock.frames_per_second, cfg["frames_per_step"])]
    for key, have, want in pairs:
        if have != want:
            raise ValueError(f"params fbank.{key} gives {have}, but the audio encoder was trained "
                             f"with {want}: use the fbank params of the run that made the models")


def to_model_audio(audio: np.ndarray, rate: int, target_rate: int) -> np.ndarray:
    """(C, S) float32 at ``rate`` -> (S',) float32 mono at ``target_rate``: channels averaged (as
    the AVSBench loader does), then band-limited sinc resampling as the ``fbank`` stage reads audio
    (:func:`pcas_core.audio.resample.resample`)."""
    mono = torch.from_numpy(np.ascontiguousarray(audio.mean(axis=0), dtype=np.float32))
    return resample(mono, int(rate), int(target_rate)).numpy() if rate != target_rate \
        else mono.numpy()


def _fbank(wave: np.ndarray, fb: FbankConfig) -> torch.Tensor:
    return front_end_features(torch.from_numpy(wave), fb)


def _frame_record(frame: int, time_s: float, mask: np.ndarray, audio: np.ndarray,
                  visual: np.ndarray, names: list[str], audio_threshold: float) -> dict:
    """predictions.json entry: classes in the mask or audible, with scores and areas."""
    area = np.bincount(mask.reshape(-1), minlength=len(names))
    audible = audio >= audio_threshold
    classes = sorted(set(np.nonzero(area[1:])[0] + 1) | set(np.nonzero(audible)[0] + 1))
    return {"frame": frame, "time_s": round(time_s, 4), "mask": f"masks/{frame:05d}.png",
            "classes": [{"class": names[k], "index": int(k),
                         "audio_score": round(float(audio[k - 1]), 4),
                         "visual_score": round(float(visual[k - 1]), 4), "area_px": int(area[k]),
                         "area_fraction": round(float(area[k]) / mask.size, 5),
                         "audible": bool(audible[k - 1])} for k in classes]}


def predict_video(models: TrainedModels, video: Path | VideoSource, out: Path, cfg: PredictConfig,
                  *, fbank: FbankConfig, audio_threshold: float, class_names: list[str],
                  palette: np.ndarray, env: RunEnv, fps: int | None = None,
                  crf: CRF | None = None) -> dict:
    """Masks, overlay video and predictions.json of one video (see the module docstring).

    Args:
        video: the file, or the :class:`VideoSource` that :func:`open_video` made of it (the
            stage opens it before loading any model).
        cfg: the ``predict`` section (frames per second, overlay colour weight, head batch).
        fbank: the ``fbank`` params section (must match the audio encoder).
        audio_threshold: audio score from which a class counts as audible (theta_a,
            ``pseudo_masks.audio_threshold``).
        class_names: 71 names by class index.
        fps: frames sampled per second, instead of ``cfg.fps`` (the command line's ``--fps``).
        crf: as in :func:`predict_clip`.

    Returns:
        ``{"video", "n_frames", "fps", "duration_s", "wall_s", "wall_s_per_video_s",
        "audio_threshold"}`` (predictions.json holds these and ``frames``, one entry per frame).

    Raises:
        VideoError: unusable video (before any model runs); ValueError: fbank params mismatch.
    """
    start = time.perf_counter()
    fps = fps or cfg.fps
    check_fbank_params(models, fbank)
    src = video if isinstance(video, VideoSource) else open_video(video)
    rate = fbank.sample_rate
    wave = to_model_audio(src.audio, src.sample_rate, rate)
    window_s = int(models.audio.max_steps)
    plan = sample_plan(src.duration_s, fps, window_s)
    frames = sample_frames(src.path, plan["time_s"].to_numpy())
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    records = []
    with atomic_path(out / "masks", directory=True) as mask_dir, \
            atomic_path(out / "overlay.mp4") as overlay_tmp, \
            VideoWriter(overlay_tmp, fps=fps, width=src.width, height=src.height,
                        audio=src.audio, sample_rate=src.sample_rate) as writer, \
            Progress(len(plan), "predict", unit="frame", log=env.log) as bar:
        for w, rows in plan.groupby("window", sort=True):
            full = [next(frames) for _ in range(len(rows))]
            small = np.stack([resize_frame(f, models.img_size) for f in full])
            fb = torch.stack([
                _fbank(wave_segment(wave, rate, w * window_s + (p + 0.5) / fps - 0.5,
                                    float((rows["phase"] == p).sum())), fbank)
                for p in range(int(rows["phase"].max()) + 1)])
            pred = predict_clip(models, small, fb, rows["phase"].to_numpy(),
                                rows["step"].to_numpy(), batch_frames=cfg.batch_frames, env=env,
                                crf=crf)
            for j, (i, t) in enumerate(zip(rows["frame"], rows["time_s"])):
                save_index_png(mask_dir / f"{i:05d}.png", pred.masks[j], palette)
                rec = _frame_record(int(i), float(t), pred.masks[j], pred.audio_scores[j],
                                    pred.visual_scores[j], class_names, audio_threshold)
                records.append(rec)
                labels = {c["index"]: f"{c['class']} {c['audio_score']:.2f}"
                          for c in rec["classes"]}
                writer.add(labelled_overlay(full[j], pred.masks[j], palette, labels,
                                            cfg.overlay_alpha))
            bar.update(len(rows))
    wall = time.perf_counter() - start
    summary = {"video": str(src.path), "n_frames": len(plan), "fps": fps,
               "duration_s": round(src.duration_s, 3), "wall_s": round(wall, 3),
               "wall_s_per_video_s": round(wall / src.duration_s, 3),
               "audio_threshold": audio_threshold}
    with atomic_path(out / "predictions.json") as tmp:
        tmp.write_text(json.dumps({**summary, "frames": records}, indent=1))
    return summary
