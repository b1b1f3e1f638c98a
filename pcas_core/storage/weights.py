"""Model checkpoints as safetensors, with the constructor config stored beside the weights.

Nothing is ever unpickled: safetensors files are read with ``safetensors.torch.load_file`` and
PyTorch ``.pth``/``.pt`` files (for user-supplied pretrained weights) with
``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from pcas_core.storage.atomic import atomic_path

__all__ = ["save_checkpoint", "load_checkpoint", "load_weights_file", "sha256_of"]


def save_checkpoint(path: Path, model: torch.nn.Module, config: dict[str, Any]) -> None:
    """Save ``model.state_dict()`` and its JSON-able constructor ``config`` atomically.

    Tensors that share storage (tied weights) are cloned so that safetensors accepts them.
    """
    state = {k: v.detach().to("cpu").clone().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(Path(path)) as tmp:
        save_file(state, str(tmp), metadata={"config": json.dumps(config, sort_keys=True)})


def load_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load a checkpoint written by :func:`save_checkpoint`.

    Returns:
        ``(state_dict, config)``, tensors on the CPU.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not a pcas safetensors checkpoint (no ``config`` metadata).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # safetensors raises its own error types
        raise ValueError(f"{path}: not a safetensors file ({e})") from e
    if "config" not in meta:
        raise ValueError(f"{path}: safetensors file has no 'config' metadata (not a pcas checkpoint)")
    return load_file(str(path)), json.loads(meta["config"])


def load_weights_file(path: Path) -> dict[str, torch.Tensor]:
    """Read a state dict from a user's ``.safetensors`` or ``.pth``/``.pt``/``.bin`` file.

    ``torch.load`` runs with ``weights_only=True``: a file that needs arbitrary unpickling is
    refused. A checkpoint that wraps its weights under ``state_dict`` or ``model`` is unwrapped.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: unreadable, or not a mapping of names to tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: weights file not found")
    try:
        if path.suffix == ".safetensors":
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{path}: cannot read weights ({type(e).__name__}: {e})") from e
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a mapping of parameter names to tensors")
    return state


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (to check packaged weights against a pinned
    value before reading them)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
