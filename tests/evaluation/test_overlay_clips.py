"""The pictures' clips while the test split streams by: only the chosen clips' rows are kept,
whatever the chunks, and the pictures are those of the whole split at once (the frame where
something sounds, every frame of the clip, each at its file's size)."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pcas_core.evaluation.overlay_clips import OverlayClips
from pcas_core.evaluation.visualize import mask_classes, pick_overlay_frames

NAMES = ["background"] + [f"class{i}" for i in range(1, 71)]


def _split(tmp_path, videos=6, t=4):
    """``videos`` clips of ``t`` frames (a 24 x 32 file each, masks at 8 x 8); in clip v, class
    v + 1 sounds in seconds >= 2 only, and the prediction paints class v + 2 in second 3."""
    rows, gts, shown = [], [], []
    for v in range(videos):
        for f in range(t):
            path = tmp_path / f"clip{v}_{f}.png"
            Image.fromarray(np.full((24, 32, 3), 10 * v + f, np.uint8)).save(path)
            rows.append({"uid": f"clip{v}", "frame": f, "frame_path": str(path)})
            gt = np.zeros((8, 8), np.uint8)
            pred = np.zeros((8, 8), np.uint8)
            if f >= 2:
                gt[:4, :4] = v + 1
            if f == 3:
                pred[4:, 4:] = v + 2
            gts.append(gt)
            shown.append(pred)
    logits = np.random.default_rng(0).normal(size=(len(rows), 70)).astype(np.float32)
    return pd.DataFrame(rows), np.stack(gts), np.stack(shown), logits


@pytest.mark.parametrize("chunk", [1, 3, 7, 100])
def test_only_the_chosen_clips_are_kept_and_drawn_as_from_the_whole_split(tmp_path, chunk):
    scored, gts, shown, logits = _split(tmp_path)
    clips = OverlayClips(scored, 2, ["clip4"], NAMES)
    for start in range(0, len(scored), chunk):
        r = slice(start, min(start + chunk, len(scored)))
        clips.update(r, gts[r], shown[r], logits[r])
    assert sorted(scored.uid.iloc[clips.rows].unique()) == ["clip0", "clip4"]
    assert len(clips.rows) == 8 < len(scored)
    overlays, strips, palette = clips.pictures()
    sounding = np.array([bool(mask_classes(g, len(NAMES))) for g in gts])
    want = pick_overlay_frames(scored, 2, ["clip4"], sounding)
    assert [o.name for o in overlays] == [f"{scored.uid[i]}_{scored.frame[i]}" for i in want]
    assert [o.name for o in overlays] == ["clip0_3", "clip4_3"]  # the middle of seconds 2-3
    assert [o.second for o in overlays] == [3, 3]
    assert overlays[0].image.shape == (24, 32, 3) and overlays[0].image[0, 0, 0] == 3
    assert (overlays[1].gt == gts[19]).all() and (overlays[1].pred == shown[19]).all()
    assert [s.uid for s in strips] == ["clip0", "clip4"]
    assert len(strips[1].images) == 4 and (strips[1].gts == gts[16:20]).all()
    np.testing.assert_allclose(strips[1].scores, 1 / (1 + np.exp(-logits[16:20])), rtol=1e-6)
    # the palette tells apart the classes shown: 1 and 2 (clip 0), 5 and 6 (clip 4)
    assert len({tuple(palette[c]) for c in (1, 2, 5, 6)}) == 4


def test_a_chosen_frame_never_seen_is_an_error(tmp_path):
    scored, gts, shown, logits = _split(tmp_path, videos=2)
    clips = OverlayClips(scored, 2, [], NAMES)
    clips.update(slice(0, 6), gts[:6], shown[:6], logits[:6])  # clip1's last two frames missing
    with pytest.raises(ValueError, match="2 frames of the chosen clips.*row 6.*clip1_2.png"):
        clips.pictures()
