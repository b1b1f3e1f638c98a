"""Ordinary video files (mp4, mov, mkv, webm, ...) in and out, through PyAV (FFmpeg's libraries).

Reading: :func:`open_video` checks a file before any long work (container readable, a video and
an audio track, neither empty) and decodes its audio whole; :func:`sample_frames` decodes the
frames at chosen times, one at a time. Writing: :class:`VideoWriter` encodes RGB frames and an
audio track into a new file.

PyAV is imported inside the functions that use it, so that importing this module (the `pcas`
command imports every stage, ``predict`` among them) does not need it: the DVC stages read
audio files through soundfile and run where PyAV is not installed.

Time conventions (``predict`` uses them; AVSBench's 1 fps clips are the special case fps = 1):
frame i is sampled at ``(i + 0.5) / fps`` seconds, the centre of its ``1 / fps`` interval, and its
audio is the second centred on that instant. Times are measured from each stream's first decoded
frame or sample; container-level offsets between the audio and video tracks are ignored.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    import av

__all__ = ["VideoError", "VideoSource", "open_video", "sample_plan", "sample_frames",
           "wave_segment", "VideoWriter"]


class VideoError(ValueError):
    """A video file that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class VideoSource:
    """A checked video file and its decoded audio.

    Attributes:
        path: the file.
        width, height: frame size in pixels.
        frame_rate: average frames per second of the video track (as the container states it).
        duration_s: length in seconds (video track, else container, else audio).
        audio: (C, S) float32 waveform in [-1, 1], all channels, at ``sample_rate``.
        sample_rate: Hz of ``audio``.
    """

    path: Path
    width: int
    height: int
    frame_rate: float
    duration_s: float
    audio: np.ndarray
    sample_rate: int


def _open(path: Path) -> av.container.InputContainer:
    import av

    try:
        return av.open(str(path))
    except (av.error.FFmpegError, OSError) as err:
        raise VideoError(f"{path}: unreadable container ({type(err).__name__}: {err})") from err


def _decode_audio(path: Path) -> tuple[np.ndarray, int]:
    """All samples of the first audio track as (C, S) float32 at the track's own rate."""
    import av

    with _open(path) as container:
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="fltp")  # planar float, same layout and rate
        chunks, rate = [], stream.codec_context.sample_rate or stream.rate
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray())
                    rate = out.sample_rate
        except av.error.FFmpegError as err:
            raise VideoError(f"{path}: cannot decode the audio track ({err})") from err
    if not chunks or sum(c.shape[1] for c in chunks) == 0:
        raise VideoError(f"{path}: zero-length audio track (no samples)")
    return np.concatenate(chunks, axis=1).astype(np.float32), int(rate)


def open_video(path: Path) -> VideoSource:
    """Check a video file and decode its audio (before any long work).

    Raises:
        VideoError: the file is missing, empty or not a readable container, holds no samples, has
            no video track, no audio track, or a zero-length video or audio track (each message
            names the file).
    """
    import av

    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise VideoError(f"{path}: zero-length file (0 bytes)")
    with _open(path) as container:
        if not container.streams.video and not container.streams.audio:
            raise VideoError(f"{path}: zero-length video (the container holds no samples of any "
                             "track)")
        if not container.streams.video:
            raise VideoError(f"{path}: no video track (pcas predict needs frames and sound)")
        if not container.streams.audio:
            raise VideoError(f"{path}: no audio track (pcas predict segments what it hears; "
                             "the clip has no sound)")
        stream = container.streams.video[0]
        try:
            first = next(container.decode(stream), None)
        except av.error.FFmpegError as err:
            raise VideoError(f"{path}: cannot decode the video track ({err})") from err
        if first is None:
            raise VideoError(f"{path}: zero-length video track (no frames)")
        rate = float(stream.average_rate or stream.guessed_rate or 0.0)
        duration = (float(stream.duration * stream.time_base) if stream.duration else
                    container.duration / av.time_base if container.duration else None)
        width, height = first.width, first.height
    audio, sample_rate = _decode_audio(path)
    if duration is None or duration <= 0:
        duration = audio.shape[1] / sample_rate
    return VideoSource(path, width, height, rate, float(duration), audio, sample_rate)


def sample_plan(duration_s: float, fps: int, window_s: int) -> pd.DataFrame:
    """Which frames to sample, and where each sits in the audio encoder's windows.

    ``n = max(1, floor(duration_s * fps))`` frames at ``time_s = (i + 0.5) / fps``. Window w covers
    seconds ``[w * window_s, (w + 1) * window_s)``; ``step`` is the second within the window (the
    TVP time step), ``phase`` the frame's position within its second (0 .. fps - 1). The frames of
    one phase in one window form one TVP input, one prompt per step.

    Returns:
        n rows: ``frame``, ``time_s``, ``window``, ``step``, ``phase`` (int64 but time_s).

    Raises:
        ValueError: ``fps`` or ``window_s`` not a positive integer, or ``duration_s`` <= 0.
    """
    if int(fps) != fps or fps < 1 or int(window_s) != window_s or window_s < 1:
        raise ValueError(f"fps and window length must be positive integers, got {fps}, {window_s}")
    if not duration_s > 0:
        raise ValueError(f"duration must be positive, got {duration_s}")
    fps, window_s = int(fps), int(window_s)
    i = np.arange(max(1, int(np.floor(duration_s * fps + 1e-6))))
    second = i // fps
    return pd.DataFrame({"frame": i, "time_s": (i + 0.5) / fps, "window": second // window_s,
                         "step": second % window_s, "phase": i % fps})


