"""The test-time path of PCAS, once, for the `evaluate` stage and for `pcas predict`.

Per clip of T frames (at most the audio encoder's ``max_steps`` seconds), with no labels:

1. the stage-1 visual classifier encodes each frame: v_t, the TVP prompt (METHOD §1);
2. the TVP audio encoder reads the clip's fbank with one prompt per second: step logits s_t,
   audio scores ``sigmoid(s_t)`` (METHOD §2);
3. the aligned visual model gives patch tokens and frame logits, visual scores
   ``sigmoid(W_v v_t)`` (METHOD §3);
4. the segmentation head turns the patch tokens into a class-index mask (METHOD §5).

The masks come from :func:`segment` alone (steps 3-4). `evaluate` calls :func:`segment` on the
test split and `pcas predict` calls it through :func:`predict_clip`, so both give the same masks
for the same frames and models. Audio and visual scores annotate the masks (``predictions.json``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from pcas_core.storage.weights import load_checkpoint
from pcas_core.data.clips import ArrayClips
from pcas_core.pipeline.train_audio import encode_audio
from pcas_core.pipeline.train_visual import encode_frames
from pcas_core.models.heads import SegmentationHead
from pcas_core.models.tvp import TVPAudioEncoder
from pcas_core.models.visual import VisualClassifier, load_visual
from pcas_core.evaluation.scoring import Prediction
from pcas_core.pipeline.evaluate import (PaddedFrame, head_config, load_segmentation_head, padded_frame,
                                    patch_tokens_of,
                                     predict_masks)

__all__ = ["TrainedModels", "load_models", "load_audio_encoder", "segment", "test_prediction",
           "ClipPrediction",
           "predict_clip"]


def load_audio_encoder(path: Path) -> tuple[TVPAudioEncoder, dict[str, Any]]:
    """Rebuild a TVP encoder from its checkpoint, whose config holds its constructor arguments.

    Returns:
        ``(model on the CPU in eval mode, config)``.

    Raises:
        FileNotFoundError / ValueError: as :func:`pcas_core.storage.weights.load_checkpoint`, or the
            config does not fit the encoder (names the file).
    """
    state, config = load_checkpoint(path)
    try:
        model = TVPAudioEncoder(**config)
    except TypeError as err:
        raise ValueError(f"{path}: config does not fit TVPAudioEncoder ({err})") from err
    model.load_state_dict(state)
    return model.eval(), config


@dataclass
class TrainedModels:
    """The four trained models of the test-time path.

    Attributes:
        visual: stage-1 classifier (its v_t are the TVP prompts it was trained with).
        audio: TVP audio encoder.
        aligned: the visual model after contrastive alignment (patch tokens, visual scores).
        head: segmentation head on the aligned model's ``features`` tokens.
        features: ``patch`` | ``final`` | ``patch+final`` (see ``patch_tokens_of``).
        img_size: frame side in pixels the visual models take.
        audio_config: the encoder's config (``target_length``, ``n_mels``, ``max_steps``, ...).
    """

    visual: VisualClassifier
    audio: TVPAudioEncoder
    aligned: VisualClassifier
    head: SegmentationHead
    features: str
    img_size: int
    audio_config: dict[str, Any]


def load_models(*, visual: Path, audio: Path, aligned: Path, head: Path) -> TrainedModels:
    """Load the checkpoints of the last ``dvc repro`` (or any compatible set) and check that they
    fit together.

    Raises:
        FileNotFoundError / ValueError: a checkpoint is missing or unreadable, or the models do not
            fit (prompt width, frame size, patch grid, head width); the message names the files.
    """
    vis, vis_cfg = load_visual(visual)
    enc, enc_cfg = load_audio_encoder(audio)
    ali, ali_cfg = load_visual(aligned)
    seg, features = load_segmentation_head(head)
    if enc.use_prompts and enc.prompt_dim != vis.embed_dim:
        raise ValueError(f"{audio} takes prompts of width {enc.prompt_dim} but {visual} gives "
                         f"v_t of width {vis.embed_dim}: not models of the same run")
    if int(vis_cfg["img_size"]) != int(ali_cfg["img_size"]):
        raise ValueError(f"{visual} takes {vis_cfg['img_size']} px frames, {aligned} "
                         f"{ali_cfg['img_size']} px: not models of the same run")
    width = ali.embed_dim * (2 if features == "patch+final" else 1)
    if tuple(seg.grid) != tuple(ali.grid) or head_config(seg)["in_dim"] != width:
        raise ValueError(f"{head} (grid {seg.grid}, {head_config(seg)['in_dim']} channels) does "
                         f"not fit {aligned} (grid {ali.grid}, {features} tokens of width {width})")
    return TrainedModels(vis.eval(), enc, ali.eval(), seg, features, int(ali_cfg["img_size"]),
                         enc_cfg)


def segment(aligned: VisualClassifier, head: SegmentationHead, clips: Dataset, *, features: str,
            out_size: tuple[int, int], batch_videos: int, batch_frames: int,
            device: torch.device, amp: bool = False, images: np.ndarray | None = None,
            crf: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
    """Masks of every frame of ``clips``: the aligned model's tokens through the head (METHOD §5).

    Args:
        clips: videos as items (``VideoClips`` or ``ArrayClips``, normalised with the aligned
            model's mean/std).
        features, batch_videos: as in :func:`pcas_core.pipeline.evaluate.patch_tokens_of`.
        out_size, batch_frames, images, crf: as in :func:`pcas_core.pipeline.evaluate.predict_masks`.

    Returns:
        ``(masks (M, H, W) uint8 class index, foreground (M, H, W) float32 = 1 - p(background))``
        in frame order.
    """
    tokens = patch_tokens_of(aligned, clips, features=features, batch_videos=batch_videos,
                             device=device, amp=amp)
    return predict_masks(head, tokens, out_size, batch_frames=batch_frames, device=device,
                         images=images, crf=crf)


def test_prediction(aligned: VisualClassifier, head: SegmentationHead, test: Any, *,
                    features: str, batch_videos: int, batch_frames: int, device: torch.device,
                    num_workers: int = 0,
                    amp: bool = False, crf: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
                    ) -> tuple[Prediction, np.ndarray, PaddedFrame]:
    """The method's prediction on a test split as the metrics need it: masks and foreground
    probabilities of the annotated frames (:func:`segment`), plus the head's prediction on the
    official AVSS padded frame (:func:`pcas_core.pipeline.evaluate.padded_frame`). `evaluate` and
    `pcas predict --root` both score this.

    Args:
        test: an ``AVSData`` of the test split (frames at the models' ``img_size``).
        crf: as in :func:`segment` (applied to the padded frame too).
        num_workers: DataLoader processes decoding the test frames.

    Returns:
        ``(prediction on the frames with a mask, their (M', S, S, 3) uint8 images, the padded
        frame through the aligned model)``.
    """
    size, has = (test.img_size, test.img_size), test.has_mask()
    masks, foreground = segment(aligned, head,
                                test.clips(aligned.mean, aligned.std, num_workers=num_workers),
                                features=features, out_size=size, batch_videos=batch_videos,
                                batch_frames=batch_frames, device=device, amp=amp,
                                images=test.images() if crf is not None else None, crf=crf)
    pad = padded_frame(aligned, test.img_size, features=features, device=device, amp=amp)
    pad_mask, pad_fg = predict_masks(head, pad.tokens, size, batch_frames=1, device=device,
                                     images=pad.image[None], crf=crf)
    return (Prediction(masks[has], foreground[has], pad_mask[0], pad_fg[0]), test.images(has),
            pad)


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
                 device: torch.device, amp: bool = False) -> ClipPrediction:
    """The whole test-time path on one clip.

    A clip holds P phases of up to ``max_steps`` seconds: phase p is one TVP input (its own fbank,
    one prompt per second). At 1 frame per second P = 1 and frame t is step t, as in AVSBench;
    at f frames per second, phase p holds the p-th frame of every second, with the audio second
    centred on those frames (see :mod:`pcas_core.data.video`).

    Args:
        frames: (T, S, S, 3) uint8 RGB at the models' frame size.
        fbank: (P, target_length, n_mels) float32 normalised fbank per phase
            (:func:`pcas_core.audio.fbank.ast_fbank`).
        phase: (T,) int, phase of each frame, in [0, P).
        step: (T,) int, second of each frame within the clip; per phase, steps 0..n-1 each once.

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
        pooled = encode_frames(models.visual, ArrayClips([frames], models.visual.mean,
                                                         models.visual.std),
                               batch_videos=1, device=device, amp=amp)["pooled_patch"]
        prompts = np.zeros((n_phases, int(n_steps.max()), pooled.shape[1]), dtype=np.float32)
        prompts[phase, step] = pooled
        prompts = torch.from_numpy(prompts)
    _, logits = encode_audio(models.audio, fbank.float(), prompts,
                             torch.from_numpy(n_steps.astype(np.int64)), batch_videos=n_phases,
                             device=device, amp=amp)
    clips = ArrayClips([frames], models.aligned.mean, models.aligned.std)
    masks, foreground = segment(models.aligned, models.head, clips, features=models.features,
                                out_size=size, batch_videos=1, batch_frames=batch_frames,
                                device=device, amp=amp)
    visual_logits = encode_frames(models.aligned, clips, batch_videos=1, device=device,
                                  amp=amp)["logits"]
    return ClipPrediction(masks, foreground,
                          torch.from_numpy(logits[phase, step]).sigmoid().numpy(),
                          torch.from_numpy(visual_logits).sigmoid().numpy())
