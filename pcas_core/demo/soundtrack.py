"""The demo's audio: each sounding object's recording, looped over the seconds in which it
sounds, mixed over a low white-noise floor, so that a second in which nothing sounds holds the
floor alone (a real silence, not a zero)."""

from __future__ import annotations

import numpy as np

__all__ = ["sounding_run", "mix_soundtrack", "dbfs", "MIN_SOUNDING_DBFS"]

_GAIN = (0.7, 1.0)  # random gain of each recording before mixing
_PEAK = 0.9  # peak amplitude of the sources' mix (full scale = 1), before the noise floor
_FADE_S = 0.01  # raised-cosine fade in / out where a source starts or stops inside the clip
_DRAWS = 100  # excerpt draws before giving up on a mix
#: every second in which a source sounds has at least this RMS (dBFS) of that source
MIN_SOUNDING_DBFS = -45.0


def dbfs(wave: np.ndarray) -> float:
    """RMS level of ``wave`` in dB relative to full scale (1.0); -inf for silence."""
    rms = float(np.sqrt(np.mean(np.square(wave, dtype=np.float64)))) if len(wave) else 0.0
    return 20.0 * np.log10(rms) if rms > 0 else float("-inf")


def sounding_run(rng: np.random.Generator, n_seconds: int, *, min_len: int,
                 max_len: int) -> np.ndarray:
    """One contiguous run of sounding seconds: length uniform in ``min_len..max_len``, start
    uniform among the places it fits -> (n_seconds,) bool.

    Raises:
        ValueError: not ``1 <= min_len <= max_len <= n_seconds``.
    """
    if not 1 <= min_len <= max_len <= n_seconds:
        raise ValueError(f"need 1 <= min_len ({min_len}) <= max_len ({max_len}) <= "
                         f"n_seconds ({n_seconds})")
    length = int(rng.integers(min_len, max_len + 1))
    start = int(rng.integers(0, n_seconds - length + 1))
    out = np.zeros(n_seconds, dtype=bool)
    out[start:start + length] = True
    return out


def _envelope(seconds: np.ndarray, sample_rate: int) -> np.ndarray:
    """(T * sample_rate,) float64 gain: 1 in the sounding seconds, 0 elsewhere, with 10 ms
    raised-cosine ramps inside the run where it starts or stops within the clip."""
    env = np.repeat(seconds.astype(np.float64), sample_rate)
    fade = max(1, int(round(_FADE_S * sample_rate)))
    ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(fade) + 0.5) / fade)
    edges = np.flatnonzero(np.diff(seconds.astype(np.int8)))
    for e in edges:
        at = (e + 1) * sample_rate
        if seconds[e + 1]:  # starts at second e + 1
            env[at:at + fade] *= ramp
        else:  # stops after second e
            env[at - fade:at] *= ramp[::-1]
    return env


def _excerpt(rng: np.random.Generator, wave: np.ndarray, n: int) -> np.ndarray:
    """``wave`` looped to ``n`` samples from a random offset, with a random gain (float64)."""
    offset = int(rng.integers(len(wave)))
    reps = (offset + n) // len(wave) + 1
    return rng.uniform(*_GAIN) * np.tile(wave.astype(np.float64), reps)[offset:offset + n]


def mix_soundtrack(rng: np.random.Generator, recordings: list[list[np.ndarray]],
                   sounding: np.ndarray, sample_rate: int, noise_dbfs: float
                   ) -> tuple[np.ndarray, list[int]]:
    """The audio of one clip.

    Per source: one of its recordings (chosen at random), looped from a random offset, given a
    random gain 0.7-1.0 and switched on in its sounding seconds only (10 ms fades at the run's
    ends inside the clip). The sources are summed and the sum scaled to peak 0.9 full scale;
    draws are repeated until every sounding second of every source has an RMS of at least
    :data:`MIN_SOUNDING_DBFS` in the mix. White Gaussian noise of RMS ``noise_dbfs`` is added
    over the whole clip (second by second, so a silent second is the floor alone).

    Args:
        rng: the composition's generator.
        recordings: per source, the (n,) float32 waves it may use (at ``sample_rate``).
        sounding: (n_sources, T) bool: source j sounds in second t.
        sample_rate: Hz.
        noise_dbfs: RMS of the noise floor in dBFS (e.g. -60).

    Returns:
        ``(audio (T * sample_rate,) float32 in [-1, 1], chosen)`` with ``chosen[j]`` the index of
        source j's recording in ``recordings[j]``.

    Raises:
        ValueError: ``sounding`` does not have one row per source.
        RuntimeError: no draw in 100 keeps every sounding second loud enough (a recording that
            is mostly quieter than -45 dBFS).
    """
    sounding = np.asarray(sounding, dtype=bool)
    if sounding.ndim != 2 or sounding.shape[0] != len(recordings):
        raise ValueError(f"sounding must be (n_sources={len(recordings)}, T), got {sounding.shape}")
    n_seconds = sounding.shape[1]
    n = n_seconds * sample_rate
    for _ in range(_DRAWS):
        chosen = [int(rng.integers(len(options))) for options in recordings]
        tracks = [_excerpt(rng, options[k], n) * _envelope(sounding[j], sample_rate)
                  for j, (options, k) in enumerate(zip(recordings, chosen))]
        mix = np.sum(tracks, axis=0) if tracks else np.zeros(n)
        peak = float(np.abs(mix).max(initial=0.0))
        scale = _PEAK / peak if peak > 0 else 1.0
        loud = all(dbfs(scale * track[t * sample_rate:(t + 1) * sample_rate]) >= MIN_SOUNDING_DBFS
                   for j, track in enumerate(tracks) for t in np.flatnonzero(sounding[j]))
        if loud:
            break
    else:
        raise RuntimeError(f"no excerpt in {_DRAWS} draws keeps every sounding second at "
                           f">= {MIN_SOUNDING_DBFS} dBFS")
    noise = rng.standard_normal(n) * 10.0 ** (noise_dbfs / 20.0)
    audio = np.clip(scale * mix + noise, -1.0, 1.0)
    return audio.astype(np.float32), chosen
