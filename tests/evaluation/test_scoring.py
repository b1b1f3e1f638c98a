"""pcas_core.evaluation.scoring: both modes on the same predictions, subsets, and the metrics-file layout."""

import numpy as np
import pandas as pd
import pytest

from pcas_core.evaluation.scoring import (Prediction, Scores, metrics_file, score, score_by_kind,
                                          score_by_subset, scored_class_names, scored_frames,
                                          scored_labels)

LABEL = np.array([[0, 1], [1, 1]], dtype=np.uint8)


def _frames(videos: dict[str, tuple[str, int]], annotated: int | None = None) -> pd.DataFrame:
    """Frame table rows: uid -> (subset, n frames); the first ``annotated`` of each have masks."""
    rows = [{"uid": uid, "frame": f, "subset": sub,
             "mask_path": "m.png" if annotated is None or f < annotated else ""}
            for uid, (sub, n) in videos.items() for f in range(n)]
    return pd.DataFrame(rows)


def test_scored_frames_counts_video_frames_and_checks_annotation():
    table = _frames({"a": ("v1s", 5), "b": ("v2", 10)}, annotated=1)
    scored = scored_frames(table, require_all=False)
    assert scored["uid"].tolist() == ["a", "b"]
    assert scored["n_video_frames"].tolist() == [5, 10]
    with pytest.raises(ValueError, match="uid a frame 1"):
        scored_frames(table, require_all=True)


def test_clean_and_official_on_the_same_predictions():
    """A 5-frame v1s video predicted perfectly: clean sees 5 real frames; official adds 5 padded
    frames with all-background labels, scored with the padded-frame prediction."""
    frames = scored_frames(_frames({"a": ("v1s", 5)}), require_all=True)
    gts = np.stack([LABEL] * 5)
    perfect = score("avss", Prediction(gts.copy()), gts, frames, batch_videos=4)
    assert perfect["clean"]["miou"] == pytest.approx(2 / 71)
    assert perfect["clean"]["miou_present"] == pytest.approx(1.0)
    assert perfect["clean"]["fg_miou"] == pytest.approx(1.0)
    # padded prediction None = background: background IoU 1 on padded frames, so nothing changes
    assert perfect["official"]["miou"] == pytest.approx(2 / 71)
    assert perfect["official"]["n_frames"] == 10 and perfect["official"]["n_padded"] == 5
    # a padded prediction with one class-1 pixel: background IoU (5 + 5 * 3/4) / 10, class 1 5/10
    pad = Prediction(gts.copy(), padded_mask=np.array([[0, 0], [0, 1]], np.uint8))
    out = score("avss", pad, gts, frames, batch_videos=4)
    assert out["clean"]["miou"] == pytest.approx(2 / 71)
    assert out["official"]["miou"] == pytest.approx((0.875 + 0.5) / 71)


def test_ten_frame_video_has_no_padding():
    frames = scored_frames(_frames({"a": ("v2", 10)}), require_all=True)
    gts = np.stack([LABEL] * 10)
    preds = np.zeros_like(gts)
    out = score("avss", Prediction(preds, padded_mask=np.full((2, 2), 5, np.uint8)), gts, frames,
                batch_videos=4)
    assert out["official"]["n_padded"] == 0
    assert out["official"]["miou"] == pytest.approx(out["clean"]["miou"], rel=1e-12)


def test_binary_kind_uses_batches_in_official_mode():
    frames = scored_frames(_frames({"a": ("s4", 1), "b": ("s4", 1)}), require_all=True)
    gts = np.stack([np.zeros((2, 2), np.uint8), LABEL])
    fg = np.stack([np.full((2, 2), 0.9, np.float32), LABEL.astype(np.float32)])
    pred = Prediction(np.zeros_like(gts), foreground=fg)
    by_video = score("s4", pred, gts, frames, batch_videos=1)
    together = score("s4", pred, gts, frames, batch_videos=2)
    assert by_video["clean"]["fscore"] == pytest.approx(1.0)  # the empty-GT frame is skipped
    assert by_video["official"]["fscore"] == pytest.approx(0.5)  # ... but its batch scores 0
    assert together["official"]["fscore"] == pytest.approx(1.0)
    assert by_video["clean"]["miou"] == pytest.approx(0.5)  # empty GT, all predicted fg: 0
    with pytest.raises(ValueError, match="unknown dataset kind"):
        score("s5", pred, gts, frames, batch_videos=1)


