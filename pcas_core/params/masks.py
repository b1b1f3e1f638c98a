"""Typed configs of the mask stages: ``pseudo_masks`` and ``evaluate`` (METHOD §4-§5)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

__all__ = ["CRFConfig", "PseudoMasksConfig", "BaselinesConfig", "EvaluateConfig"]


@dataclass(frozen=True)
class CRFConfig:
    """Dense CRF kernels (Krähenbühl and Koltun 2011; ``pcas_core.crf.DenseCRF``): iterations,
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
    """``pseudo_masks`` (METHOD §4): audio threshold theta_a, sounding exponent gamma, background
    score b (or ToCo's two scores), CRF, score floor, worker processes."""

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
        if self.official_batch_videos < 1:
            raise ValueError(f"official_batch_videos must be >= 1, got {self.official_batch_videos}")
        if (self.bg_score_low is None) != (self.bg_score_high is None):
            raise ValueError("set both bg_score_low and bg_score_high, or neither")
        if self.bg_score_low is not None and not self.bg_score_low < self.bg_score_high:
            raise ValueError("bg_score_low must be below bg_score_high")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")


@dataclass(frozen=True)
class BaselinesConfig:
    """``evaluate.baselines``: the sanity baselines scored beside the method
    (``pcas_core.baselines``).

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
