"""Fully connected CRF refinement (Krähenbühl & Koltun 2011, NeurIPS), via pydensecrf.

Follows ToCo's ``utils/dcrf.py``: one callable class whose kernel parameters all live in
``params.yaml`` (:class:`pcas_core.params.masks.CRFConfig`, the one set of defaults).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pydensecrf.densecrf as dcrf
from pydensecrf.utils import unary_from_softmax

from pcas_core.params.masks import CRFConfig
from pcas_core.runtime.workers import WorkerPool


class DenseCRF:
    """Mean-field inference in a dense CRF with a Gaussian and a bilateral pairwise kernel.

    Energy (Krähenbühl & Koltun 2011, Eq. 1-3): unary ``-log p(x_i)`` plus Potts pairwise terms
    ``gaussian_compat * exp(-|p_i - p_j|^2 / (2 gaussian_sxy^2))`` +
    ``bilateral_compat * exp(-|p_i - p_j|^2 / (2 bilateral_sxy^2) - |I_i - I_j|^2 / (2 bilateral_srgb^2))``.

    Args:
        cfg: the kernel parameters (``pseudo_masks.crf``, used by the pseudo-masks and the head in
            ``params.yaml``), whose defaults are the documented ones: ``iterations`` mean-field
            iterations; ``gaussian_sxy`` / ``bilateral_sxy`` spatial stds in pixels;
            ``bilateral_srgb`` colour std in 0-255 intensity units; ``*_compat`` Potts weights;
            ``unary_clip`` the floor probabilities are clipped to before ``-log``
            (pydensecrf's ``unary_from_softmax(clip=...)``), so a zero score gives a finite unary.

    Raises:
        ValueError: ``cfg.iterations`` < 0.
    """

    def __init__(self, cfg: CRFConfig = CRFConfig()) -> None:
        if cfg.iterations < 0:
            raise ValueError(f"crf.iterations must be >= 0, got {cfg.iterations}")
        self.cfg = cfg

    def __call__(self, image: np.ndarray, probs: np.ndarray) -> np.ndarray:
        """Refine per-pixel class probabilities with the image's colours.

        Args:
            image: ``(H, W, 3)`` uint8 RGB frame (copied to C-contiguous memory if needed).
            probs: ``(C, H, W)`` float32 class probabilities, C >= 2, summing to 1 over C.

        Returns:
            ``(C, H, W)`` float32 refined marginals (sum to 1 over C).

        Raises:
            ValueError: if ``image`` is not ``H x W x 3`` uint8, ``probs`` is not ``C x H x W``
                float32 with C >= 2 and the image's H, W, or ``probs`` does not sum to 1 over C.
        """
        self._check(image, probs)
        c, h, w = probs.shape
        cfg = self.cfg
        unary = np.ascontiguousarray(unary_from_softmax(probs, clip=cfg.unary_clip))
        crf = dcrf.DenseCRF2D(w, h, c)
        crf.setUnaryEnergy(unary)
        crf.addPairwiseGaussian(sxy=cfg.gaussian_sxy, compat=cfg.gaussian_compat)
        crf.addPairwiseBilateral(sxy=cfg.bilateral_sxy, srgb=cfg.bilateral_srgb,
                                 rgbim=np.ascontiguousarray(image), compat=cfg.bilateral_compat)
        q = crf.inference(cfg.iterations)
        return np.asarray(q, dtype=np.float32).reshape(c, h, w)

    @staticmethod
    def _check(image: np.ndarray, probs: np.ndarray) -> None:
        """Raise ``ValueError`` unless image is ``H x W x 3`` uint8 and probs ``C x H x W`` float32."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image must be H x W x 3 uint8, got {image.dtype} {image.shape}")
        if probs.ndim != 3 or probs.dtype != np.float32 or probs.shape[0] < 2:
            raise ValueError(f"probs must be C x H x W float32 with C >= 2, got {probs.dtype} {probs.shape}")
        if probs.shape[1:] != image.shape[:2]:
            raise ValueError(f"probs spatial size {probs.shape[1:]} must equal image H x W {image.shape[:2]}")
        if not np.allclose(probs.sum(axis=0), 1.0, atol=1e-3):
            raise ValueError("probs must sum to 1 over the class axis C")