def test_binary_kind_scores_any_predicted_class_as_foreground():
    """S4/MS3: a head trained on pseudo-masks predicts class indices (S4: 1..23), the ground
    truth is 0/1; scores, per-class IoU, confusion rows and pictures use the binary space."""
    frames = scored_frames(_frames({"a": ("s4", 1), "b": ("s4", 1)}), require_all=True)
    gts = np.stack([LABEL, np.array([[0, 0], [0, 1]], np.uint8)])
    classes = np.stack([np.array([[0, 7], [7, 0]], np.uint8), np.array([[0, 0], [0, 23]], np.uint8)])
    binary = np.stack([np.array([[0, 1], [1, 0]], np.uint8), np.array([[0, 0], [0, 1]], np.uint8)])
    np.testing.assert_array_equal(scored_labels("s4", classes), binary)
    assert scored_labels("avss", classes) is classes
    out = score("s4", Prediction(classes), gts, frames, batch_videos=4)
    assert out == score("s4", Prediction(binary), gts, frames, batch_videos=4)
    # frame a: bg IoU 1/2, fg 2/3; frame b: both 1 (AVSBench: the mean over frames)
    assert out["clean"]["per_class_iou"] == pytest.approx([(1 / 2 + 1) / 2, (2 / 3 + 1) / 2])
    assert scored_class_names("ms3", ["background", "dog", "cat"]) == ["background", "foreground"]
    assert scored_class_names("avss", ["background", "dog"]) == ["background", "dog"]
    with pytest.raises(ValueError, match="unknown dataset kind"):
        scored_labels("s5", classes)


def test_subsets_and_metrics_file_layout():
    frames = scored_frames(_frames({"a": ("v1s", 5), "b": ("v1m", 5)}), require_all=True)
    gts = np.stack([LABEL] * 10)
    method = score_by_subset("avss", Prediction(gts.copy()), gts, frames, batch_videos=4)
    assert set(method) == {"clean", "official", "v1m", "v1s"}
    background = score("avss", Prediction(np.zeros_like(gts)), gts, frames, batch_videos=4)
    out = metrics_file("avss", "test", method, {"baseline.background": background,
                                                "pseudo_masks": background})
    assert out["split"] == "test" and out["kind"] == "avss"
    assert set(out["clean"]) >= {"miou", "miou_present", "fscore", "fg_miou"}
    assert set(out["official"]) >= {"miou", "miou_noBg", "fscore_noBg", "n_padded"}
    assert "per_class_iou" not in out["clean"]
    assert out["v1s"]["official"]["miou"] == pytest.approx(2 / 71)
    assert out["baseline"]["background"]["clean"]["miou"] == pytest.approx(0.25 / 71)
    assert set(out["pseudo_masks"]) == {"clean", "official"}
    one = score_by_subset("avss", Prediction(gts[:5].copy()), gts[:5], frames[:5], batch_videos=4)
    assert set(one) == {"clean", "official"}  # one subset: no per-subset entries


