"""Typed configs of the sections that say what is read: ``base``, ``data``, ``demo``, ``fbank``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import ClassVar, Literal, Optional

__all__ = ["BaseConfig", "DataConfig", "SplitCounts", "DemoClips", "DemoConfig", "FbankConfig"]


@dataclass(frozen=True)
class BaseConfig:
    """``base``: seed (int), device (auto | cpu | cuda | cuda:N), amp (bf16 autocast on CUDA),
    threads (torch CPU threads, 0 = torch's default), num_workers (DataLoader processes that
    decode frames, 0 = in the stage's own process; results do not depend on it).

    Several processes (:mod:`pcas_core.runtime.distributed`; stages train_visual, train_audio, align,
    pseudo_masks, evaluate): nproc_per_node (processes per machine, one per GPU), nnodes
    (machines), node_rank (this machine, 0..nnodes-1), master_addr / master_port (where rank 0's
    machine listens; used when nnodes > 1, one machine picks a free local port)."""

    seed: int = 0
    device: str = "auto"
    amp: bool = True
    threads: int = 0
    num_workers: int = 0
    nproc_per_node: int = 1
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = 29500

    def __post_init__(self) -> None:
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")
        if self.nproc_per_node < 1 or self.nnodes < 1:
            raise ValueError(f"nproc_per_node and nnodes must be >= 1, got {self.nproc_per_node} "
                             f"and {self.nnodes}")
        if not 0 <= self.node_rank < self.nnodes:
            raise ValueError(f"node_rank must be in [0, nnodes={self.nnodes}), got {self.node_rank}")
        if not 0 < self.master_port < 65536:
            raise ValueError(f"master_port must be a TCP port, got {self.master_port}")


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
    img_size: int = 224
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
    """``demo.clips``: clips per split of each clip kind (:mod:`pcas_core.demo.compose`):
    ``always``, ``event`` and ``silent`` count clips per class (of the sounding class), ``multi``
    and ``long`` clips in total."""

    always: SplitCounts = SplitCounts(train=6, val=0, test=1)
    event: SplitCounts = SplitCounts(train=9, val=0, test=3)
    silent: SplitCounts = SplitCounts(train=4, val=0, test=1)
    multi: SplitCounts = SplitCounts(train=36, val=0, test=10)
    long: SplitCounts = SplitCounts(train=20, val=0, test=5)

    #: frames (= seconds) of a clip of each kind: AVSBench v1 clips (subsets v1s, v1m) have 5,
    #: v2 clips (``long``) 10 (``pcas_core.data.table.RELEASED_FRAMES``)
    FRAMES: ClassVar[dict[str, int]] = {"always": 5, "event": 5, "silent": 5, "multi": 5,
                                        "long": 10}

    def longest(self) -> int:
        """Frames of the longest clip these counts ask for (0 when they ask for none)."""
        return max((self.FRAMES[kind] for kind in self.FRAMES
                    if any(asdict(getattr(self, kind)).values())), default=0)


@dataclass(frozen=True)
class DemoConfig:
    """``demo``: how ``pcas demo-data`` composes the bundled demo (:mod:`pcas_core.demo.compose`).

    Attributes:
        seed: seed of the composition (same seed: byte-identical files).
        img_size: frame side in pixels.
        sample_rate: audio sample rate in Hz (the recordings' own; no resampling).
        noise_dbfs: RMS level in dBFS of the white ambient noise under every clip: all a clip's
            audio holds in a second where nothing sounds. -90..-55, so that it stays at least
            10 dB under the quietest sounding second (>= -45 dBFS, ``pcas_core.demo.soundtrack``).
        classes: classes to compose (null: every class with media in the pools the splits use).
        clips: clips per kind and split (:class:`DemoClips`).
    """

    seed: int = 0
    img_size: int = 224
    sample_rate: int = 16000
    noise_dbfs: float = -60.0
    classes: Optional[list[str]] = field(default_factory=lambda: [
        "dog", "sheep", "pig", "hen", "bird", "guitar", "car", "airplane"])
    clips: DemoClips = DemoClips()

    def __post_init__(self) -> None:
        if not -90.0 <= self.noise_dbfs <= -55.0:
            raise ValueError(f"noise_dbfs must be in [-90, -55] dBFS, got {self.noise_dbfs}")
        if self.img_size < 8 or self.sample_rate <= 0:
            raise ValueError("img_size must be >= 8 pixels and sample_rate positive")


@dataclass(frozen=True)
class FbankConfig:
    """``fbank``: the audio features of every video (``pcas_core.audio.front_end``).

    Attributes:
        front_end: ``ast`` (the AST Kaldi fbank, the paper's) | ``aisfx`` (the log-mel of the
            pretrained aisfx CNN, ``train_audio.encoder: aisfx``: 96 bands, 23.2 ms frames, its
            constants fixed by the checkpoint).
        sample_rate: Hz at which the audio is read (aisfx resamples it to 44.1 kHz).
        num_mel_bins, frame_shift_ms, norm_mean, norm_std: the AST fbank's mel bins, frame shift
            and AudioSet normalisation statistics.
        target_length: AST frames stored; the store covers ``target_length * frame_shift_ms`` of
            audio, and aisfx covers the same span with its own frames.
    """

    front_end: Literal["ast", "aisfx"] = "aisfx"
    sample_rate: int = 16000
    num_mel_bins: int = 128
    target_length: int = 1024
    frame_shift_ms: float = 10.0
    norm_mean: float = -4.2677393
    norm_std: float = 4.5689974

    def __post_init__(self) -> None:
        if self.sample_rate <= 0 or self.num_mel_bins <= 0 or self.target_length <= 0:
            raise ValueError("sample_rate, num_mel_bins and target_length must be positive")
        if self.frame_shift_ms <= 0 or self.norm_std <= 0:
            raise ValueError("frame_shift_ms and norm_std must be positive")
