"""Tests for pcas_core.method.crf: DenseCRF and CRFPool."""

import numpy as np
import pytest

from pcas_core.method.crf import CRFPool, DenseCRF, refine_frames, refine_kept
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


def test_crf_pool_gives_each_frame_what_dense_crf_gives_whatever_the_workers():
    """Four frames of different noise refined in two worker processes: the same marginals, in
    the same order, as DenseCRF frame by frame (and as the pool in this process)."""
    frames = [_two_halves(24, 24, seed=s) for s in range(4)]
    images, probs = [f[0] for f in frames], [f[1] for f in frames]
    cfg = CRFConfig(iterations=3)
    want = [DenseCRF(cfg)(i, p) for i, p in zip(images, probs)]
    with CRFPool(cfg, workers=2) as pool:
        got = refine_frames(pool, images, probs)
    with CRFPool(cfg, workers=1) as here:
        alone = here.map(images, probs)
    for w, g, a in zip(want, got, alone):
        np.testing.assert_array_equal(g, w)
        np.testing.assert_array_equal(a, w)
    assert not np.array_equal(want[0], want[1])  # the frames differ, so the order is checked
    assert [o.shape for o in refine_frames(DenseCRF(cfg), images, probs)] == [(2, 24, 24)] * 4
    with pytest.raises(ValueError, match="pseudo_masks.workers"):
        CRFPool(cfg, workers=0)


def _gated(image, two, n_classes=12, kept=3):
    """The two-class probabilities spread into n_classes, as a gated head's softmax gives them:
    background = class 0, the foreground = class ``kept``; every other class exactly 0."""
    probs = np.zeros((n_classes,) + two.shape[1:], dtype=np.float32)
    probs[0], probs[kept] = two[0], two[1]
    return probs


def test_crf_on_the_kept_labels_gives_the_full_label_sets_masks():
    """A gated frame (background + one heard class of 12, the rest 0): the CRF on the two kept
    labels gives the masks of the CRF on all 12 (the zero classes only ever hold the clipped
    unary's mass) and marginals that sum to 1 over the kept labels; a frame with background
    alone is kept as is. (The time it saves is measured by the evaluate stage's log, not here.)"""
    frames = [_two_halves(48, 48, seed=s) for s in range(3)]
    images = [f[0] for f in frames]
    probs = [_gated(f[0], f[1]) for f in frames]
    crf = DenseCRF(CRFConfig(iterations=5))
    full = refine_frames(crf, images, probs)
    keep = [np.array([0, 3])] * 3
    kept = refine_kept(crf, images, probs, keep)
    for f, k, (_, _, truth) in zip(full, kept, frames):
        assert k.shape == (2, 48, 48)
        np.testing.assert_array_equal(keep[0][k.argmax(0)], f.argmax(0))
        assert (keep[0][k.argmax(0)] == np.where(truth == 1, 3, 0)).mean() > 0.98
        np.testing.assert_allclose(k.sum(0), 1.0, atol=1e-4)
    only_bg = np.zeros_like(probs[0])
    only_bg[0] = 1.0
    out = refine_kept(crf, images[:1], [only_bg], [np.array([0])])
    np.testing.assert_array_equal(out[0], only_bg[:1])
    with pytest.raises(ValueError, match="2 label sets for 3 frames"):
        refine_kept(crf, images, probs, keep[:2])
