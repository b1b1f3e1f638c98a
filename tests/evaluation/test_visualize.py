"""Comparison strips, the fixed choice of frames to draw, and confusion rows."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pcas_core.data.palette import voc_palette
from pcas_core.evaluation.visualize import (MIN_PANEL, comparison_strip, confusion_pairs,
                                            confusion_rows, confusion_table, pick_overlay_frames)

NAMES = [f"class{i}" for i in range(71)]
NAMES[0] = "background"


def test_comparison_strip_is_large_enough_and_has_a_legend(tmp_path):
    image = np.full((56, 56, 3), 90, np.uint8)
    gt = np.zeros((56, 56), np.uint8)
    gt[10:20, 10:20] = 3
    pred = np.zeros_like(gt)
    pred[30:40, 30:40] = 7
    comparison_strip(tmp_path / "a.png", image, gt, pred, voc_palette(), NAMES, title="clip_0")
    out = np.asarray(Image.open(tmp_path / "a.png").convert("RGB"))
    scale = MIN_PANEL // 56  # 4
    assert out.shape[1] == 3 * 56 * scale and out.shape[0] > 56 * scale
    line = (out.shape[0] - 56 * scale) // 3  # title and panel names above, one legend row below
    header = 2 * line
    # the GT panel shows class 3's colour blended over the frame; the prediction panel class 7's
    gt_px = out[header + 15 * scale, 56 * scale + 15 * scale]
    pred_px = out[header + 35 * scale, 2 * 56 * scale + 35 * scale]
    assert not (gt_px == 90).all() and not (pred_px == 90).all() and (gt_px != pred_px).any()
    # the legend holds a swatch of each class colour shown (class 3 and class 7)
    legend = out[header + 56 * scale:]
    for c in (3, 7):
        assert (legend == voc_palette()[c]).all(axis=-1).any()


def test_pick_overlay_frames_includes_matches_and_subsets():
    rows = [{"uid": uid, "frame": f, "subset": lab}
            for uid, lab in [("s_000", "v1s"), ("s_001", "v1s"), ("silent_002", "v1s"),
                             ("m_003", "v1m"), ("s_004", "v1s"), ("s_005", "v1s")]
            for f in range(5)]
    frames = pd.DataFrame(rows)
    picked = pick_overlay_frames(frames, 3, ["silent"])
    uids = frames.uid[picked].tolist()
    assert len(picked) == 3 and "silent_002" in uids and "m_003" in uids
    assert (frames.frame[picked] == 2).all()  # the middle frame of each clip
    assert pick_overlay_frames(frames, 3, ["silent"]).tolist() == picked.tolist()
    assert len(pick_overlay_frames(frames, 20, [])) == 6
    assert len(pick_overlay_frames(frames, 0, ["silent"])) == 0


def test_confusion_rows_sample_a_grid_of_foreground_pixels():
    gt = np.array([[[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 255, 0]]], np.uint8)
    pred = np.array([[[1, 2, 0, 0], [2, 2, 0, 0], [0, 0, 3, 0], [0, 0, 3, 0]]], np.uint8)
    every = confusion_rows(pred, gt, NAMES, stride=1)
    pairs = [(r["actual"], r["predicted"]) for r in every]
    # 4 GT-foreground pixels, one false positive on background; the ignored pixel is skipped
    assert pairs == [("class1", "class1"), ("class1", "class2"), ("class1", "class2"),
                     ("class1", "class2"), ("background", "class3")]
    sampled = confusion_rows(pred, gt, NAMES, stride=2)  # pixels (0,0), (0,2), (2,0), (2,2)
    assert [(r["actual"], r["predicted"]) for r in sampled] == [("class1", "class1"),
                                                                ("background", "class3")]
    with pytest.raises(ValueError, match="stride"):
        confusion_rows(pred, gt, NAMES, stride=0)
    # chunk by chunk as two class indices a row, named once: the same CSV as the rows
    rows = pd.DataFrame(confusion_rows(np.concatenate([pred, pred]), np.concatenate([gt, gt]),
                                       NAMES, 1), columns=["actual", "predicted"])
    parts = [confusion_pairs(p, g, len(NAMES), 1) for p, g in ((pred, gt), (pred, gt))]
    table = confusion_table(np.concatenate([a for a, _ in parts]),
                            np.concatenate([b for _, b in parts]), NAMES)
    assert table.to_csv(index=False) == rows.to_csv(index=False)
    empty = confusion_pairs(np.zeros_like(gt), np.zeros_like(gt), len(NAMES), 1)
    assert confusion_table(*empty, NAMES).to_csv(index=False) == "actual,predicted\n"
