"""The headline of a test metrics file: the layout of metrics/headline.json (head first, the
references after, the right numbers under the right names), the table `make repro` ends with,
and the log line that names its mIoU."""

import json

import numpy as np
import pandas as pd
import pytest

from pcas_core.evaluation.headline import (headline, headline_file, headline_log,
                                           headline_text)
from pcas_core.evaluation.scoring import (Prediction, metrics_file, score_by_kind,
                                          score_by_subset, scored_frames)


def _metrics(kind="avss"):
    """A 5-frame clip: class 1 sounds in the left half of every frame. The head finds it in 4
    frames and paints class 2 in the fifth; background everywhere is the baseline."""
    frames = scored_frames(pd.DataFrame([{"uid": "a", "frame": f, "subset": "v1s",
                                          "mask_path": "m.png"} for f in range(5)]),
                           require_all=True)
    gts = np.zeros((5, 4, 4), np.uint8)
    gts[:, :, :2] = 1
    head = gts.copy()
    head[4] = np.where(gts[4] > 0, 2, 0)
    if kind != "avss":
        gts, head = (gts > 0).astype(np.uint8), (head > 0).astype(np.uint8)
    method = score_by_subset(kind, Prediction(head), gts, frames, batch_videos=4)
    refs = {"pseudo_masks": score_by_kind(kind, Prediction(gts.copy()), gts, frames,
                                          batch_videos=4),
            "baseline.background": score_by_kind(kind, Prediction(np.zeros_like(gts)), gts,
                                                 frames, batch_videos=4)}
    return metrics_file(kind, "test", method, refs)


def test_headline_file_puts_the_head_first_with_the_metrics_files_numbers():
    metrics = _metrics()
    head = headline(metrics)
    file = headline_file(head)
    assert list(file) == ["head", "reference"] and sorted(file) == list(file)  # DVC sorts keys
    assert list(file["head"]) == ["miou_present", "fscore_present", "fg_miou",
                                  "absent_class_frames", "official_miou"]
    assert set(file["reference"]) == {"pseudo_masks", "background"}
    # class 1 found in 4 of 5 frames (IoU 1), background IoU 1 in all: (1 + 4/5 ... ) by hand:
    # background 1.0 in 5 frames; class 1: 1.0 in 4 frames, 0 in the fifth -> 0.8; class 2: 0
    assert file["head"]["miou_present"] == pytest.approx((1.0 + 0.8 + 0.0) / 3)
    assert file["head"]["absent_class_frames"] == pytest.approx(1 / 5)
    assert file["head"]["fg_miou"] == pytest.approx(1.0)  # the object is found, class aside
    assert file["head"]["official_miou"] == metrics["official"]["miou"]
    assert file["reference"]["pseudo_masks"]["miou_present"] == pytest.approx(1.0)
    assert file["reference"]["background"]["absent_class_frames"] == 0.0
    json.dumps(file)  # numbers only


def test_headline_table_is_short_and_names_every_row():
    text = headline_text(headline(_metrics()))
    lines = text.splitlines()
    assert max(len(line) for line in lines) < 120 and len(lines) <= 12
    assert lines[0] == "test split, 5 frames (avss):"
    assert lines[2].startswith("segmentation head") and "0.6000" in lines[2]
    assert any(line.startswith("baseline: background everywhere") for line in lines)


def test_binary_kinds_get_the_binary_columns():
    head = headline(_metrics("s4"))
    assert list(head["head"]) == ["miou", "fscore", "official_miou", "official_fscore"]
    assert "mIoU, F: clean mode (binary" in headline_text(head)


def test_the_log_line_says_which_miou():
    line = headline_log(headline(_metrics()))
    assert line.startswith("test split (5 frames): head miou_present 0.6000")
    assert "official_miou" in line and "clean miou " not in line
    assert "background everywhere miou_present" in line


def test_a_file_that_is_not_a_metrics_file_is_refused():
    with pytest.raises(ValueError, match="not a pcas test metrics file"):
        headline({"loss": 1.0})


def test_pcas_report_prints_the_headline_of_a_metrics_file(tmp_path):
    from typer.testing import CliRunner

    from stages.cli import app

    (tmp_path / "m.json").write_text(json.dumps(_metrics()))
    out = CliRunner().invoke(app, ["report", "--metrics-file", str(tmp_path / "m.json")])
    assert out.exit_code == 0 and out.output.splitlines()[2].startswith("segmentation head")
    missing = CliRunner().invoke(app, ["report", "--metrics-file", str(tmp_path / "no.json")])
    assert missing.exit_code != 0 and "dvc repro" in missing.output
