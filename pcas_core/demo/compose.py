"""Compose the demo dataset, in the AVSBench-semantic layout, from the real assets.

Each clip pastes RGBA cut-outs on a background photo, drifting slowly over its frames
(:mod:`pcas_core.demo.scene`), and mixes real recordings of the objects that sound, each only in
the seconds it sounds, over a low noise floor (:mod:`pcas_core.demo.soundtrack`). One frame per
second, as in AVSBench: frame t shows second t, and an object is in frame t's mask exactly when
it sounds in second t (AVSBench-semantic semantics), so frame labels differ from video labels
and localising an auditory event in time from video-level labels is part of the task.

Clip kinds (``kind`` column of ``metadata.csv``, and in the uid ``demo_<kind>_<classes>_<n>``):

- ``always`` (subset ``v1s``, 5 frames): one object, sounding in every second.
- ``event`` (``v1s``): one object visible in every frame, sounding in one contiguous run of
  1-4 seconds at a random start; in the other seconds the audio is the noise floor alone and the
  mask is empty.
- ``silent`` (``v1s``): one always-sounding object plus one visible object of another class that
  never sounds (behind the first; never in a mask nor in ``a_obj``).
- ``multi`` (``v1m``, 5 frames): two objects of different classes, each sounding in its own
  contiguous run of 1-5 seconds; each frame's mask holds the objects that sound in it.
- ``long`` (``v2``, 10 frames, 10 s of audio): in turn an ``event``-style clip (one run of 1-9
  seconds) and a two-source clip (two runs of 1-10 seconds).

Instance pools: train clips draw cut-outs, recordings and backgrounds only from the assets'
``train`` pool, val and test clips only from the ``test`` pool (:mod:`pcas_core.demo.assets`), so
the test split holds objects, recordings and places that training never saw.

Per clip, ``metadata.csv`` records besides the AVSS columns: ``kind``; ``sounding``, each
visible object (back to front) as ``class:bits``, bit t = 1 when it sounds in second t
(``dog:01110;sheep:00000``); ``images``, the cut-out of each object in that order; ``sounds``,
the recording of each sounding object (order of ``a_obj``); ``background``, the photo (paths
relative to the assets folder, as in MANIFEST.csv, joined by ``;``).

Everything random comes from one ``numpy.random.Generator`` seeded with ``demo.seed``; with fixed
JPEG (quality 90, 4:4:4) and PNG (compress level 6) settings the same seed gives byte-identical
files.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
from PIL import Image

from pcas_core.data.avsbench import SPLITS, read_label2idx
from pcas_core.data.palette import NUM_CLASSES, index_to_rgb, voc_palette
from pcas_core.data.table import RELEASED_FRAMES
from pcas_core.demo.assets import SPLIT_POOL, Pool, available_classes, load_pools, read_manifest
from pcas_core.demo.scene import compose_frames, random_background, random_object
from pcas_core.demo.soundtrack import mix_soundtrack, sounding_run
from pcas_core.params import DemoConfig
from pcas_core.runtime.progress import track

__all__ = ["KIND_SUBSETS", "PER_CLASS", "METADATA_COLUMNS", "build_demo_dataset",
           "parse_sounding"]

KIND_SUBSETS = {"always": "v1s", "event": "v1s", "silent": "v1s", "multi": "v1m", "long": "v2"}
"""AVSBench subset (``label`` column and folder) written for each clip kind; its frame count
(:data:`pcas_core.data.table.RELEASED_FRAMES`) is the clip's."""
PER_CLASS = ("always", "event", "silent")
"""Kinds whose ``demo.clips`` counts are per class (of the sounding class); the others in total."""
METADATA_COLUMNS = ["vid", "uid", "s_min", "s_sec", "a_obj", "split", "label", "kind",
                    "sounding", "images", "sounds", "background"]

_PLACEMENT_DRAWS = 100
_JPEG = {"quality": 90, "subsampling": 0, "optimize": False}
_PNG = {"compress_level": 6, "optimize": False}


@dataclass(frozen=True)
class _Plan:
    """One clip to compose: its objects back to front and when each sounds ((n, T) bool)."""

    kind: str
    split: str
    names: tuple[str, ...]
    sounding: np.ndarray


def parse_sounding(value: str) -> dict[str, np.ndarray]:
    """A ``sounding`` cell (``dog:01110;sheep:00000``) -> class -> (T,) bool, in object order."""
    out = {}
    for part in value.split(";"):
        name, bits = part.split(":")
        out[name] = np.array([b == "1" for b in bits], dtype=bool)
    return out


