"""Waveform loading and AST log-mel filterbank features.

The feature recipe is the one of the Audio Spectrogram Transformer (AST: Gong, Chung and Glass,
"AST: Audio Spectrogram Transformer", Interspeech 2021; dataloader of github.com/YuanGongND/ast,
``src/dataloader.py``), as docs/avsbench.md §4 summarises (
PCAS"):

1. subtract the waveform mean;
2. ``torchaudio.compliance.kaldi.fbank`` with ``htk_compat=True, use_energy=False,
   window_type="hanning", dither=0.0`` and a 10 ms frame shift (25 ms window, Kaldi's default);
3. zero-pad (``nn.ZeroPad2d`` on the time axis) or truncate to ``target_length`` frames;
4. normalise ``(fbank - mean) / (2 * std)`` (AudioSet statistics by default). Padding happens before
   normalisation, so padded frames hold ``-mean / (2 * std)``, exactly as in AST.

Audio is read by :func:`pcas_core.audio.wave.load_wave` (soundfile or PyAV, resampled when needed;
re-exported here); ``torchaudio.load`` is not used (its backends are unavailable on the CPU-only
install). ``import pcas_core`` must precede ``import torchaudio`` (see ``pcas_core.compat``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

import pcas_core  # noqa: F401  (installs the import shim before torchaudio)
import torchaudio.compliance.kaldi as kaldi  # noqa: E402

from pcas_core.audio.wave import load_wave

__all__ = ["AUDIOSET_MEAN", "AUDIOSET_STD", "ast_fbank", "frames_per_second", "load_wave"]

#: AudioSet fbank statistics used by AST (github.com/YuanGongND/ast, ``run.sh``).
AUDIOSET_MEAN: float = -4.2677393
AUDIOSET_STD: float = 4.5689974


def frames_per_second(frame_shift_ms: float) -> int:
    """Number of fbank frames per second of audio for a frame shift.

    Args:
        frame_shift_ms: hop between fbank frames in milliseconds (AST: 10.0).

    Returns:
        ``1000 / frame_shift_ms`` as an int (100 for 10 ms).

    Raises:
        ValueError: the shift is not positive or does not divide one second into a whole number of
            frames.
    """
    if frame_shift_ms <= 0:
        raise ValueError(f"frame_shift_ms must be positive, got {frame_shift_ms}")
    fps = 1000.0 / frame_shift_ms
    if abs(fps - round(fps)) > 1e-6:
        raise ValueError(f"frame_shift_ms={frame_shift_ms} gives a non-integer {fps} frames per second")
    return int(round(fps))


def ast_fbank(
    wave: Tensor,
    *,
    sample_rate: int = 16000,
    num_mel_bins: int = 128,
    target_length: int = 1024,
    frame_shift_ms: float = 10.0,
    norm_mean: float = AUDIOSET_MEAN,
    norm_std: float = AUDIOSET_STD,
) -> Tensor:
    """AST log-mel filterbank of a mono waveform (recipe in the module docstring).

    Args:
        wave: ``(S,)`` float waveform at ``sample_rate`` Hz (as returned by :func:`load_wave`).
        sample_rate: sampling rate of ``wave`` in Hz.
        num_mel_bins: number of mel bins (AST: 128).
        target_length: number of output frames; shorter input is zero-padded at the end, longer input
            truncated (AST: 1024 frames for 10 s at 10 ms).
        frame_shift_ms: hop between frames in ms (frames per second: :func:`frames_per_second`).
        norm_mean: fbank mean subtracted after padding (AudioSet default from AST).
        norm_std: fbank std; the result is divided by ``2 * norm_std`` as AST does.

    Returns:
        ``(target_length, num_mel_bins)`` float32 normalised log-mel fbank; frame i covers the
        25 ms window starting at ``i * frame_shift_ms`` ms.

    Raises:
        ValueError: ``wave`` is not 1-D ``(S,)``, is shorter than one 25 ms window, or
            ``target_length``/``num_mel_bins`` is not positive.
    """
    if wave.ndim != 1:
        raise ValueError(f"expected a mono waveform of shape (S,), got {tuple(wave.shape)}")
    if target_length <= 0 or num_mel_bins <= 0:
        raise ValueError(f"target_length and num_mel_bins must be positive, got {target_length}, {num_mel_bins}")
    window = int(sample_rate * 0.025)  # kaldi's default frame_length is 25 ms
    if wave.shape[0] < window:
        raise ValueError(f"waveform of {wave.shape[0]} samples is shorter than one 25 ms window ({window})")
    wave = wave.to(torch.float32)
    wave = (wave - wave.mean()).unsqueeze(0)  # (1, S), AST subtracts the mean first
    fbank = kaldi.fbank(
        wave,
        htk_compat=True,
        sample_frequency=float(sample_rate),
        use_energy=False,
        window_type="hanning",
        num_mel_bins=num_mel_bins,
        dither=0.0,
        frame_shift=frame_shift_ms,
    )  # (n_frames, num_mel_bins)
    pad = target_length - fbank.shape[0]
    if pad > 0:
        fbank = nn.ZeroPad2d((0, 0, 0, pad))(fbank)
    elif pad < 0:
        fbank = fbank[:target_length, :]
    return ((fbank - norm_mean) / (norm_std * 2)).to(torch.float32)
