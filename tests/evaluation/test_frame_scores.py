"""pcas_core.evaluation.frame_scores: frame-level classification per split and clip kind on a small
real demo, and the warning when a classifier predicts no class (an untrained one warns, one
trained for enough steps does not)."""

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

import pcas_core  # noqa: F401
from pcas_core.data.dataset import open_dataset
from pcas_core.demo.compose import build_demo_dataset, parse_sounding
from pcas_core.evaluation.frame_scores import (frame_scores_file, predicts_no_class,
                                               predicts_no_true_class,
                                               trained_classifier_scores, warn_if_no_class)
from pcas_core.params import DemoClips, DemoConfig, SplitCounts as S
from pcas_core.runtime.fit import fit

ASSETS = Path(__file__).resolve().parents[2] / "data" / "demo-assets"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """Two classes; train: 2 always clips; test: 2 always, 2 event clips (5 frames each)."""
    root = tmp_path_factory.mktemp("frame_scores") / "demo"
    none = S()
    build_demo_dataset(ASSETS, root, DemoConfig(
        img_size=32, classes=["dog", "guitar"],
        clips=DemoClips(always=S(train=1, test=1), event=S(test=1), silent=none, multi=none,
                        long=none)))
    return open_dataset({"root": root, "img_size": 32, "label_source": "masks"})


def _logits(data, per_frame: bool) -> np.ndarray:
    """+8 for the clip's class in the frames where it sounds (``per_frame``) or in every frame
    of the clip (the video label), -8 elsewhere."""
    out = np.full((len(data.frames), data.labels.shape[1]), -8.0, np.float32)
    col = {name: data.label2idx[name] - 2 for name in data.label2idx}
    for v, rec in enumerate(data.metadata.itertuples()):
        rows = np.flatnonzero(data.frames["video"].to_numpy() == v)
        for name, bits in parse_sounding(rec.sounding).items():
            on = bits if per_frame else np.ones_like(bits)
            out[rows[on], col[name]] = 8.0
    return out


def test_scores_per_split_and_kind(demo):
    exact = frame_scores_file(_logits(demo, per_frame=True), demo, threshold=0.5)
    assert set(exact) == {"frame_cls_test", "frame_cls_train", "by_kind"}
    assert exact["frame_cls_test"]["f1"] == 1.0 and exact["frame_cls_train"]["f1"] == 1.0
    assert exact["frame_cls_train"]["n_frames"] == 10 and exact["frame_cls_test"]["n_frames"] == 20
    assert exact["by_kind"] == {k: {"f1": 1.0, "precision": 1.0, "recall": 1.0, "n_frames": 10}
                                for k in ("always", "event")}
    # predicting the video label in every frame: right on always-on clips, false positives in
    # the silent seconds of event clips (precision = sounding frames / frames)
    video = frame_scores_file(_logits(demo, per_frame=False), demo, threshold=0.5)
    events = demo.metadata[(demo.metadata["kind"] == "event")]
    heard = sum(int(parse_sounding(s)[a].sum()) for s, a in zip(events["sounding"], events["a_obj"]))
    assert heard < 10
    assert video["by_kind"]["always"]["f1"] == 1.0
    assert video["by_kind"]["event"]["precision"] == pytest.approx(heard / 10)
    assert video["by_kind"]["event"]["recall"] == 1.0
    with pytest.raises(ValueError, match="one row per frame"):
        frame_scores_file(np.zeros((3, 70), np.float32), demo, threshold=0.5)


def test_a_dataset_without_kinds_has_no_kind_scores(demo):
    plain = type(demo)(demo.root, demo.label2idx, demo.palette, demo.metadata,
                       demo.frames.drop(columns="kind"), demo.labels, demo.img_size)
    assert "by_kind" not in frame_scores_file(_logits(plain, True), plain, threshold=0.5)


