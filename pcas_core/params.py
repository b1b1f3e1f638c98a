"""``params.yaml`` as typed configs: one frozen dataclass per section, defaults = the documented values.

Every stage starts with :func:`load_config`, which parses the WHOLE file strictly
(:mod:`pcas_core.typed_config`): an unknown section or key, or a value of the wrong type, stops the
stage at once with the dotted key in the message, before any data is read; then the couplings
between sections are checked (:func:`check_couplings`). The defaults below are the values shipped
in ``params.yaml`` (``tests/test_params.py`` holds the two together), so a key left out of the file
means its documented value. Each field's meaning is the comment beside it in ``params.yaml`` and the
``Attributes`` of its class.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml

from pcas_core.typed_config import ConfigError, parse

__all__ = ["BaseConfig", "DataConfig", "DemoConfig", "FbankConfig", "TrainVisualConfig",
           "TVPModelConfig", "TrainAudioConfig", "AlignConfig", "CRFConfig", "PseudoMasksConfig",
           "EvaluateConfig", "PcasParams", "SECTIONS", "load_config", "check_couplings",
           "ConfigError"]

Pool = Literal["max", "mean"]


@dataclass(frozen=True)
class BaseConfig:
    """``base``: seed (int), device (auto | cpu | cuda | cuda:N), amp (bf16 autocast on CUDA),
    threads (torch CPU threads, 0 = torch's default), num_workers (DataLoader processes that
    decode frames, 0 = in the stage's own process; results do not depend on it)."""

    seed: int = 0
    device: str = "auto"
    amp: bool = True
    threads: int = 0
    num_workers: int = 0

    def __post_init__(self) -> None:
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")


@dataclass(frozen=True)
class DataConfig:
    """``data``: which dataset and how it is read (``pcas_core.data.dataset.open_dataset``).

    Attributes:
        dataset: ``avss`` (AVSBench-semantic) | ``s4`` | ``ms3`` (AVSBench-object, binary masks).
        root: avss: the folder of metadata.csv; s4: Single-source; ms3: Multi-sources.
        img_size: frames and masks are brought to img_size x img_size pixels.
        label_source: avss: ``masks`` (classes present in a video's masks) | ``a_obj``.
        subsets: avss: null = all, or a list of v1s / v1m / v2.
        audio_dir: s4/ms3: folder of <video>.wav or source <video>.mp4 (null: the default place).
        labels_csv: ms3: video labels csv with columns name,labels (null: <root>/video_labels.csv).
        label2idx: avss/ms3: label space file (null: <root>/label2idx.json).
        frames_per_video: null = as released (5; v2: 10), or one count for every video.
        off_palette: avss mask colours outside the palette: ``background`` (official) | ``error``.
        verify: decode every frame, mask and wav when a stage opens the data.
        skip_bad: leave out videos with errors (listed in the log) instead of failing.
    """

    dataset: Literal["avss", "s4", "ms3"] = "avss"
    root: str = "data/demo"
    img_size: int = 112
    label_source: Literal["masks", "a_obj"] = "masks"
    subsets: Optional[list[Literal["v1s", "v1m", "v2"]]] = None
    audio_dir: Optional[str] = None
    labels_csv: Optional[str] = None
    label2idx: Optional[str] = None
    frames_per_video: Optional[int] = None
    off_palette: Literal["background", "error"] = "background"
    verify: bool = False
    skip_bad: bool = False

    def __post_init__(self) -> None:
        if self.img_size < 8:
            raise ValueError(f"img_size must be >= 8 pixels, got {self.img_size}")
        if self.frames_per_video is not None and self.frames_per_video < 1:
            raise ValueError(f"frames_per_video must be >= 1, got {self.frames_per_video}")


@dataclass(frozen=True)
class SplitCounts:
    """Clips per split of one demo clip kind."""

    train: int = 0
    val: int = 0
    test: int = 0

    def __post_init__(self) -> None:
        if min(self.train, self.val, self.test) < 0:
            raise ValueError("clip counts must be >= 0")


@dataclass(frozen=True)
class DemoClips:
    """``demo.clips``: single/silent are clips per class, multi clips in total."""

    single: SplitCounts = SplitCounts(train=20, val=0, test=4)
    multi: SplitCounts = SplitCounts(train=40, val=0, test=10)
    silent: SplitCounts = SplitCounts(train=4, val=0, test=2)


@dataclass(frozen=True)
class DemoConfig:
    """``demo``: how ``pcas demo-data`` composes the bundled demo (seed, frame side in pixels,
    frames = seconds per clip, audio sample rate in Hz, classes, clip counts)."""

    seed: int = 0
    img_size: int = 224
    n_frames: int = 5
    sample_rate: int = 16000
    classes: Optional[list[str]] = field(default_factory=lambda: [
        "dog", "horse", "sheep", "cello", "guitar", "car", "duck", "lion"])
    clips: DemoClips = DemoClips()


@dataclass(frozen=True)
class FbankConfig:
    """``fbank``: the AST Kaldi fbank (sample rate in Hz, mel bins, frames of frame_shift_ms,
    AudioSet normalisation statistics)."""

    sample_rate: int = 16000
    num_mel_bins: int = 128
    target_length: int = 512
    frame_shift_ms: float = 10.0
    norm_mean: float = -4.2677393
    norm_std: float = 4.5689974

    def __post_init__(self) -> None:
        if self.sample_rate <= 0 or self.num_mel_bins <= 0 or self.target_length <= 0:
            raise ValueError("sample_rate, num_mel_bins and target_length must be positive")
        if self.frame_shift_ms <= 0 or self.norm_std <= 0:
            raise ValueError("frame_shift_ms and norm_std must be positive")


@dataclass(frozen=True)
class TrainVisualConfig:
    """``train_visual``: the looking stage (METHOD §1)."""

    backbone: str = "vit_tiny_patch16_224"
    backbone_kwargs: dict[str, Any] = field(default_factory=lambda: {
        "patch_size": 16, "depth": 2, "embed_dim": 96, "num_heads": 3})
    pretrained: Union[bool, str] = False
    conv_stem: bool = True
    token_layer: int = 0
    w_class_token: float = 1.0
    augment: dict[str, Any] = field(default_factory=lambda: {
        "scale": [0.35, 1.0], "flip": 0.5, "brightness": 0.2})
    max_frames: int = 2
    head_bias_prior: float = 0.01
    frame_pool: Pool = "max"
    epochs: int = 60
    batch_videos: int = 8
    lr: float = 0.002
    warmup_epochs: float = 2.0
    weight_decay: float = 0.0001


@dataclass(frozen=True)
class TVPModelConfig:
    """``train_audio.model``: the TVP/AST encoder's shape (METHOD §2)."""

    patch_size: int = 16
    fstride: int = 16
    tstride: int = 16
    embed_dim: int = 96
    depth: int = 2
    num_heads: int = 4
    mlp_ratio: float = 4.0
    drop_rate: float = 0.0
    max_steps: int = 5
    frames_per_step: int = 100
    step_pool: Pool = "max"
    head_bias_prior: float = 0.01


@dataclass(frozen=True)
class TrainAudioConfig:
    """``train_audio``: the listening stage (METHOD §2); tvp false = plain AST (Table 3)."""

    tvp: bool = True
    model: TVPModelConfig = TVPModelConfig()
    epochs: int = 15
    batch_videos: int = 8
    lr: float = 0.0005
    warmup_epochs: float = 1.0
    weight_decay: float = 0.0001
    eval_threshold: float = 0.5


@dataclass(frozen=True)
class AlignConfig:
    """``align``: Listening-before-Segmentation (METHOD §3)."""

    embed_dim: int = 64
    hidden_dim: int = 0
    shared_patch_head: bool = True
    temperature: float = 0.1
    w_cls: float = 1.0
    w_class_token: float = 1.0
    w_cmc: float = 1.0
    frame_pool: Pool = "max"
    augment: dict[str, Any] = field(default_factory=dict)
    epochs: int = 6
    batch_videos: int = 8
    lr_backbone: float = 0.0002
    lr_heads: float = 0.0005
    warmup_epochs: float = 1.0
    weight_decay: float = 0.0001


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

    def __post_init__(self) -> None:
        if (self.bg_score_low is None) != (self.bg_score_high is None):
            raise ValueError("set both bg_score_low and bg_score_high, or neither")
        if self.bg_score_low is not None and not self.bg_score_low < self.bg_score_high:
            raise ValueError("bg_score_low must be below bg_score_high")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")


@dataclass(frozen=True)
class EvaluateConfig:
    """``evaluate`` (METHOD §5): the segmentation head, its training, CRF post-processing."""

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
    n_overlays: int = 12


@dataclass(frozen=True)
class PcasParams:
    """The whole ``params.yaml``, one typed config per section."""

    base: BaseConfig = BaseConfig()
    data: DataConfig = DataConfig()
    demo: DemoConfig = DemoConfig()
    fbank: FbankConfig = FbankConfig()
    train_visual: TrainVisualConfig = TrainVisualConfig()
    train_audio: TrainAudioConfig = TrainAudioConfig()
    align: AlignConfig = AlignConfig()
    pseudo_masks: PseudoMasksConfig = PseudoMasksConfig()
    evaluate: EvaluateConfig = EvaluateConfig()


#: section name -> its config class
SECTIONS: dict[str, type] = {name: cls for name, cls in PcasParams.__annotations__.items()}


def check_couplings(p: PcasParams) -> None:
    """Checks that span sections, so that a run that cannot work stops before it starts.

    - One TVP time step is one second of audio (one frame per second, as AVSBench):
      ``fbank.frame_shift_ms * train_audio.model.frames_per_step`` must be 1000 ms.
    - The fbank must hold every step: ``train_audio.model.max_steps * frames_per_step <=
      fbank.target_length``, else the last steps own no audio patch.
    - The demo's clips must fit the audio encoder: ``demo.n_frames <= train_audio.model.max_steps``.

    Raises:
        ConfigError: naming both keys and their values.
    """
    m = p.train_audio.model
    step_ms = p.fbank.frame_shift_ms * m.frames_per_step
    if abs(step_ms - 1000.0) > 1e-6:
        raise ConfigError(
            f"fbank.frame_shift_ms ({p.fbank.frame_shift_ms}) x train_audio.model.frames_per_step "
            f"({m.frames_per_step}) = {step_ms} ms, but one time step must be one second (1000 ms)")
    if m.max_steps * m.frames_per_step > p.fbank.target_length:
        raise ConfigError(
            f"train_audio.model.max_steps ({m.max_steps}) x frames_per_step ({m.frames_per_step}) "
            f"exceeds fbank.target_length ({p.fbank.target_length}): the last steps would own no audio")
    if p.demo.n_frames > m.max_steps:
        raise ConfigError(f"demo.n_frames ({p.demo.n_frames}) exceeds train_audio.model.max_steps "
                          f"({m.max_steps})")


def load_config(path: Path | str) -> PcasParams:
    """Read and validate the whole ``params.yaml``.

    Args:
        path: the YAML file.

    Returns:
        :class:`PcasParams` with every section typed; sections absent from the file take their
        documented defaults.

    Raises:
        FileNotFoundError: no such file.
        ConfigError: not a mapping, an unknown section or key (with the closest valid name), a
            value of the wrong type or out of range, or a broken coupling (:func:`check_couplings`);
            messages start with the file name.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: params file not found")
    with path.open() as f:
        raw = yaml.safe_load(f)
    try:
        params = parse(PcasParams, raw)
        check_couplings(params)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from err
    return params
