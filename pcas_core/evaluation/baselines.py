"""Sanity baselines, scored beside the method in both metric modes: what trivial predictors reach.

- ``background``: every pixel background; the floor (its mIoU is the background IoU / 71).
- ``listening``: listening only: each frame filled entirely with its most confident
  audio-predicted class (foreground column k with the largest ``sigmoid(s_t,k)``), background
  where no class reaches theta_a (``pseudo_masks.audio_threshold``, docs/method.md §4, so like is
  compared with like). It knows *what* sounds but not *where*.
- ``looking``: looking only: the pseudo-mask machinery of ``pseudo_masks`` (its background score,
  CRF and workers) with the sounding map ignored (S = 1 everywhere, so ``M_k =
  minmax(relu(CAM_k))``) and the classes taken from the visual classifier's own frame logits
  (``sigmoid >= visual_threshold``) instead of the audio. It knows *where* objects are but cannot
  tell a silent object from a sounding one.

Official-mode padded frames (:mod:`pcas_core.evaluation.official`, quirk 1) carry no audio (the
official test zeroes the audio features of padded steps), so ``background`` and ``listening``
predict background there; ``looking`` gets the CAMs and logits of the padded input from the
caller (the ViT run on an all-zero normalised frame).
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np

from pcas_core.evaluation.scoring import Prediction
from pcas_core.params import BaselinesConfig, PseudoMasksConfig
from pcas_core.pipeline.pseudo_masks import PseudoMaskPool, pseudo_masks
from pcas_core.runtime.progress import Progress

__all__ = ["BASELINES", "background_masks", "listening_masks", "looking_config", "looking_masks",
           "padded_baselines", "baseline_masks", "sanity_baselines"]

BASELINES = ("background", "listening", "looking")


def background_masks(n_frames: int, size: tuple[int, int]) -> np.ndarray:
    """``(n_frames, H, W)`` uint8 zeros: background everywhere."""
    return np.zeros((n_frames, *size), dtype=np.uint8)


def listening_masks(audio_logits: np.ndarray, size: tuple[int, int], threshold: float) -> np.ndarray:
    """Each frame filled with its most confident audio class, or background.

    Args:
        audio_logits: ``(M, K)`` float step logits s_t of each frame (K = 70: column k is class
            index k + 1).
        size: ``(H, W)`` pixels.
        threshold: probability in [0, 1] the top class must reach (``sigmoid(logit) >= threshold``).

    Returns:
        ``(M, H, W)`` uint8 masks, constant per frame: ``argmax_k s_t,k + 1`` or 0.

    Raises:
        ValueError: ``audio_logits`` not 2-D, or ``threshold`` outside [0, 1].
    """
    if audio_logits.ndim != 2:
        raise ValueError(f"audio_logits must be M x K, got shape {audio_logits.shape}")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    logits = np.asarray(audio_logits, dtype=np.float64)
    top = logits.argmax(axis=1)
    prob = 1.0 / (1.0 + np.exp(-logits[np.arange(len(logits)), top]))
    cls = np.where(prob >= threshold, top + 1, 0).astype(np.uint8)
    return np.broadcast_to(cls[:, None, None], (len(cls), *size)).copy()


def looking_config(masks: PseudoMasksConfig, threshold: float) -> PseudoMasksConfig:
    """The pseudo-mask configuration of :func:`looking_masks`: ``masks`` with the classes taken
    at ``threshold``, no sounding-map exponent and one background score (ToCo's two-score trick
    is not applied to a baseline); a :class:`PseudoMaskPool` for the looking baseline is made
    with it."""
    return replace(masks, audio_threshold=threshold, gamma=1.0, bg_score_low=None,
                   bg_score_high=None)


def looking_masks(images: np.ndarray, cams: np.ndarray, visual_logits: np.ndarray, *,
                  threshold: float, masks: PseudoMasksConfig,
                  pool: PseudoMaskPool | None = None, log: logging.Logger | None = None,
                  progress: Progress | None = None) -> np.ndarray:
    """CAM pseudo-masks of the classes the visual classifier predicts, with no audio.

    :func:`pcas_core.pipeline.pseudo_masks.pseudo_masks` with a sounding map of ones and the
    visual frame logits in place of the audio logits, so classes are ``sigmoid(visual logit) >=
    threshold``; background score, CRF and workers as ``masks`` says (:func:`looking_config`).

    Args:
        images: ``(M, H, W, 3)`` uint8 frames.
        cams: ``(M, K, h, w)`` float raw CAMs.
        visual_logits: ``(M, K)`` float frame logits of the visual classifier.
        threshold: class threshold in [0, 1].
        masks: the ``pseudo_masks`` section.
        pool: worker pool made with ``looking_config(masks, threshold)``, kept over many calls
            (a pass chunk by chunk); None starts one for this call.
        log: where this call's progress lines go (without ``pool``: the CRF of every frame
            takes a while).
        progress: with ``pool``, the progress of the whole pass, updated once per frame made
            (:class:`pcas_core.runtime.progress.Progress`).

    Returns:
        ``(M, H, W)`` uint8 masks (0 background, k + 1 foreground).

    Raises:
        ValueError: layouts that disagree (see :func:`pcas_core.pipeline.pseudo_masks.pseudo_masks`).
    """
    sounding = np.ones((cams.shape[0], *cams.shape[2:]), dtype=np.float32)
    if pool is not None:
        if images.ndim != 4:
            raise ValueError("expected images M x H x W x 3")
        return pool.run(images, cams.astype(np.float32), sounding,
                        visual_logits.astype(np.float32), images.shape[1:3], progress)
    return pseudo_masks(images, cams.astype(np.float32), sounding,
                        visual_logits.astype(np.float32), looking_config(masks, threshold),
                        workers=masks.workers, desc="looking baseline", log=log)


def padded_baselines(padded_image: np.ndarray, padded_cam: np.ndarray,
                     padded_logits: np.ndarray, *, cfg: BaselinesConfig,
                     masks: PseudoMasksConfig) -> dict[str, np.ndarray | None]:
    """Each baseline's (H, W) uint8 prediction on the official padded frame (``padded_image``
    (H, W, 3) uint8, the visual classifier's ``padded_cam`` (K, h, w) and ``padded_logits``
    (K,) on it): None (background everywhere: no audio) for ``background`` and ``listening``."""
    look = looking_masks(padded_image[None], padded_cam[None], padded_logits[None],
                         threshold=cfg.visual_threshold, masks=replace(masks, workers=1))
    return {"background": None, "listening": None, "looking": look[0]}


def baseline_masks(images: np.ndarray, audio_logits: np.ndarray, cams: np.ndarray,
                   visual_logits: np.ndarray, *, cfg: BaselinesConfig,
                   masks: PseudoMasksConfig,
                   log: logging.Logger | None = None) -> dict[str, np.ndarray]:
    """The three baselines' ``(M, H, W)`` uint8 masks of M frames.

    Args:
        images, cams, visual_logits: as :func:`looking_masks`; audio_logits: as
            :func:`listening_masks` (all for the same M frames).
        cfg: the ``evaluate.baselines`` section (``visual_threshold`` of :func:`looking_masks`).
        masks: the ``pseudo_masks`` section: theta_a of :func:`listening_masks`, the machinery
            of :func:`looking_masks`.
        log: where the looking baseline's progress lines go.
    """
    size = images.shape[1:3]
    return {"background": background_masks(len(images), size),
            "listening": listening_masks(audio_logits, size, masks.audio_threshold),
            "looking": looking_masks(images, cams, visual_logits, threshold=cfg.visual_threshold,
                                     masks=masks, log=log)}


def sanity_baselines(images: np.ndarray, audio_logits: np.ndarray, cams: np.ndarray,
                     visual_logits: np.ndarray, *, padded_image: np.ndarray,
                     padded_cam: np.ndarray, padded_logits: np.ndarray, cfg: BaselinesConfig,
                     masks: PseudoMasksConfig,
                     log: logging.Logger | None = None) -> dict[str, Prediction]:
    """The three baselines on M scored frames, each with its prediction on the padded frame
    (:func:`baseline_masks` and :func:`padded_baselines` at once).

    Args:
        images, cams, visual_logits, audio_logits, cfg, masks: as :func:`baseline_masks`.
        padded_image, padded_cam, padded_logits: as :func:`padded_baselines`.
        log: where the looking baseline's progress lines go.

    Returns:
        ``{"background": ..., "listening": ..., "looking": ...}`` :class:`Prediction` objects.
    """
    padded = padded_baselines(padded_image, padded_cam, padded_logits, cfg=cfg, masks=masks)
    made = baseline_masks(images, audio_logits, cams, visual_logits, cfg=cfg, masks=masks,
                          log=log)
    return {name: Prediction(made[name], padded_mask=padded[name]) for name in BASELINES}
