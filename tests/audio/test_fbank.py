"""Tests of pcas_core.audio.fbank and wave: loading (soundfile, PyAV, resampling) and the AST fbank recipe."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from pcas_core.audio.fbank import AUDIOSET_MEAN, AUDIOSET_STD, ast_fbank, frames_per_second, load_wave


def _tone(freq: float, seconds: float, sample_rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _write(path: Path, data: np.ndarray, sample_rate: int = 16000) -> Path:
    sf.write(str(path), data, sample_rate)
    return path


def test_load_wave_mono_length_and_range(tmp_path):
    wave = load_wave(_write(tmp_path / "a.wav", _tone(440, 1.0)))
    assert wave.shape == (16000,) and wave.dtype == torch.float32
    assert wave.abs().max() <= 1.0
    assert wave.abs().max() > 0.4


def test_load_wave_downmixes_stereo_by_mean(tmp_path):
    left = _tone(440, 0.5)
    stereo = np.stack([left, np.zeros_like(left)], axis=1)
    wave = load_wave(_write(tmp_path / "s.wav", stereo))
    assert wave.shape == (8000,)
    np.testing.assert_allclose(wave.numpy(), left / 2, atol=1e-4)  # 16-bit PCM quantisation


def test_load_wave_resamples_other_rates_with_a_note(tmp_path, caplog):
    path = _write(tmp_path / "rate22k.wav", _tone(440, 0.5, 22050), 22050)
    with caplog.at_level("INFO", logger="pcas.audio"):
        wave = load_wave(path)
    assert wave.shape == (8000,)  # 0.5 s at 16 kHz
    spectrum = np.abs(np.fft.rfft(wave.numpy()))
    assert abs(np.argmax(spectrum) * 16000 / 8000 - 440) <= 2  # the tone keeps its pitch
    assert "22050 Hz is resampled to 16000 Hz" in caplog.text and "rate22k.wav" in caplog.text


def test_load_wave_reads_the_audio_track_of_a_video(tmp_path):
    from layouts import write_mp4

    wave = load_wave(write_mp4(tmp_path / "clip.mp4", seconds=1.0))
    assert 16000 <= wave.shape[0] <= 16000 + 2048  # AAC adds up to two frames of priming
    spectrum = np.abs(np.fft.rfft(wave.numpy()))
    assert abs(np.argmax(spectrum) * 16000 / wave.shape[0] - 440) <= 2


def test_load_wave_unreadable_names_file(tmp_path):
    path = tmp_path / "broken.wav"
    path.write_bytes(b"not audio at all")
    with pytest.raises(ValueError, match="broken.wav"):
        load_wave(path)


def test_frames_per_second():
    assert frames_per_second(10.0) == 100
    assert frames_per_second(20.0) == 50
    with pytest.raises(ValueError):
        frames_per_second(3.0)


def test_ast_fbank_shape_and_padded_frames(tmp_path):
    wave = load_wave(_write(tmp_path / "a.wav", _tone(440, 1.0)))
    fb = ast_fbank(wave)
    assert fb.shape == (1024, 128) and fb.dtype == torch.float32
    # 1 s at 25 ms window / 10 ms hop: 1 + (16000 - 400) // 160 = 98 frames, the rest zero-padded
    # before normalisation, as in AST's dataloader.
    n_frames = 1 + (16000 - 400) // 160
    pad_value = torch.tensor((0.0 - AUDIOSET_MEAN) / (2 * AUDIOSET_STD), dtype=torch.float32)
    assert torch.equal(fb[n_frames:], pad_value.expand(1024 - n_frames, 128))
    assert not torch.isclose(fb[:n_frames], pad_value).all(dim=1).any()


def test_higher_tone_has_higher_peak_bin():
    low = ast_fbank(torch.from_numpy(_tone(440, 1.0)), target_length=98)
    high = ast_fbank(torch.from_numpy(_tone(1000, 1.0)), target_length=98)
    low_bin = int(low.mean(0).argmax())
    high_bin = int(high.mean(0).argmax())
    assert high_bin > low_bin + 5


def test_ast_fbank_truncates_longer_audio():
    wave = torch.from_numpy(_tone(440, 3.0))
    full = ast_fbank(wave, target_length=298)
    short = ast_fbank(wave, target_length=100)
    assert short.shape == (100, 128)
    assert torch.equal(short, full[:100])


def test_ast_fbank_rejects_non_mono():
    with pytest.raises(ValueError, match=r"\(S,\)"):
        ast_fbank(torch.zeros(2, 16000))
