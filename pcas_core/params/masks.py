"""Typed configs of the mask stages: ``pseudo_masks`` and ``evaluate`` (METHOD §4-§5)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

__all__ = ["CRFConfig", "PseudoMasksConfig", "BaselinesConfig", "EvaluateConfig", "PredictModels",
           "PredictConfig"]


@dataclass(frozen=True)
class CRFConfig:
    """Dense CRF kernels (Krähenbühl and Koltun 2011; ``pcas_core.method.crf.DenseCRF``): iterations,
    Gaussian and bilateral widths in pixels (srgb in intensity levels), compatibilities."""

    iterations: int = 10
    gaussian_sxy: float = 3.0
    gaussian_compat: float = 3.0
    bilateral_sxy: float = 40.0
    bilateral_srgb: float = 10.0
    bilateral_compat: float = 4.0
    unary_clip: float = 1.0e-5


@dataclass(frozen=True)
class PseudoMasksConfig:
    """``pseudo_masks`` (METHOD §4); the one config of :mod:`pcas_core.method.pseudo_masks` too.

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
        workers: processes of the stage's pseudo-mask pass (frames are independent).
        official_batch_videos: official S4/MS3 scores of ``metrics/pseudo_masks.json``: videos
            per batch.
    """

    audio_threshold: float = 0.3
    gamma: float = 1.0
    bg_score: float = 0.2
    bg_score_low: Optional[float] = None
    bg_score_high: Optional[float] = None
    use_crf: bool = True
    score_floor: float = 1.0e-5
    crf: CRFConfig = CRFConfig()
    workers: int = 2
    official_batch_videos: int = 4

    def __post_init__(self) -> None:
        if not 0.0 <= self.audio_threshold <= 1.0:
            raise ValueError(f"audio_threshold must be in [0, 1], got {self.audio_threshold}")
        if self.gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {self.gamma}")
        if self.score_floor <= 0:
            raise ValueError(f"score_floor must be > 0, got {self.score_floor}")
        if self.official_batch_videos < 1:
            raise ValueError(f"official_batch_videos must be >= 1, got {self.official_batch_videos}")
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

    Attributes:
        audio_threshold: listening only: a frame is filled with its top audio class when that
            class's sigmoid is >= this, else background (kept equal to pseudo_masks'.)
        visual_threshold: looking only: classes whose visual frame sigmoid is >= this get a CAM.
        bg_score: looking only: background score b.
        use_crf: looking only: refine with the dense CRF of ``evaluate.crf_params``.
        workers: looking only: CRF processes.
    """

    audio_threshold: float = 0.3
    visual_threshold: float = 0.5
    bg_score: float = 0.2
    use_crf: bool = True
    workers: int = 2


@dataclass(frozen=True)
class EvaluateConfig:
    """``evaluate`` (METHOD §5): the segmentation head, its training, CRF post-processing,
    official-mode batching, baselines, plots (confusion sample stride, overlays)."""

    features: Literal["patch", "final", "patch+final"] = "patch"
    hidden_dim: int = 64
    train_size: int = 56
    background_weight: float = 0.3
    epochs: int = 20
    batch_frames: int = 32
    batch_videos: int = 8
    lr: float = 0.001
    weight_decay: float = 0.0001
    crf: bool = False
    crf_params: CRFConfig = CRFConfig()
    official_batch_videos: int = 4
    baselines: BaselinesConfig = BaselinesConfig()
    confusion_stride: int = 8
    n_overlays: int = 12
    overlay_uid_contains: list[str] = field(default_factory=lambda: ["silent", "multi"])


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
        audio_threshold: audio score from which predictions.json calls a class audible.
        overlay_alpha: colour weight on segmented pixels of the overlay video.
        batch_frames, batch_videos: head batch; videos per batch with ``--root``.
        official_batch_videos: ``--root``: videos per official S4/MS3 test batch.
        models: the checkpoints.
    """

    fps: int = 1
    audio_threshold: float = 0.3
    overlay_alpha: float = 0.55
    batch_frames: int = 32
    batch_videos: int = 8
    official_batch_videos: int = 4
    models: PredictModels = PredictModels()

    def __post_init__(self) -> None:
        if self.fps < 1:
            raise ValueError(f"fps must be >= 1, got {self.fps}")
        if not 0.0 <= self.overlay_alpha <= 1.0:
            raise ValueError(f"overlay_alpha must be in [0, 1], got {self.overlay_alpha}")
