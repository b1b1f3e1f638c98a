"""Shared test setup. Importing pcas_core first applies its CPU-only import shim (pcas_core.compat)
before any test module imports timm or torchaudio directly."""

import pcas_core  # noqa: F401

import atexit
import os
import shutil
import tempfile

# The mask-class cache (pcas_core.data.label_cache) of the test session goes to a fresh folder,
# never the user's ~/.cache/pcas; subprocesses (dvc repro in test_pipeline) inherit it.
os.environ["PCAS_CACHE_DIR"] = tempfile.mkdtemp(prefix="pcas-test-cache-")
atexit.register(shutil.rmtree, os.environ["PCAS_CACHE_DIR"], ignore_errors=True)

import hashlib
import subprocess
from pathlib import Path

import pytest

_REPO = Path(__file__).resolve().parents[1]


def _worktree_state() -> str | None:
    """``git status --porcelain`` of the repository plus a hash of its unstaged diff, so that a
    second change to an already modified file counts too (None outside a git checkout)."""
    try:
        status, diff = (subprocess.run(cmd, cwd=_REPO, capture_output=True, timeout=60)
                        for cmd in (["git", "status", "--porcelain"], ["git", "diff"]))
    except (OSError, subprocess.TimeoutExpired):
        return None
    if status.returncode or diff.returncode:
        return None
    return status.stdout.decode() + "\ndiff " + hashlib.sha1(diff.stdout).hexdigest()


@pytest.fixture(autouse=True)
def _tests_leave_the_repository_alone():
    """Fail a test that writes into the checkout (e.g. a stage run with its default output
    paths, which are relative to the working directory): outputs belong under tmp_path."""
    before = _worktree_state()
    yield
    after = _worktree_state()
    if before is not None and after is not None and after != before:
        changed = sorted(set(after.splitlines()) ^ set(before.splitlines()))  # the lines that moved
        pytest.fail(f"the test changed files of the repository: {changed}")