def test_scores_per_clip_kind():
    """Frames of two clip kinds: the predictions are right on the ``always`` clip and background
    on the ``event`` clip, so each kind's score is that of its own frames alone."""
    table = _frames({"a": ("v1s", 5), "b": ("v1s", 5), "c": ("v2", 10)})
    table["kind"] = table["uid"].map({"a": "always", "b": "event", "c": "event"})
    frames = scored_frames(table, require_all=True)
    gts = np.stack([LABEL] * 20)
    preds = gts.copy()
    preds[5:] = 0  # b and c: background everywhere
    method = score_by_subset("avss", Prediction(preds), gts, frames, batch_videos=4)
    assert set(method) == {"clean", "official", "v1s", "v2", "by_kind"}
    assert set(method["by_kind"]) == {"always", "event"}
    always, event = method["by_kind"]["always"], method["by_kind"]["event"]
    assert always["clean"]["miou_present"] == pytest.approx(1.0)
    assert always["clean"]["n_frames"] == 5 and event["clean"]["n_frames"] == 15
    # event: background IoU 1/4 on each of its 15 frames, class 1 never predicted: (0.25 + 0) / 2
    assert event["clean"]["miou_present"] == pytest.approx(0.125)
    assert event["official"]["n_padded"] == 5  # b's 5 padded frames; c has 10
    ref = score_by_kind("avss", Prediction(np.zeros_like(gts)), gts, frames, batch_videos=4)
    assert set(ref) == {"clean", "official", "by_kind"}
    out = metrics_file("avss", "test", method, {"baseline.background": ref})
    assert out["kind"] == "avss"  # the dataset's kind stays at the top
    assert out["by_kind"]["always"]["clean"]["miou_present"] == pytest.approx(1.0)
    assert set(out["by_kind"]["event"]) == {"clean", "official"}
    assert set(out["by_kind"]["event"]["clean"]) == {"miou", "fscore", "miou_present",
                                                     "absent_class_frames"}
    assert out["by_kind"]["event"]["clean"]["absent_class_frames"] == 0.0  # background only
    assert out["baseline"]["background"]["by_kind"]["event"]["clean"]["miou_present"] == \
        pytest.approx(0.125)
    # without the column: scored as before
    plain = scored_frames(table.drop(columns="kind"), require_all=True)
    assert "by_kind" not in score_by_kind("avss", Prediction(preds), gts, plain, batch_videos=4)
    assert "by_kind" not in score_by_subset("avss", Prediction(preds), gts, plain, batch_videos=4)


def _close(a, b, path=""):
    """Scores dicts equal: the same keys, ints equal, floats within 1e-12 (sums in other order)."""
    if isinstance(a, dict):
        assert set(a) == set(b), path
        for k in a:
            _close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        np.testing.assert_allclose(np.array(a, float), np.array(b, float), rtol=1e-12, err_msg=path)
    elif isinstance(a, float):
        assert a == pytest.approx(b, rel=1e-12, abs=1e-15, nan_ok=True), path
    else:
        assert a == b, path


@pytest.mark.parametrize("kind", ["avss", "s4"])
def test_scores_chunk_by_chunk_equal_the_whole_set(kind):
    """Scores accumulated over chunks that cut videos (and official test batches) in two equal the
    scores of all frames at once, per subset and clip kind too: what evaluate and pseudo_masks do
    on a test set too large to hold."""
    rng = np.random.default_rng(0)
    videos = {f"v{i}": (("v1s", "v2")[i % 2], (5, 10)[i % 2]) for i in range(7)}
    table = _frames(videos)
    table["kind"] = table["uid"].map(lambda u: ("event", "multi", "long")[int(u[1:]) % 3])
    frames = scored_frames(table, require_all=True)
    classes = 4 if kind == "avss" else 2
    gts = rng.integers(0, classes, (len(frames), 6, 6)).astype(np.uint8)
    gts[3, :2] = 255  # ignored pixels
    gts[7:12] = 0  # a video with an empty ground truth
    preds = rng.integers(0, classes, gts.shape).astype(np.uint8)
    fg = rng.random(gts.shape).astype(np.float32)
    pred = Prediction(preds, fg, padded_mask=np.full((6, 6), 1, np.uint8))
    whole = score_by_subset(kind, pred, gts, frames, batch_videos=2)
    acc = Scores(kind, batch_videos=2, padded_mask=pred.padded_mask, subsets=True)
    for lo, hi in [(0, 3), (3, 11), (11, 12), (12, 40), (40, len(frames))]:
        acc.update(pred.subset(np.isin(np.arange(len(frames)), np.arange(lo, hi))), gts[lo:hi],
                   frames.iloc[lo:hi].reset_index(drop=True))
    chunked = acc.compute()
    _close(chunked, whole)
    assert list(chunked) == list(whole)  # the same layout, in the same order (metrics files)
    assert set(whole) == {"clean", "official", "v1s", "v2", "by_kind"}
    if kind == "s4":
        assert whole["official"]["n_batches"] == 4  # 7 videos in batches of 2
    else:
        assert whole["official"]["n_padded"] == 4 * 5  # four 5-frame videos
