"""pcas_core.demo.soundtrack and assets.trim_pauses on hand-made waves: sounding runs, the mix
second by second over its noise floor, pauses cut from recordings."""

import numpy as np
import pytest

from pcas_core.demo.assets import trim_pauses
from pcas_core.demo.soundtrack import MIN_SOUNDING_DBFS, dbfs, mix_soundtrack, sounding_run

SR = 1000


def _tone(seconds: float, amplitude: float, freq: float = 50.0) -> np.ndarray:
    t = np.arange(int(round(seconds * SR))) / SR
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_sounding_runs_are_contiguous_and_of_the_asked_lengths():
    rng = np.random.default_rng(0)
    starts, lengths = set(), set()
    for _ in range(300):
        run = sounding_run(rng, 5, min_len=1, max_len=4)
        on = np.flatnonzero(run)
        assert 1 <= len(on) <= 4 and (np.diff(on) == 1).all()
        starts.add(int(on[0]))
        lengths.add(len(on))
    assert starts == {0, 1, 2, 3, 4} and lengths == {1, 2, 3, 4}
    assert sounding_run(rng, 3, min_len=3, max_len=3).all()
    with pytest.raises(ValueError, match="max_len"):
        sounding_run(rng, 3, min_len=1, max_len=4)


def test_mix_is_loud_where_sources_sound_and_the_floor_elsewhere():
    rng = np.random.default_rng(0)
    recordings = [[_tone(0.7, 0.5)], [_tone(0.3, 0.2, freq=120.0), _tone(0.4, 0.8)]]
    sounding = np.array([[1, 1, 0, 0, 0], [0, 1, 1, 0, 0]], dtype=bool)
    audio, chosen = mix_soundtrack(rng, recordings, sounding, SR, noise_dbfs=-70.0)
    assert audio.shape == (5 * SR,) and audio.dtype == np.float32
    assert chosen[0] == 0 and chosen[1] in (0, 1)
    level = [dbfs(audio[t * SR:(t + 1) * SR]) for t in range(5)]
    assert all(v >= MIN_SOUNDING_DBFS for v in level[:3])
    np.testing.assert_allclose(level[3:], -70.0, atol=0.3)  # silent seconds: the noise alone
    assert abs(np.abs(audio).max() - 0.9) < 0.01  # sources peak-normalised to 0.9


def test_nothing_sounding_gives_the_noise_floor_only():
    audio, chosen = mix_soundtrack(np.random.default_rng(1), [], np.zeros((0, 3), bool), SR, -60.0)
    assert chosen == [] and dbfs(audio) == pytest.approx(-60.0, abs=0.3)


def test_a_recording_that_cannot_fill_its_seconds_is_refused():
    click = np.zeros(3 * SR, np.float32)
    click[10] = 1.0  # one loud sample, then nearly 3 s of digital silence
    with pytest.raises(RuntimeError, match=r">= -45.0 dBFS"):
        mix_soundtrack(np.random.default_rng(0), [[click]], np.ones((1, 3), bool), SR, -60.0)


def test_long_pauses_are_cut_to_a_quarter_second_short_ones_kept():
    tone = _tone(0.5, 0.5)
    quiet = lambda s: np.zeros(int(s * SR), np.float32)  # noqa: E731
    wave = np.concatenate([tone, quiet(1.0), tone, quiet(0.1), tone])
    out = trim_pauses(wave, SR)
    assert len(out) == int(round((0.5 + 0.25 + 0.5 + 0.1 + 0.5) * SR))
    np.testing.assert_array_equal(out[:500], tone)
    np.testing.assert_array_equal(out[-500:], tone)
    silence = quiet(2.0)
    assert trim_pauses(silence, SR) is silence  # all pause: unchanged
