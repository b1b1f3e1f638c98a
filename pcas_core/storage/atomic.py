"""Crash-safe outputs: write to a temporary name, move into place only when complete.

A stage that dies half-way leaves the previous output (or nothing) at the final path, never a
truncated file that DVC or the next stage would take for a result.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["atomic_path", "write_json"]


def _create_beside(final: Path, directory: bool) -> Path:
    """Create a new, uniquely named empty file or folder beside ``final`` and return its path.

    Unlike ``tempfile.mkstemp``/``mkdtemp`` (always 0600 / 0700), the mode is 0666 / 0777 less
    the user's umask, as any file the user creates: outputs on shared lab storage stay readable
    by the group when the umask says so. ``O_EXCL`` and ``mkdir`` fail on an existing name, so two
    processes never share one.
    """
    suffix = "" if directory else final.suffix
    for _ in range(100):
        tmp = final.parent / f".{final.name}.tmp-{secrets.token_hex(4)}{suffix}"
        try:
            if directory:
                tmp.mkdir(mode=0o777)
            else:
                os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"{final.parent}: no free temporary name for {final.name} in 100 tries")


@contextlib.contextmanager
def atomic_path(final: Path, *, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; on success move it to ``final``.

    Args:
        final: where the finished file or folder must end up. Parent folders are created.
        directory: yield an (empty, existing) temporary folder instead of a file name.

    Yields:
        The temporary path (same folder as ``final``, so the move is an atomic rename).

    On an exception inside the block the temporary path is removed and ``final`` is untouched.
    For a folder, an existing ``final`` is removed just before the rename. The file or folder
    gets the mode of any new one (0666 / 0777 less the umask), not ``tempfile``'s 0600 / 0700,
    even when the writer replaced the temporary file with its own (safetensors writes 0600).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_beside(final, directory)
    mode = stat.S_IMODE(tmp.stat().st_mode)  # 0666 / 0777 less the umask
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
        raise
    if stat.S_IMODE(tmp.stat().st_mode) != mode:
        os.chmod(tmp, mode)  # a writer that made its own file (safetensors: 0600)
    if directory and final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON (``json.dumps(data, indent=2)``) to ``path`` atomically
    (:func:`atomic_path`): metrics files for ``dvc metrics``."""
    with atomic_path(Path(path)) as tmp:
        tmp.write_text(json.dumps(data, indent=2))
