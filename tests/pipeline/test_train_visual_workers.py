"""Determinism with DataLoader workers (base.num_workers): frames are decoded by worker processes,
and the same seed gives the same batches and the same trained model with 0 or 2 workers."""

import logging

import torch

from pcas_core.runtime.stage import seed_everything
from pcas_core.data.dataset import open_dataset
from pcas_core.data.loader import video_loader
from pcas_core.params import TrainVisualConfig
from pcas_core.pipeline.train_visual import train_classifier
from pcas_core.runtime.stage import RunEnv
from pcas_core.models.visual import build_visual
from layouts import make_avss

AUGMENT = {"scale": [0.5, 1.0], "flip": 0.5, "brightness": 0.2}
TINY = {"backbone": "vit_tiny_patch16_224", "img_size": 16, "pretrained": False,
        "backbone_kwargs": {"patch_size": 8, "depth": 1, "embed_dim": 24, "num_heads": 2}}


def _clips(tmp_path, workers):
    root = tmp_path / "avss"
    if not root.exists():
        make_avss(root)
    train = open_dataset({"root": str(root), "img_size": 16}).split("train", "val", "test")
    return train.clips((0.5, 0.5, 0.5), (0.25, 0.25, 0.25), augment=AUGMENT, max_frames=3,
                       num_workers=workers)


def _epoch(clips, seed):
    return [(b["video"].tolist(), b["frame_video"].tolist(), b["frames"].clone())
            for b in video_loader(clips, batch_videos=2, shuffle=True, seed=seed)]


def test_batches_do_not_depend_on_workers(tmp_path):
    runs = [_epoch(_clips(tmp_path, w), seed=7) for w in (0, 2, 2)]
    for other in runs[1:]:
        assert len(other) == len(runs[0]) == 3
        for (v0, f0, x0), (v1, f1, x1) in zip(runs[0], other):
            assert v0 == v1 and f0 == f1
            assert torch.equal(x0, x1)
    # and the randomness is real: under another seed a video gets other crops and frames
    clips = _clips(tmp_path, 0)
    assert not all(torch.equal(clips.reseeded(7)[i]["frames"], clips.reseeded(8)[i]["frames"])
                   for i in range(len(clips)))
    assert torch.equal(clips.reseeded(7)[2]["frames"], clips.reseeded(7)[2]["frames"])


def test_training_is_identical_with_workers(tmp_path):
    states = []
    cfg = TrainVisualConfig(epochs=2, min_steps=0, batch_videos=2, lr=1e-3, warmup_epochs=0.0,
                            weight_decay=0.0)
    for workers in (0, 2, 2):
        seed_everything(0)
        model = build_visual({**TINY, "num_classes": 70})
        history = train_classifier(model, _clips(tmp_path, workers), cfg,
                                   RunEnv(log=logging.getLogger("test")))
        states.append((history, {k: v.clone() for k, v in model.state_dict().items()}))
    for history, state in states[1:]:
        assert history == states[0][0]
        assert all(torch.equal(state[k], states[0][1][k]) for k in state)
