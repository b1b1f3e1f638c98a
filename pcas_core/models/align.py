"""Listening-before-Segmentation: the visual ViT with projection heads into the audio-visual space
(docs/method.md §3). Audio tokens a_t come from the audio store and stay frozen; only g_a is trained on them.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from typing import NamedTuple

import torch
from torch import Tensor, nn

from pcas_core.models.heads import ProjectionHead
from pcas_core.models.visual import VisualClassifier, VisualOutput

__all__ = ["AlignOutput", "AlignModel", "ema_update", "running_stats_kept"]


class AlignOutput(NamedTuple):
    """Outputs for B frames.

    Attributes:
        visual: the :class:`VisualOutput` of the frames.
        audio_emb: (B, d) â = g_a(a_t).
        visual_emb: (B, d) v̂ = g_v(v_t).
        class_emb: (B, d) ĉ = g_c(c_t).
        patch_emb: (B, N, d) p̂_i = g_p(P_t[i]).
    """

    visual: VisualOutput
    audio_emb: Tensor
    visual_emb: Tensor
    class_emb: Tensor
    patch_emb: Tensor


@torch.no_grad()
def ema_update(target: nn.Module, source: nn.Module, momentum: float) -> None:
    """theta_t <- m theta_t + (1 - m) theta_s for every parameter (ToCo's
    ``_EMA_update_encoder_teacher``), in place, on the parameters' device, without a sync.

    Raises:
        ValueError: momentum outside [0, 1].
    """
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"EMA momentum must be in [0, 1], got {momentum}")
    for t, s in zip(target.parameters(), source.parameters(), strict=True):
        t.lerp_(s, 1.0 - momentum)


@contextlib.contextmanager
def running_stats_kept(module: nn.Module) -> Iterator[None]:
    """Inside, the BatchNorms of ``module`` that are in train mode still normalise with the batch's
    statistics (the same outputs and gradients as outside) but leave their running statistics and
    ``num_batches_tracked`` untouched; on exit every BatchNorm is as before.

    How: ``track_running_stats`` is switched off for the duration, so ``torch.nn.BatchNorm*``,
    timm's ``BatchNormAct2d`` and ``SyncBatchNorm`` pass no running buffers to ``batch_norm`` in
    training. Used for CMCC's crop forward (small crops must not move the statistics every later
    stage normalises full frames with) and for the gradient-share measurement. Eval-mode and
    frozen BatchNorms are left as they are.
    """
    changed = [m for m in module.modules()
               if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training
               and m.track_running_stats]
    for m in changed:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m in changed:
            m.track_running_stats = True


class AlignModel(nn.Module):
    """The visual classifier plus projection heads g_a, g_v, g_c, g_p and the CMCC crop head.

    Args:
        visual: the (stage-1 initialised) visual classifier; trained further.
        audio_dim: width Da of the stored audio tokens a_t.
        embed_dim: shared width d.
        hidden_dim: hidden width of the projection MLPs (0: linear).
        shared_patch_head: ``True`` makes g_p the same module as g_v, so the sounding map lives
            where the CMC loss aligned the pooled patch token (with linear heads,
            mean_i g_v(P_t[i]) = g_v(v_t)); ``False`` gives g_p its own weights. Note that no
            term of docs/method.md §3 sends a gradient into a separate g_p: CMPC and CMCC use the sounding
            map only through their thresholded labels.

    Attributes:
        crop_head: the CMCC head h applied to crop class tokens (ToCo's ``proj_head``).
        crop_head_ema: its EMA copy applied to the global view's class token (ToCo's
            ``proj_head_t``); no gradients, updated by :meth:`update_ema`.
    """

    def __init__(self, visual: VisualClassifier, *, audio_dim: int, embed_dim: int = 128,
                 hidden_dim: int = 0, shared_patch_head: bool = True) -> None:
        super().__init__()
        dim = visual.embed_dim
        self.visual = visual
        self.g_a = ProjectionHead(in_dim=audio_dim, out_dim=embed_dim, hidden_dim=hidden_dim)
        self.g_v = ProjectionHead(in_dim=dim, out_dim=embed_dim, hidden_dim=hidden_dim)
        self.g_c = ProjectionHead(in_dim=dim, out_dim=embed_dim, hidden_dim=hidden_dim)
        self.g_p = self.g_v if shared_patch_head else ProjectionHead(
            in_dim=dim, out_dim=embed_dim, hidden_dim=hidden_dim)
        self.crop_head = ProjectionHead(in_dim=dim, out_dim=embed_dim, hidden_dim=hidden_dim)
        self.crop_head_ema = copy.deepcopy(self.crop_head).requires_grad_(False)

    def update_ema(self, momentum: float) -> None:
        """One EMA step of ``crop_head_ema`` towards ``crop_head`` (see :func:`ema_update`)."""
        ema_update(self.crop_head_ema, self.crop_head, momentum)

    def forward(self, frames: Tensor, audio_tokens: Tensor) -> AlignOutput:
        """frames (B, 3, H, W) normalised, audio_tokens (B, Da) -> :class:`AlignOutput`."""
        if audio_tokens.ndim != 2 or audio_tokens.shape[0] != frames.shape[0]:
            raise ValueError(f"expected audio tokens (B, Da) for {frames.shape[0]} frames, got "
                             f"{tuple(audio_tokens.shape)}")
        out = self.visual(frames)
        return AlignOutput(out, self.g_a(audio_tokens), self.g_v(out.pooled_patch),
                           self.g_c(out.class_token), self.g_p(out.patch_tokens))
