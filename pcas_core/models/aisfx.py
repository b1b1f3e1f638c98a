"""The pretrained aisfx CNN as the TVP encoder's patch embedding, and its checkpoint loader.

Source: the PyPI package ``aisfx`` 0.1.2 (github.com/alisonbma/aisfx): A. B. Ma and A. Lerch,
"Representation Learning for the Automatic Indexing of Sound Effects Libraries", ISMIR 2022,
pp. 866-875. The checkpoint ``aisfx/models/checkpoint.pth`` (model "X-Sequential-CE", trained on
sound-effects libraries) is licensed CC BY 4.0 (Copyright (c) 2022 A.B. Ma and A. Lerch); nothing
of it is copied into this repository, it is read from the installed package. Its network,
``EmbeddingNet('max', 3, 1, 64)`` of ``aisfx/models/cnn2d.py``, is the DCASE 2018 cross-task
baseline CNN (Kong et al., arXiv:1808.00773): four blocks of two (3x3 conv, no bias, BatchNorm,
ReLU), 64/128/256/512 channels, 2x2 max-pooling after blocks 1-3. The module below is ours, with
the checkpoint's parameter names, so its ``embedding_net.*`` tensors map one for one.

Input: the aisfx log-mel (:func:`pcas_core.audio.aisfx_mel.aisfx_logmel`), ``(B, L, 96)`` with
frames of 23.2 ms. Output cell ``(j, f)`` of the last block summarises input frames
``[8j, 8j + 8)`` and bands ``[8f, 8f + 8)`` (its receptive field reaches about 0.7 s either side, so
a token near a step boundary also hears the neighbouring second).

Checkpoint layout (``torch.save`` of a tuple): ``(state_dict, ds_dict)``; ``state_dict`` is an
``OrderedDict`` of 102 tensors: 48 ``embedding_net.conv_blockK.{conv1,conv2}.weight`` and
``.{bn1,bn2}.{weight,bias,running_mean,running_var}`` (float32) and ``.num_batches_tracked``
(int64), 4 689 992 values in all, plus 54 ``fc.N.{0,2,4}.{weight,bias}`` of the nine per-dataset
classifier MLPs of aisfx's ``CrossNet`` (dropped here); ``ds_dict`` maps each training set's name
to ``(numpy.int64 index, number of classes)``. Those numpy scalars are the only globals beyond
torch's own: the file is read with ``torch.load(weights_only=True)`` inside
``torch.serialization.safe_globals`` (:data:`AISFX_SAFE_GLOBALS`), so any other global is
refused, and only after its sha256 matched :data:`AISFX_SHA256`. The package is found with
``importlib.util.find_spec`` and never imported (it imports librosa).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pcas_core.storage.weights import sha256_of

__all__ = ["AISFX_PACKAGE", "AISFX_SHA256", "AISFX_SAFE_GLOBALS", "AISFX_WIDTH", "AISFX_TOKENS",
           "ConvBlock", "AisfxCNN", "AisfxPatchEmbed", "aisfx_checkpoint_path",
           "read_aisfx_checkpoint", "aisfx_embedding_state", "load_aisfx_weights"]

#: What to install: ``pip install --no-deps aisfx==0.1.2`` (its pins of old numpy/librosa are
#: not needed: only its checkpoint file is read).
AISFX_PACKAGE = "aisfx==0.1.2"

#: sha256 of ``aisfx/models/checkpoint.pth`` in ``aisfx`` 0.1.2 (24 900 277 bytes).
AISFX_SHA256 = "499ea75909c932a2f94c35fa722fa4fabc5bcb7e84917209cc5f7402627b7eb5"

#: Channels of the last conv block: the width of every aisfx cell.
AISFX_WIDTH = 512

#: ``train_audio.aisfx.tokens`` choices.
AISFX_TOKENS = ("columns", "cells")

_SCALAR = np.int64(0).__reduce__()[0]  # numpy's scalar constructor, in numpy 1 and 2 alike

#: The globals the checkpoint needs beyond torch's weights-only defaults: numpy's scalar
#: constructor (under the name the file was written with, ``numpy.core.multiarray.scalar``, and
#: numpy 2's own), ``numpy.dtype`` and the int64 dtype class it builds. Nothing else.
AISFX_SAFE_GLOBALS: list[Any] = [
    (_SCALAR, "numpy.core.multiarray.scalar"),
    _SCALAR,
    np.dtype,
    type(np.dtype(np.int64)),
]

_INSTALL = f"pip install --no-deps {AISFX_PACKAGE}"


class ConvBlock(nn.Module):
    """Two (3x3 conv, no bias, padding 1) -> BatchNorm -> ReLU, then an optional 2x2 max-pool.

    Args:
        in_channels, out_channels: channels of the input and of both convs.
        pool: 2x2 max-pooling at the end (floor: an odd side loses its last row).
    """

    def __init__(self, in_channels: int, out_channels: int, *, pool: bool = True) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.pool = nn.MaxPool2d(2) if pool else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C_in, T, F)`` -> ``(B, C_out, T', F')``, halved sides when pooling."""
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return self.pool(x)


