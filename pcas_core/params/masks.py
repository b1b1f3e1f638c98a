"""Typed configs of the mask stages and their scores: ``pseudo_masks``, ``evaluate``, ``scoring``,
``predict`` (docs/method.md §4-§5).

A setting that two stages share lives in one section and the other stage reads that key (DVC
key-level params in ``dvc.yaml``): the baselines and the head's CRF of ``evaluate``, and ``pcas
predict``'s audible threshold, read ``pseudo_masks``' theta_a, background score and CRF; every
official S4/MS3 score reads ``scoring.official_batch_videos``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

__all__ = ["CRFConfig", "PseudoMasksConfig", "BaselinesConfig", "EvaluateConfig", "ScoringConfig",
           "PredictModels", "PredictConfig"]


@dataclass(frozen=True)
class CRFConfig:
    """Dense CRF kernels (Krähenbühl and Koltun 2011; ``pcas_core.method.crf.DenseCRF``): iterations,
    Gaussian and bilateral widths in pixels (srgb in intensity levels), compatibilities."""

    iterations: int = 10
    gaussian_sxy: float = 3.0
    gaussian_compat: float = 3.0
    bilateral_sxy: float = 40.0
    bilateral_srgb: float = 10.0
    bilateral_compat: float = 8.0
    unary_clip: float = 1.0e-5


@dataclass(frozen=True)
class PseudoMasksConfig:
    """``pseudo_masks`` (docs/method.md §4); the one config of :mod:`pcas_core.method.pseudo_masks` too.

    Attributes:
        audio_threshold: theta_a; foreground column k sounds when ``sigmoid(logit_k) >= theta_a``.
        gamma: exponent on the sounding map in ``M_k = minmax(relu(CAM_k)) * S^gamma``.
        bg_score: constant background score b (scores live in [0, 1]).
        bg_score_low, bg_score_high: set both for ToCo's two-score trick (``bg_score`` is then
            unused): masks at both scores, pixels where they disagree -> 255.
        use_crf: refine the normalised scores with the dense CRF ``crf`` before the argmax.
        score_floor: each stacked score is clamped to at least this before normalising to CRF
            probabilities, so an all-zero pixel becomes uniform rather than 0/0.
        crf: the dense CRF's kernels.
        workers: processes of the stage's pseudo-mask pass (frames are independent); the looking
            baseline of ``evaluate`` uses as many.
    """

    audio_threshold: float = 0.3
    gamma: float = 1.0
    bg_score: float = 0.4
    bg_score_low: Optional[float] = None
    bg_score_high: Optional[float] = None
    use_crf: bool = True
    score_floor: float = 1.0e-5
    crf: CRFConfig = CRFConfig()
    workers: int = 2

    def __post_init__(self) -> None:
        if not 0.0 <= self.audio_threshold <= 1.0:
            raise ValueError(f"audio_threshold must be in [0, 1], got {self.audio_threshold}")
        if self.gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {self.gamma}")
        if self.score_floor <= 0:
            raise ValueError(f"score_floor must be > 0, got {self.score_floor}")
        if (self.bg_score_low is None) != (self.bg_score_high is None):
            raise ValueError("set both bg_score_low and bg_score_high, or neither")
        if self.bg_score_low is not None and not self.bg_score_low < self.bg_score_high:
            raise ValueError("bg_score_low must be below bg_score_high")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")

    @property
    def two_scores(self) -> bool:
        """True when ToCo's two-background-score trick is on."""
        return self.bg_score_low is not None


@dataclass(frozen=True)
class BaselinesConfig:
    """``evaluate.baselines``: the sanity baselines scored beside the method
    (``pcas_core.evaluation.baselines``).

    The listening baseline keeps a frame's top audio class from ``pseudo_masks.audio_threshold``;
    the looking baseline runs the pseudo-mask machinery of ``pseudo_masks`` (background score, CRF,
    workers) with the sounding map ignored and these classes.

    Attributes:
        visual_threshold: looking only: classes whose visual frame sigmoid is >= this get a CAM.
    """

    visual_threshold: float = 0.5


