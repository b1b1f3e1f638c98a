"""Compose a small AVSBench-semantic-style demo dataset from real cut-out images and recordings.

Each clip pastes RGBA object cut-outs (``<assets>/images/<class>/*.png``) onto a background photo
(``<assets>/backgrounds/*.jpg``) over ``n_frames`` frames with a slow linear drift, and mixes real
recordings (``<assets>/sounds/<class>/*.flac``) of the *sounding* objects into ``audio.wav``. The
output has exactly the AVSBench-semantic layout read by :mod:`pcas_core.data.avsbench`:
``metadata.csv``, ``label2idx.json``, ``<label>/<uid>/{frames/N.jpg, labels_rgb/N.png, audio.wav}``,
plus the assets' ``LICENSES.md`` and ``MANIFEST.csv`` (the licence notes travel with the media).

Clip kinds (the ``clips`` argument):

- ``single`` (subset ``v1s``): one sounding object. Count = clips *per class*.
- ``multi`` (subset ``v1m``): two sounding objects of different classes. Count = clips *in total*.
- ``silent`` (subset ``v1s``): one sounding object plus one visible object of another class that is
  silent: it is in the frames but not in the audio, the mask or ``a_obj``. Count = clips per class
  (of the sounding class).

Everything random comes from one ``numpy.random.Generator`` seeded with ``seed``; with fixed JPEG
(quality 90, 4:4:4) and PNG (compress level 6) settings the same seed gives byte-identical files.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
from PIL import Image

from pcas_core.data.avsbench import SPLITS, read_label2idx
from pcas_core.data.palette import NUM_CLASSES, index_to_rgb, voc_palette

__all__ = ["KIND_SUBSETS", "build_demo_dataset"]

KIND_SUBSETS = {"single": "v1s", "multi": "v1m", "silent": "v1s"}
"""AVSBench subset (``label`` column and folder) written for each clip kind."""

_SCALE = (0.35, 0.60)  # object's longer side as a fraction of the frame side
_MAX_DRIFT = 0.02  # largest drift per frame per axis, as a fraction of the frame side
_GAIN = (0.7, 1.0)  # random gain of each recording before mixing
_PEAK = 0.9  # peak amplitude of the final mix (full scale = 1)
_MIN_VISIBLE = 0.3  # each object keeps >= this fraction of its own area unoccluded in every frame
_JPEG = {"quality": 90, "subsampling": 0, "optimize": False}
_PNG = {"compress_level": 6, "optimize": False}


@dataclass
class _Assets:
    images: dict[str, list[np.ndarray]]  # class -> (h, w, 4) uint8 RGBA cut-outs
    sounds: dict[str, list[np.ndarray]]  # class -> (n,) float32 mono waves at sample_rate
    backgrounds: list[Image.Image]  # RGB photos


def _files(folder: Path, pattern: str) -> list[Path]:
    return sorted(folder.glob(pattern)) if folder.is_dir() else []


def _load_assets(assets: Path, classes: list[str], sample_rate: int) -> _Assets:
    """Read the cut-outs, recordings and backgrounds of ``classes`` (ValueError names the folder)."""
    images, sounds = {}, {}
    for cls in classes:
        img_dir, snd_dir = assets / "images" / cls, assets / "sounds" / cls
        img_files, snd_files = _files(img_dir, "*.png"), _files(snd_dir, "*.flac")
        if not img_files:
            raise ValueError(f"{img_dir}: no .png cut-outs for class {cls!r}")
        if not snd_files:
            raise ValueError(f"{snd_dir}: no .flac recordings for class {cls!r}")
        images[cls] = []
        for f in img_files:
            with Image.open(f) as im:
                images[cls].append(np.asarray(im.convert("RGBA")))
        sounds[cls] = []
        for f in snd_files:
            wave, sr = sf.read(f, dtype="float32", always_2d=True)
            if sr != sample_rate:
                raise ValueError(f"{f}: sample rate {sr} Hz, expected {sample_rate} Hz")
            if len(wave) == 0:
                raise ValueError(f"{f}: empty recording")
            sounds[cls].append(wave.mean(axis=1))
    bg_dir = assets / "backgrounds"
    bg_files = _files(bg_dir, "*.jpg")
    if not bg_files:
        raise ValueError(f"{bg_dir}: no .jpg background photos")
    backgrounds = []
    for f in bg_files:
        with Image.open(f) as im:
            backgrounds.append(im.convert("RGB"))
    return _Assets(images, sounds, backgrounds)


def _available_classes(assets: Path) -> list[str]:
    """Class folders that have both cut-outs and recordings, sorted."""
    return sorted(d.name for d in (assets / "images").glob("*")
                  if _files(d, "*.png") and _files(assets / "sounds" / d.name, "*.flac"))


def _background(rng: np.random.Generator, photos: list[Image.Image], size: int) -> np.ndarray:
    """Random photo, random square crop (60-100 % of its short side), resized -> (size, size, 3)."""
    photo = photos[rng.integers(len(photos))]
    w, h = photo.size
    side = int(round(min(w, h) * rng.uniform(0.6, 1.0)))
    left, top = int(rng.integers(w - side + 1)), int(rng.integers(h - side + 1))
    crop = photo.crop((left, top, left + side, top + side)).resize((size, size), Image.BILINEAR)
    return np.asarray(crop, dtype=np.float32)


def _object(rng: np.random.Generator, cutouts: list[np.ndarray], size: int) -> np.ndarray:
    """Random cut-out of a class, randomly flipped and scaled -> (h, w, 4) uint8 RGBA."""
    rgba = cutouts[rng.integers(len(cutouts))]
    if rng.random() < 0.5:
        rgba = rgba[:, ::-1]
    h, w = rgba.shape[:2]
    scale = rng.uniform(*_SCALE) * size / max(h, w)
    nw, nh = max(1, int(round(w * scale))), max(1, int(round(h * scale)))
    return np.asarray(Image.fromarray(np.ascontiguousarray(rgba)).resize((nw, nh), Image.BILINEAR))


def _track(rng: np.random.Generator, extent: int, size: int, n_frames: int,
           column: tuple[float, float]) -> np.ndarray:
    """Integer positions (n_frames,) along one axis: start + velocity * t, object kept in frame.

    The start is drawn so the object's centre lies in ``column`` (pixels) when possible.
    """
    room = size - extent
    v = rng.uniform(-_MAX_DRIFT, _MAX_DRIFT) * size
    span = v * (n_frames - 1)
    lo, hi = max(0.0, -span), min(float(room), room - span)
    if hi < lo:
        v, lo, hi = 0.0, 0.0, float(room)
    clo, chi = max(lo, column[0] - extent / 2), min(hi, column[1] - extent / 2)
    if chi >= clo:
        lo, hi = clo, chi
    start = rng.uniform(lo, hi)
    return np.rint(start + v * np.arange(n_frames)).astype(np.int64)


def _compose(rng, bg, objects, sounding, class_idx, n_frames):
    """Paste ``objects`` (RGBA arrays, back to front) on ``bg`` over ``n_frames`` frames.

    Returns (frames (T, S, S, 3) uint8, masks (T, S, S) uint8) or None when some object is less
    than ``_MIN_VISIBLE`` unoccluded in some frame. Mask = class of the topmost object with
    alpha > 127 if it is sounding, else 0.
    """
    size = bg.shape[0]
    cols = rng.permutation(len(objects))
    tracks = []
    for j, obj in enumerate(objects):
        h, w = obj.shape[:2]
        column = (cols[j] * size / len(objects), (cols[j] + 1) * size / len(objects))
        tracks.append((_track(rng, h, size, n_frames, (0.0, float(size))),
                       _track(rng, w, size, n_frames, column)))
    frames = np.empty((n_frames, size, size, 3), dtype=np.uint8)
    masks = np.zeros((n_frames, size, size), dtype=np.uint8)
    for t in range(n_frames):
        img = bg.copy()
        owner = np.full((size, size), -1, dtype=np.int64)
        for j, obj in enumerate(objects):
            y, x = int(tracks[j][0][t]), int(tracks[j][1][t])
            h, w = obj.shape[:2]
            alpha = obj[..., 3:].astype(np.float32) / 255.0
            region = img[y:y + h, x:x + w]
            region[:] = alpha * obj[..., :3] + (1.0 - alpha) * region
            owner[y:y + h, x:x + w][obj[..., 3] > 127] = j
        for j, obj in enumerate(objects):
            area = int((obj[..., 3] > 127).sum())
            if area == 0 or (owner == j).sum() < _MIN_VISIBLE * area:
                return None
            if sounding[j]:
                masks[t][owner == j] = class_idx[j]
        frames[t] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return frames, masks


def _audio(rng: np.random.Generator, recordings: list[list[np.ndarray]], n: int) -> np.ndarray:
    """Mix one random recording per sounding class -> (n,) float32, peak ``_PEAK``.

    Each recording is looped to cover ``n`` samples from a random offset and given a random gain.
    """
    mix = np.zeros(n, dtype=np.float64)
    for options in recordings:
        wave = options[rng.integers(len(options))]
        offset = int(rng.integers(len(wave)))
        reps = (offset + n) // len(wave) + 1
        mix += rng.uniform(*_GAIN) * np.tile(wave, reps)[offset:offset + n]
    peak = np.abs(mix).max()
    if peak > 0:
        mix *= _PEAK / peak
    return mix.astype(np.float32)


def _check_clips(clips: dict, n_classes: int) -> None:
    for kind, per_split in clips.items():
        if kind not in KIND_SUBSETS:
            raise ValueError(f"clips: unknown kind {kind!r}; expected one of {list(KIND_SUBSETS)}")
        for split, count in per_split.items():
            if split not in SPLITS:
                raise ValueError(f"clips[{kind!r}]: unknown split {split!r}; expected {SPLITS}")
            if int(count) != count or count < 0:
                raise ValueError(f"clips[{kind!r}][{split!r}]: count must be an integer >= 0")
        if kind in ("multi", "silent") and n_classes < 2 and any(per_split.values()):
            raise ValueError(f"clips: kind {kind!r} needs at least 2 classes, have {n_classes}")


def _write_clip(folder: Path, frames: np.ndarray, masks: np.ndarray, audio: np.ndarray,
                sample_rate: int, palette: np.ndarray) -> None:
    (folder / "frames").mkdir(parents=True)
    (folder / "labels_rgb").mkdir()
    for t in range(len(frames)):
        Image.fromarray(frames[t]).save(folder / "frames" / f"{t}.jpg", "JPEG", **_JPEG)
        rgb = index_to_rgb(masks[t], palette)
        Image.fromarray(rgb).save(folder / "labels_rgb" / f"{t}.png", "PNG", **_PNG)
    sf.write(folder / "audio.wav", audio, sample_rate, subtype="PCM_16", format="WAV")


def build_demo_dataset(
    assets: Path,
    out: Path,
    *,
    seed: int,
    clips: dict,
    img_size: int = 224,
    n_frames: int = 5,
    sample_rate: int = 16000,
    classes: list[str] | None = None,
) -> pd.DataFrame:
    """Compose a demo dataset in the AVSBench-semantic layout (see the module docstring).

    Per clip: a random background photo, random square crop resized to ``img_size``; objects with
    their longer side 35-60 % of the frame, randomly flipped, placed in separate columns of the
    frame (so each stays >= 30 % visible; placement is redrawn otherwise) and drifting linearly by
    at most 2 % of the frame side per frame. Frames ``frames/N.jpg`` (JPEG q90), masks
    ``labels_rgb/N.png`` (VOC palette colours, mask = alpha > 127 of the sounding objects, later
    objects over earlier), audio ``audio.wav``: ``n_frames`` seconds (1 frame per second, as in
    AVSBench) of 16-bit PCM mono, a random looped excerpt of one real recording per sounding
    class with gain 0.7-1.0, mixed and peak-normalised to 0.9 full scale.

    Output is built in ``out.parent / (out.name + ".tmp")`` (a stale one is removed first) and
    moved to ``out`` only when complete; an existing ``out`` is replaced.

    Args:
        assets: folder with ``images/<class>/*.png`` (RGBA), ``sounds/<class>/*.flac`` (mono at
            ``sample_rate``), ``backgrounds/*.jpg``, ``label2idx.json``, ``LICENSES.md``,
            ``MANIFEST.csv``.
        out: dataset root to write.
        seed: seed of the numpy Generator; same seed -> byte-identical files.
        clips: kind -> {split: count}; kinds ``single``, ``multi``, ``silent``. Counts are per
            class for ``single``/``silent`` and in total for ``multi``.
        img_size: frame side in pixels.
        n_frames: frames per clip (= audio seconds).
        sample_rate: audio sample rate in Hz (recordings must already have it; no resampling).
        classes: classes to use; None = every class with both cut-outs and recordings.

    Returns:
        The metadata written to ``metadata.csv``: columns ``vid, uid, s_min, s_sec, a_obj, split,
        label`` (``a_obj`` = sounding class names joined by "_", ``label`` = v1s / v1m).

    Raises:
        ValueError: a class without cut-outs or recordings (names the folder), a class not in
            label2idx.json, no backgrounds, a recording at another sample rate, bad ``clips``.
        FileNotFoundError: label2idx.json, LICENSES.md or MANIFEST.csv missing from ``assets``.
        RuntimeError: no placement keeping every object visible was found in 100 draws.
    """
    assets, out = Path(assets), Path(out)
    label2idx = read_label2idx(assets)
    for name in ("LICENSES.md", "MANIFEST.csv"):
        if not (assets / name).is_file():
            raise FileNotFoundError(f"{assets / name}: licence file missing from the assets")
    classes = sorted(classes) if classes is not None else _available_classes(assets)
    unknown = [c for c in classes if c not in label2idx or label2idx[c] == 1]
    if unknown:
        raise ValueError(f"{assets / 'label2idx.json'}: no foreground class named {unknown}")
    _check_clips(clips, len(classes))
    media = _load_assets(assets, classes, sample_rate)
    palette = voc_palette(NUM_CLASSES)
    rng = np.random.default_rng(seed)

    tmp, old = out.parent / (out.name + ".tmp"), out.parent / (out.name + ".old")
    for stale in (tmp, old):
        if stale.exists():
            shutil.rmtree(stale)
    tmp.mkdir(parents=True)
    rows = []
    try:
        for kind in KIND_SUBSETS:
            counter = 0
            for split in SPLITS:
                count = int(clips.get(kind, {}).get(split, 0))
                jobs = [(c,) for c in classes for _ in range(count)] if kind != "multi" else [
                    tuple(str(c) for c in rng.choice(classes, size=2, replace=False)) for _ in range(count)]
                for sound_cls in jobs:
                    silent_cls = ()
                    if kind == "silent":
                        others = [c for c in classes if c != sound_cls[0]]
                        silent_cls = (others[rng.integers(len(others))],)
                    uid = f"demo_{kind}_{'-'.join(sound_cls)}_{counter:03d}"
                    counter += 1
                    bg = _background(rng, media.backgrounds, img_size)
                    # silent objects first (behind), sounding objects over them
                    names = [*silent_cls, *sound_cls]
                    sounding = [False] * len(silent_cls) + [True] * len(sound_cls)
                    idx = [label2idx[c] - 1 for c in names]
                    for _ in range(100):
                        objs = [_object(rng, media.images[c], img_size) for c in names]
                        composed = _compose(rng, bg, objs, sounding, idx, n_frames)
                        if composed is not None:
                            break
                    else:
                        raise RuntimeError(f"{uid}: no placement keeps every object visible")
                    audio = _audio(rng, [media.sounds[c] for c in sound_cls],
                                   n_frames * sample_rate)
                    label = KIND_SUBSETS[kind]
                    _write_clip(tmp / label / uid, *composed, audio, sample_rate, palette)
                    rows.append({"vid": uid, "uid": uid, "s_min": 0, "s_sec": 0,
                                 "a_obj": "_".join(sound_cls), "split": split, "label": label})
        metadata = pd.DataFrame(rows, columns=["vid", "uid", "s_min", "s_sec", "a_obj", "split",
                                               "label"])
        metadata.to_csv(tmp / "metadata.csv", index=False, lineterminator="\n")
        for name in ("label2idx.json", "LICENSES.md", "MANIFEST.csv"):
            shutil.copyfile(assets / name, tmp / name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)
    return metadata
