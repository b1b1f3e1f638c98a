"""The official-mode quirks of pcas_core.evaluation.official, each on a case computed by hand."""

import numpy as np
import pytest

from pcas_core.evaluation.metrics import AVSSAccumulator, binary_fscore, binary_miou
from pcas_core.evaluation.official import (OfficialAVSSAccumulator, OfficialBinaryAccumulator,
                                        batch_fmeasure, batch_mask_iou,
                                        official_binary_scores, official_thresholds, padded_frames)


def _f(p, r, b2=0.3):
    return (1 + b2) * p * r / (b2 * p + r)


LABEL = np.array([[0, 1], [1, 1]], dtype=np.uint8)


def test_padded_frames_counts():
    assert padded_frames(np.array([5, 10, 3, 12])).tolist() == [5, 0, 7, 0]
    with pytest.raises(ValueError, match="at least one frame"):
        padded_frames(np.array([0]))


def test_padded_video_scored_with_the_black_frame_prediction():
    """A 5-frame video predicted perfectly, plus 5 padded frames (all-background labels) on which
    the model predicts one pixel of class 1: background IoU 3/4 and class 1 IoU 0 there."""
    acc = OfficialAVSSAccumulator()
    for _ in range(5):
        acc.update(LABEL, LABEL)
    acc.update(np.array([[0, 0], [0, 1]], np.uint8), np.zeros((2, 2), np.uint8), count=5)
    out = acc.compute()
    iou_bg, iou_1 = (5 * 1 + 5 * 0.75) / 10, (5 * 1 + 5 * 0) / 10
    assert out["n_frames"] == 10
    assert out["miou"] == pytest.approx((iou_bg + iou_1) / 71)
    f_bg, f_1 = (5 + 5 * _f(1.0, 0.75)) / 10, 5 / 10  # padded class 1: P 0, R 0/0 -> F 0
    assert out["fscore"] == pytest.approx((f_bg + f_1) / 71)
    # count > 1 is the same as repeating the frame
    rep = OfficialAVSSAccumulator()
    for _ in range(5):
        rep.update(LABEL, LABEL)
    for _ in range(5):
        rep.update(np.array([[0, 0], [0, 1]], np.uint8), np.zeros((2, 2), np.uint8))
    assert rep.compute() == pytest.approx(out, rel=1e-12)


def test_nobg_drops_the_last_class_not_background():
    acc = OfficialAVSSAccumulator()
    frame = np.array([[0, 70]], dtype=np.uint8)
    acc.update(frame, frame)
    out = acc.compute()
    assert out["miou"] == pytest.approx(2 / 71)
    assert out["miou_noBg"] == pytest.approx(1 / 70)  # background (class 0) is still counted
    assert out["fscore_noBg"] == pytest.approx(1 / 70)


def test_absent_class_counts_zero_and_a_false_positive_class_counts_once():
    acc = OfficialAVSSAccumulator()
    acc.update(np.array([[0, 3]], np.uint8), np.array([[0, 0]], np.uint8))
    out = acc.compute()
    # background IoU 1/2; class 3 predicted but absent from the label: union 1, IoU 0, counted
    assert out["miou"] == pytest.approx(0.5 / 71)
    assert acc.count[3] == 1 and acc.count[5] == 0


def test_official_equals_clean_on_real_frames_up_to_the_epsilon():
    rng = np.random.default_rng(0)
    clean, official = AVSSAccumulator(), OfficialAVSSAccumulator()
    for _ in range(4):
        pred, label = rng.integers(0, 4, (6, 6)), rng.integers(0, 4, (6, 6))
        clean.update(pred, label)
        official.update(pred, label)
    c, o = clean.compute(), official.compute()
    assert o["miou"] == pytest.approx(c["miou"], rel=1e-12)
    assert o["fscore"] == pytest.approx(c["fscore"], rel=1e-12)


def test_thresholds_are_float32_so_the_last_is_one():
    t = official_thresholds()
    assert len(t) == 255 and t[0] == 0.0 and t[-1] == 1.0
    # a probability of exactly 1 passes the last official threshold, not the clean one (1 - 1e-10)
    assert np.linspace(0, 1 - 1e-10, 255)[-1] < 1.0


PRED = np.array([[[0.9, 0.4], [0.6, 0.1]]], dtype=np.float32)
GT = np.array([[[1, 1], [0, 0]]], dtype=np.uint8)
EMPTY = np.zeros((1, 2, 2), dtype=np.uint8)


def test_batch_mask_iou_by_hand():
    # frame 1: pred {(0,0),(1,0)} vs gt top row: 1/3; frame 2, empty gt: 3 of 4 pixels predicted bg
    preds = np.concatenate([PRED, np.array([[[0.7, 0.2], [0.1, 0.5]]], np.float32)])
    gts = np.concatenate([GT, EMPTY])
    assert batch_mask_iou(preds, gts) == pytest.approx((1 / 3 + 3 / 4) / 2, rel=1e-6)
    assert batch_mask_iou(preds, gts) == pytest.approx(binary_miou(preds, gts), rel=1e-6)