def test_untrained_classifier_warns_trained_one_does_not(caplog):
    """A linear multi-label classifier whose bias starts at the head prior 0.01 (as the stages'
    heads): after 1 step it predicts no class on its training frames and the warning names the
    stage, split, threshold and the keys to raise; after min_steps 300 it predicts and is quiet."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(24, 6, generator=g)
    y = (x[:, :3] > 0.5).float()

    def trained(min_steps: int) -> np.ndarray:
        torch.manual_seed(0)
        model = torch.nn.Linear(6, 3)
        torch.nn.init.constant_(model.bias, float(np.log(0.01 / 0.99)))
        fit(model, lambda e: [(x, y)],
            lambda b: {"loss": torch.nn.functional.binary_cross_entropy_with_logits(
                model(b[0]), b[1])}, epochs=1, steps_per_epoch=1, min_steps=min_steps,
            groups=[(model.parameters(), 0.05)], device=torch.device("cpu"))
        with torch.no_grad():
            return model(x).numpy()

    log = logging.getLogger("test.frame_scores")
    with caplog.at_level(logging.WARNING, logger="test.frame_scores"):
        assert warn_if_no_class(trained(0), stage="train_audio", split="train", threshold=0.5,
                                threshold_key="train_audio.eval_threshold", logger=log)
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    for text in ("train_audio: no class reaches sigmoid >= 0.5 (train_audio.eval_threshold) on "
                 "any of the 24 train frames", "train_audio.min_steps", "train_audio.epochs"):
        assert text in record.getMessage()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="test.frame_scores"):
        assert not warn_if_no_class(trained(300), stage="train_audio", split="train",
                                    threshold=0.5, logger=log)
    assert not caplog.records


def test_predicts_no_class_threshold():
    logits = np.array([[-1.0, 0.0], [-3.0, -2.0]])
    assert not predicts_no_class(logits, 0.5)  # sigmoid(0) = 0.5 counts
    assert predicts_no_class(logits, 0.6) and predicts_no_class(np.zeros((0, 2)), 0.5)


def test_warns_when_no_frame_gets_a_correct_class(caplog):
    """AST seed 1 on the demo: a few classes predicted, none right (train frame F1 0.000): the
    first check passes, the second (given the frames' classes) warns; one right class silences it."""
    targets = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [np.nan, np.nan, np.nan], [0, 0, 0]])
    wrong = np.full((4, 3), -6.0)
    wrong[0, 2] = wrong[1, 0] = wrong[2, 1] = 3.0  # predicted, but never a frame's class
    assert not predicts_no_class(wrong, 0.5) and predicts_no_true_class(wrong, targets, 0.5)
    log = logging.getLogger("test.frame_scores.true")
    with caplog.at_level(logging.WARNING, logger="test.frame_scores.true"):
        assert not warn_if_no_class(wrong, stage="train_audio", split="train", threshold=0.5,
                                    logger=log)  # without targets only the first check runs
        assert warn_if_no_class(wrong, stage="train_audio", split="train", threshold=0.5,
                                logger=log, targets=targets)
    (record,) = caplog.records
    assert "no frame of the 4 train frames gets a correct class" in record.getMessage()
    assert "train_audio.min_steps" in record.getMessage()
    right = wrong.copy()
    right[1, 1] = 3.0
    assert not predicts_no_true_class(right, targets, 0.5)
    assert not predicts_no_true_class(wrong, np.zeros((4, 3)), 0.5)  # nothing to get right


def test_trained_classifier_scores_warns_on_the_training_split_and_scores_all(demo, caplog):
    """The stages' entry point: frame_scores_file's dict, plus the collapse warning of the
    training split only (a swapped class on every frame: predictions, none right)."""
    exact = _logits(demo, per_frame=True)
    log = logging.getLogger("test.frame_scores.stage")
    with caplog.at_level(logging.WARNING, logger="test.frame_scores.stage"):
        assert trained_classifier_scores(exact, demo, stage="train_visual", threshold=0.5,
                                         logger=log) == frame_scores_file(exact, demo,
                                                                          threshold=0.5)
    assert not caplog.records
    swapped = exact[:, ::-1].copy()
    with caplog.at_level(logging.WARNING, logger="test.frame_scores.stage"):
        scores = trained_classifier_scores(swapped, demo, stage="train_visual", threshold=0.5,
                                           logger=log)
    assert scores["frame_cls_train"]["f1"] == 0.0
    (record,) = caplog.records
    assert "no frame of the 10 train frames gets a correct class" in record.getMessage()
    with pytest.raises(ValueError, match="one row per frame"):
        trained_classifier_scores(np.zeros((3, 70), np.float32), demo, stage="train_visual",
                                  threshold=0.5, logger=log)
