"""Tests for pcas_core.evaluation.metrics against hand-computed AVSBench values."""

import math

import numpy as np
import pytest

from pcas_core.evaluation.metrics import (
    AVSSAccumulator,
    avss_frame_stats,
    binary_fscore,
    binary_miou,
    foreground_binary,
    frame_classification_scores,
)


def _f(p, r, b2=0.3):
    return (1 + b2) * p * r / (b2 * p + r)


PRED = np.array([[0, 1], [1, 2]])
LABEL = np.array([[0, 1], [2, 255]])  # bottom-right pixel ignored


def test_frame_stats_by_hand():
    inter, area_p, area_l = avss_frame_stats(PRED, LABEL)
    assert inter.shape == (71,)
    assert inter[:3].tolist() == [1, 1, 0]
    assert area_p[:3].tolist() == [1, 2, 0]  # the ignored pixel's prediction (2) is not counted
    assert area_l[:3].tolist() == [1, 1, 1]
    assert inter[3:].sum() == area_p[3:].sum() == area_l[3:].sum() == 0


def test_frame_stats_errors():
    with pytest.raises(ValueError, match="H x W"):
        avss_frame_stats(PRED, LABEL[:1])
    with pytest.raises(ValueError, match="label values"):
        avss_frame_stats(PRED, np.array([[0, 1], [80, 0]]))


def test_accumulator_iou_and_f_by_hand():
    acc = AVSSAccumulator(num_classes=4)
    acc.update(PRED, LABEL)
    acc.update(np.zeros((3, 3), int), np.zeros((3, 3), int))  # only class 0 occurs: 1, 1
    out = acc.compute()
    # class 0: IoU (1 + 1)/2, F 1; class 1: union 2 -> IoU 0.5, P 0.5 R 1; class 2: IoU 0, F 0
    assert out["per_class_iou"][:3] == pytest.approx([1.0, 0.5, 0.0])
    assert math.isnan(out["per_class_iou"][3])  # class 3 never occurs
    assert out["miou"] == pytest.approx(1.5 / 4)  # absent class contributes 0
    assert out["miou_present"] == pytest.approx(1.5 / 3)
    assert out["fscore"] == pytest.approx((1 + _f(0.5, 1.0)) / 4)
    assert out["fscore_present"] == pytest.approx((1 + _f(0.5, 1.0)) / 3)
    assert _f(0.5, 1.0) == pytest.approx(0.65 / 1.15)
    assert out["n_frames"] == 2


def test_all_background_prediction_official_miou():
    acc = AVSSAccumulator()
    acc.update(np.zeros((2, 2), np.uint8), np.array([[0, 3], [3, 3]]))
    acc.update(np.zeros((2, 2), np.uint8), np.array([[5, 5], [0, 0]]))
    out = acc.compute()
    # background IoU: 1/4 and 2/4 -> 0.375; classes 3 and 5 occur with IoU 0; 71 classes in all
    assert out["miou"] == pytest.approx(0.375 / 71)
    assert out["miou_present"] == pytest.approx(0.375 / 3)
    assert out["fscore"] == pytest.approx((_f(0.25, 1) + _f(0.5, 1)) / 2 / 71)
    assert sum(not math.isnan(v) for v in out["per_class_iou"]) == 3


def test_binary_miou_with_empty_gt_frame():
    preds = np.array([[[0.9, 0.4], [0.6, 0.1]], [[0.7, 0.2], [0.1, 0.5]]])
    gts = np.array([[[1, 1], [0, 0]], [[0, 0], [0, 0]]])
    # frame 1: pred {(0,0),(1,0)} vs gt top row: 1/3; frame 2 (empty gt): 3 of 4 predicted bg (0.5 is not > 0.5)
    assert binary_miou(preds, gts) == pytest.approx((1 / 3 + 3 / 4) / 2)


def test_binary_fscore_averages_frames_per_threshold_then_maxes():
    p = [[0.9, 0.4], [0.6, 0.1]]
    preds = np.array([p, p, [[0.9, 0.9], [0.9, 0.9]]])
    gts = np.array([[[1, 1], [0, 0]], [[0, 0], [1, 1]], [[0, 0], [0, 0]]])  # frame 3 skipped
    # t <= 0.1: both frames P .5 R 1; (0.1, 0.4]: (F(2/3,1) + F(1/3,.5))/2; (0.4,0.6]: .5; (0.6,0.9]: F(1,.5)/2
    curve = [_f(0.5, 1), (_f(2 / 3, 1) + _f(1 / 3, 0.5)) / 2, _f(0.5, 0.5), _f(1, 0.5) / 2]
    assert binary_fscore(preds, gts) == pytest.approx(max(curve))
    assert max(curve) == pytest.approx(0.65 / 1.15)
    assert binary_fscore(preds[:1], gts[:1]) == pytest.approx(_f(1, 0.5))  # 0.8125
    assert binary_fscore(preds[2:], gts[2:]) == 0.0


def test_binary_shape_errors():
    with pytest.raises(ValueError, match="M x H x W"):
        binary_miou(np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="M x H x W"):
        binary_fscore(np.zeros((1, 2, 2)), np.zeros((1, 2, 3)))


def test_foreground_binary():
    mask = np.array([[0, 3], [255, 70]], dtype=np.uint8)
    assert foreground_binary(mask).tolist() == [[0, 1], [0, 1]]


def test_frame_classification_scores_micro():
    probs = np.array([[0.9, 0.2, 0.6, 0.1], [0.1, 0.8, 0.3, 0.7], [0.9, 0.9, 0.9, 0.9]])
    targets = np.array([[1, 0, 0, 0], [0, 1, 0, 1], [np.nan] * 4])
    out = frame_classification_scores(probs, targets)
    # TP 3, FP 1 (row 0 class 2), FN 0; row 1 exact, row 0 not; row 2 skipped
    assert out["precision"] == pytest.approx(0.75)
    assert out["recall"] == pytest.approx(1.0)
    assert out["f1"] == pytest.approx(2 * 0.75 / 1.75)
    assert out["accuracy"] == pytest.approx(0.5)
    assert out["n_frames"] == 2


def test_frame_classification_from_logits_thresholds_the_sigmoid():
    from pcas_core.evaluation.metrics import frame_classification_from_logits

    logits = np.array([[2.0, -2.0], [-0.1, 0.1]])  # sigmoid: .88 .12 / .475 .525
    targets = np.array([[1.0, 0.0], [0.0, 1.0]])
    scores = frame_classification_from_logits(logits, targets)
    assert scores["accuracy"] == 1.0 and scores["f1"] == 1.0
    assert frame_classification_from_logits(logits, targets, threshold=0.9)["recall"] == 0.0


def test_absent_class_frames_counts_frames_painting_a_class_the_truth_lacks():
    from pcas_core.evaluation.metrics import absent_class_frames

    gt = np.zeros((4, 2, 2), np.uint8)
    gt[:, 0, 0] = 3                     # class 3 sounds in every frame
    gt[3, 1, 1] = 255                   # an ignored pixel
    pred = np.zeros_like(gt)
    pred[0, 0, 0] = 3                   # right class: fine
    pred[1, 1, 1] = 5                   # a class the frame lacks (a silent object): counted
    pred[2, 0, 0] = 3
    pred[2, 0, 1] = 3                   # the right class spilling over: fine
    pred[3, 1, 1] = 5                   # only where the truth is ignored: not looked at
    assert absent_class_frames(pred, gt) == 0.25
    assert absent_class_frames(pred[:0], gt[:0]) == 0.0
    with pytest.raises(ValueError):
        absent_class_frames(pred[:2], gt)
