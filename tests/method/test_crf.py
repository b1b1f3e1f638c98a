"""Tests for pcas_core.method.crf.DenseCRF."""

import numpy as np
import pytest

from pcas_core.method.crf import DenseCRF
from pcas_core.params.masks import CRFConfig


def _two_halves(h=32, w=32, seed=0):
    """Image: left half dark red, right half bright blue; probs: class 1 right, 30% pixels flipped."""
    image = np.zeros((h, w, 3), dtype=np.uint8)
    image[:, : w // 2] = (200, 20, 20)
    image[:, w // 2:] = (20, 20, 220)
    truth = np.zeros((h, w), dtype=np.int64)
    truth[:, w // 2:] = 1
    rng = np.random.default_rng(seed)
    noisy = np.where(rng.random((h, w)) < 0.3, 1 - truth, truth)
    p1 = np.where(noisy == 1, 0.6, 0.4).astype(np.float32)
    return image, np.stack([1 - p1, p1]).astype(np.float32), truth


def test_crf_cleans_noise_along_colour_edge():
    image, probs, truth = _two_halves()
    before = (probs.argmax(0) == truth).mean()
    out = DenseCRF()(image, probs)
    after = (out.argmax(0) == truth).mean()
    assert out.shape == probs.shape and out.dtype == np.float32
    assert np.allclose(out.sum(0), 1.0, atol=1e-4)
    assert before < 0.75
    assert after > 0.98


def test_crf_rejects_bad_inputs():
    image, probs, _ = _two_halves(8, 8)
    crf = DenseCRF(CRFConfig(iterations=1))
    with pytest.raises(ValueError, match="H x W x 3 uint8"):
        crf(image.astype(np.float32), probs)
    with pytest.raises(ValueError, match="C x H x W float32"):
        crf(image, probs.astype(np.float64))
    with pytest.raises(ValueError, match="spatial size"):
        crf(image, probs[:, :4])
    with pytest.raises(ValueError, match="sum to 1"):
        crf(image, probs * 2)
