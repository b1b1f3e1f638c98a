"""Comparison strips, the fixed choice of frames to draw, and confusion rows."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pcas_core.data.palette import voc_palette
from pcas_core.evaluation.visualize import (DISPLAY_COLOURS, MIN_PANEL, comparison_strip,
                                            confusion_pairs, confusion_rows, confusion_table,
                                            display_palette, pick_overlay_frames)

NAMES = [f"class{i}" for i in range(71)]
NAMES[0] = "background"


def _present(region: np.ndarray, colour) -> bool:
    return bool((region == np.asarray(colour, np.uint8)).all(axis=-1).any())


def test_display_palette_tells_the_shown_classes_apart():
    voc = voc_palette()
    pal = display_palette([6, 1, 30], 71)  # 1, 6 and 30 get the first three display colours
    assert pal.shape == (71, 3) and (pal[0] == 0).all()
    assert [tuple(pal[c]) for c in (1, 6, 30)] == [tuple(c) for c in DISPLAY_COLOURS[:3]]
    # the demo's 8 classes in AVSS's label space (airplane 2, bird 7, car 11, dog 17, guitar 28,
    # hen 36, pig 48, sheep 52): in the AVSBench palette hen and sheep differ by 64 of 765 and
    # guitar (64, 64, 128) is dark; the display colours are far apart
    demo = [2, 7, 11, 17, 28, 36, 48, 52]
    shown = display_palette(demo, 71)

    def closest(p):
        return min(np.abs(p[a].astype(int) - p[b].astype(int)).sum()
                   for i, a in enumerate(demo) for b in demo[i + 1:])

    assert closest(voc) == 64 and closest(shown) > 2 * closest(voc)
    many = display_palette(range(1, 21), 71)
    assert len({tuple(c) for c in many[1:21]}) == 20


def test_comparison_strip_has_a_legend_per_mask_at_the_frame_size(tmp_path):
    image = np.full((80, 80, 3), 90, np.uint8)  # the frame at its own size
    gt = np.zeros((40, 40), np.uint8)  # masks at the models' size: drawn at the frame's
    gt[5:10, 5:10] = 3
    pred = np.zeros_like(gt)
    pred[15:20, 15:20] = 7
    pal = display_palette([3, 7], 71)
    comparison_strip(tmp_path / "a.png", image, gt, pred, pal, NAMES, title="clip_0")
    out = np.asarray(Image.open(tmp_path / "a.png").convert("RGB"))
    scale = -(-MIN_PANEL // 80)  # 4: the smallest integer factor reaching MIN_PANEL
    side = 80 * scale
    assert out.shape[1] >= 3 * side and out.shape[0] > side
    # find the panels by the frame's grey: the top-left pixel of each panel
    grey = (out == 90).all(axis=-1)
    top = int(np.flatnonzero(grey.any(axis=1))[0])
    lefts = [0, out.shape[1] // 3 + 1, 2 * out.shape[1] // 3 + 1]
    starts = [int(np.flatnonzero(grey[top, x:])[0]) + x for x in lefts]
    # class 3: model pixels 5..9 -> frame pixels 10..19 -> panel pixels 40..79: a full colour
    # edge, the frame blended with the colour inside
    gt_panel = out[top:top + side, starts[1]:starts[1] + side]
    pred_panel = out[top:top + side, starts[2]:starts[2] + side]
    assert _present(gt_panel, pal[3]) and not _present(gt_panel, pal[7])
    assert _present(pred_panel, pal[7]) and not _present(pred_panel, pal[3])
    assert (gt_panel[40, 60] == pal[3]).all() and (gt_panel[39, 60] == 90).all()
    inside = gt_panel[60, 60].astype(int)
    assert (np.abs(inside - (90 + pal[3].astype(int)) / 2) <= 1).all()  # alpha 0.5
    # the legend under the truth names class 3 only, the one under the prediction class 7 only
    below = out[top + side:]
    assert _present(below[:, starts[1]:starts[1] + side], pal[3])
    assert not _present(below[:, starts[1]:starts[1] + side], pal[7])
    assert _present(below[:, starts[2]:], pal[7]) and not _present(below[:, starts[2]:], pal[3])


def test_a_frame_where_nothing_sounds_is_labelled(tmp_path):
    image = np.full((64, 64, 3), 90, np.uint8)
    silent, heard = np.zeros((64, 64), np.uint8), np.zeros((64, 64), np.uint8)
    heard[:8, :8] = 2
    pal = display_palette([2], 71)
    comparison_strip(tmp_path / "s.png", image, silent, heard, pal, NAMES, title="x")
    comparison_strip(tmp_path / "h.png", image, heard, heard, pal, NAMES, title="x")
    red = lambda p: (np.asarray(Image.open(p).convert("RGB")) == (160, 0, 0)).all(-1).sum()
    assert red(tmp_path / "s.png") > 50 and red(tmp_path / "h.png") == 0  # the red note


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
    # with the ground truth: the middle one of the frames where something sounds
    sounding = np.zeros(len(frames), bool)
    sounding[(frames.uid == "silent_002").to_numpy() & (frames.frame >= 3).to_numpy()] = True
    sounding[(frames.uid == "m_003").to_numpy()] = True
    heard = pick_overlay_frames(frames, 3, ["silent"], sounding)
    at = dict(zip(frames.uid[heard], frames.frame[heard]))
    assert at["silent_002"] == 4 and at["m_003"] == 2  # (3, 4) -> 4; all five -> the middle
    assert at[next(u for u in at if u not in ("silent_002", "m_003"))] == 2  # none sounds


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
