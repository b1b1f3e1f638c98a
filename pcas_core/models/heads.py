"""Small heads: projections into the shared audio-visual space (METHOD §3) and the segmentation
head trained on pseudo-masks (METHOD §5)."""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ProjectionHead", "SegmentationHead", "AttentionPool", "init_prior_bias"]


def init_prior_bias(layer: nn.Linear, prior: float) -> None:
    """Set a multi-label head's bias so that every class starts at probability ``prior``.

    b = log(prior / (1 - prior)), the prior initialisation of Lin et al. 2017 (focal loss, §4.1).
    With 70 classes and about one positive per video, a zero bias starts every sigmoid at 0.5;
    Adam then moves each bias by about one learning rate per step, so thousands of steps go into
    learning the class frequency before anything else is learnt. Weights are left as they are.

    Raises:
        ValueError: ``prior`` not in (0, 1).
    """
    if not 0.0 < prior < 1.0:
        raise ValueError(f"head bias prior must be in (0, 1), got {prior}")
    nn.init.constant_(layer.bias, math.log(prior / (1.0 - prior)))


class ProjectionHead(nn.Module):
    """Project tokens of width ``in_dim`` into the d-dimensional shared space (g_a, g_v, g_c, g_p).

    Args:
        in_dim: input width D.
        out_dim: shared width d.
        hidden_dim: 0 for a single linear map (then g applied to a mean of tokens equals the mean
            of g applied to each token), else a two-layer MLP with GELU.
    """

    def __init__(self, *, in_dim: int, out_dim: int = 128, hidden_dim: int = 0) -> None:
        super().__init__()
        if hidden_dim > 0:
            self.net = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.GELU(),
                                     nn.Linear(hidden_dim, out_dim))
        else:
            self.net = nn.Linear(in_dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        """(..., in_dim) -> (..., out_dim)."""
        return self.net(x)


class AttentionPool(nn.Module):
    """The class-token stand-in of backbones without one (CNNs, PVT): a learned attention pool.

    ``c = sum_i softmax_i(w . P_i + b) P_i``: one learned query scores every patch token, and
    c_t is the softmax-weighted sum of the tokens (attention-based MIL pooling, Ilse et al. 2018,
    with a linear score). A ViT's class token is likewise an attention-weighted summary of the
    patches, different from their mean v_t; global average pooling would make c_t equal to v_t,
    so that its loss terms (the class-token BCE, CMC's ``g_c``) would repeat those of v_t. ``w``
    starts at zero, so c_t starts as exactly the mean and learns where to look.

    Args:
        dim: token width D.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.score = nn.Linear(dim, 1)
        nn.init.zeros_(self.score.weight)
        nn.init.zeros_(self.score.bias)

    def forward(self, tokens: Tensor) -> Tensor:
        """(B, N, D) float tokens -> (B, D) pooled token."""
        weights = self.score(tokens).softmax(dim=1)  # (B, N, 1)
        return (weights * tokens).sum(dim=1)


class SegmentationHead(nn.Module):
    """A light per-patch classifier upsampled to the frame: a 1x1 conv over the patch grid.

    Args:
        in_dim: patch token width D.
        num_classes: output classes (71 with background).
        grid: patch grid (h, w).
        hidden_dim: 0 for one linear 1x1 conv; else conv3x3-BN-ReLU then 1x1 conv.
    """

    def __init__(self, *, in_dim: int, num_classes: int = 71, grid: tuple[int, int] = (14, 14),
                 hidden_dim: int = 0) -> None:
        super().__init__()
        self.grid = tuple(grid)
        self.num_classes = num_classes
        if hidden_dim > 0:
            self.net = nn.Sequential(nn.Conv2d(in_dim, hidden_dim, 3, padding=1),
                                     nn.BatchNorm2d(hidden_dim), nn.ReLU(inplace=True),
                                     nn.Conv2d(hidden_dim, num_classes, 1))
        else:
            self.net = nn.Conv2d(in_dim, num_classes, 1)

    def forward(self, patch_tokens: Tensor, out_size: tuple[int, int]) -> Tensor:
        """(B, N, D) patch tokens -> (B, num_classes, H, W) logits, bilinear to ``out_size`` pixels."""
        b, n, d = patch_tokens.shape
        h, w = self.grid
        if n != h * w:
            raise ValueError(f"expected {h * w} patch tokens for grid {self.grid}, got {n}")
        x = patch_tokens.transpose(1, 2).reshape(b, d, h, w)
        return F.interpolate(self.net(x), size=out_size, mode="bilinear", align_corners=False)