class AisfxCNN(nn.Module):
    """aisfx's four conv blocks (``EmbeddingNet('max', 3, 1, 64)`` without its final pooling).

    Args:
        frozen_blocks: the first k blocks get ``requires_grad=False`` and stay in eval mode
            whenever the module is put in training mode, so their BatchNorms keep the loaded
            running statistics (and they cost no backward pass). 0 trains all four.

    Raises:
        ValueError: ``frozen_blocks`` outside ``[0, 4]``.
    """

    def __init__(self, *, frozen_blocks: int = 0) -> None:
        super().__init__()
        if not 0 <= frozen_blocks <= 4:
            raise ValueError(f"train_audio.aisfx.frozen_blocks must be in [0, 4], got {frozen_blocks}")
        self.conv_block1 = ConvBlock(1, 64)
        self.conv_block2 = ConvBlock(64, 128)
        self.conv_block3 = ConvBlock(128, 256)
        self.conv_block4 = ConvBlock(256, AISFX_WIDTH, pool=False)
        self.frozen_blocks = frozen_blocks
        for block in self.blocks()[:frozen_blocks]:
            block.requires_grad_(False)
            block.eval()

    def blocks(self) -> list[ConvBlock]:
        """The four blocks in forward order."""
        return [self.conv_block1, self.conv_block2, self.conv_block3, self.conv_block4]

    def train(self, mode: bool = True) -> "AisfxCNN":
        """As :meth:`nn.Module.train`, but frozen blocks always stay in eval mode."""
        super().train(mode)
        for block in self.blocks()[:self.frozen_blocks]:
            block.train(False)
        return self

    def forward(self, logmel: Tensor) -> Tensor:
        """``(B, T, F)`` float log-mel -> ``(B, 512, T // 8, F // 8)`` float feature map."""
        if logmel.ndim != 3:
            raise ValueError(f"expected a (B, T, n_mels) log-mel, got {tuple(logmel.shape)}")
        x = logmel.unsqueeze(1)  # (B, 1, T, F)
        for block in self.blocks():
            x = block(x)
        return x


class AisfxPatchEmbed(nn.Module):
    """aisfx conv blocks + a linear projection: ``(B, L, n_mels)`` -> ``(B, F'*T', D)`` tokens.

    Token layout as :class:`pcas_core.models.tvp_tokens.SpectrogramPatchEmbed` (frequency-major,
    index ``f * T' + j``), on the last block's grid: ``T' = L // 8`` time cells of 8 frames
    (186 ms), ``F' = n_mels // 8`` bands of cells.

    Args:
        n_mels: bands of the input (aisfx: 96).
        target_length: frames L of the input.
        embed_dim: token width D.
        tokens: ``columns``: one token per time cell, the 512 channels mean-pooled over
            frequency first (aisfx's own pooling, ``EmbeddingNet.forward``), ``F' = 1``;
            ``cells``: one token per time x frequency cell.
        frozen_blocks: see :class:`AisfxCNN`.

    Raises:
        ValueError: unknown ``tokens``, or an input smaller than one 8 x 8 cell.
    """

    def __init__(self, *, n_mels: int = 96, target_length: int, embed_dim: int,
                 tokens: str = "columns", frozen_blocks: int = 0) -> None:
        super().__init__()
        if tokens not in AISFX_TOKENS:
            raise ValueError(f"train_audio.aisfx.tokens must be one of {AISFX_TOKENS}, got {tokens!r}")
        if target_length < 8 or n_mels < 8:
            raise ValueError(f"log-mel ({target_length} x {n_mels}) is smaller than one 8 x 8 cell")
        self.tokens = tokens
        self.grid_size = (1 if tokens == "columns" else n_mels // 8, target_length // 8)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.cnn = AisfxCNN(frozen_blocks=frozen_blocks)
        self.proj = nn.Linear(AISFX_WIDTH, embed_dim)

    def column_centres(self) -> Tensor:
        """``(T',)`` float64 centre of each token column in input frames: cell j spans frames
        ``[8j, 8j + 8)``, centre ``8j + 4``."""
        return torch.arange(self.grid_size[1], dtype=torch.float64) * 8 + 4

    @property
    def frozen_trunk(self) -> bool:
        """True when all four conv blocks are frozen: :meth:`trunk_cells` is then a fixed
        function of the input, which a training loop may compute once per video."""
        return self.cnn.frozen_blocks == 4

    def trunk_cells(self, logmel: Tensor) -> Tensor:
        """The conv blocks' cells before the projection: ``(B, L, n_mels)`` float ->
        ``(B, F'*T', 512)``, token index ``f * T' + j``."""
        fmap = self.cnn(logmel)  # (B, 512, T', F')
        if self.tokens == "columns":
            return fmap.mean(dim=3).transpose(1, 2)  # (B, T', 512)
        return fmap.permute(0, 3, 2, 1).flatten(1, 2)  # (B, F'*T', 512), f-major

    def forward(self, logmel: Tensor, *, trunk: bool = False) -> Tensor:
        """``(B, L, n_mels)`` float -> ``(B, F'*T', D)``; token index ``f * T' + j``.
        ``trunk=True``: the input is already :meth:`trunk_cells` ``(B, F'*T', 512)``."""
        return self.proj(logmel if trunk else self.trunk_cells(logmel))


def aisfx_checkpoint_path() -> Path:
    """``checkpoint.pth`` of the installed ``aisfx`` package, found without importing it.

    Raises:
        FileNotFoundError: the package is not installed (the message says how to install it),
            or it has no checkpoint file.
    """
    spec = importlib.util.find_spec("aisfx")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the aisfx checkpoint needs the package aisfx, which is not "
                                f"installed: run `{_INSTALL}` (make install does)")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / "checkpoint.pth"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the installed aisfx has no checkpoint file; "
                                f"reinstall it with `{_INSTALL}`")
    return path


