"""PCAS losses, one function per term (METHOD §1-§3), in the manner of ToCo's ``model/losses.py``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["pool_frames", "video_bce", "label_consistency", "cmc_loss"]


def pool_frames(frame_logits: Tensor, frame_video: Tensor, n_videos: int, mode: str = "max") -> Tensor:
    """Pool frame logits into video logits, since labels belong to the video, not to each frame.

    Args:
        frame_logits: (F, C) float, logits of every frame in the batch.
        frame_video: (F,) long, the batch position (0..n_videos-1) of each frame's video.
        n_videos: number of videos B in the batch.
        mode: ``"max"`` or ``"mean"`` over a video's frames.

    Returns:
        (B, C) float video logits.

    Raises:
        ValueError: bad shapes, unknown mode, or a video with no frame.
    """
    if frame_logits.ndim != 2 or frame_video.shape != frame_logits.shape[:1]:
        raise ValueError(f"expected frame_logits (F, C) and frame_video (F,), got "
                         f"{tuple(frame_logits.shape)} and {tuple(frame_video.shape)}")
    if mode not in ("max", "mean"):
        raise ValueError(f"unknown frame pooling '{mode}', expected 'max' or 'mean'")
    counts = torch.bincount(frame_video, minlength=n_videos)
    if (counts == 0).any():
        raise ValueError("every video of the batch needs at least one frame")
    index = frame_video[:, None].expand_as(frame_logits)
    init = torch.full((n_videos, frame_logits.shape[1]), float("-inf") if mode == "max" else 0.0,
                      dtype=frame_logits.dtype, device=frame_logits.device)
    reduce = "amax" if mode == "max" else "mean"
    return init.scatter_reduce(0, index, frame_logits, reduce=reduce, include_self=False)


def video_bce(video_logits: Tensor, labels: Tensor) -> Tensor:
    """Multi-label BCE with logits, mean over videos and classes.

    Args:
        video_logits: (B, C) float.
        labels: (B, C) float multi-hot video-level labels.
    """
    if video_logits.shape != labels.shape:
        raise ValueError(f"logits {tuple(video_logits.shape)} and labels {tuple(labels.shape)} differ")
    return F.binary_cross_entropy_with_logits(video_logits, labels.to(video_logits.dtype))


def label_consistency(labels: Tensor) -> Tensor:
    """Y_mn = 1 if items m and n share at least one label, else 0 (METHOD §3, Eq. 1).

    Args:
        labels: (B, C) multi-hot labels of the B items.

    Returns:
        (B, B) float matrix Y.
    """
    if labels.ndim != 2:
        raise ValueError(f"expected labels (B, C), got {tuple(labels.shape)}")
    lab = labels.float()
    return (lab @ lab.T > 0).float()


def _soft_ce(logits: Tensor, target: Tensor) -> Tensor:
    """Row-wise cross-entropy between softmax(logits) and row-normalised targets, averaged over
    rows that have at least one positive (rows without a positive carry no signal)."""
    rows = target.sum(dim=1) > 0
    if not rows.any():
        return logits.sum() * 0.0
    target = target[rows] / target[rows].sum(dim=1, keepdim=True)
    return -(target * F.log_softmax(logits[rows], dim=1)).sum(dim=1).mean()


def cmc_loss(audio: Tensor, visual: Tensor, class_token: Tensor, labels: Tensor,
             temperature: float = 0.1) -> Tensor:
    """Cross-Modal Contrast, instance-wise supervised contrast (PCAS Eq. 1, METHOD §3).

    With â = audio, v̂ = visual, ĉ = class_token (already projected to the shared d-space), the
    label consistency Y of ``labels`` row-normalised to Ỹ, and logits cos(â_m, x_n)/tau:
    L = mean over the pair types x in {v̂, ĉ} and both directions (audio->x and x->audio) of
    CE(softmax over n, Ỹ). Rows with no label (Y row all zero) are left out.

    Args:
        audio: (B, d) float â.
        visual: (B, d) float v̂.
        class_token: (B, d) float ĉ.
        labels: (B, C) multi-hot labels (video-level labels of each item's video).
        temperature: tau.

    Returns:
        Scalar loss; 0 when audio and visual embeddings of items with identical labels coincide
        and differ strongly from the others, large when they are swapped.
    """
    if not (audio.shape == visual.shape == class_token.shape) or audio.ndim != 2:
        raise ValueError(f"expected (B, d) embeddings, got {tuple(audio.shape)}, "
                         f"{tuple(visual.shape)}, {tuple(class_token.shape)}")
    if labels.shape[0] != audio.shape[0]:
        raise ValueError(f"{labels.shape[0]} label rows for {audio.shape[0]} items")
    y = label_consistency(labels)
    a = F.normalize(audio, dim=1)
    terms = []
    for other in (visual, class_token):
        logits = a @ F.normalize(other, dim=1).T / temperature
        terms += [_soft_ce(logits, y), _soft_ce(logits.T, y.T)]
    return torch.stack(terms).mean()
