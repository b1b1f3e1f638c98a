"""Small heads: projections into the shared audio-visual space (METHOD §3) and the segmentation
head trained on pseudo-masks (METHOD §5), with the head's checkpoint (its config and which visual
tokens it reads)."""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pcas_core.storage.weights import load_checkpoint, save_checkpoint

__all__ = ["ProjectionHead", "SegmentationHead", "AttentionPool", "init_prior_bias", "FEATURES",
           "check_features", "head_config", "save_segmentation_head", "load_segmentation_head"]

#: what the segmentation head reads (``evaluate.features``): P_t (the tokens of ``token_layer``),
#: the final layer's patch tokens, or both concatenated on the channel axis
FEATURES = ("patch", "final", "patch+final")


def check_features(features: str) -> None:
    """Raise ``ValueError`` unless ``features`` is one of :data:`FEATURES`."""
    if features not in FEATURES:
        raise ValueError(f"features must be one of {FEATURES}, got {features!r}")


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


def save_segmentation_head(path: Path, head: SegmentationHead, *, features: str) -> None:
    """Save a trained head with its constructor config and its input ``features`` (see
    :data:`FEATURES`), so that :func:`load_segmentation_head` rebuilds it alone.

    Raises:
        ValueError: unknown ``features``.
    """
    check_features(features)
    save_checkpoint(path, head, {**head_config(head), "features": features})


def head_config(head: SegmentationHead) -> dict:
    """Constructor arguments of ``head``: ``in_dim``, ``num_classes``, ``grid``, ``hidden_dim``."""
    deep = isinstance(head.net, torch.nn.Sequential)
    first = head.net[0] if deep else head.net
    return {"in_dim": first.in_channels, "num_classes": head.num_classes, "grid": list(head.grid),
            "hidden_dim": first.out_channels if deep else 0}


def load_segmentation_head(path: Path) -> tuple[SegmentationHead, str]:
    """Rebuild a head saved by :func:`save_segmentation_head`.

    Returns:
        ``(head on the CPU in eval mode, features)``.

    Raises:
        FileNotFoundError / ValueError: as :func:`pcas_core.storage.weights.load_checkpoint`, or the
            config lacks a key (names the file).
    """
    state, config = load_checkpoint(path)
    try:
        head = SegmentationHead(in_dim=int(config["in_dim"]),
                                num_classes=int(config["num_classes"]),
                                grid=tuple(config["grid"]), hidden_dim=int(config["hidden_dim"]))
        features = str(config["features"])
    except KeyError as err:
        raise ValueError(f"{path}: not a segmentation-head checkpoint (no {err} in its config)") \
            from err
    head.load_state_dict(state)
    return head.eval(), features
