"""Initialisation of the TVP audio encoder: AST's ImageNet initialisation (Gong et al. 2021,
``ASTModel``) or, with ``encoder: aisfx``, the pretrained aisfx conv blocks."""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from pcas_core.models.aisfx import load_aisfx_weights
from pcas_core.storage.weights import load_weights_file
from pcas_core.models.tvp import TVPAudioEncoder

__all__ = ["load_imagenet_vit_patch_embed", "init_audio_encoder"]

_log = logging.getLogger(__name__)


def init_audio_encoder(encoder: TVPAudioEncoder, init: str | None) -> None:
    """Initialise ``encoder`` as ``train_audio`` says, in place.

    With ``encoder: aisfx`` the conv blocks of the patch embedding always start from the
    installed aisfx checkpoint (:func:`pcas_core.models.aisfx.load_aisfx_weights`: sha256-pinned,
    weights-only, strict); ``init`` must then be ``"none"``.

    Args:
        init: ``"none"`` (or None/empty): keep the random initialisation; otherwise the path of a
            local ``.safetensors``/``.pth`` file of a timm ViT state dict, applied by
            :func:`load_imagenet_vit_patch_embed` (AST's ImageNet initialisation). Nothing is
            downloaded; ``.pth`` files are read with ``torch.load(weights_only=True)``.

    Raises:
        FileNotFoundError: no file at the path, or aisfx not installed; ValueError: unreadable or
            not fitting (names the file), or an ``init`` file for an aisfx encoder.
    """
    no_init = init is None or str(init) in ("", "none")
    if encoder.encoder == "aisfx":
        if not no_init:
            raise ValueError(f"train_audio.init {init}: initialises AST's patch embedding; "
                             f"the aisfx encoder starts from its own checkpoint (set init: none)")
        path = load_aisfx_weights(encoder.patch_embed.cnn)
        _log.info("audio patch embedding: aisfx conv blocks from %s (%d frozen)", path,
                  encoder.patch_embed.cnn.frozen_blocks)
        return
    if no_init:
        return
    path = Path(init)
    try:
        load_imagenet_vit_patch_embed(encoder, load_weights_file(path))
    except ValueError as e:
        raise ValueError(f"train_audio.init {path}: {e}") from e


def load_imagenet_vit_patch_embed(encoder: TVPAudioEncoder, vit_state_dict: Mapping[str, Tensor]) -> None:
    """AST's ImageNet initialisation of a :class:`TVPAudioEncoder`, in place.

    Follows AST (Gong et al. 2021, ``ASTModel.__init__`` with ``imagenet_pretrain=True``):
    - ``patch_embed.proj.weight`` ``(D, 3, p, p)`` is summed over the RGB input channels into the
      1-channel conv ``(D, 1, p, p)``; the bias is copied;
    - ``pos_embed`` ``(1, prefix + g*g, D)`` loses its prefix (class) tokens and is bilinearly
      interpolated from the ``g x g`` grid to the encoder's ``(F', T')`` patch grid;
    - ``cls_token`` is copied when present;
    - ``blocks.N.*`` and ``norm.*`` are copied when the ViT has the encoder's width and depth;
      otherwise they keep their random init and a warning says so.

    The state dict comes from the caller (``timm.create_model(name, pretrained=True).state_dict()``
    with a local cache, or ``torch.load`` of a local file); this function downloads nothing.

    Args:
        encoder: the encoder to initialise.
        vit_state_dict: state dict of a timm ``VisionTransformer`` (keys ``patch_embed.proj.weight``,
            ``pos_embed``, ``blocks.N.*``, ``norm.*``).

    Raises:
        ValueError: a required key is missing, the ViT's width or patch size differs from the
            encoder's (message names both), or blocks of equal depth have different shapes.
    """
    for key in ("patch_embed.proj.weight", "pos_embed"):
        if key not in vit_state_dict:
            raise ValueError(f"ViT state dict lacks {key!r}")
    weight = vit_state_dict["patch_embed.proj.weight"]
    target = encoder.patch_embed.proj.weight
    if weight.ndim != 4 or weight.shape[0] != target.shape[0] or weight.shape[2:] != target.shape[2:]:
        raise ValueError(
            f"ViT patch embedding {tuple(weight.shape)} does not match the encoder's "
            f"(D={target.shape[0]}, C, {target.shape[2]}, {target.shape[3]})"
        )
    pos = vit_state_dict["pos_embed"]
    grid = math.isqrt(pos.shape[1])
    prefix = pos.shape[1] - grid * grid
    f_dim, t_dim = encoder.patch_embed.grid_size
    with torch.no_grad():
        target.copy_(weight.sum(dim=1, keepdim=True))
        if "patch_embed.proj.bias" in vit_state_dict:
            encoder.patch_embed.proj.bias.copy_(vit_state_dict["patch_embed.proj.bias"])
        grid_pos = pos[:, prefix:].reshape(1, grid, grid, -1).permute(0, 3, 1, 2).float()
        grid_pos = F.interpolate(grid_pos, size=(f_dim, t_dim), mode="bilinear", align_corners=False)
        encoder.pos_embed.copy_(grid_pos.flatten(2).transpose(1, 2))
        if "cls_token" in vit_state_dict:
            encoder.cls_token.copy_(vit_state_dict["cls_token"])
    vit_depth = len({k.split(".")[1] for k in vit_state_dict if k.startswith("blocks.")})
    if vit_depth != len(encoder.blocks):
        warnings.warn(
            f"ViT has {vit_depth} blocks, encoder {len(encoder.blocks)}: blocks and norm not copied", stacklevel=2
        )
        return
    blocks = {k[len("blocks."):]: v for k, v in vit_state_dict.items() if k.startswith("blocks.")}
    norm = {k[len("norm."):]: v for k, v in vit_state_dict.items() if k.startswith("norm.")}
    try:
        encoder.blocks.load_state_dict(blocks, strict=True)
        encoder.norm.load_state_dict(norm, strict=True)
    except RuntimeError as err:
        raise ValueError(f"ViT blocks do not match the encoder's blocks: {err}") from err
