"""Per-frame pseudo-masks from CAMs, sounding maps and audio logits (docs/method.md §4).

For one frame: sounding classes ``K_t = {k : sigmoid(s_t,k) >= theta_a}``; class maps
``M_k = minmax(relu(CAM_k)) * S_t^gamma`` (:func:`pcas_core.method.cam.class_score_maps`), upsampled
bilinearly to the frame; a constant background score b; argmax over ``[b, M_k ...]``, optionally
after a dense CRF (Krähenbühl & Koltun 2011). Optional ToCo trick (Ru et al. 2023, ``utils/camutils.py``):
make the mask at two background scores and mark pixels where they disagree ``IGNORE_INDEX``.

Masks hold class indices: 0 background, ``k + 1`` for foreground logit column k, 255 ignore.
Frames are independent: :mod:`pcas_core.pipeline.pseudo_masks` spreads them over processes.
The parameters are the ``pseudo_masks`` section's typed config,
:class:`pcas_core.params.PseudoMasksConfig` (one set of defaults, those of ``params.yaml``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from pcas_core.method.cam import class_score_maps
from pcas_core.data.constants import IGNORE_INDEX
from pcas_core.method.crf import DenseCRF
from pcas_core.params.masks import PseudoMasksConfig

__all__ = ["PseudoMasksConfig", "sounding_classes", "upsampled_class_scores", "scores_to_probs",
           "mask_at_bg_score", "frame_pseudo_mask"]


def sounding_classes(audio_logits: np.ndarray, threshold: float) -> np.ndarray:
    """Foreground columns k with ``sigmoid(audio_logits[k]) >= threshold`` (docs/method.md §4, K_t).

    Args:
        audio_logits: ``(K,)`` float logits of one frame's time step.
        threshold: probability threshold theta_a in [0, 1].

    Returns:
        ``(k,)`` int64 sorted column indices (add 1 for class indices).
    """
    probs = 1.0 / (1.0 + np.exp(-np.asarray(audio_logits, dtype=np.float64)))
    return np.flatnonzero(probs >= threshold).astype(np.int64)


def upsampled_class_scores(
    cams: np.ndarray, sounding: np.ndarray, classes: np.ndarray, gamma: float, size: tuple[int, int]
) -> np.ndarray:
    """Score maps of the sounding classes, bilinearly upsampled (``align_corners=False``) to ``size``.

    Args:
        cams: ``(K, h, w)`` float raw CAMs; sounding: ``(h, w)`` float in [0, 1];
        classes: ``(k,)`` int column indices; gamma: sounding exponent; size: ``(H, W)`` pixels.

    Returns:
        ``(k, H, W)`` float32 scores in [0, 1].
    """
    maps = class_score_maps(
        torch.as_tensor(cams, dtype=torch.float32),
        torch.as_tensor(sounding, dtype=torch.float32),
        torch.as_tensor(classes, dtype=torch.int64),
        gamma=gamma,
    )
    up = F.interpolate(maps[None], size=size, mode="bilinear", align_corners=False)[0]
    return up.clamp(0.0, 1.0).numpy().astype(np.float32)


def scores_to_probs(scores: np.ndarray, floor: float) -> np.ndarray:
    """Turn stacked non-negative scores into a per-pixel distribution: ``max(s, floor) / sum``.

    No softmax: like ToCo, the scores are used as a distribution once normalised, so a score
    twice another stays twice as likely. The floor keeps every class possible and avoids 0/0.

    Args:
        scores: ``(C, H, W)`` float scores >= 0. floor: positive lower clamp.

    Returns:
        ``(C, H, W)`` float32 probabilities summing to 1 over C.
    """
    clamped = np.maximum(scores.astype(np.float64), floor)
    return (clamped / clamped.sum(axis=0, keepdims=True)).astype(np.float32)


def mask_at_bg_score(
    image: np.ndarray, fg_scores: np.ndarray, classes: np.ndarray, bg_score: float, cfg: PseudoMasksConfig
) -> np.ndarray:
    """Class-index mask from ``argmax([b, M_k ...])``, CRF-refined when ``cfg.use_crf``.

    Args:
        image: ``(H, W, 3)`` uint8; fg_scores: ``(k, H, W)`` float32; classes: ``(k,)`` columns;
        bg_score: constant background score b; cfg: the configuration.

    Returns:
        ``(H, W)`` uint8 mask: 0 background, ``classes[j] + 1`` where map j wins.
    """
    bg = np.full((1,) + fg_scores.shape[1:], bg_score, dtype=np.float32)
    stacked = np.concatenate([bg, fg_scores], axis=0)
    if cfg.use_crf:
        stacked = DenseCRF(cfg.crf)(image, scores_to_probs(stacked, cfg.score_floor))
    lut = np.concatenate([[0], classes + 1]).astype(np.uint8)
    return lut[np.argmax(stacked, axis=0)]


def _check_frame(image: np.ndarray, cams: np.ndarray, sounding: np.ndarray, audio_logits: np.ndarray) -> None:
    """Raise ``ValueError`` unless the layouts are H x W x 3 uint8, K x h x w, h x w and (K,)."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be H x W x 3 uint8, got {image.dtype} {image.shape}")
    if cams.ndim != 3:
        raise ValueError(f"cams must be K x h x w, got shape {cams.shape}")
    if sounding.shape != cams.shape[1:]:
        raise ValueError(f"sounding must be h x w = {cams.shape[1:]}, got {sounding.shape}")
    if audio_logits.shape != (cams.shape[0],):
        raise ValueError(f"audio_logits must be (K,) = ({cams.shape[0]},), got {audio_logits.shape}")
    if cams.shape[0] >= IGNORE_INDEX:
        raise ValueError(
            f"at most {IGNORE_INDEX - 1} foreground classes fit a uint8 mask, got {cams.shape[0]}"
        )


def frame_pseudo_mask(
    image: np.ndarray, cams: np.ndarray, sounding: np.ndarray, audio_logits: np.ndarray, cfg: PseudoMasksConfig
) -> np.ndarray:
    """Pseudo-mask of one frame (docs/method.md §4).

    Args:
        image: ``(H, W, 3)`` uint8 RGB frame.
        cams: ``(K, h, w)`` float32 raw CAMs (K = 70: column k is class index k + 1).
        sounding: ``(h, w)`` float32 sounding map in [0, 1].
        audio_logits: ``(K,)`` float32 audio logits of the frame's time step.
        cfg: :class:`PseudoMasksConfig`.

    Returns:
        ``(H, W)`` uint8 class indices: 0 background, k + 1 foreground, 255 where the two
        background scores disagree (only with ``cfg.two_scores``). No sounding class: all 0,
        so a silent object is never segmented.

    Raises:
        ValueError: on wrong layouts or dtypes (see :func:`_check_frame`).
    """
    _check_frame(image, cams, sounding, audio_logits)
    size = image.shape[:2]
    classes = sounding_classes(audio_logits, cfg.audio_threshold)
    if classes.size == 0:
        return np.zeros(size, dtype=np.uint8)
    fg = upsampled_class_scores(cams, sounding, classes, cfg.gamma, size)
    if not cfg.two_scores:
        return mask_at_bg_score(image, fg, classes, cfg.bg_score, cfg)
    low = mask_at_bg_score(image, fg, classes, cfg.bg_score_low, cfg)
    high = mask_at_bg_score(image, fg, classes, cfg.bg_score_high, cfg)
    return np.where(low == high, low, np.uint8(IGNORE_INDEX)).astype(np.uint8)
