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
