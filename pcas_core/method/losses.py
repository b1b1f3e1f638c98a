"""PCAS losses, one function per term (docs/method.md §1-§3), in the manner of ToCo's ``model/losses.py``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from pcas_core.runtime.distributed import mean_over_ranks

__all__ = ["pool_frames", "video_bce", "classification_loss", "label_consistency", "cmc_loss", "cmpc_loss",
           "cmcc_loss", "segmentation_ce"]


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
        ValueError: bad shapes, unknown mode, or a video with no frame (checked when
            ``frame_video`` is on the CPU, where it costs no host-device sync; ``collate_videos``
            never makes such a batch).
    """
    if frame_logits.ndim != 2 or frame_video.shape != frame_logits.shape[:1]:
        raise ValueError(f"expected frame_logits (F, C) and frame_video (F,), got "
                         f"{tuple(frame_logits.shape)} and {tuple(frame_video.shape)}")
    if mode not in ("max", "mean"):
        raise ValueError(f"unknown frame pooling '{mode}', expected 'max' or 'mean'")
    if frame_video.device.type == "cpu":  # on an accelerator this check would wait for it
        counts = torch.bincount(frame_video, minlength=n_videos)
        if (counts == 0).any():
            raise ValueError("every video of the batch needs at least one frame")
    index = frame_video[:, None].expand_as(frame_logits)
    init = torch.full((n_videos, frame_logits.shape[1]), float("-inf") if mode == "max" else 0.0,
                      dtype=frame_logits.dtype, device=frame_logits.device)
    reduce = "amax" if mode == "max" else "mean"
    return init.scatter_reduce(0, index, frame_logits, reduce=reduce, include_self=False)


def video_bce(video_logits: Tensor, labels: Tensor) -> Tensor:
    """Multi-label BCE with logits, mean over videos and classes (of the global batch in a
    distributed step: :func:`pcas_core.runtime.distributed.mean_over_ranks`).

    Args:
        video_logits: (B, C) float.
        labels: (B, C) float multi-hot video-level labels.
    """
    if video_logits.shape != labels.shape:
        raise ValueError(f"logits {tuple(video_logits.shape)} and labels {tuple(labels.shape)} differ")
    return mean_over_ranks(F.binary_cross_entropy_with_logits(
        video_logits, labels.to(video_logits.dtype), reduction="none"))


def classification_loss(frame_logits: Tensor, class_logits: Tensor, frame_video: Tensor,
                        labels: Tensor, *, frame_pool: str, w_class_token: float) -> Tensor:
    """L_cls (docs/method.md §1): BCE of the patch-token frame logits pooled over each video, plus
    ``w_class_token`` times the same BCE on the class-token logits (0 turns that term off).

    Args:
        frame_logits: (F, C) float logits of the CAM head on the pooled patch tokens v_t.
        class_logits: (F, C) float logits of the class-token head.
        frame_video: (F,) long, batch position of each frame's video.
        labels: (B, C) float video labels.
        frame_pool: ``"max"`` or ``"mean"`` (:func:`pool_frames`).

    Returns:
        Scalar loss (mean over videos and classes).
    """
    n = len(labels)
    loss = video_bce(pool_frames(frame_logits.float(), frame_video, n, frame_pool), labels)
    if w_class_token > 0:
        loss = loss + w_class_token * video_bce(
            pool_frames(class_logits.float(), frame_video, n, frame_pool), labels)
    return loss


def label_consistency(labels: Tensor) -> Tensor:
    """Y_mn = 1 if items m and n share at least one label, else 0 (docs/method.md §3, Eq. 1).

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
    rows that have at least one positive (rows without a positive carry no signal; 0 if none).
    Masks and a weighted mean, so no host-device sync."""
    total = target.sum(dim=1, keepdim=True)
    rows = (total[:, 0] > 0).to(logits.dtype)
    ce = -(target / total.clamp_min(1e-12) * F.log_softmax(logits, dim=1)).sum(dim=1)
    return (ce * rows).sum() / rows.sum().clamp_min(1.0)


