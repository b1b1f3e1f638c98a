"""The demo's real media by class and instance pool, as ``<assets>/MANIFEST.csv`` lists them.

Every cut-out (``images/<class>/*.png``, RGBA), recording (``sounds/<class>/*.flac``, mono at the
demo's sample rate) and background photo (``backgrounds/*.jpg``) has a MANIFEST row with its
``path`` (relative to the assets folder), ``class``, ``kind`` (``image`` | ``sound`` |
``background``) and ``pool`` (``train`` | ``test``). The pools hold disjoint instances (other
objects, other recording sessions, other places), so a demo whose test clips use only the test
pool measures generalisation, not memory (``data/demo-assets/README.md``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import soundfile as sf
from PIL import Image

__all__ = ["POOLS", "SPLIT_POOL", "Medium", "Pool", "read_manifest", "available_classes",
           "load_pools", "trim_pauses"]

POOLS = ("train", "test")
#: which instance pool each split's clips draw their media from
SPLIT_POOL = {"train": "train", "val": "test", "test": "test"}

_COLUMNS = ("path", "class", "kind", "pool")
_MEDIA_KINDS = {"image": "cut-outs", "sound": "recordings", "background": "background photos"}
_PAUSE_BLOCK_S = 0.05  # block length of the pause detection in trim_pauses
_PAUSE_DBFS = -40.0  # a block quieter than this (RMS, dBFS) is a pause
_PAUSE_KEEP_S = 0.25  # longest pause kept; longer ones are cut down to this


class Medium(NamedTuple):
    """One media file: ``path`` relative to the assets folder (as in MANIFEST.csv) and its
    content (``image``: (h, w, 4) uint8 RGBA; ``sound``: (n,) float32 mono wave; ``background``:
    a ``PIL.Image`` in RGB)."""

    path: str
    data: Any


@dataclass
class Pool:
    """The media of one instance pool: per class its cut-outs and recordings, and the
    background photos (each list in MANIFEST order)."""

    images: dict[str, list[Medium]] = field(default_factory=dict)
    sounds: dict[str, list[Medium]] = field(default_factory=dict)
    backgrounds: list[Medium] = field(default_factory=list)


def read_manifest(assets: Path) -> pd.DataFrame:
    """``<assets>/MANIFEST.csv`` with at least the columns ``path``, ``class``, ``kind``, ``pool``.

    Raises:
        FileNotFoundError: no MANIFEST.csv.
        ValueError: a column is missing, or a ``pool`` / ``kind`` value is unknown (names the row).
    """
    path = Path(assets) / "MANIFEST.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: MANIFEST.csv missing from the assets")
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in _COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: column(s) {missing} missing (have {list(df.columns)})")
    for column, allowed in (("pool", POOLS), ("kind", tuple(_MEDIA_KINDS))):
        bad = df[~df[column].isin(allowed)]
        if len(bad):
            raise ValueError(f"{path}: {column} {bad[column].iloc[0]!r} of {bad['path'].iloc[0]} "
                             f"is not one of {list(allowed)}")
    return df


def available_classes(manifest: pd.DataFrame, pools: tuple[str, ...]) -> list[str]:
    """Classes with at least one cut-out and one recording in every pool of ``pools``, sorted."""
    def has(kind: str, pool: str) -> set[str]:
        rows = manifest[(manifest["kind"] == kind) & (manifest["pool"] == pool)]
        return set(rows["class"])

    sets = [has("image", p) & has("sound", p) for p in pools]
    return sorted(set.intersection(*sets)) if sets else []


def trim_pauses(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    """Cut every pause of a recording longer than 0.25 s down to 0.25 s, so that each second of
    a looped excerpt holds the class's sound. A pause is a run of 50 ms blocks whose RMS is
    below -40 dBFS (the recordings are peak-normalised to -1 dBFS); shorter pauses (between
    barks, notes) stay. A recording that is one pause is returned unchanged.

    Args:
        wave: (n,) float32 mono samples in [-1, 1].
        sample_rate: Hz.

    Returns:
        (n',) float32, n' <= n.
    """
    block = max(1, int(round(_PAUSE_BLOCK_S * sample_rate)))
    n_blocks = -(-len(wave) // block)
    padded = np.zeros(n_blocks * block, dtype=np.float64)
    padded[:len(wave)] = wave
    rms = np.sqrt((padded.reshape(n_blocks, block) ** 2).mean(axis=1))
    quiet = rms < 10.0 ** (_PAUSE_DBFS / 20.0)
    if quiet.all():
        return wave
    keep_blocks = int(round(_PAUSE_KEEP_S / _PAUSE_BLOCK_S))
    keep = np.ones(n_blocks, dtype=bool)
    run = 0
    for b in range(n_blocks):
        run = run + 1 if quiet[b] else 0
        keep[b] = run <= keep_blocks
    samples = np.repeat(keep, block)[:len(wave)]
    return np.ascontiguousarray(wave[samples])


def _load(assets: Path, row: Any, sample_rate: int) -> Medium:
    path = assets / row.path
    if not path.is_file():
        raise FileNotFoundError(f"{path}: listed in MANIFEST.csv but missing")
    if row.kind == "sound":
        wave, sr = sf.read(path, dtype="float32", always_2d=True)
        if sr != sample_rate:
            raise ValueError(f"{path}: sample rate {sr} Hz, expected {sample_rate} Hz")
        if len(wave) == 0:
            raise ValueError(f"{path}: empty recording")
        return Medium(row.path, trim_pauses(wave.mean(axis=1), sample_rate))
    with Image.open(path) as im:
        if row.kind == "image":
            return Medium(row.path, np.asarray(im.convert("RGBA")))
        return Medium(row.path, im.convert("RGB"))


def load_pools(assets: Path, classes: list[str], pools: tuple[str, ...],
               sample_rate: int) -> dict[str, Pool]:
    """Read the cut-outs and recordings of ``classes`` and the background photos of each pool
    in ``pools`` (recordings with their long pauses cut, :func:`trim_pauses`).

    Args:
        assets: the assets folder (``data/demo-assets``).
        classes: class folder names.
        pools: the pools to read (``train``, ``test``).
        sample_rate: the recordings' required sample rate in Hz (no resampling).

    Returns:
        pool name -> :class:`Pool`.

    Raises:
        FileNotFoundError: MANIFEST.csv or a file it lists is missing.
        ValueError: a class has no cut-out or no recording in a pool, a pool has no background
            photo (each names the class, the pool and MANIFEST.csv), or a recording has another
            sample rate.
    """
    assets = Path(assets)
    manifest = read_manifest(assets)
    where = assets / "MANIFEST.csv"
    out = {}
    for pool in pools:
        rows = manifest[manifest["pool"] == pool]
        media = Pool()
        for cls in classes:
            for kind, target in (("image", media.images), ("sound", media.sounds)):
                own = rows[(rows["class"] == cls) & (rows["kind"] == kind)]
                if own.empty:
                    raise ValueError(f"{where}: class {cls!r} has no {_MEDIA_KINDS[kind]} in the "
                                     f"{pool!r} pool (its {_split_names(pool)} clips need them)")
                target[cls] = [_load(assets, r, sample_rate) for r in own.itertuples()]
        backgrounds = rows[rows["kind"] == "background"]
        if backgrounds.empty:
            raise ValueError(f"{where}: no background photos in the {pool!r} pool")
        media.backgrounds = [_load(assets, r, sample_rate) for r in backgrounds.itertuples()]
        out[pool] = media
    return out


def _split_names(pool: str) -> str:
    return "/".join(s for s, p in SPLIT_POOL.items() if p == pool)
