"""A video file unlike the demo dataset's clips, composed from the same real assets, for trying
`pcas predict` on ordinary footage: any frame size and frame rate, stereo audio at any rate.

Each named class contributes its first cut-out (``<assets>/images/<class>/*.png``), drifting
slowly across a background photo, and its first recording (``<assets>/sounds/<class>/*.flac``,
looped). Objects stand side by side; the recording of object j is panned towards its side of the
frame (object 0 left, object 1 right), so both are heard in both channels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from PIL import Image

import pcas_core  # noqa: F401  (import shim before torchaudio)
import torchaudio.functional as AF  # noqa: E402

from pcas_core.data.video import VideoWriter  # noqa: E402

__all__ = ["DemoVideo"]


class DemoVideo:
    """A composed clip: :meth:`frame` gives any frame, :meth:`audio` the stereo track,
    :meth:`write` encodes both (h264 + AAC through :class:`VideoWriter`).

    Args:
        assets: the demo assets folder (``data/demo-assets``).
        classes: class folders, one object each (1 or 2 make a readable frame).
        width, height: frame size in pixels.
        fps: frames per second.
        seconds: length.
        sample_rate: audio rate in Hz (recordings are resampled to it).
        background: file name under ``<assets>/backgrounds`` (default: the first).
        object_height: object height as a fraction of the frame height.
        drift: horizontal drift of each object over the clip, as a fraction of the frame width.

    Raises:
        ValueError: a class has no cut-out or recording, or no background photo exists (names the
            folder).
    """

    def __init__(self, assets: Path, classes: list[str], *, width: int = 1920, height: int = 1080,
                 fps: int = 30, seconds: float = 10.0, sample_rate: int = 44100,
                 background: str | None = None, object_height: float = 0.45,
                 drift: float = 0.08) -> None:
        assets = Path(assets)
        photos = sorted((assets / "backgrounds").glob("*.jpg"))
        if not photos:
            raise ValueError(f"{assets / 'backgrounds'}: no .jpg background photo")
        photo = assets / "backgrounds" / background if background else photos[0]
        with Image.open(photo) as im:
            self.background = np.asarray(_cover(im.convert("RGB"), width, height), np.uint8)
        self.width, self.height, self.fps, self.seconds = width, height, fps, seconds
        self.sample_rate, self.drift = sample_rate, drift
        self.objects, self.recordings = [], []
        for cls in classes:
            cut = sorted((assets / "images" / cls).glob("*.png"))
            rec = sorted((assets / "sounds" / cls).glob("*.flac"))
            if not cut or not rec:
                raise ValueError(f"{assets}: class {cls!r} needs images/{cls}/*.png and "
                                 f"sounds/{cls}/*.flac")
            with Image.open(cut[0]) as im:
                rgba = im.convert("RGBA")
            scale = object_height * height / rgba.height
            self.objects.append(np.asarray(rgba.resize((max(1, round(rgba.width * scale)),
                                                        round(object_height * height)),
                                                       Image.BILINEAR)))
            wave, rate = sf.read(rec[0], dtype="float32", always_2d=True)
            self.recordings.append(AF.resample(torch.from_numpy(wave.mean(axis=1)), rate,
                                               sample_rate).numpy())

    @property
    def n_frames(self) -> int:
        """Frames in the clip: ``round(seconds * fps)``."""
        return int(round(self.seconds * self.fps))

    def frame(self, i: int) -> np.ndarray:
        """Frame ``i`` as (height, width, 3) uint8 RGB: objects j at the centre of their
        1/len(objects) column, moved ``drift * width * i / n_frames`` pixels (alternating sides)."""
        img = self.background.copy()
        n = len(self.objects)
        for j, obj in enumerate(self.objects):
            h, w = obj.shape[:2]
            shift = (1 if j % 2 == 0 else -1) * self.drift * self.width * i / self.n_frames
            x = int(np.clip((j + 0.5) * self.width / n - w / 2 + shift, 0, self.width - w))
            y = (self.height - h) // 2 + self.height // 8
            alpha = obj[..., 3:].astype(np.float32) / 255.0
            region = img[y:y + h, x:x + w]
            region[:] = np.clip(np.rint(alpha * obj[..., :3] + (1.0 - alpha) * region), 0, 255)
        return img

    def audio(self) -> np.ndarray:
        """(2, S) float32 stereo track, S = seconds * sample_rate, peak 0.9: each recording
        looped, object j panned 0.75/0.25 towards its side."""
        n = int(round(self.seconds * self.sample_rate))
        out = np.zeros((2, n), np.float32)
        for j, wave in enumerate(self.recordings):
            looped = np.tile(wave, n // len(wave) + 1)[:n]
            pan = np.array([0.75, 0.25] if j % 2 == 0 else [0.25, 0.75], np.float32)[:, None]
            out += pan * looped
        return out * (0.9 / max(float(np.abs(out).max()), 1e-6))

    def write(self, path: Path) -> None:
        """Encode the clip to ``path`` (container from the suffix)."""
        with VideoWriter(path, fps=self.fps, width=self.width, height=self.height,
                         audio=self.audio(), sample_rate=self.sample_rate) as writer:
            for i in range(self.n_frames):
                writer.add(self.frame(i))


def _cover(img: Image.Image, width: int, height: int) -> Image.Image:
    """Scale ``img`` to cover width x height and centre-crop it."""
    scale = max(width / img.width, height / img.height)
    img = img.resize((max(width, round(img.width * scale)), max(height, round(img.height * scale))),
                     Image.BILINEAR)
    left, top = (img.width - width) // 2, (img.height - height) // 2
    return img.crop((left, top, left + width, top + height))
