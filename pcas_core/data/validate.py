"""Checks of the files a frame table names, at two depths.

- :func:`check_headers` (every dataset open): reads only headers and tails, so it is cheap at full
  scale. Errors: an image whose header cannot be read or whose end marker is missing (truncated
  JPEG/PNG), audio that cannot be probed, a truncated WAV (data chunk longer than the file),
  audio without samples. Note: audio shorter than the clip (1 s per frame): it is used, and its
  fbank is zero-padded to ``fbank.target_length`` as AST does.
- :func:`check_contents` (``pcas check-data``, and every open with ``data.verify: true``): decodes
  every frame, mask and waveform. Errors: undecodable files, NaN/infinite or silent (all-zero)
  audio, masks that cannot be decoded (or off-palette colours with ``data.off_palette: error``).
  Notes: masks with colours outside the palette (mapped to background), with their pixel counts.

Both record problems per video in a :class:`~pcas_core.data.problems.Problems`, and return one row
per video of audio facts (``uid``, ``audio_path``, ``rate``, ``channels``, ``duration`` seconds).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from pcas_core.audio.wave import probe_audio, read_audio, wav_truncation
from pcas_core.data.images import decode_mask, open_image, truncated
from pcas_core.data.problems import Problems
from pcas_core.runtime.progress import track

__all__ = ["check_headers", "check_contents"]

AUDIO_COLUMNS = ["uid", "audio_path", "rate", "channels", "duration"]

_log = logging.getLogger("pcas.data")


def _image_header(uid: str, path: str, problems: Problems) -> None:
    try:
        with Image.open(path) as img:
            img.size  # noqa: B018  (the header is parsed by open)
        if truncated(path):
            problems.error(uid, path, "truncated image (its end marker is missing)")
    except (OSError, ValueError, SyntaxError) as err:
        problems.error(uid, path, f"cannot read image ({err})")


def _exists(path: str) -> bool:
    return Path(path).is_file()


def _videos(frames: pd.DataFrame):
    """(uid, audio_path, number of frames) per video, in video order."""
    for _, group in frames.groupby("video", sort=True):
        yield group["uid"].iloc[0], group["audio_path"].iloc[0], len(group)


def check_headers(frames: pd.DataFrame, problems: Problems) -> pd.DataFrame:
    """Header/tail checks of every frame, mask and audio file (module docstring).

    Args:
        frames: frame table; files missing or already with an error in ``problems`` are skipped.
        problems: collector.

    Returns:
        Audio facts, one row per video (:data:`AUDIO_COLUMNS`); NaN where unreadable.
    """
    known = {p.path for p in problems.errors}
    for uid, frame, mask in track(zip(frames["uid"], frames["frame_path"], frames["mask_path"]),
                                  total=len(frames), desc="image headers", unit="frame", log=_log):
        for path in (frame, mask):
            if path and path not in known and _exists(path):
                _image_header(uid, path, problems)
    rows = []
    for uid, audio, n_frames in track(_videos(frames), total=int(frames["video"].nunique()),
                                      desc="audio headers", unit="video", log=_log):
        rate = channels = duration = np.nan
        if audio and _exists(audio):
            why = wav_truncation(audio) if audio.lower().endswith(".wav") else ""
            try:
                info = probe_audio(audio)
                rate, channels, duration = info.rate, info.channels, info.duration
            except ValueError as err:
                why = why or str(err).split(": ", 1)[-1]
            if why:
                problems.error(uid, audio, f"unreadable or truncated audio ({why})")
            elif duration <= 0:
                problems.error(uid, audio, "audio has no samples")
            elif duration < n_frames - 1e-3:
                problems.note(uid, audio, f"audio is {duration:.2f} s, shorter than the "
                              f"{n_frames} s clip; its fbank is zero-padded")
        rows.append((uid, audio, rate, channels, duration))
    return pd.DataFrame(rows, columns=AUDIO_COLUMNS)


def check_contents(frames: pd.DataFrame, palette: np.ndarray, problems: Problems, *,
                   off_palette: str = "background") -> None:
    """Decode every frame, mask and waveform, recording errors and notes (module docstring).

    Args:
        frames: frame table.
        palette: (N, 3) uint8 mask colours.
        problems: collector.
        off_palette: ``background`` (note, with the file and pixel count) or ``error``.

    Files that already have an error in ``problems`` (e.g. from :func:`check_headers`) are skipped.
    """
    known = {p.path for p in problems.errors}

    def usable(path: str) -> bool:
        return bool(path) and path not in known and _exists(path)

    rows = zip(frames["uid"], frames["frame_path"], frames["mask_path"], frames["mask_format"])
    for uid, frame, mask, fmt in track(rows, total=len(frames), desc="decoding frames and masks",
                                       unit="frame", log=_log):
        if usable(frame):
            try:
                open_image(frame)
            except ValueError as err:
                problems.error(uid, frame, str(err).split(": ", 1)[-1])
        if usable(mask):
            try:
                _, note = decode_mask(mask, fmt, palette, off_palette=off_palette)
                if note:
                    problems.note(uid, mask, note)
            except ValueError as err:
                problems.error(uid, mask, str(err).split(": ", 1)[-1])
    for uid, audio, _ in track(_videos(frames), total=int(frames["video"].nunique()),
                               desc="decoding audio", unit="video", log=_log):
        if not usable(audio):
            continue
        try:
            wave, _ = read_audio(audio)
        except ValueError as err:
            problems.error(uid, audio, str(err).split(": ", 1)[-1])
            continue
        if not np.isfinite(wave).all():
            problems.error(uid, audio, f"audio holds {int((~np.isfinite(wave)).sum())} NaN or "
                           "infinite samples")
        elif wave.size and not np.any(wave):
            problems.error(uid, audio, "audio is silent (every sample is 0)")
