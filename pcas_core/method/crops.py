"""Labels of the token-wise contrasts (docs/method.md §3, Eqs. 2-3): patch labels from the sounding map
or from the CAM (ToCo's PTC labels), pair labels between patches, local crops of the frames and
their positive/negative labels.

Everything here runs on the tensors' device without a host-device synchronisation (no ``.item()``,
no boolean indexing): labels are returned as masks that the losses use as weights.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from pcas_core.method.cam import minmax_normalize

__all__ = ["IGNORE", "patch_labels", "cam_patch_labels", "pair_labels", "sample_crop_boxes",
           "take_crops", "crop_labels"]

IGNORE = -1
"""Patch label of a patch in the ignore band theta_lo < S < theta_hi (or max CAM score in it)."""


def _check_thresholds(theta_hi: float, theta_lo: float) -> None:
    if not 0.0 <= theta_lo < theta_hi <= 1.0:
        raise ValueError(f"need 0 <= theta_lo < theta_hi <= 1, got theta_lo={theta_lo}, "
                         f"theta_hi={theta_hi}")


def patch_labels(sounding: Tensor, theta_hi: float, theta_lo: float) -> Tensor:
    """Patch labels l_i from a min-max normalised sounding map (docs/method.md §3, CMPC).

    l_i = 1 where S[i] >= theta_hi, 0 where S[i] <= theta_lo, :data:`IGNORE` (-1) in between
    (the two thresholds of ToCo's ``cam_to_label``, applied to the sounding map).

    Args:
        sounding: (B, N) or (B, h, w) float, values in [0, 1].
        theta_hi, theta_lo: thresholds, 0 <= theta_lo < theta_hi <= 1.

    Returns:
        int8 tensor of the shape of ``sounding`` with values 1, 0, -1.

    Raises:
        ValueError: thresholds out of order or outside [0, 1].
    """
    _check_thresholds(theta_hi, theta_lo)
    labels = torch.full_like(sounding, IGNORE, dtype=torch.int8)
    labels = torch.where(sounding >= theta_hi, torch.ones_like(labels), labels)
    return torch.where(sounding <= theta_lo, torch.zeros_like(labels), labels)


def cam_patch_labels(cam: Tensor, video_labels: Tensor, theta_hi: float,
                     theta_lo: float) -> Tensor:
    """Multi-class patch labels from class activation maps, ToCo's PTC labels (Ru et al. 2023,
    ``cam_to_label(..., ignore_mid=True)`` on the auxiliary CAM), for CMPC and CMCC.

    Each class map is brought to [0, 1] per frame, M_k = minmax_{h, w}(relu(CAM_k)) (as ToCo's
    ``multi_scale_cam2`` and docs/method.md §4's class maps), and zeroed for the classes that are not
    among the frame's video labels, so such a class never wins. With m = max_k M_k at a patch:
    label k + 1 (the argmax column k, i.e. class index k + 1) where m >= theta_hi, background 0
    where m <= theta_lo, :data:`IGNORE` in between. ToCo's foreground test is the strict
    m > theta_hi; pcas keeps the inclusive test of :func:`patch_labels`. A frame whose video has
    no label is all background. Pass a detached CAM (it is a pseudo-label); nothing here syncs.

    Args:
        cam: (F, C, h, w) float raw CAM_k = P_t W_v[k] of each frame (C foreground columns).
        video_labels: (F, C) multi-hot labels of each frame's video (float or bool).
        theta_hi, theta_lo: thresholds, 0 <= theta_lo < theta_hi <= 1.

    Returns:
        (F, h, w) int16 labels: 0 background, 1..C the class index, -1 ignored.

    Raises:
        ValueError: bad layouts or thresholds.
    """
    _check_thresholds(theta_hi, theta_lo)
    if cam.ndim != 4 or video_labels.shape != cam.shape[:2]:
        raise ValueError(f"expected cam (F, C, h, w) and video labels (F, C), got "
                         f"{tuple(cam.shape)} and {tuple(video_labels.shape)}")
    scores = minmax_normalize(torch.relu(cam.float()), dims=(2, 3))
    scores = scores * (video_labels > 0).to(scores.dtype)[:, :, None, None]
    best, column = scores.max(dim=1)                                   # (F, h, w)
    labels = torch.full(best.shape, IGNORE, dtype=torch.int16, device=cam.device)
    labels = torch.where(best >= theta_hi, (column + 1).to(torch.int16), labels)
    return torch.where(best <= theta_lo, torch.zeros_like(labels), labels)


def pair_labels(labels: Tensor) -> tuple[Tensor, Tensor]:
    """Pair label masks A of Eq. 2 from patch labels, as two float masks.

    A_ij = 1 if l_i = l_j, 0 if they differ; ignored if either patch is ignored or i = j. The
    labels may be binary (:func:`patch_labels`) or multi-class (:func:`cam_patch_labels`): two
    patches of different foreground classes are a negative pair, as background and foreground.

    Args:
        labels: (B, N) int patch labels (0 background, >= 1 foreground, or :data:`IGNORE`).

    Returns:
        ``(same, different)``, each (B, N, N) float32 with 1 where A_ij = 1 (resp. A_ij = 0) and
        0 elsewhere; ignored pairs are 0 in both.
    """
    if labels.ndim != 2:
        raise ValueError(f"expected patch labels (B, N), got {tuple(labels.shape)}")
    valid = labels != IGNORE
    both = valid[:, :, None] & valid[:, None, :]
    both &= ~torch.eye(labels.shape[1], dtype=torch.bool, device=labels.device)
    equal = labels[:, :, None] == labels[:, None, :]
    return (both & equal).float(), (both & ~equal).float()


def sample_crop_boxes(n_frames: int, n_crops: int, frame_size: tuple[int, int], crop_size: int,
                      generator: torch.Generator) -> Tensor:
    """Top-left corners of ``n_crops`` square crops per frame, uniform over the valid positions.

    Drawn on the CPU from ``generator`` (so a seed fixes them and no device is waited for);
    move the result to the frames' device. ToCo draws its crop centres from the CAM's uncertain
    region (``crop_from_roi_neg``); PCAS says only "K local crops per frame", so pcas draws them
    uniformly and lets the sounding map decide their labels.

    Args:
        n_frames, n_crops: F frames, K crops each.
        frame_size: (H, W) frame size in pixels.
        crop_size: crop side c in pixels, c <= min(H, W).

    Returns:
        (F, K, 2) int64 (y0, x0).

    Raises:
        ValueError: crop larger than the frame, or not positive.
    """
    h, w = frame_size
    if not 0 < crop_size <= min(h, w):
        raise ValueError(f"crop size {crop_size} must be in [1, {min(h, w)}] for {h}x{w} frames")
    y0 = torch.randint(0, h - crop_size + 1, (n_frames, n_crops), generator=generator)
    x0 = torch.randint(0, w - crop_size + 1, (n_frames, n_crops), generator=generator)
    return torch.stack([y0, x0], dim=-1)


def take_crops(images: Tensor, boxes: Tensor, crop_size: int) -> Tensor:
    """Cut square crops out of images by gather (one indexing op, no loop, no sync).

    Args:
        images: (F, C, H, W) any dtype.
        boxes: (F, K, 2) int64 top-left (y0, x0) on the images' device.
        crop_size: c.

    Returns:
        (F, K, C, c, c), crop k of image f in ``[f, k]``.
    """
    f, k, _ = boxes.shape
    offsets = torch.arange(crop_size, device=images.device)
    rows = (boxes[..., 0, None] + offsets)[:, :, :, None]   # (F, K, c, 1)
    cols = (boxes[..., 1, None] + offsets)[:, :, None, :]   # (F, K, 1, c)
    frame = torch.arange(f, device=images.device)[:, None, None, None]
    crops = images.movedim(1, -1)[frame, rows, cols]         # (F, K, c, c, C)
    return crops.movedim(-1, 2)


def crop_labels(labels: Tensor, boxes: Tensor, crop_size: int, frame_size: tuple[int, int],
                rho: float) -> Tensor:
    """Positive/negative label of each crop (docs/method.md §3, CMCC).

    A crop is positive when at least ``rho`` of its pixels lie in foreground patches (l >= 1:
    sounding for :func:`patch_labels`, any class for :func:`cam_patch_labels`; ignored patches
    count as background), negative otherwise. The patch grid is brought to pixels by
    nearest-neighbour upsampling. The test is on integer pixel counts: positive iff
    ``count >= ceil(rho * c * c)`` (up to 1e-9 of float rounding), so a crop exactly at ``rho`` is
    positive.

    Args:
        labels: (F, h, w) int patch labels of the frames (0, >= 1, or :data:`IGNORE`).
        boxes: (F, K, 2) int64 top-left corners, on the labels' device.
        crop_size: c in pixels.
        frame_size: (H, W) of the frames the boxes refer to.
        rho: area fraction in [0, 1].

    Returns:
        (F, K) float32 mask, 1 for positive crops.
    """
    if not 0.0 <= rho <= 1.0:
        raise ValueError(f"rho must be in [0, 1], got {rho}")
    if labels.ndim != 3:
        raise ValueError(f"expected patch labels (F, h, w), got {tuple(labels.shape)}")
    foreground = (labels > 0).float()[:, None]
    pixels = F.interpolate(foreground, size=tuple(frame_size), mode="nearest")
    count = take_crops(pixels, boxes, crop_size).sum(dim=(-3, -2, -1))
    needed = math.ceil(rho * crop_size * crop_size - 1e-9)
    return (count >= needed).float()
