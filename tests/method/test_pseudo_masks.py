"""Tests for pcas_core.method.pseudo_masks: sounding-class masks, silent objects, ToCo's two-score trick."""

import numpy as np
import pytest

from pcas_core.data.constants import IGNORE_INDEX, NUM_FG
from pcas_core.params import CRFConfig, PseudoMasksConfig
from pcas_core.method.pseudo_masks import frame_pseudo_mask
from pcas_core.pipeline.pseudo_masks import pseudo_masks

H = W = 32  # frame size; CAMs are 16 x 16, so upsampling is x2
h = w = 16


def _cfg(**overrides) -> PseudoMasksConfig:
    """theta_a 0.5 and b 0.45, the values the geometry of :func:`_frame` is worked out for."""
    return PseudoMasksConfig(**{"audio_threshold": 0.5, "bg_score": 0.45, **overrides})


def _frame(logit=3.0, col=5):
    """A 32x32 frame with a bright square at pixels 8..19; a 16x16 CAM blob of column ``col`` at
    cells 4..9, which bilinear x2 upsampling (score 0.75 at pixel 8, 0.25 at pixel 7, bg 0.45)
    maps exactly onto pixels 8..19."""
    image = np.full((H, W, 3), 30, dtype=np.uint8)
    image[8:20, 8:20] = (230, 200, 40)
    cams = np.zeros((NUM_FG, h, w), dtype=np.float32)
    cams[col, 4:10, 4:10] = 2.0
    sounding = np.ones((h, w), dtype=np.float32)
    logits = np.full(NUM_FG, -5.0, dtype=np.float32)
    logits[col] = logit
    blob = np.zeros((H, W), dtype=bool)
    blob[8:20, 8:20] = True
    return image, cams, sounding, logits, blob


@pytest.mark.parametrize("use_crf", [False, True])
def test_sounding_blob_gets_its_class_index(use_crf):
    image, cams, sounding, logits, blob = _frame(logit=3.0, col=5)  # sigmoid(3) = 0.95 >= 0.5
    mask = frame_pseudo_mask(image, cams, sounding, logits, _cfg(use_crf=use_crf))
    assert mask.dtype == np.uint8 and mask.shape == (H, W)
    assert (mask[blob] == 6).all()
    assert (mask[~blob] == 0).all()


def test_crf_snaps_an_overwide_blob_to_the_colour_edge():
    image, cams, sounding, logits, blob = _frame()
    cams[5, 4:11, 4:11] = 2.0  # one CAM cell too wide: without CRF the mask spills to pixel 21
    plain = frame_pseudo_mask(image, cams, sounding, logits, _cfg(use_crf=False))
    refined = frame_pseudo_mask(image, cams, sounding, logits, _cfg(use_crf=True))
    assert (plain[20:22, 8:20] == 6).all()
    np.testing.assert_array_equal(refined == 6, blob)
    assert set(np.unique(refined)) == {0, 6}


def test_silent_object_is_not_segmented():
    image, cams, sounding, logits, _ = _frame(logit=-1.0, col=5)  # sigmoid(-1) = 0.27 < 0.5
    mask = frame_pseudo_mask(image, cams, sounding, logits, _cfg())
    assert (mask == 0).all()


def test_two_sounding_classes_map_to_their_indices():
    image, cams, sounding, logits, blob = _frame(col=5)
    cams[40, 11:15, 11:15] = 1.0  # -> pixels 22..29
    logits[40] = 2.0
    mask = frame_pseudo_mask(image, cams, sounding, logits, _cfg(use_crf=False))
    assert (mask[blob] == 6).all()
    assert (mask[22:30, 22:30] == 41).all()
    assert set(np.unique(mask)) == {0, 6, 41}


def test_sounding_map_gates_the_class_map():
    image, cams, _, logits, blob = _frame()
    sounding = np.zeros((h, w), dtype=np.float32)
    sounding[4:10, 4:7] = 1.0  # only the left half of the blob sounds: pixels 8..13
    mask = frame_pseudo_mask(image, cams, sounding, logits, _cfg(use_crf=False))
    np.testing.assert_array_equal(mask[8:20, 8:14], 6)
    np.testing.assert_array_equal(mask[:, 14:], 0)


@pytest.mark.parametrize("use_crf", [False, True])
def test_two_score_trick_marks_only_disagreement(use_crf):
    image, cams, sounding, logits, _ = _frame()
    cams[5] = np.linspace(0.0, 1.0, h * w, dtype=np.float32).reshape(h, w)  # ramp over the frame
    low = frame_pseudo_mask(image, cams, sounding, logits, _cfg(bg_score=0.3, use_crf=use_crf))
    high = frame_pseudo_mask(image, cams, sounding, logits, _cfg(bg_score=0.6, use_crf=use_crf))
    cfg = _cfg(bg_score_low=0.3, bg_score_high=0.6, use_crf=use_crf)
    both = frame_pseudo_mask(image, cams, sounding, logits, cfg)
    disagree = low != high
    assert disagree.any() and (~disagree).any()
    assert (both[disagree] == IGNORE_INDEX).all()
    assert (both[~disagree] == low[~disagree]).all()
    if not use_crf:  # rows of the upsampled ramp scoring in (0.3, 0.6): fg at 0.3, bg at 0.6
        assert set(np.unique(both)) == {0, 6, IGNORE_INDEX}
        assert (both[: H // 4] == 0).all() and (both[-H // 4:] == 6).all()


def test_config_needs_both_scores():
    with pytest.raises(ValueError, match="both"):
        PseudoMasksConfig(bg_score_low=0.3)


def test_frame_shape_errors():
    image, cams, sounding, logits, _ = _frame()
    with pytest.raises(ValueError, match="h x w"):
        frame_pseudo_mask(image, cams, sounding[:4], logits, _cfg())
    with pytest.raises(ValueError, match=r"\(K,\)"):
        frame_pseudo_mask(image, cams, sounding, logits[:3], _cfg())


def test_workers_give_identical_results():
    rng = np.random.default_rng(0)
    m = 5
    images = rng.integers(0, 256, (m, H, W, 3), dtype=np.uint8)
    cams = rng.normal(size=(m, NUM_FG, 4, 4)).astype(np.float32)
    sounding = rng.random((m, 4, 4)).astype(np.float32)
    logits = rng.normal(scale=2.0, size=(m, NUM_FG)).astype(np.float32)
    cfg = _cfg(bg_score_low=0.3, bg_score_high=0.5, crf=CRFConfig(iterations=3))
    one = pseudo_masks(images, cams, sounding, logits, cfg, workers=1)
    two = pseudo_masks(images, cams, sounding, logits, cfg, workers=2)
    assert one.shape == (m, H, W) and one.dtype == np.uint8
    assert len(np.unique(one)) > 2  # several classes and ignore: a non-trivial comparison
    np.testing.assert_array_equal(one, two)
    for i in range(m):
        np.testing.assert_array_equal(one[i], frame_pseudo_mask(images[i], cams[i], sounding[i], logits[i], cfg))
