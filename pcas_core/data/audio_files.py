"""Audio of AVSBench-object (S4, MS3) videos: a folder of files keyed by video name.

The released S4/MS3 audio is VGGish log-mel examples (``audio_log_mel/*.pkl``), which PCAS cannot
use (it computes AST fbank from the waveform), so the user points ``data.audio_dir`` at a folder
(searched recursively, e.g. the release's ``audio_wav/{split}/{category}/{vid}.wav``) holding, per
video ``vid``, either ``vid.wav`` (or another soundfile format) or the source video ``vid.mp4``
(or another container of :data:`pcas_core.audio.wave.VIDEO_SUFFIXES`), whose audio track is read
with PyAV. When both exist the audio file is used.
"""

from __future__ import annotations

from pathlib import Path

from pcas_core.audio.wave import VIDEO_SUFFIXES
from pcas_core.data.problems import DataError

__all__ = ["AUDIO_SUFFIXES", "index_audio_dir"]

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
_PRIORITY = {s: i for i, s in enumerate(AUDIO_SUFFIXES + VIDEO_SUFFIXES)}


def index_audio_dir(folder: Path) -> dict[str, Path]:
    """Map video name -> its audio source file under ``folder`` (recursive; name = file stem).

    Raises:
        DataError: the folder does not exist, or a video name has two files of the same kind
            (e.g. two ``vid.wav`` in different sub-folders); the message names them.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: audio folder not found (data.audio_dir: a folder of "
                        "<video name>.wav files, or of the source videos <video name>.mp4)")
    found: dict[str, list[Path]] = {}
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() in _PRIORITY and path.is_file():
            found.setdefault(path.stem, []).append(path)
    out: dict[str, Path] = {}
    for name, paths in found.items():
        best = min(_PRIORITY[p.suffix.lower()] for p in paths)
        top = [p for p in paths if _PRIORITY[p.suffix.lower()] == best]
        if len(top) > 1:
            raise DataError(f"{folder}: video {name} has {len(top)} audio files "
                            f"({', '.join(map(str, top[:3]))}); keep one")
        out[name] = top[0]
    return out
