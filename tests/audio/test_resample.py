"""Tests of pcas_core.audio.resample (torchaudio's windowed-sinc resampler with a CPU-independent
filter) and of the claim it serves: the aisfx log-mel is the same bits whichever vectorised
kernels torch uses."""

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import torchaudio.functional as taf

from pcas_core.audio.aisfx_mel import aisfx_logmel
from pcas_core.audio.resample import KAISER_BEST, resample, sinc_kernel

_REPO = Path(__file__).resolve().parents[2]


def _noise(shape, seed=0) -> torch.Tensor:
    return torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def test_the_filter_and_the_output_are_torchaudios():
    """Same algorithm as ``torchaudio.functional.resample``: the kaiser_best output agrees to
    2.4e-7 here, the float32 rounding of I0(beta) that torchaudio's filter carries (relative
    6e-8 on samples up to ~4); the Hann filter, float64 in both, to rounding (1e-12)."""
    x = _noise((3, 16000))
    ours = resample(x, 16000, 44100, **KAISER_BEST)
    theirs = taf.resample(x, 16000, 44100, lowpass_filter_width=64, rolloff=KAISER_BEST["rolloff"],
                          resampling_method="sinc_interp_kaiser", beta=KAISER_BEST["beta"])
    assert ours.shape == theirs.shape == (3, 44100) and ours.dtype == torch.float64
    assert (ours - theirs).abs().max() < 1e-6
    down = resample(x, 22050, 16000)
    assert down.shape == (3, math.ceil(16000 * 16000 / 22050))
    assert (down - taf.resample(x, 22050, 16000)).abs().max() < 1e-12
    assert resample(x, 16000, 16000) is x
    kernel, width = sinc_kernel(160, 441, 64, KAISER_BEST["rolloff"], "sinc_interp_kaiser",
                                KAISER_BEST["beta"])
    assert kernel.shape == (441, 1, 2 * width + 160) and width == 68


def test_a_tone_comes_out_as_the_same_tone_at_the_new_rate():
    """A 1 kHz sine at 16 kHz resampled to 44.1 kHz with kaiser_best (stop band below -170 dB)
    is that sine sampled at 44.1 kHz, to 1e-8 away from the edges; with torchaudio's default
    filter (6 zero crossings) to 1e-3."""
    def sine(rate):
        return torch.sin(2 * math.pi * 1000 * torch.arange(rate, dtype=torch.float64) / rate)

    best = resample(sine(16000), 16000, 44100, **KAISER_BEST)
    assert (best - sine(44100))[2000:-2000].abs().max() < 1e-8
    default = resample(sine(16000), 16000, 22050)
    assert (default - sine(22050))[500:-500].abs().max() < 1e-3
    assert resample(sine(16000).float(), 16000, 22050).dtype == torch.float32


def test_bad_rates_and_methods_are_refused():
    with pytest.raises(ValueError, match="positive integers"):
        resample(_noise((100,)), 16000.5, 44100)
    with pytest.raises(ValueError, match="positive integers"):
        resample(_noise((100,)), 0, 44100)
    with pytest.raises(ValueError, match="sinc_interp_hann or sinc_interp_kaiser"):
        resample(_noise((100,)), 16000, 44100, method="linear")


def _wave() -> torch.Tensor:
    """2.5 s at 16 kHz: a tone (scalar math.sin) plus integer-hash noise, the same bits on any
    CPU (torch.randn and torch.sin are vectorised, so their bits may depend on the kernels)."""
    noise = ((np.arange(40000, dtype=np.int64) * 1103515245 + 12345) % 65536) / 32768.0 - 1.0
    tone = np.array([math.sin(0.3 * i) for i in range(40000)])
    return torch.from_numpy(0.1 * noise + 0.5 * tone).float()


_CHILD = """
import sys, numpy as np, torch
import pcas_core
from pcas_core.audio.aisfx_mel import aisfx_logmel
from pcas_core.audio.resample import resample
sys.path.insert(0, "tests/audio")
from test_resample import _wave
np.save(sys.argv[1], aisfx_logmel(_wave(), sample_rate=16000, target_length=120).numpy())
np.save(sys.argv[2], resample(_wave(), 22050, 16000).numpy())
print(torch.backends.cpu.get_cpu_capability())
"""


def test_the_aisfx_log_mel_is_the_same_bits_under_every_cpu_kernel(tmp_path):
    """What makes the fbank store byte-identical across CPUs: with torch's plain C++ kernels
    (ATEN_CPU_CAPABILITY=default) instead of this CPU's AVX2/AVX-512 ones (or the other way round
    when this process runs on the plain ones), the log-mel of a 2.5-s waveform (resampled
    16 -> 44.1 kHz) and a 22.05 -> 16 kHz resampling come out bit for bit the same.
    (torchaudio's filters moved the features by up to 1.5e-6 this way.)"""
    here = torch.backends.cpu.get_cpu_capability()
    env = {k: v for k, v in os.environ.items() if k != "ATEN_CPU_CAPABILITY"}
    if here != "DEFAULT":
        env["ATEN_CPU_CAPABILITY"] = "default"
    files = [tmp_path / "logmel.npy", tmp_path / "wave.npy"]
    done = subprocess.run([sys.executable, "-c", _CHILD, *map(str, files)], env=env, cwd=_REPO,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    if done.stdout.strip() == here:
        pytest.skip(f"this CPU has only one set of kernels ({here})")
    logmel = aisfx_logmel(_wave(), sample_rate=16000, target_length=120).numpy()
    assert logmel.shape == (120, 96) and logmel.max() > 0.3  # real content, not zeros
    np.testing.assert_array_equal(np.load(files[0]), logmel)
    np.testing.assert_array_equal(np.load(files[1]), resample(_wave(), 22050, 16000).numpy())
