"""Shared test setup. Importing pcas_core first applies its CPU-only import shim (pcas_core.compat)
before any test module imports timm or torchaudio directly."""

import pcas_core  # noqa: F401