def _plans(rng: np.random.Generator, kind: str, split: str, count: int,
           classes: list[str]) -> list[_Plan]:
    """The clips of one kind and split (``count`` per class for :data:`PER_CLASS` kinds)."""
    n = RELEASED_FRAMES[KIND_SUBSETS[kind]]
    always = np.ones(n, dtype=bool)

    def pair() -> tuple[str, str]:
        a, b = rng.choice(len(classes), size=2, replace=False)
        return classes[int(a)], classes[int(b)]

    def two_runs() -> np.ndarray:
        return np.stack([sounding_run(rng, n, min_len=1, max_len=n) for _ in range(2)])

    out = []
    if kind in PER_CLASS:
        for cls in classes:
            for _ in range(count):
                if kind == "always":
                    out.append(_Plan(kind, split, (cls,), always[None]))
                elif kind == "event":
                    run = sounding_run(rng, n, min_len=1, max_len=n - 1)
                    out.append(_Plan(kind, split, (cls,), run[None]))
                else:  # silent: the silent object behind the sounding one
                    others = [c for c in classes if c != cls]
                    other = others[int(rng.integers(len(others)))]
                    out.append(_Plan(kind, split, (other, cls),
                                     np.stack([np.zeros(n, dtype=bool), always])))
    elif kind == "multi":
        out = [_Plan(kind, split, pair(), two_runs()) for _ in range(count)]
    else:  # long: event-style and two-source clips in turn
        for j in range(count):
            if j % 2 == 0:
                cls = classes[int(rng.integers(len(classes)))]
                run = sounding_run(rng, n, min_len=1, max_len=n - 1)
                out.append(_Plan(kind, split, (cls,), run[None]))
            else:
                out.append(_Plan(kind, split, pair(), two_runs()))
    return out


def _check(cfg: DemoConfig, classes: list[str], label2idx: dict[str, int], where: Path) -> None:
    unknown = [c for c in classes if c not in label2idx or label2idx[c] == 1]
    if unknown:
        raise ValueError(f"{where / 'label2idx.json'}: no foreground class named {unknown}")
    for kind in ("silent", "multi", "long"):
        if len(classes) < 2 and any(asdict(getattr(cfg.clips, kind)).values()):
            raise ValueError(f"demo.clips.{kind} needs at least 2 classes, have {classes}")


def _clips(rng: np.random.Generator, counts: dict[str, dict[str, int]],
           classes: list[str]) -> Iterator[tuple[str, str, str, _Plan, str]]:
    """``(kind, subset, split, plan, uid)`` of every clip, kind by kind and split by split. Lazy:
    the clips of one kind and split are planned just before they are composed, so ``rng`` draws
    plans and clips in the order that fixes the demo's bytes."""
    for kind, subset in KIND_SUBSETS.items():
        counter = 0
        for split in SPLITS:
            for plan in _plans(rng, kind, split, int(counts[kind][split]), classes):
                heard = [c for c, s in zip(plan.names, plan.sounding) if s.any()]
                yield kind, subset, split, plan, f"demo_{kind}_{'-'.join(heard)}_{counter:03d}"
                counter += 1


def _compose_clip(rng: np.random.Generator, plan: _Plan, pool: Pool, cfg: DemoConfig,
                  label2idx: dict[str, int], uid: str):
    """Frames, masks, audio and the media used of one clip.

    Raises:
        RuntimeError: no placement keeps every object visible in 100 draws (names the clip).
    """
    photo = pool.backgrounds[int(rng.integers(len(pool.backgrounds)))]
    bg = random_background(rng, photo.data, cfg.img_size)
    idx = [label2idx[c] - 1 for c in plan.names]
    for _ in range(_PLACEMENT_DRAWS):
        cutouts = [pool.images[c][int(rng.integers(len(pool.images[c])))] for c in plan.names]
        objects = [random_object(rng, m.data, cfg.img_size) for m in cutouts]
        composed = compose_frames(rng, bg, objects, plan.sounding, idx)
        if composed is not None:
            break
    else:
        raise RuntimeError(f"{uid}: no placement keeps every object visible")
    heard = [j for j in range(len(plan.names)) if plan.sounding[j].any()]
    options = [pool.sounds[plan.names[j]] for j in heard]
    audio, chosen = mix_soundtrack(rng, [[m.data for m in o] for o in options],
                                   plan.sounding[heard], cfg.sample_rate, cfg.noise_dbfs)
    media = {"images": ";".join(m.path for m in cutouts),
             "sounds": ";".join(o[k].path for o, k in zip(options, chosen)),
             "background": photo.path}
    return (*composed, audio, [plan.names[j] for j in heard], media)


