"""The align stage's loop (pcas_core.pipeline.align) on tiny synthetic videos: where the token
terms start, the paper's schedule as a params recipe, the warning of CMPC/CMCC without CMC, and
the gradient-share measurement that the stage writes to metrics/align.json."""

import copy
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from torch.utils.data import Dataset

from pcas_core.models.visual import build_visual
from pcas_core.params import AlignConfig, load_config
from pcas_core.pipeline import align as pipeline
from pcas_core.pipeline.align import (AlignInputs, build_align_model, first_token_step,
                                      gradient_metrics, measure_gradient_shares, train_alignment)
from pcas_core.runtime.stage import RunEnv

ROOT = Path(__file__).resolve().parents[2]
ENV = RunEnv(log=logging.getLogger("test.align"))
SMALL = dict(embed_dim=8, n_crops=2, crop_size=16, batch_videos=2, warmup_epochs=0.0, min_steps=0)


class Clips(Dataset):
    """``n`` synthetic videos of 1-2 frames with multi-hot labels over 4 classes."""

    def __init__(self, n: int = 5, size: int = 32) -> None:
        g = torch.Generator().manual_seed(3)
        counts = torch.randint(1, 3, (n,), generator=g).tolist()
        self.frames = [torch.randn(c, 3, size, size, generator=g) for c in counts]
        self.labels = (torch.rand(n, 4, generator=g) > 0.5).float()
        self.table = pd.DataFrame({"video": np.repeat(np.arange(n), counts)})

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i: int) -> dict:
        return {"frames": self.frames[i], "labels": self.labels[i], "video": i}


def _vit():
    torch.manual_seed(0)
    return build_visual({"backbone": "vit_tiny_patch16_224", "num_classes": 4, "img_size": 32,
                         "backbone_kwargs": {"patch_size": 8, "depth": 1, "embed_dim": 16,
                                             "num_heads": 2}})


def _inputs(clips):
    audio = np.random.default_rng(0).standard_normal((len(clips.table), 6)).astype(np.float32)
    return AlignInputs(clips, clips.table, audio)


@pytest.mark.parametrize("start, epochs, steps, min_steps, first", [
    (0.0, 3, 3, 0, 0), (0.5, 3, 3, 0, 5), (0.3, 2, 3, 0, 2), (0.5, 2, 2, 0, 2), (0.99, 1, 4, 0, 4),
    (0.5, 1, 4, 20, 10)])  # min_steps 20: the run takes 5 epochs of 4 steps, half of it is 10
def test_first_token_step_is_the_ceiling_of_the_fraction_of_the_run(start, epochs, steps,
                                                                    min_steps, first):
    cfg = AlignConfig(token_contrast_start=start, epochs=epochs, min_steps=min_steps)
    assert first_token_step(cfg, steps) == first


def test_the_token_terms_start_at_their_step_and_the_epoch_means_count_only_their_steps(
        monkeypatch):
    calls = []
    terms_of = pipeline.alignment_terms

    def spy(*args, token_terms=True, **kwargs):
        terms = terms_of(*args, token_terms=token_terms, **kwargs)
        calls.append((token_terms, {k: float(v.detach()) for k, v in terms.items()}))
        return terms

    monkeypatch.setattr(pipeline, "alignment_terms", spy)
    clips = Clips()            # 5 videos in batches of 2: 3 steps per epoch, 6 in all
    cfg = AlignConfig(**SMALL, epochs=2, token_contrast_start=0.4)   # ceil(2.4): step 3
    model = build_align_model(_vit(), 6, cfg)
    history = train_alignment(model, _inputs(clips), cfg, ENV)
    assert [on for on, _ in calls] == [False, False, False, True, True, True]
    assert "cmpc" not in history[0] and "cmcc" not in history[0]
    for term in ("cmpc", "cmcc", "crop_positive", "patch_ignored"):
        assert history[1][term] == pytest.approx(np.mean([t[term] for _, t in calls[3:]]))
    assert history[0]["cls"] == pytest.approx(np.mean([t["cls"] for _, t in calls[:3]]))


