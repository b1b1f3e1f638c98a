"""Windowed-sinc resampling whose filter does not depend on the CPU's vector instructions.

The algorithm and its parameters are those of ``torchaudio.functional.resample`` (torchaudio's
``functional.py``, ``_get_sinc_resample_kernel`` / ``_apply_sinc_resample_kernel``; the polyphase
windowed sinc of Dan Povey's Kaldi resampler): for ``orig`` -> ``new`` Hz (both divided by their
gcd), output sample ``j`` is ``sum_i x[i] h_j(i)`` with one filter per phase ``j mod new``,
applied as a ``conv1d`` of stride ``orig``.

Why not torchaudio's own: it evaluates the filter with torch's vectorised ``sin``, ``cos`` and
``i0`` (and the Kaiser ``i0(beta)`` in float32), whose last bits differ between CPU kernels
(``ATEN_CPU_CAPABILITY=default`` vs ``avx2``/``avx512``); after the log-mel those bits reach
1e-6 of the features. Here the filter is built in float64 from Python's scalar ``math.sin`` /
``math.cos`` and a power series of ``I0`` in elementwise additions and products (correctly
rounded on every instruction set); the signal then goes through the same ``conv1d``.
The filter agrees with torchaudio's to ~1e-15 (tests/audio/test_resample.py).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch import Tensor

__all__ = ["KAISER_BEST", "resample", "sinc_kernel"]

#: resampy's ``kaiser_best`` filter in torchaudio's terms (torchaudio's resampling tutorial):
#: what ``librosa.load(sr=...)`` used in librosa 0.9.
KAISER_BEST = {"lowpass_filter_width": 64, "rolloff": 0.9475937167399596,
               "method": "sinc_interp_kaiser", "beta": 14.769656459379492}


def _i0(x: np.ndarray) -> np.ndarray:
    """Modified Bessel function I0 by its power series sum_k ((x/2)^k / k!)^2, in float64.
    60 terms reach machine precision for |x| <= 20 (the Kaiser betas in use are <= 15)."""
    q = (x / 2.0) ** 2
    term, total = np.ones_like(x), np.ones_like(x)
    for k in range(1, 60):
        term = term * q / float(k * k)
        total = total + term
    return total


@functools.lru_cache(maxsize=8)
def sinc_kernel(orig: int, new: int, lowpass_filter_width: int = 6, rolloff: float = 0.99,
                method: str = "sinc_interp_hann", beta: float = 14.769656459379492
                ) -> tuple[np.ndarray, int]:
    """The polyphase filter of ``torchaudio.functional.resample`` for ``orig`` -> ``new``
    (already divided by their gcd), evaluated with scalar libm functions.

    Returns:
        ``(new, 1, 2 * width + orig)`` float64 filters (one per output phase) and ``width``, the
        input samples of context each side.

    Raises:
        ValueError: a non-positive width, or a method other than ``sinc_interp_hann`` /
            ``sinc_interp_kaiser``.
    """
    if lowpass_filter_width <= 0:
        raise ValueError(f"lowpass_filter_width must be positive, got {lowpass_filter_width}")
    if method not in ("sinc_interp_hann", "sinc_interp_kaiser"):
        raise ValueError(f"resampling method must be sinc_interp_hann or sinc_interp_kaiser, "
                         f"got {method!r}")
    base = min(orig, new) * rolloff
    width = math.ceil(lowpass_filter_width * orig / base)
    idx = np.arange(-width, width + orig, dtype=np.float64)[None] / orig
    t = np.arange(0, -new, -1, dtype=np.float64)[:, None] / new + idx
    t = np.clip(t * base, -lowpass_filter_width, lowpass_filter_width)
    if method == "sinc_interp_hann":
        window = np.array([math.cos(v * math.pi / lowpass_filter_width / 2) for v in t.ravel()]
                          ).reshape(t.shape) ** 2
    else:
        window = _i0(beta * np.sqrt(1 - (t / lowpass_filter_width) ** 2)) / _i0(np.float64(beta))
    t = t * math.pi
    sinc = np.array([math.sin(v) / v if v != 0 else 1.0 for v in t.ravel()]).reshape(t.shape)
    kernel = (sinc * (window * (base / orig)))[:, None, :]
    kernel.flags.writeable = False  # cached: shared by every call
    return kernel, width


def resample(wave: Tensor, orig_freq: int, new_freq: int, *, lowpass_filter_width: int = 6,
             rolloff: float = 0.99, method: str = "sinc_interp_hann",
             beta: float = 14.769656459379492) -> Tensor:
    """``torchaudio.functional.resample`` with a CPU-independent filter (module docstring).

    Args:
        wave: ``(..., S)`` float waveform at ``orig_freq`` Hz; computed in its dtype.
        orig_freq, new_freq: rates in Hz (integers).
        lowpass_filter_width, rolloff, method, beta: as torchaudio's (its defaults; resampy's
            ``kaiser_best`` is :data:`KAISER_BEST`).

    Returns:
        ``(..., ceil(S * new / orig))`` waveform at ``new_freq`` Hz, dtype of ``wave``.

    Raises:
        ValueError: a rate is not a positive integer; as :func:`sinc_kernel`.
    """
    if int(orig_freq) != orig_freq or int(new_freq) != new_freq or orig_freq <= 0 or new_freq <= 0:
        raise ValueError(f"sample rates must be positive integers, got {orig_freq} and {new_freq}")
    if orig_freq == new_freq:
        return wave
    gcd = math.gcd(int(orig_freq), int(new_freq))
    orig, new = int(orig_freq) // gcd, int(new_freq) // gcd
    kernel, width = sinc_kernel(orig, new, lowpass_filter_width, rolloff, method, beta)
    shape = wave.shape
    flat = wave.reshape(-1, shape[-1])
    padded = torch.nn.functional.pad(flat, (width, width + orig))
    out = torch.nn.functional.conv1d(padded[:, None], torch.tensor(kernel, dtype=wave.dtype),
                                     stride=orig)
    out = out.transpose(1, 2).reshape(flat.shape[0], -1)[:, :math.ceil(new * shape[-1] / orig)]
    return out.reshape(*shape[:-1], out.shape[-1])