def _write_clip(folder: Path, frames: np.ndarray, masks: np.ndarray, audio: np.ndarray,
                sample_rate: int, palette: np.ndarray) -> None:
    (folder / "frames").mkdir(parents=True)
    (folder / "labels_rgb").mkdir()
    for t in range(len(frames)):
        Image.fromarray(frames[t]).save(folder / "frames" / f"{t}.jpg", "JPEG", **_JPEG)
        rgb = index_to_rgb(masks[t], palette)
        Image.fromarray(rgb).save(folder / "labels_rgb" / f"{t}.png", "PNG", **_PNG)
    sf.write(folder / "audio.wav", audio, sample_rate, subtype="PCM_16", format="WAV")


def build_demo_dataset(assets: Path, out: Path, cfg: DemoConfig,
                       log: logging.Logger | None = None) -> pd.DataFrame:
    """Compose the demo dataset ``cfg`` describes (see the module docstring) into ``out``.

    Per clip: a random background photo of the split's pool, random square crop resized to
    ``cfg.img_size``; objects with their longer side 35-60 % of the frame, randomly flipped,
    placed in separate columns (each stays >= 30 % visible; placement is redrawn otherwise) and
    drifting linearly by at most 2 % of the frame side per frame. Frames ``frames/N.jpg`` (JPEG
    q90), masks ``labels_rgb/N.png`` (VOC palette colours: alpha > 127 of the objects sounding
    in that second, later objects over earlier), audio ``audio.wav``: one second per frame of
    16-bit PCM mono at ``cfg.sample_rate``.

    Output is built in ``out.parent / (out.name + ".tmp")`` (a stale one is removed first) and
    moved to ``out`` only when complete; an existing ``out`` is replaced. ``label2idx.json``,
    ``LICENSES.md`` and ``MANIFEST.csv`` are copied with it (the licence notes travel with the
    media).

    Args:
        assets: folder with ``MANIFEST.csv`` (every file's class, kind and pool), the media it
            lists, ``label2idx.json`` and ``LICENSES.md``.
        out: dataset root to write.
        cfg: the ``demo`` params section (seed, img_size, sample_rate, noise_dbfs, classes,
            clips per kind and split).
        log: where the progress lines go (:mod:`pcas_core.runtime.progress`).

    Returns:
        The metadata written to ``metadata.csv`` (:data:`METADATA_COLUMNS`): ``a_obj`` = the
        classes that sound at some time, joined by "_"; ``label`` = the kind's subset.

    Raises:
        FileNotFoundError: label2idx.json, LICENSES.md, MANIFEST.csv or a file it lists missing.
        ValueError: a class not in label2idx.json, a class without cut-outs or recordings in a
            pool that a requested split uses, a pool without backgrounds (each naming class and
            pool), a recording at another sample rate, a two-object kind with one class.
        RuntimeError: no placement keeping every object visible, or no audio excerpt loud
            enough, in 100 draws.
    """
    assets, out = Path(assets), Path(out)
    label2idx = read_label2idx(assets)
    if not (assets / "LICENSES.md").is_file():
        raise FileNotFoundError(f"{assets / 'LICENSES.md'}: licence file missing from the assets")
    counts = {kind: asdict(getattr(cfg.clips, kind)) for kind in KIND_SUBSETS}
    pools = tuple(sorted({SPLIT_POOL[s] for per in counts.values() for s, n in per.items() if n}))
    classes = (sorted(cfg.classes) if cfg.classes is not None
               else available_classes(read_manifest(assets), pools))
    _check(cfg, classes, label2idx, assets)
    media = load_pools(assets, classes, pools, cfg.sample_rate)
    palette = voc_palette(NUM_CLASSES)
    rng = np.random.default_rng(cfg.seed)

    tmp, old = out.parent / (out.name + ".tmp"), out.parent / (out.name + ".old")
    for stale in (tmp, old):
        if stale.exists():
            shutil.rmtree(stale)
    tmp.mkdir(parents=True)
    rows = []
    n_clips = sum(int(n) * (len(classes) if kind in PER_CLASS else 1)
                  for kind, per in counts.items() for n in per.values())
    try:
        for kind, subset, split, plan, uid in track(_clips(rng, counts, classes), total=n_clips,
                                                    desc="demo clips", unit="clip", log=log):
            frames, masks, audio, a_obj, used = _compose_clip(
                rng, plan, media[SPLIT_POOL[split]], cfg, label2idx, uid)
            _write_clip(tmp / subset / uid, frames, masks, audio, cfg.sample_rate, palette)
            sounding = ";".join(f"{c}:{''.join('1' if b else '0' for b in s)}"
                                for c, s in zip(plan.names, plan.sounding))
            rows.append({"vid": uid, "uid": uid, "s_min": 0, "s_sec": 0,
                         "a_obj": "_".join(a_obj), "split": split, "label": subset,
                         "kind": kind, "sounding": sounding, **used})
        metadata = pd.DataFrame(rows, columns=METADATA_COLUMNS)
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
