"""Crash-safe outputs: write to a temporary name, move into place only when complete.

A stage that dies half-way leaves the previous output (or nothing) at the final path, never a
truncated file that DVC or the next stage would take for a result.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["atomic_path", "write_json"]


@contextlib.contextmanager
def atomic_path(final: Path, *, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; on success move it to ``final``.

    Args:
        final: where the finished file or folder must end up. Parent folders are created.
        directory: yield an (empty, existing) temporary folder instead of a file name.

    Yields:
        The temporary path (same folder as ``final``, so the move is an atomic rename).

    On an exception inside the block the temporary path is removed and ``final`` is untouched.
    For a folder, an existing ``final`` is removed just before the rename.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{final.name}.tmp-"
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=final.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=prefix, dir=final.parent, suffix=final.suffix)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
        raise
    if directory:
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    else:
        os.replace(tmp, final)


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON (``json.dumps(data, indent=2)``) to ``path`` atomically
    (:func:`atomic_path`): metrics files for ``dvc metrics``."""
    with atomic_path(Path(path)) as tmp:
        tmp.write_text(json.dumps(data, indent=2))