def _unpickler_reason(err: Exception) -> str:
    """The sentence of a ``torch.load`` error that names what was refused."""
    text = str(err)
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text.split(marker, 1)[1].strip()
        text = text.split("Please use", 1)[0].split("\n\n", 1)[0]
    return " ".join(text.split()) or type(err).__name__


def read_aisfx_checkpoint(path: Path, *, sha256: str = AISFX_SHA256) -> dict[str, Tensor]:
    """The state dict of an aisfx checkpoint file, checked and read weights-only.

    Args:
        path: the ``.pth`` file (:func:`aisfx_checkpoint_path`).
        sha256: the hex digest it must have (default: aisfx 0.1.2's).

    Returns:
        Every tensor of the file's state dict (``embedding_net.*`` and ``fc.*``), on the CPU.

    Raises:
        FileNotFoundError: no file.
        ValueError: another sha256; a global outside :data:`AISFX_SAFE_GLOBALS` (or any other
            unreadable content); not ``(state_dict, ds_dict)`` with a mapping of names to tensors.
            Every message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: aisfx checkpoint not found")
    digest = sha256_of(path)
    if digest != sha256:
        raise ValueError(f"{path}: sha256 {digest} is not the expected {sha256} "
                         f"(not the checkpoint of {AISFX_PACKAGE})")
    try:
        with torch.serialization.safe_globals(AISFX_SAFE_GLOBALS):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle.UnpicklingError for refused globals, RuntimeError, ...
        raise ValueError(f"{path}: refused by the weights-only reader, whose allowlist holds only "
                         f"torch's defaults and numpy's int64 scalar ({type(e).__name__}: "
                         f"{_unpickler_reason(e)})") from e
    state = obj[0] if isinstance(obj, (tuple, list)) and len(obj) == 2 else None
    if not isinstance(state, Mapping) or not all(
            isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()):
        raise ValueError(f"{path}: expected (state_dict, ds_dict) with a mapping of names to "
                         f"tensors, as aisfx saves it; got {type(obj).__name__}")
    return dict(state)


def aisfx_embedding_state(state: Mapping[str, Tensor], model: AisfxCNN, *,
                          origin: str) -> dict[str, Tensor]:
    """``embedding_net.*`` tensors renamed to ``model``'s names, strictly.

    ``fc.*`` (aisfx's per-dataset classifier heads) are dropped; every other key must be an
    ``embedding_net.`` key of one of ``model``'s tensors, with its shape and dtype.

    Raises:
        ValueError: missing or unexpected keys, or a shape/dtype that differs (names them and
            ``origin``).
    """
    prefix = "embedding_net."
    strange = sorted(k for k in state if not k.startswith((prefix, "fc.")))
    mapped = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    target = model.state_dict()
    missing = sorted(set(target) - set(mapped))
    unexpected = sorted(prefix + k for k in set(mapped) - set(target)) + strange
    if missing or unexpected:
        raise ValueError(f"{origin}: does not fit the aisfx CNN: missing "
                         f"{[prefix + k for k in missing][:5]}, unexpected {unexpected[:5]}")
    for name, ref in target.items():
        value = mapped[name]
        if value.shape != ref.shape or value.dtype != ref.dtype:
            raise ValueError(f"{origin}: {prefix + name} is {tuple(value.shape)} {value.dtype}, "
                             f"the aisfx CNN needs {tuple(ref.shape)} {ref.dtype}")
    return mapped


def load_aisfx_weights(model: AisfxCNN, path: Path | None = None, *,
                       sha256: str = AISFX_SHA256) -> Path:
    """Load the aisfx checkpoint into ``model`` in place (strict, see
    :func:`aisfx_embedding_state`); frozen blocks stay frozen.

    Args:
        path: the checkpoint (default: the installed package's, :func:`aisfx_checkpoint_path`).
        sha256: its expected digest (default: aisfx 0.1.2's).

    Returns:
        The file read.

    Raises:
        FileNotFoundError / ValueError: as :func:`aisfx_checkpoint_path`,
            :func:`read_aisfx_checkpoint` and :func:`aisfx_embedding_state`.
    """
    path = aisfx_checkpoint_path() if path is None else Path(path)
    state = aisfx_embedding_state(read_aisfx_checkpoint(path, sha256=sha256), model,
                                  origin=str(path))
    model.load_state_dict(state, strict=True)
    return path
