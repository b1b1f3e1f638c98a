"""The clip strip: its timeline rows are the classes that sound in each second by the ground
truth, beside the audio scores; the drawing has one coloured cell per sounding second."""

import numpy as np
import pytest
from PIL import Image

from pcas_core.evaluation.clip_strip import ClipStrip, clip_timeline, strip_figure, write_strips
from pcas_core.evaluation.visualize import display_palette

NAMES = ["background"] + [f"class{i}" for i in range(1, 71)]


def _clip():
    """4 seconds: class 3 sounds in seconds 1 and 2 (0-based), class 5 in second 3, second 0 is
    silent; the audio hears class 3 in seconds 1-2 and class 9 (never in the truth) in second 0."""
    gts = np.zeros((4, 8, 8), np.uint8)
    gts[1, :4, :4] = 3
    gts[2, 2:6, 2:6] = 3
    gts[3, 4:, 4:] = 5
    gts[3, 0, 0] = 255  # ignored pixels name no class
    scores = np.full((4, 70), 0.05, np.float32)
    scores[1:3, 2] = 0.9  # column k = class k + 1
    scores[0, 8] = 0.6
    scores[3, 4] = 0.2  # class 5 sounds but is not heard: below theta
    return gts, scores


def test_timeline_rows_are_the_sounding_seconds():
    gts, scores = _clip()
    tl = clip_timeline(gts, scores, NAMES, NAMES, theta=0.3)
    assert tl.names == ["class3", "class5", "class9"] and tl.classes == [3, 5, 9]
    assert tl.sounding.tolist() == [[False, True, True, False], [False, False, False, True],
                                    [False, False, False, False]]
    assert tl.scores[0].tolist() == pytest.approx([0.05, 0.9, 0.9, 0.05])
    assert tl.scores[1].tolist() == pytest.approx([0.05, 0.05, 0.05, 0.2])
    assert tl.scores[2].tolist() == pytest.approx([0.6, 0.05, 0.05, 0.05])


def test_binary_truth_gets_one_sounding_row_and_score_rows():
    gts, scores = _clip()
    tl = clip_timeline((gts > 0).astype(np.uint8) * (gts != 255), scores,
                       ["background", "foreground"], NAMES, theta=0.3)
    assert tl.names == ["sounding object", "class3", "class9"]
    assert tl.sounding[0].tolist() == [False, True, True, True] and not tl.sounding[1:].any()
    assert np.isnan(tl.scores[0]).all()


def test_strip_draws_a_cell_per_sounding_second(tmp_path):
    gts, scores = _clip()
    images = [np.full((16, 16, 3), 100 + 20 * t, np.uint8) for t in range(4)]
    strip = ClipStrip("clip_a", images, gts, gts, scores)
    pal = display_palette([3, 5], 71)
    tl = clip_timeline(gts, scores, NAMES, NAMES, theta=0.3)
    fig = strip_figure(strip, tl, pal, NAMES, theta=0.3)
    cells = [(p.get_x(), p.get_y(), tuple(np.round(p.get_facecolor()[:3], 3)))
             for p in next(a for a in fig.axes if a.get_label() == "timeline").patches]
    colour = lambda c: tuple(np.round(pal[c] / 255, 3))
    assert sorted(cells) == [(0.5, 0, colour(3)), (1.5, 0, colour(3)), (2.5, 1, colour(5))]
    titles = [ax.get_title() for ax in fig.axes[:4]]
    assert titles[0] == "second 1\nnothing sounds" and titles[1] == "second 2"
    write_strips(tmp_path, [strip, ClipStrip("clip_b", images[:2], gts[:2], gts[:2],
                                             scores[:2])], pal, NAMES, NAMES, theta=0.3)
    wide = Image.open(tmp_path / "clip_a_clip.png").size
    narrow = Image.open(tmp_path / "clip_b_clip.png").size
    assert wide[0] > narrow[0] + 400  # 2.25 inches per second at 100 dpi