def cmc_loss(audio: Tensor, visual: Tensor, class_token: Tensor, labels: Tensor,
             temperature: float = 0.1) -> Tensor:
    """Cross-Modal Contrast, instance-wise supervised contrast (PCAS Eq. 1, docs/method.md §3).

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


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """sum(values * mask) / max(sum(mask), 1), without a host-device sync (over the global
    batch in a distributed step: :func:`pcas_core.runtime.distributed.mean_over_ranks`)."""
    return mean_over_ranks(values, mask)


def cmpc_loss(tokens: Tensor, same: Tensor, different: Tensor) -> Tensor:
    """Cross-Modal Patch-token Contrast (PCAS Eq. 2, docs/method.md §3; ToCo's ``get_masked_ptc_loss``).

    L = 0.5 (1 - mean_{A_ij=1} cos(P_i, P_j)) + 0.5 mean_{A_ij=0} cos(P_i, P_j),
    each mean over every labelled pair of every frame in the batch (pairs pooled, as ToCo does).
    The pair labels come from the sounding map (:func:`pcas_core.method.crops.pair_labels`) and carry no
    gradient. ToCo takes |cos|; PCAS and docs/method.md §3 write cos, so negative pairs are pushed towards
    opposite directions: the minimum is -0.5 (same-label tokens equal, different-label tokens
    opposite); with no pair of a kind that term is 0 (constant, no gradient).

    Args:
        tokens: (B, N, D) float final-layer patch tokens P.
        same: (B, N, N) float mask of pairs with A_ij = 1 (0 where ignored).
        different: (B, N, N) float mask of pairs with A_ij = 0 (0 where ignored).

    Returns:
        Scalar loss in [-0.5, 1].
    """
    if tokens.ndim != 3 or same.shape != different.shape or \
            same.shape != (tokens.shape[0], tokens.shape[1], tokens.shape[1]):
        raise ValueError(f"expected tokens (B, N, D) and pair masks (B, N, N), got "
                         f"{tuple(tokens.shape)}, {tuple(same.shape)}, {tuple(different.shape)}")
    unit = F.normalize(tokens, dim=-1, eps=1e-8)
    cos = unit @ unit.transpose(1, 2)
    return 0.5 * (1.0 - _masked_mean(cos, same)) + 0.5 * _masked_mean(cos, different)


def cmcc_loss(global_head: Tensor, crop_heads: Tensor, positive: Tensor, temperature: float = 0.5,
              eps: float = 1e-4) -> Tensor:
    """Cross-Modal Class-token Contrast, InfoNCE of local crops against the global view
    (PCAS Eq. 3, docs/method.md §3; ToCo's ``CTCLoss_neg``).

    With s_k = h_g . h_k / tau (h L2-normalised, so h_g . h_k is a cosine), for each frame:
    L = -(1/N+) sum_{k in pos} log( e^{s_k} / (e^{s_k} + sum_{n in neg} e^{s_n} + eps) ),
    the negatives n being the negative crops of the same frame, and N+ the number of positive
    crops in the whole batch (the sum runs over all of them). 0 when no crop is positive.

    Args:
        global_head: (F, d) float h_g of each frame's global view; the caller passes the EMA
            head's output on the detached global token (no gradient is meant to reach it).
        crop_heads: (F, K, d) float h_k of the K crops of each frame.
        positive: (F, K) float mask, 1 for positive crops, 0 for negative ones.
        temperature: tau.
        eps: the small constant of the denominator.

    Returns:
        Scalar loss >= 0 up to eps: near 0 when every positive crop matches h_g and every negative
        one points away, large when they are swapped.
    """
    if crop_heads.ndim != 3 or global_head.shape != (crop_heads.shape[0], crop_heads.shape[2]) \
            or positive.shape != crop_heads.shape[:2]:
        raise ValueError(f"expected global (F, d), crops (F, K, d), positive (F, K); got "
                         f"{tuple(global_head.shape)}, {tuple(crop_heads.shape)}, "
                         f"{tuple(positive.shape)}")
    g = F.normalize(global_head, dim=-1)
    h = F.normalize(crop_heads, dim=-1)
    s = torch.einsum("fd,fkd->fk", g, h) / temperature
    positive = positive.to(s.dtype)
    negatives = (torch.exp(s) * (1.0 - positive)).sum(dim=1, keepdim=True)
    log_ratio = s - torch.log(torch.exp(s) + negatives + eps)
    return -_masked_mean(log_ratio, positive)


def segmentation_ce(logits: Tensor, target: Tensor, *, background_weight: float,
                    ignore_index: int) -> Tensor:
    """Pixel cross-entropy of the segmentation head against pseudo-masks (docs/method.md §5), class 0
    (background) weighted ``background_weight`` and every other class 1, pixels labelled
    ``ignore_index`` left out: sum_p w(y_p) CE_p / sum_p w(y_p) over labelled pixels (of the
    global batch in a distributed step).

    Args:
        logits: (B, K, H, W) float class logits at the target's size.
        target: (B, H, W) long class index per pixel.

    Returns:
        Scalar loss; 0 when the head puts all mass on the labelled class everywhere.
    """
    if logits.ndim != 4 or target.shape != (logits.shape[0], *logits.shape[2:]):
        raise ValueError(f"expected logits (B, K, H, W) and target (B, H, W), got "
                         f"{tuple(logits.shape)} and {tuple(target.shape)}")
    weight = torch.ones(logits.shape[1], device=logits.device)
    weight[0] = background_weight
    pixel = F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="none")
    pixel_weight = weight[target.clamp_max(len(weight) - 1)] * (target != ignore_index)
    return mean_over_ranks(pixel, pixel_weight)
