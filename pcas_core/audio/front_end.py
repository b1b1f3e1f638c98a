"""The fbank store's front ends (``fbank.front_end``), their shapes and their frame clocks.

- ``ast``: the AST Kaldi fbank (:func:`pcas_core.audio.fbank.ast_fbank`), ``num_mel_bins`` bins,
  ``target_length`` frames of ``frame_shift_ms``; the paper's setting.
- ``aisfx``: the log-mel of the pretrained aisfx CNN (:func:`pcas_core.audio.aisfx_mel.aisfx_logmel`),
  96 bands, 23.2 ms frames; its constants are the checkpoint's, so ``num_mel_bins``,
  ``frame_shift_ms`` and ``norm_*`` do not shape it. It covers the same span of audio as the AST
  store would, ``target_length * frame_shift_ms`` (5.12 s: 221 frames).

Both read the waveform at ``fbank.sample_rate``. A TVP time step is one second; the encoder
assigns each token to a step by the centre time of the frames it spans, so it needs the frame
clock (:class:`FrameTiming`), which :func:`store_timing` recovers from the ``params`` a store was
made with.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import Tensor

from pcas_core.audio.aisfx_mel import AISFX_FRONT_END, aisfx_frames, aisfx_logmel
from pcas_core.audio.fbank import ast_fbank
from pcas_core.params.inputs import FbankConfig
from pcas_core.params.parsing import parse
from pcas_core.storage.stores import read_store_attrs

__all__ = ["FRONT_ENDS", "FrameTiming", "AST_CLOCK", "front_end_timing", "front_end_shape",
           "front_end_features", "store_timing"]

#: ``fbank.front_end`` choices.
FRONT_ENDS = ("ast", "aisfx")


@dataclass(frozen=True)
class FrameTiming:
    """When the frames of a front end are: frame i spans ``[(i + frame_offset) / fps,
    (i + 1 + frame_offset) / fps)`` seconds.

    Attributes:
        front_end: ``ast`` | ``aisfx``.
        frames_per_second: fps; AST: ``sample_rate / hop`` with Kaldi's hop
            ``int(sample_rate * frame_shift_ms / 1000)`` samples (100.0 at 16 kHz and 10 ms);
            aisfx: 44100 / 1024 = 43.06640625.
        frame_offset: in frames. AST 0.0 (frame i is the i-th ``frame_shift_ms`` of the clip, the
            convention docs/method.md §2 counts seconds in); aisfx -0.5 (frame i is centred at i / fps).
    """

    front_end: str
    frames_per_second: float
    frame_offset: float


#: The clock of the default AST fbank (16 kHz, 10 ms frames).
AST_CLOCK = FrameTiming("ast", 100.0, 0.0)


def _check(cfg: FbankConfig) -> None:
    if cfg.front_end not in FRONT_ENDS:
        raise ValueError(f"fbank.front_end must be one of {FRONT_ENDS}, got {cfg.front_end!r}")


def front_end_timing(cfg: FbankConfig) -> FrameTiming:
    """The frame clock of the front end ``cfg`` selects (see :class:`FrameTiming`)."""
    _check(cfg)
    if cfg.front_end == "aisfx":
        return FrameTiming("aisfx", AISFX_FRONT_END.frames_per_second, -0.5)
    hop = int(cfg.sample_rate * cfg.frame_shift_ms * 0.001)  # torchaudio.compliance.kaldi's
    return FrameTiming("ast", cfg.sample_rate / hop, 0.0)


def front_end_shape(cfg: FbankConfig) -> tuple[int, int]:
    """``(frames, bins)`` of one video's features: AST ``(target_length, num_mel_bins)``; aisfx
    ``(aisfx_frames(target_length * frame_shift_ms / 1000), 96)``."""
    _check(cfg)
    if cfg.front_end == "aisfx":
        return (aisfx_frames(cfg.target_length * cfg.frame_shift_ms / 1000.0),
                AISFX_FRONT_END.n_mels)
    return (cfg.target_length, cfg.num_mel_bins)


def front_end_features(wave: Tensor, cfg: FbankConfig) -> Tensor:
    """Features of one waveform by ``cfg.front_end``.

    Args:
        wave: ``(S,)`` float mono waveform at ``cfg.sample_rate`` Hz.

    Returns:
        ``front_end_shape(cfg)`` float32: AST the normalised Kaldi fbank, aisfx its log-mel.

    Raises:
        ValueError: as :func:`pcas_core.audio.fbank.ast_fbank` /
            :func:`pcas_core.audio.aisfx_mel.aisfx_logmel`.
    """
    _check(cfg)
    if cfg.front_end == "aisfx":
        return aisfx_logmel(wave, sample_rate=cfg.sample_rate,
                            target_length=front_end_shape(cfg)[0])
    return ast_fbank(wave, sample_rate=cfg.sample_rate, num_mel_bins=cfg.num_mel_bins,
                     target_length=cfg.target_length, frame_shift_ms=cfg.frame_shift_ms,
                     norm_mean=cfg.norm_mean, norm_std=cfg.norm_std)


def store_timing(path: Path) -> FrameTiming:
    """The frame clock of an ``fbank`` store, from the ``fbank`` params recorded in its attrs
    (a store whose params lack ``front_end`` was made by the AST front end).

    Raises:
        pcas_core.params.parsing.ConfigError: the recorded ``fbank`` params do not parse.
    """
    recorded = read_store_attrs(Path(path))["params"].get("fbank", {})
    return front_end_timing(parse(FbankConfig, {"front_end": "ast", **recorded}, "fbank"))