@dataclass(frozen=True)
class EvaluateConfig:
    """``evaluate`` (docs/method.md §5): the segmentation head, its training, CRF post-processing (with
    ``pseudo_masks.crf``'s kernels), baselines, plots (confusion sample stride, overlays).

    Attributes:
        audio_gate: the head hears K_t = {k : sigmoid(s_t,k) >= pseudo_masks.audio_threshold}
            (the pseudo-masks' rule, from the ``audio`` store's logits): foreground logits outside
            K_t are -inf in the training loss and at test time (``pcas predict`` too), so it
            predicts background or a class of K_t only.
        gate_in_loss: with ``audio_gate``: true, the training loss sees background and K_t only
            (the other logits -inf, as at test time); false, it trains every class's logit on
            every pixel (a silent object's pixels are background against all classes, its own
            too), and the gate applies at test time only.
        audio_condition: ``none`` (docs/method.md §5: patch tokens only) | ``film`` (per-channel scale
            and shift of the head's hidden features from the audio vector, starting as the
            identity) | ``concat`` (the audio vector appended to every token).
        cam_skip: the head adds a 1x1 conv of the patch tokens to its logits, initialised as the
            aligned classifier's linear head (its CAM logits, background 0), then trained.
        audio_input: the audio vector of a conditioned head: ``token`` (a_t, the ``audio``
            store's ``audio_token``) | ``scores`` (sigmoid(s_t)).
        min_steps: fewest optimiser steps of the head's training (as ``train_visual.min_steps``).
        token_dtype: how the head's training tokens are kept on disk while it trains (a scratch
            store beside the resume checkpoint, read in shuffled batches): ``float16`` (half the
            disk and reads; the demo's scores move by at most ~1e-3) | ``float32`` (exact).
    """

    features: Literal["patch", "final", "patch+final"] = "patch"
    audio_gate: bool = True
    gate_in_loss: bool = True
    audio_condition: Literal["none", "film", "concat"] = "none"
    audio_input: Literal["token", "scores"] = "token"
    hidden_dim: int = 64
    cam_skip: bool = False
    train_size: int = 56
    background_weight: float = 0.3
    epochs: int = 8
    min_steps: int = 250
    batch_frames: int = 32
    batch_videos: int = 8
    token_dtype: Literal["float16", "float32"] = "float16"
    lr: float = 0.001
    weight_decay: float = 0.0001
    crf: bool = True
    baselines: BaselinesConfig = BaselinesConfig()
    confusion_stride: int = 8
    n_overlays: int = 12
    overlay_uid_contains: list[str] = field(default_factory=lambda: ["silent", "event", "multi"])

    def __post_init__(self) -> None:
        if self.min_steps < 0:
            raise ValueError(f"min_steps must be >= 0, got {self.min_steps}")


@dataclass(frozen=True)
class ScoringConfig:
    """``scoring``: how the official AVSBench scores are computed (``pcas_core.evaluation``),
    for every stage that writes scores (``pseudo_masks``, ``evaluate``, ``pcas predict --root``).

    Attributes:
        official_batch_videos: videos per test batch of the official S4/MS3 scores, which average
            per-batch means (``avs_s4/test.sh``: 4; AVSS ignores it).
    """

    official_batch_videos: int = 4

    def __post_init__(self) -> None:
        if self.official_batch_videos < 1:
            raise ValueError(f"official_batch_videos must be >= 1, got {self.official_batch_videos}")


@dataclass(frozen=True)
class PredictModels:
    """``predict.models``: the checkpoints of the last ``dvc repro`` (each overridable on the
    command line)."""

    visual: str = "models/visual.safetensors"
    audio: str = "models/audio.safetensors"
    aligned: str = "models/visual_aligned.safetensors"
    head: str = "models/seg_head.safetensors"


@dataclass(frozen=True)
class PredictConfig:
    """``predict``: ``pcas predict`` on a user's video or another dataset (not a DVC stage).

    Attributes:
        fps: frames sampled per second (AVSBench: 1); frame i at (i + 0.5) / fps seconds.
        overlay_alpha: colour weight on segmented pixels of the overlay video.
        batch_frames, batch_videos: head batch; videos per batch with ``--root``.
        models: the checkpoints.

    predictions.json calls a class audible from ``pseudo_masks.audio_threshold`` (theta_a).
    """

    fps: int = 1
    overlay_alpha: float = 0.55
    batch_frames: int = 32
    batch_videos: int = 8
    models: PredictModels = PredictModels()

    def __post_init__(self) -> None:
        if self.fps < 1:
            raise ValueError(f"fps must be >= 1, got {self.fps}")
        if not 0.0 <= self.overlay_alpha <= 1.0:
            raise ValueError(f"overlay_alpha must be in [0, 1], got {self.overlay_alpha}")
