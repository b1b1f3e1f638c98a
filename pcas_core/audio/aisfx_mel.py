"""The log-mel front end of the aisfx CNN (:mod:`pcas_core.models.aisfx`), in torch.

Source: the PyPI package ``aisfx`` 0.1.2 (A. B. Ma and A. Lerch, "Representation Learning for the
Automatic Indexing of Sound Effects Libraries", ISMIR 2022; CC BY 4.0), ``inference.py`` and
``spectrogram/spectrogram_librosa.py``. Its recipe, re-implemented here without librosa:

1. the waveform at 44.1 kHz, peak-normalised (``y / max|y|``; silence stays zero);
2. a centred STFT (librosa ``center=True``, zero padding: ``pad_mode="constant"``, librosa
   0.9.2's default), periodic Hann window of 2048 samples, n_fft 2048, hop 1024 (23.2 ms):
   frame i is centred at ``i * 1024 / 44100`` s and a waveform of S samples gives
   ``1 + S // 1024`` frames;
3. power spectrum ``|X|^2`` through 96 triangular HTK-mel filters over 0-22050 Hz, each filter
   normalised to unit sum (librosa ``filters.mel(htk=True, norm=1.0)``);
4. ``log10(10000 * mel + 1)`` (Essentia's ``shift_scale_log``);
5. divided by 9.457798957824707, the maximum of that log-mel over the training sets
   (``preprocessing.spectrogram_normalize(spec_norm="original")``, min 0), which is what
   ``aisfx.inference.main`` feeds its network.

Sample rate: the CNN's filters learned the time-frequency geometry of this recipe (23.2 ms
frames, mel bins up to 22.05 kHz). Running the same window and hop at 16 kHz would stretch time
by 2.76 and squeeze every band into 0-8 kHz, so the waveform is resampled to 44.1 kHz instead,
as ``librosa.load(sr=44100)`` does: the windowed sinc of ``torchaudio.functional.resample`` with
the Kaiser window of resampy's ``kaiser_best`` (librosa 0.9's default ``res_type``; torchaudio
documents the parameters), by :func:`pcas_core.audio.resample.resample`. Its images sit below -170 dB; the default windowed sinc leaves images of a tone f at
16 kHz +- f near -75 dB, which the ``log10(1e4 x + 1)`` compression lifts to visible values.
Audio read at ``fbank.sample_rate`` = 16 kHz has nothing above 8 kHz: the top 25 of the 96 bands
then hold ~0, the value silence has. Set ``fbank.sample_rate: 44100`` when the sources have the
full band.

The pretrained network fixes every constant above; they are declared once, as data
(:data:`AISFX_FRONT_END`), not as params.

Same bits on every CPU: the resampling filter, the Hann window and the mel weights are built
from scalar ``math`` functions (:mod:`pcas_core.audio.resample`, :func:`aisfx_mel_filters`), the
power is ``re^2 + im^2`` and the log is Python's ``math.log10``, so the vectorised kernels that
``ATEN_CPU_CAPABILITY`` selects play no part (docs/reproducibility.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from pcas_core.audio.resample import KAISER_BEST, resample

__all__ = ["AisfxFrontEnd", "AISFX_FRONT_END", "aisfx_mel_filters", "aisfx_frames",
           "aisfx_logmel"]


@dataclass(frozen=True)
class AisfxFrontEnd:
    """The log-mel recipe the aisfx checkpoint was trained with (see the module docstring).

    Attributes:
        sample_rate: Hz of the STFT input.
        n_fft: FFT length and Hann window length in samples.
        hop: samples between frame centres.
        n_mels: HTK-mel bands.
        f_min, f_max: band edges in Hz.
        log_scale: c of ``log10(c * mel + 1)``.
        norm_max: the log-mel is divided by this (aisfx's ``spec_norm="original"``).
    """

    sample_rate: int = 44100
    n_fft: int = 2048
    hop: int = 1024
    n_mels: int = 96
    f_min: float = 0.0
    f_max: float = 22050.0
    log_scale: float = 10000.0
    norm_max: float = 9.457798957824707

    @property
    def frames_per_second(self) -> float:
        """``sample_rate / hop`` = 43.06640625 frames per second (exact in binary)."""
        return self.sample_rate / self.hop


#: The recipe of ``aisfx`` 0.1.2's checkpoint.
AISFX_FRONT_END = AisfxFrontEnd()

def aisfx_mel_filters(spec: AisfxFrontEnd = AISFX_FRONT_END) -> Tensor:
    """HTK-mel triangles with unit sum each, as librosa ``filters.mel(htk=True, norm=1.0)`` (and
    ``torchaudio.functional.melscale_fbanks(mel_scale="htk")`` before the normalisation).

    Built in float64 from scalar ``math`` functions, elementwise arithmetic and exactly rounded
    sums (``math.fsum``), so the weights are the same bits on every CPU (torchaudio's are float32
    from vectorised ``pow``, whose last bits depend on the CPU kernels).

    Returns:
        ``(n_fft // 2 + 1, n_mels)`` float64; column m weights the power of each FFT bin
        (bin b at ``b * sample_rate / n_fft`` Hz) into band m.
    """
    top, bottom = _hz_to_htk_mel(spec.f_max), _hz_to_htk_mel(spec.f_min)
    edges = np.array([700.0 * (10.0 ** ((bottom + (top - bottom) * i / (spec.n_mels + 1)) / 2595.0)
                               - 1.0) for i in range(spec.n_mels + 2)])  # Hz, n_mels + 2
    freqs = np.arange(spec.n_fft // 2 + 1, dtype=np.float64)[:, None] * (spec.sample_rate / spec.n_fft)
    rising = (freqs - edges[None, :-2]) / (edges[1:-1] - edges[:-2])
    falling = (edges[None, 2:] - freqs) / (edges[2:] - edges[1:-1])
    fb = np.maximum(0.0, np.minimum(rising, falling))
    sums = np.array([math.fsum(column) for column in fb.T])
    return torch.from_numpy(fb / np.where(sums > 0, sums, 1.0))  # an empty band stays zero


def _hz_to_htk_mel(hz: float) -> float:
    return 2595.0 * math.log10(1.0 + hz / 700.0)


def aisfx_frames(seconds: float, spec: AisfxFrontEnd = AISFX_FRONT_END) -> int:
    """Centred frames of a waveform of ``seconds``: ``1 + round(seconds * sample_rate) // hop``
    (221 for 5.12 s)."""
    if seconds <= 0:
        raise ValueError(f"seconds must be positive, got {seconds}")
    return 1 + int(round(seconds * spec.sample_rate)) // spec.hop


def aisfx_logmel(wave: Tensor, *, sample_rate: int, target_length: int,
                 spec: AisfxFrontEnd = AISFX_FRONT_END) -> Tensor:
    """aisfx's normalised log-mel of a mono waveform (recipe in the module docstring).

    Args:
        wave: ``(S,)`` float waveform at ``sample_rate`` Hz.
        sample_rate: its rate in Hz; resampled to ``spec.sample_rate`` when different.
        target_length: output frames; shorter input is padded at the end with 0 (the value of
            silence, as aisfx's ``blocking`` pads), longer input truncated.
        spec: the recipe (default: the checkpoint's).

    Returns:
        ``(target_length, n_mels)`` float32, values ``log10(1e4 * mel + 1) / norm_max`` >= 0;
        frame i is centred at ``i * hop / spec.sample_rate`` s (23.2 ms apart).

    Raises:
        ValueError: ``wave`` is not 1-D, is empty, or ``target_length``/``sample_rate`` is not
            positive.
    """
    if wave.ndim != 1 or wave.shape[0] == 0:
        raise ValueError(f"expected a non-empty mono waveform of shape (S,), got {tuple(wave.shape)}")
    if target_length <= 0 or sample_rate <= 0:
        raise ValueError(f"target_length and sample_rate must be positive, got {target_length}, "
                         f"{sample_rate}")
    y = wave.to(torch.float64)
    if sample_rate != spec.sample_rate:
        y = resample(y, int(sample_rate), spec.sample_rate, **KAISER_BEST)
    peak = y.abs().max()
    y = y / (peak if peak > 0 else 1.0)
    window = torch.tensor([0.5 - 0.5 * math.cos(2.0 * math.pi * i / spec.n_fft)
                           for i in range(spec.n_fft)], dtype=torch.float64)  # periodic Hann
    stft = torch.stft(y, n_fft=spec.n_fft, hop_length=spec.hop, win_length=spec.n_fft,
                      window=window, center=True, pad_mode="constant", return_complex=True)
    power = stft.real.square() + stft.imag.square()  # |X|^2 (n_fft // 2 + 1, frames), no sqrt
    n = min(target_length, power.shape[1])
    mel = aisfx_mel_filters(spec).T @ power[:, :n]  # (n_mels, n)
    shifted = (spec.log_scale * mel + 1.0).T.flatten().tolist()  # (n, n_mels) row-major
    logmel = torch.tensor([math.log10(v) for v in shifted], dtype=torch.float64)  # scalar libm
    out = torch.zeros(target_length, spec.n_mels, dtype=torch.float64)
    out[:n] = logmel.reshape(n, spec.n_mels) / spec.norm_max
    return out.to(torch.float32)
