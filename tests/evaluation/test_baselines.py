"""The sanity baselines on tiny hand-made logits and CAMs."""

import numpy as np
import pytest

from pcas_core.evaluation.baselines import (listening_masks, looking_config, looking_masks,
                                           sanity_baselines)
from pcas_core.params import BaselinesConfig, PseudoMasksConfig
from pcas_core.pipeline.pseudo_masks import PseudoMaskPool, pseudo_masks

NO_CRF = PseudoMasksConfig(bg_score=0.2, use_crf=False, workers=1)


def test_listening_fills_the_frame_with_the_top_audio_class():
    logits = np.array([[2.0, -1.0, 0.0], [-3.0, -2.0, -5.0]])  # sigmoid: .88 / top of row 2 .12
    masks = listening_masks(logits, (2, 3), threshold=0.5)
    assert masks.shape == (2, 2, 3) and masks.dtype == np.uint8
    assert (masks[0] == 1).all()  # column 0 -> class index 1
    assert (masks[1] == 0).all()  # nothing reaches 0.5: background
    assert (listening_masks(logits, (2, 3), threshold=0.1)[1] == 2).all()
    with pytest.raises(ValueError, match="threshold"):
        listening_masks(logits, (2, 2), threshold=1.5)


# Two objects on a 2 x 2 grid at the image's own size (no interpolation): column 0 at the top
# left sounds; column 1 at the bottom right is visible but silent.
CAMS = np.array([[[[4.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 3.0]]]], dtype=np.float32)
IMAGE = np.zeros((1, 2, 2, 3), dtype=np.uint8)
VISUAL = np.array([[3.0, 3.0]], dtype=np.float32)  # the classifier sees both
AUDIO = np.array([[3.0, -3.0]], dtype=np.float32)  # only the first one sounds


def test_looking_segments_every_visible_object_even_a_silent_one():
    mask = looking_masks(IMAGE, CAMS, VISUAL, threshold=0.5, masks=NO_CRF)
    assert mask[0].tolist() == [[1, 0], [0, 2]]
    # the method's pseudo-mask with the audio keeps only the sounding object (sounding map 1 here)
    cfg = PseudoMasksConfig(audio_threshold=0.5, bg_score=0.2, use_crf=False)
    with_audio = pseudo_masks(IMAGE, CAMS, np.ones((1, 2, 2), np.float32), AUDIO, cfg)
    assert with_audio[0].tolist() == [[1, 0], [0, 0]]
    # classes the classifier does not predict are not drawn
    none = looking_masks(IMAGE, CAMS, -VISUAL, threshold=0.5, masks=NO_CRF)
    assert (none == 0).all()


def test_sanity_baselines_and_their_padded_frame_predictions():
    out = sanity_baselines(IMAGE, AUDIO, CAMS, VISUAL, padded_image=IMAGE[0], padded_cam=CAMS[0],
                           padded_logits=np.array([-3.0, 3.0], np.float32),
                           cfg=BaselinesConfig(visual_threshold=0.5),
                           masks=PseudoMasksConfig(audio_threshold=0.5, bg_score=0.2,
                                                   use_crf=False, workers=1))
    assert set(out) == {"background", "listening", "looking"}
    assert (out["background"].masks == 0).all() and out["background"].padded_mask is None
    assert (out["listening"].masks == 1).all() and out["listening"].padded_mask is None
    assert out["looking"].masks[0].tolist() == [[1, 0], [0, 2]]
    assert out["looking"].padded_mask.tolist() == [[0, 0], [0, 2]]  # only column 1 predicted


def test_looking_with_a_kept_pool_is_looking_in_one_call():
    """A test pass chunk by chunk keeps one pool (made with looking_config) for every chunk."""
    images = np.repeat(IMAGE, 5, axis=0)
    cams = np.repeat(CAMS, 5, axis=0) * np.arange(1, 6, dtype=np.float32)[:, None, None, None]
    visual = np.repeat(VISUAL, 5, axis=0)
    masks = PseudoMasksConfig(bg_score=0.2, use_crf=True, workers=2)
    want = looking_masks(images, cams, visual, threshold=0.5, masks=masks)
    with PseudoMaskPool(looking_config(masks, 0.5), masks.workers) as pool:
        got = [looking_masks(images[i:i + 2], cams[i:i + 2], visual[i:i + 2], threshold=0.5,
                             masks=masks, pool=pool) for i in range(0, 5, 2)]
    np.testing.assert_array_equal(np.concatenate(got), want)