def _refine_job(args: tuple[np.ndarray, np.ndarray, CRFConfig]) -> np.ndarray:
    """One frame of :meth:`CRFPool.map`, in a worker (``DenseCRF`` holds only its config)."""
    image, probs, cfg = args
    return DenseCRF(cfg)(image, probs)


class CRFPool:
    """A :class:`DenseCRF` that refines many frames at once in worker processes
    (:class:`pcas_core.runtime.workers.WorkerPool`), or in this process when ``workers == 1``.
    Use as a context manager.

    Frames are independent and each is refined by the same deterministic pydensecrf call, so the
    result does not depend on ``workers`` (the pool keeps the order). Called with one frame
    (``pool(image, probs)``) it refines in this process, like :class:`DenseCRF`.

    Args:
        cfg: the kernel parameters, as :class:`DenseCRF`.
        workers: processes (``pseudo_masks.workers``); 1 runs in this process.
        mp_context: multiprocessing start method ("spawn": no fork of torch's thread pools).

    Raises:
        ValueError: ``workers`` < 1, or as :class:`DenseCRF`.
    """

    def __init__(self, cfg: CRFConfig = CRFConfig(), workers: int = 1,
                 mp_context: str = "spawn") -> None:
        self.crf = DenseCRF(cfg)
        self._pool = WorkerPool(workers, mp_context, key="pseudo_masks.workers")

    def __enter__(self) -> CRFPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.__exit__(*exc)

    def close(self) -> None:
        """End the workers after their work; later frames are refined in this process."""
        self._pool.close()

    def __call__(self, image: np.ndarray, probs: np.ndarray) -> np.ndarray:
        return self.crf(image, probs)

    def map(self, images: Sequence[np.ndarray], probs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Refine m frames: ``images`` (H, W, 3) uint8 and ``probs`` (C, H, W) float32 each, as
        :meth:`DenseCRF.__call__`; returns their (C, H, W) float32 marginals in order."""
        cfg = self.crf.cfg
        return list(self._pool.imap(_refine_job, ((i, p, cfg) for i, p in zip(images, probs))))


def refine_frames(crf: Callable[[np.ndarray, np.ndarray], np.ndarray],
                  images: Sequence[np.ndarray], probs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """``crf`` on m frames: in its workers for a :class:`CRFPool`, else frame by frame (a
    :class:`DenseCRF` or any callable ``(image (H, W, 3) uint8, probs (C, H, W) float32) ->
    (C, H, W) float32``)."""
    if isinstance(crf, CRFPool):
        return crf.map(images, probs)
    return [crf(i, p) for i, p in zip(images, probs)]


def refine_kept(crf: Callable[[np.ndarray, np.ndarray], np.ndarray],
                images: Sequence[np.ndarray], probs: Sequence[np.ndarray],
                labels: Sequence[np.ndarray]) -> list[np.ndarray]:
    """:func:`refine_frames` on each frame's kept labels only (a gated head: background and K_t).

    The other classes' probabilities must be 0. Mean-field on a Potts model moves no mass to a
    label that is 0 everywhere beyond the clipped unary (``unary_clip`` each), so the kept
    labels' argmax is the one of the CRF on all C labels, at a cost that grows with the labels
    kept, not with C (71 on AVSS), and nothing of size C x H x W is built.

    Args:
        images: m ``(H, W, 3)`` uint8 frames.
        probs: m ``(C, H, W)`` float32 class probabilities.
        labels: per frame, the ascending int indices of the classes it may hold, whose
            probabilities sum to 1. A frame with one label keeps its probabilities.

    Returns:
        m ``(len(labels[k]), H, W)`` float32 marginals of the kept labels, in their order.

    Raises:
        ValueError: ``labels`` not one per frame, or as :meth:`DenseCRF.__call__`.
    """
    if len(labels) != len(probs):
        raise ValueError(f"{len(labels)} label sets for {len(probs)} frames")
    out = [p[keep] for p, keep in zip(probs, labels)]
    todo = [k for k, keep in enumerate(labels) if len(keep) >= 2]
    for k, part in zip(todo, refine_frames(crf, [images[k] for k in todo], [out[k] for k in todo])):
        out[k] = part
    return out
