"""Reading audio: a mono float waveform at the rate the features need, from an audio file (wav,
flac, ... through soundfile) or from the audio track of a video file (mp4, mkv, ... through PyAV).

As the official AVSS loader does, channels are averaged and audio at another sample rate is
resampled (the windowed sinc of ``torchaudio.functional.resample``, by
:func:`pcas_core.audio.resample.resample`: same bits on every CPU), with a note in the log the
first time each rate is met.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch import Tensor

from pcas_core.audio.resample import resample

__all__ = ["VIDEO_SUFFIXES", "AudioInfo", "probe_audio", "read_audio", "load_wave",
           "wav_truncation"]

VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4a")
"""Containers whose audio track is read with PyAV (soundfile reads the rest)."""

_log = logging.getLogger("pcas.audio")
_NOTED_RATES: set[tuple[int, int]] = set()


@dataclass(frozen=True)
class AudioInfo:
    """Header facts of an audio file: ``rate`` (Hz), ``channels``, ``duration`` (seconds)."""

    rate: int
    channels: int
    duration: float


def _av_audio(path: Path, decode: bool) -> tuple[np.ndarray | None, AudioInfo]:
    """Audio track of a container via PyAV: ((channels, S) float32 or None, info)."""
    try:  # here, not at the top: audio files need only soundfile (pcas runs without PyAV)
        import av
    except ImportError as err:
        raise ImportError("the audio track of a video file is read with PyAV, which is not "
                          "installed (pip install av)") from err

    with av.open(str(path)) as container:
        if not container.streams.audio:
            raise ValueError("no audio track")
        stream = container.streams.audio[0]
        rate, channels = int(stream.rate), int(stream.channels)
        if not decode:
            seconds = (float(stream.duration * stream.time_base) if stream.duration is not None
                       else (container.duration or 0) / av.time_base)
            return None, AudioInfo(rate, channels, seconds)
        planar = av.AudioResampler(format="fltp", layout=stream.layout, rate=rate)
        chunks = [f.to_ndarray() for frame in container.decode(stream)
                  for f in planar.resample(frame)]
        chunks += [f.to_ndarray() for f in planar.resample(None)]
    data = np.concatenate(chunks, axis=1) if chunks else np.zeros((channels, 0), np.float32)
    return data.astype(np.float32, copy=False), AudioInfo(rate, channels, data.shape[1] / rate)


def probe_audio(path: Path) -> AudioInfo:
    """Rate, channels and duration from the file's header (nothing decoded).

    Raises:
        ValueError: the file cannot be read as audio (names the file and the reason).
    """
    path = Path(path)
    try:
        if path.suffix.lower() in VIDEO_SUFFIXES:
            return _av_audio(path, decode=False)[1]
        info = sf.info(str(path))
        return AudioInfo(int(info.samplerate), int(info.channels), info.frames / info.samplerate)
    except Exception as err:  # soundfile/PyAV raise many types (LibsndfileError, av.FFmpegError, ...)
        raise ValueError(f"{path}: cannot read audio ({err})") from err


def read_audio(path: Path) -> tuple[np.ndarray, int]:
    """Decode a whole file: ((S,) float32 mono = mean over channels, sample rate in Hz).

    Raises:
        ValueError: the file cannot be decoded (names the file).
    """
    path = Path(path)
    try:
        if path.suffix.lower() in VIDEO_SUFFIXES:
            data, info = _av_audio(path, decode=True)
            rate = info.rate
        else:
            samples, rate = sf.read(str(path), dtype="float32", always_2d=True)
            data = samples.T
    except Exception as err:
        raise ValueError(f"{path}: cannot read audio ({err})") from err
    mono = data.mean(axis=0) if data.shape[0] > 1 else data[0]
    return np.ascontiguousarray(mono, dtype=np.float32), int(rate)


def load_wave(path: Path, *, sample_rate: int = 16000) -> Tensor:
    """Read an audio file (or a video's audio track) as a mono waveform at ``sample_rate``.

    Args:
        path: wav/flac/ogg/... (soundfile) or mp4/mkv/webm/avi/mov/m4a (PyAV).
        sample_rate: the rate (Hz) of the returned waveform; audio at another rate is resampled
            (:func:`pcas_core.audio.resample.resample`, torchaudio's default filter), with an
            INFO note the first time a rate is met.

    Returns:
        ``(S,)`` float32 waveform in [-1, 1] at ``sample_rate`` Hz; channels averaged.

    Raises:
        ValueError: the file cannot be read, or holds NaN/infinite samples (names the file).
    """
    mono, rate = read_audio(path)
    if not np.isfinite(mono).all():
        raise ValueError(f"{path}: audio holds NaN or infinite samples")
    wave = torch.from_numpy(mono)
    if rate != sample_rate:
        if (rate, sample_rate) not in _NOTED_RATES:
            _NOTED_RATES.add((rate, sample_rate))
            _log.info("audio at %d Hz is resampled to %d Hz (first such file: %s)", rate,
                      sample_rate, path)
        wave = resample(wave, rate, sample_rate)
    return wave.to(torch.float32)


def wav_truncation(path: Path) -> str:
    """Why a RIFF/WAVE file is truncated ("" if it is not, or is not a RIFF file): its ``data``
    chunk declares more bytes than the file holds, or there is no ``data`` chunk. Reads only the
    chunk headers."""
    path = Path(path)
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return "" if len(head) >= 12 else f"only {size} bytes"
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            chunk, length = f.read(4), int.from_bytes(f.read(4), "little")
            if chunk == b"data":
                held = size - pos - 8
                if length not in (0, 0xFFFFFFFF) and length > held:
                    return f"data chunk declares {length} bytes but the file holds {held}"
                return ""
            pos += 8 + length + (length & 1)
    return "no data chunk"
