"""The classes present in each mask file, decoded once and remembered on disk.

Video labels (``label_source: masks``) and frame-level classes need every annotated mask decoded;
AVSS has about 80,000 of them, and every stage opens the dataset. This cache keeps, per mask file,
the multi-hot presence vector (and the off-palette note, if any) that a decode produced, so a
later open decodes only the files that are new or changed.

Where: ``$PCAS_CACHE_DIR`` if set (``off`` disables caching), else ``$XDG_CACHE_HOME/pcas``, else
``~/.cache/pcas``; one ``.npz`` per dataset root and decoding setting under ``mask-classes/``.
Not under the dataset root: DVC hashes ``${data.root}`` as a dependency of every stage, so a file
written there would change that hash (and, for the demo, a DVC output). Not a DVC output either:
the cache is a memo of a deterministic function of each file's bytes, so results cannot depend on
whether it is there (delete it at any time).

Validity: an entry is used only while its file has the same size and modification time (ns) as
when it was decoded, and while the decoding code is the same (the key includes a hash of
:mod:`pcas_core.data.images`, :mod:`pcas_core.data.palette` and :mod:`pcas_core.data.labels`).
Decoding errors are not cached: the file is decoded (and fails) again at the next open.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from pcas_core.storage.atomic import atomic_path
from pcas_core.runtime.progress import track
from pcas_core.runtime.stage import get_logger

__all__ = ["CACHE_ENV", "cache_dir", "cached_presence"]

CACHE_ENV = "PCAS_CACHE_DIR"
_CODE = ("images.py", "palette.py", "labels.py")


def cache_dir() -> Path | None:
    """The cache folder (see the module docstring), or None when ``$PCAS_CACHE_DIR`` is ``off``."""
    value = os.environ.get(CACHE_ENV)
    if value is not None:
        return None if value.strip().lower() in ("", "0", "off", "none") else Path(value)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pcas"


def _code_hash() -> str:
    here = Path(__file__).parent
    digest = hashlib.sha1()
    for name in _CODE:
        digest.update((here / name).read_bytes())
    return digest.hexdigest()


def _signature(path: str) -> tuple[int, int]:
    """(size in bytes, mtime in ns), or (-1, -1) when the file cannot be stat'ed."""
    try:
        st = os.stat(path)
    except OSError:
        return -1, -1
    return st.st_size, st.st_mtime_ns


def _load(file: Path, width: int) -> dict[str, tuple[int, int, np.ndarray, str]]:
    try:
        with np.load(file, allow_pickle=False) as z:
            if z["presence"].shape[1:] != (width,):
                return {}
            return {p: (int(s), int(m), v, str(n)) for p, s, m, v, n in
                    zip(z["paths"], z["sizes"], z["mtimes"], z["presence"], z["notes"])}
    except (OSError, ValueError, KeyError):
        return {}  # unreadable or from another layout: rebuilt


def _save(file: Path, entries: dict[str, tuple[int, int, np.ndarray, str]], width: int) -> None:
    paths = sorted(entries)
    with atomic_path(file) as tmp, open(tmp, "wb") as f:
        np.savez(f, paths=np.array(paths, dtype=str),
                 sizes=np.array([entries[p][0] for p in paths], dtype=np.int64),
                 mtimes=np.array([entries[p][1] for p in paths], dtype=np.int64),
                 presence=np.array([entries[p][2] for p in paths], dtype=np.uint8
                                   ).reshape(len(paths), width),
                 notes=np.array([entries[p][3] for p in paths], dtype=str))


def cached_presence(paths: Sequence[str], compute: Callable[[str], tuple[np.ndarray, str]], *,
                    width: int, key: dict) -> list[tuple[np.ndarray, str] | ValueError]:
    """Presence vectors of mask files, from the cache where valid, else from ``compute``.

    Args:
        paths: mask files (absolute or relative to the working folder; stored resolved).
        compute: ``path -> (presence (width,) 0/1 array, note)``; may raise ``ValueError``.
        width: length of every presence vector (e.g. K foreground classes).
        key: everything besides the file that the result depends on (dataset root, mask format,
            label space size, geometry, off-palette policy); JSON-serialisable.

    Returns:
        Per path, ``(presence (width,) uint8, note)`` or the ``ValueError`` that ``compute``
        raised (not cached).
    """
    folder = cache_dir()
    full = {**key, "width": width, "code": _code_hash()}
    name = hashlib.sha1(json.dumps(full, sort_keys=True, default=str).encode()).hexdigest()[:24]
    file = folder / "mask-classes" / f"{name}.npz" if folder is not None else None
    entries = _load(file, width) if file is not None and file.is_file() else {}
    out: list[tuple[np.ndarray, str] | ValueError] = []
    changed = False
    for path in track(paths, total=len(paths), desc="classes of each mask", unit="mask",
                      log=get_logger("pcas.data")):
        resolved = str(Path(path).resolve())
        size, mtime = _signature(resolved)
        hit = entries.get(resolved)
        if hit is not None and hit[0] == size and hit[1] == mtime and size >= 0:
            out.append((hit[2], hit[3]))
            continue
        try:
            presence, note = compute(path)
        except ValueError as err:
            out.append(err)
            continue
        presence = np.asarray(presence, dtype=np.uint8).reshape(width)
        out.append((presence, note))
        if size >= 0:
            entries[resolved] = (size, mtime, presence, note)
            changed = True
    if changed and file is not None:
        try:
            _save(file, entries, width)
        except OSError as err:
            get_logger("pcas.data").warning("mask-class cache %s not written (%s); masks will be "
                                            "decoded again next time", file, err)
    return out