def test_the_paper_schedule_recipe_validates_and_runs(tmp_path):
    """docs/experiments.md §1: dvc exp run -S align.epochs=9 -S align.warmup_epochs=2 -S align.lr_backbone=0.0006
    -S align.lr_heads=0.0012 (Adam, 9 epochs with 2 of warm-up, the paper's learning rates)."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["align"].update(epochs=9, warmup_epochs=2, lr_backbone=0.0006, lr_heads=0.0012)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    paper = load_config(path).align
    assert (paper.epochs, paper.warmup_epochs, paper.lr_backbone, paper.lr_heads) == \
        (9, 2.0, 0.0006, 0.0012)
    cfg = AlignConfig(**{**SMALL, "warmup_epochs": paper.warmup_epochs, "epochs": paper.epochs,
                         "lr_backbone": paper.lr_backbone, "lr_heads": paper.lr_heads})
    lrs = []
    history = train_alignment(build_align_model(_vit(), 6, cfg), _inputs(Clips(4)), cfg, ENV,
                              on_epoch=lambda epoch, values, points: lrs.append(values["lr"]))
    assert len(history) == 9 and all(np.isfinite(h["loss"]) for h in history)
    # 2 steps per epoch: warm-up over steps 0-3 ((s + 1) / 4), the peak at step 4, cosine to 0
    assert lrs[0] == pytest.approx(0.0006 * 3 / 4)
    assert lrs[1] == pytest.approx(0.0006)
    assert lrs[-1] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("cmc, labels, warned", [
    (False, "sounding", True), (True, "sounding", False), (False, "cam", False)])
def test_cmpc_on_an_untrained_sounding_map_is_warned_about(caplog, cmc, labels, warned):
    cfg = AlignConfig(**SMALL, epochs=1, cmc=cmc, cmpc_labels=labels)
    with caplog.at_level(logging.WARNING, logger="test.align"):
        train_alignment(build_align_model(_vit(), 6, cfg), _inputs(Clips(2)), cfg, ENV)
    assert any("random projections" in r.message for r in caplog.records) == warned


def _efficientnet_model(cfg):
    """The demo backbone config (train_visual: token_layer 3, frozen_stages 3), random init."""
    torch.manual_seed(0)
    visual = build_visual({"backbone": "tf_efficientnet_lite0", "pretrained": False,
                           "num_classes": 4, "img_size": 64, "token_layer": 3,
                           "frozen_stages": 3})
    return build_align_model(visual, 6, cfg)


def test_measuring_the_gradient_shares_leaves_no_trace():
    cfg = AlignConfig(**{**SMALL, "crop_size": 32}, token_contrast_start=0.9, grad_share_batches=2)
    model = _efficientnet_model(cfg)
    with torch.no_grad():
        model.crop_head.net.weight.mul_(2.0)   # an EMA step would now move the EMA head
    model.eval()
    state = copy.deepcopy(model.state_dict())
    rng = torch.get_rng_state()
    result = measure_gradient_shares(model, _inputs(Clips(4, size=64)), cfg, ENV)
    # every switched-on term, though token_contrast_start would hold CMPC/CMCC back in training
    assert set(result["share"]) == {"cls", "cmc", "cmpc", "cmcc"}
    assert sum(result["share"].values()) == pytest.approx(1.0)
    assert set(result["cos_cmc"]) == {"cls", "cmpc", "cmcc"} and result["batches"] == 2
    assert result["final_token_norm"] > 0
    after = model.state_dict()  # BatchNorm statistics, EMA head, weights: as they were
    assert all(torch.equal(after[k], v) for k, v in state.items())
    assert torch.equal(torch.get_rng_state(), rng)
    assert not model.training and all(p.grad is None for p in model.parameters())
    off = AlignConfig(**SMALL, grad_share_batches=0)
    assert measure_gradient_shares(model, _inputs(Clips(2, size=64)), off, ENV) == {}


def test_measurements_are_repeatable_and_land_in_the_metrics_layout():
    cfg = AlignConfig(**SMALL, cmcc=False, grad_share_batches=2)
    model = build_align_model(_vit(), 6, cfg)
    inputs = _inputs(Clips(4))
    start = measure_gradient_shares(model, inputs, cfg, ENV)
    assert measure_gradient_shares(model, inputs, cfg, ENV) == start
    train_alignment(model, inputs, cfg, ENV)
    end = measure_gradient_shares(model, inputs, cfg, ENV)
    metrics = gradient_metrics(start, end)
    assert metrics["grad_share"]["start"]["cmpc"] == start["share"]["cmpc"]
    assert metrics["grad_norm"]["end"]["cls"] == end["norm"]["cls"]
    assert set(metrics["grad_cos_cmc"]["start"]) == {"cls", "cmpc"}
    assert metrics["final_token_norm"] == {"start": start["final_token_norm"],
                                           "end": end["final_token_norm"]}
    assert metrics["grad_share_batches"] == 2
    assert end["norm"] != start["norm"]  # training moved the model
    assert gradient_metrics({}, {}) == {"grad_share_batches": 0}