def sample_frames(path: Path, times_s: np.ndarray) -> Iterator[np.ndarray]:
    """Decode the frames shown at ``times_s`` (ascending seconds), one (H, W, 3) uint8 RGB each.

    The frame shown at t is the last one whose presentation time is <= t (the last frame of the
    file for times past its end). Frames are decoded in order and converted to RGB only when
    sampled, so memory stays at one frame whatever the length.

    Raises:
        VideoError: decoding fails (names the file).
    """
    import av

    times = np.asarray(times_s, dtype=np.float64)
    if len(times) == 0:
        return
    k = 0
    with _open(Path(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        held, start = None, None
        try:
            for n, frame in enumerate(container.decode(stream)):
                t = frame.time if frame.time is not None else n / float(stream.average_rate or 1)
                start = t if start is None else start
                while k < len(times) and held is not None and t - start > times[k] + 1e-9:
                    yield held.to_ndarray(format="rgb24")
                    k += 1
                if k == len(times):
                    return
                held = frame
        except av.error.FFmpegError as err:
            raise VideoError(f"{path}: cannot decode the video track ({err})") from err
        while k < len(times) and held is not None:
            yield held.to_ndarray(format="rgb24")
            k += 1


def wave_segment(wave: np.ndarray, sample_rate: int, start_s: float, length_s: float) -> np.ndarray:
    """Samples ``[start_s, start_s + length_s)`` of a (..., S) waveform, exactly
    ``round(length_s * sample_rate)`` of them; positions outside the wave are zeros."""
    a = int(round(start_s * sample_rate))
    n = int(round(length_s * sample_rate))
    out = np.zeros(wave.shape[:-1] + (n,), dtype=wave.dtype)
    lo, hi = max(a, 0), min(a + n, wave.shape[-1])
    if hi > lo:
        out[..., lo - a:hi - a] = wave[..., lo:hi]
    return out


class VideoWriter:
    """Encode RGB frames and one audio track into a video file, written to ``path``: h264 (4:2:0,
    x264 preset veryfast, about half the time of its default) when FFmpeg has libx264, else
    mpeg4, with AAC audio; or, with ``lossless``, h264 in RGB at qp 0 (libx264rgb) with ALAC
    audio (16-bit), which decode back to the same pixels and samples.

    Args:
        path: output file; the container follows its suffix (``.mp4``, ``.mkv``, ...).
        fps: frames per second of the output (each added frame lasts ``1 / fps``).
        width, height: frame size; odd sizes are cropped by one pixel (4:2:0 needs even sizes).
        audio: (C, S) float32 waveform in [-1, 1], written whole when the writer closes; more
            than two channels are averaged to mono.
        sample_rate: Hz of ``audio``.
        lossless: encode losslessly (see above); for tests that compare decoded frames.

    Use as a context manager; :meth:`add` one (height, width, 3) uint8 frame at a time.
    """

    def __init__(self, path: Path, *, fps: int, width: int, height: int, audio: np.ndarray,
                 sample_rate: int, lossless: bool = False) -> None:
        import av

        self.container = av.open(str(path), mode="w")
        if lossless:
            self.video = self.container.add_stream("libx264rgb", rate=Fraction(int(fps)),
                                                   options={"qp": "0", "preset": "ultrafast"})
            pix_fmt, audio_codec = "rgb24", "alac"
        else:
            codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
            self.video = self.container.add_stream(codec, rate=Fraction(int(fps)), options=(
                {"preset": "veryfast"} if codec == "libx264" else {}))
            pix_fmt, audio_codec = "yuv420p", "aac"
        self.width, self.height = width - width % 2, height - height % 2
        self.video.width, self.video.height, self.video.pix_fmt = self.width, self.height, pix_fmt
        audio = audio if audio.shape[0] <= 2 else audio.mean(axis=0, keepdims=True)
        self.audio_data = np.ascontiguousarray(audio, dtype=np.float32)
        self.audio = self.container.add_stream(audio_codec, rate=int(sample_rate))
        self.audio.layout = "mono" if audio.shape[0] == 1 else "stereo"
        self.sample_rate = int(sample_rate)

    def add(self, frame: np.ndarray) -> None:
        """Encode one (H, W, 3) uint8 RGB frame of the size given at construction."""
        import av

        image = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame[:self.height, :self.width]),
                                           format="rgb24")
        self.container.mux(self.video.encode(image))

    def close(self) -> None:
        """Flush the video encoder, encode the audio, finish the file."""
        import av

        self.container.mux(self.video.encode(None))
        frame = av.AudioFrame.from_ndarray(self.audio_data, format="fltp",
                                           layout=self.audio.layout.name)
        frame.sample_rate, frame.pts = self.sample_rate, 0
        self.container.mux(self.audio.encode(frame))
        self.container.mux(self.audio.encode(None))
        self.container.close()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.container.close()