def test_batch_whose_ground_truth_is_all_empty_scores_zero_f_and_still_counts():
    f_one = _f(1.0, 0.5)  # best threshold for PRED vs GT: only 0.9 above, P 1 R .5 -> 0.8125
    assert batch_fmeasure(PRED, GT) == pytest.approx(f_one)
    assert batch_fmeasure(PRED, EMPTY) == 0.0
    preds, gts = np.concatenate([PRED, PRED]), np.concatenate([EMPTY, GT])
    videos = np.array(["a", "b"])
    one = official_binary_scores(preds, gts, videos, batch_videos=1)
    # batch a: F 0, IoU = 2 of 4 pixels predicted bg (0.9, 0.6 > 0.5); batch b: F 0.8125, IoU 1/3
    assert one["fscore"] == pytest.approx(f_one / 2)
    assert one["miou"] == pytest.approx((0.5 + 1 / 3) / 2, rel=1e-6)
    assert one["n_batches"] == 2
    # one batch of both videos: the empty frame is skipped, as in the clean whole-set F-score
    both = official_binary_scores(preds, gts, videos, batch_videos=2)
    assert both["fscore"] == pytest.approx(f_one) == pytest.approx(binary_fscore(preds, gts))
    assert both["n_batches"] == 1


def test_batch_means_weigh_a_short_batch_like_a_full_one():
    good = np.array([[[1.0, 1.0], [0.0, 0.0]]], np.float32)
    preds = np.concatenate([good, good, PRED])
    gts = np.concatenate([GT, GT, GT])
    videos = np.array([0, 1, 2])
    out = official_binary_scores(preds, gts, videos, batch_videos=2)  # batches {0, 1}, {2}
    assert out["miou"] == pytest.approx((1.0 + 1 / 3) / 2, rel=1e-6)
    assert binary_miou(preds, gts) == pytest.approx((2 + 1 / 3) / 3)


def test_official_binary_errors():
    with pytest.raises(ValueError, match="contiguous"):
        official_binary_scores(np.concatenate([PRED] * 3), np.concatenate([GT] * 3),
                               np.array([0, 1, 0]), batch_videos=1)
    with pytest.raises(ValueError, match="batch_videos"):
        official_binary_scores(PRED, GT, np.array([0]), batch_videos=0)
    with pytest.raises(ValueError, match="one video id per frame"):
        official_binary_scores(PRED, GT, np.array([0, 1]), batch_videos=1)


def test_official_batches_accumulate_chunk_by_chunk():
    """Frames fed a few at a time, cutting videos and test batches: the same batches and scores
    as all at once; a video met again after another is refused across chunks too."""
    rng = np.random.default_rng(0)
    videos = np.repeat(np.arange(5), [2, 3, 1, 2, 2])
    preds = rng.random((len(videos), 4, 4)).astype(np.float32)
    gts = (rng.random((len(videos), 4, 4)) > 0.6).astype(np.uint8)
    gts[5] = 0  # video 2: empty ground truth
    whole = official_binary_scores(preds, gts, videos, batch_videos=2)
    acc = OfficialBinaryAccumulator(batch_videos=2)
    for lo, hi in [(0, 1), (1, 4), (4, 9), (9, 10)]:
        acc.update(preds[lo:hi], gts[lo:hi], videos[lo:hi])
    assert acc.compute() == whole  # bit for bit: the same per-frame terms, summed in order
    assert whole["n_batches"] == 3 and whole["n_frames"] == 10
    with pytest.raises(ValueError, match="contiguous"):
        acc.update(preds[:1], gts[:1], videos[:1])  # video 0 again, after video 4


def test_label_255_pixels_count_in_the_official_prediction_area_only():
    """Quirk 6 by hand: two pixels labelled 255, predicted 1 and 2. Official: class 0 IoU 1;
    class 1 inter 1, prediction area 2 (one of them the 255 pixel), label area 1 -> IoU 1/2,
    P 1/2, R 1; class 2 prediction area 1 (the other 255 pixel), label area 0 -> IoU 0, counted.
    The clean mode drops both pixels: classes 0 and 1 perfect, class 2 not counted."""
    label = np.array([[0, 255], [1, 255]], dtype=np.uint8)
    pred = np.array([[0, 1], [1, 2]], dtype=np.uint8)
    official, clean = OfficialAVSSAccumulator(), AVSSAccumulator()
    official.update(pred, label)
    clean.update(pred, label)
    out = official.compute()
    assert out["miou"] == pytest.approx((1.0 + 0.5 + 0.0) / 71)
    assert out["fscore"] == pytest.approx((1.0 + _f(0.5, 1.0) + 0.0) / 71)
    assert official.count[:3].tolist() == [1, 1, 1]
    c = clean.compute()
    assert c["miou"] == pytest.approx(2.0 / 71) and c["miou_present"] == pytest.approx(1.0)
    # without 255 labels the two modes still agree
    same, ref = OfficialAVSSAccumulator(), AVSSAccumulator()
    same.update(pred, np.array([[0, 1], [1, 2]], np.uint8))
    ref.update(pred, np.array([[0, 1], [1, 2]], np.uint8))
    assert same.compute()["miou"] == pytest.approx(ref.compute()["miou"], rel=1e-12)
