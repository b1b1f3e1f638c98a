"""Resume after a crash (pcas_core.runtime.resume through pcas_core.runtime.fit.fit): a run stopped after
epoch k and resumed ends with the same weights, history and DVCLive curves, bit for bit, as an
uninterrupted run; a checkpoint made with other params is refused."""

import logging
import random

import numpy as np
import pytest
import torch

from pcas_core.pipeline.align import AlignInputs, build_align_model, train_alignment
from pcas_core.runtime.stage import RunEnv, seed_everything
from pcas_core.runtime.curves import epoch_curves
from pcas_core.data.dataset import open_dataset
from pcas_core.models.visual import build_visual
from pcas_core.params import AlignConfig
from pcas_core.runtime.resume import EpochCheckpoint, ResumeError, file_fingerprints, resume_requested
from pcas_core.runtime.fit import fit
from layouts import make_avss

PARAMS = {"base": {"seed": 0}, "toy": {"lr": 0.05, "epochs": 4}}


class Crash(RuntimeError):
    pass


def _toy_fit(checkpoint, on_epoch=None, crash_after=None, crash_in_epoch=None, epochs=4):
    """Dropout (torch's global RNG) and loss noise from NumPy's and Python's global RNGs, so a
    resume that forgets any RNG state diverges; batches from a per-epoch seed, as the stages."""
    seed_everything(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 1))
    x = torch.randn(12, 3)

    def batches(epoch):
        order = torch.randperm(12, generator=torch.Generator().manual_seed(100 + epoch))
        return [x[order[i:i + 4]] for i in range(0, 12, 4)]

    def loss(batch):
        if crash_in_epoch is not None and len(seen) == crash_in_epoch:
            raise Crash("killed mid-epoch")
        steps.append(len(seen))
        noise = float(np.random.rand()) + random.random()
        out = model(batch)
        return {"loss": ((out - noise) ** 2).mean(), "aux": out.abs().mean()}

    seen, steps = [], []

    def callback(epoch, values, points):
        seen.append(epoch)
        if on_epoch is not None:
            on_epoch(epoch, values, points)
        if crash_after is not None and epoch == crash_after:
            raise Crash(f"killed after epoch {epoch}")

    history = fit(model, batches, loss, epochs=epochs, steps_per_epoch=3,
                  groups=[(model.parameters(), 0.05)], warmup_epochs=1,
                  device=torch.device("cpu"), on_epoch=callback, checkpoint=checkpoint)
    return model.state_dict(), history, seen, steps


def _same_state(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _curves(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("crash", [{"crash_after": 1}, {"crash_in_epoch": 2}])
def test_a_resumed_run_equals_an_uninterrupted_one(tmp_path, crash):
    with epoch_curves(tmp_path / "plain") as on_epoch:
        state, history, _, _ = _toy_fit(None, on_epoch)
    path = tmp_path / "ckpt" / "last.pt"
    with epoch_curves(tmp_path / "resumed") as on_epoch, pytest.raises(Crash):
        _toy_fit(EpochCheckpoint(path, PARAMS), on_epoch, **crash)
    assert path.is_file()  # the checkpoint of the last finished epoch (epoch 1)
    # rerun as `dvc repro` does: the curves folder starts empty, the checkpoint survives
    with epoch_curves(tmp_path / "resumed") as on_epoch:
        state2, history2, seen, steps = _toy_fit(EpochCheckpoint(path, PARAMS, resume=True),
                                                 on_epoch)
    assert seen == [0, 1, 2, 3]  # epochs 0-1 replayed to the curves, 2-3 trained
    assert steps == [2] * 3 + [3] * 3
    assert _same_state(state, state2)
    assert history2 == history
    assert _curves(tmp_path / "resumed") == _curves(tmp_path / "plain")
    # without resuming, the same file would not be used: a different run from scratch
    skipped, *_ = _toy_fit(EpochCheckpoint(path, PARAMS, resume=False))
    assert _same_state(skipped, state)


def test_resume_is_really_used_and_really_needed(tmp_path):
    """The test above could pass if resume retrained from scratch: check that the restored run
    starts at epoch 2 and that forgetting the RNG state would have changed the weights."""
    path = tmp_path / "last.pt"
    with pytest.raises(Crash):
        _toy_fit(EpochCheckpoint(path, PARAMS), crash_after=1)
    saved = torch.load(path, weights_only=True)
    assert '"epoch": 1' in saved["meta"]
    *_, steps = _toy_fit(EpochCheckpoint(path, PARAMS, resume=True))
    assert steps == [2] * 3 + [3] * 3  # epochs 2 and 3 trained, 3 steps each
    state, *_ = _toy_fit(None)
    saved["rng"]["torch"] = torch.manual_seed(123).get_state()
    torch.save(saved, path)
    other, *_ = _toy_fit(EpochCheckpoint(path, PARAMS, resume=True))
    assert not _same_state(state, other)


def test_a_checkpoint_of_other_params_is_refused(tmp_path):
    path = tmp_path / "last.pt"
    with pytest.raises(Crash):
        _toy_fit(EpochCheckpoint(path, PARAMS), crash_after=0)
    other = {"base": {"seed": 0}, "toy": {"lr": 0.1, "epochs": 4}}
    with pytest.raises(ResumeError, match=r"other params \(toy.lr: 0.05 -> 0.1\)"):
        _toy_fit(EpochCheckpoint(path, other, resume=True))
    workers = {"base": {"seed": 0, "num_workers": 2}, "toy": PARAMS["toy"]}  # no result change
    with pytest.raises(Crash):
        _toy_fit(EpochCheckpoint(path, {**PARAMS, "base": {"seed": 0, "num_workers": 0}}),
                 crash_after=0)
    *_, steps = _toy_fit(EpochCheckpoint(path, workers, resume=True))
    assert len(steps) == 9  # resumed: epochs 1-3 trained
    store = tmp_path / "store.h5"
    store.write_bytes(b"v1")
    with pytest.raises(Crash):
        _toy_fit(EpochCheckpoint(path, PARAMS, inputs=file_fingerprints([store])), crash_after=0)
    store.write_bytes(b"v2 rewritten by an upstream rerun")
    with pytest.raises(ResumeError, match=r"other input files \(.*store.h5 changed"):
        _toy_fit(EpochCheckpoint(path, PARAMS, resume=True, inputs=file_fingerprints([store])))
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ResumeError, match="cannot read the resume checkpoint"):
        _toy_fit(EpochCheckpoint(path, PARAMS, resume=True))


def test_resume_request_and_place_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("PCAS_CHECKPOINT_DIR", str(tmp_path))
    monkeypatch.delenv("PCAS_RESUME", raising=False)
    assert not resume_requested()
    ckpt = EpochCheckpoint.for_stage("align", PARAMS)
    assert ckpt.path == tmp_path / "align" / "last.pt" and not ckpt.resume
    monkeypatch.setenv("PCAS_RESUME", "1")
    assert EpochCheckpoint.for_stage("align", PARAMS).resume
    monkeypatch.setenv("PCAS_RESUME", "ture")
    with pytest.raises(ResumeError, match="PCAS_RESUME='ture'"):
        resume_requested()
    ckpt.path.parent.mkdir(parents=True)
    ckpt.path.write_bytes(b"x")
    (tmp_path / "keep").write_bytes(b"")
    ckpt.remove()
    assert not ckpt.path.parent.exists() and tmp_path.is_dir()  # a folder with other files stays


def _align_run(tmp_path, checkpoint, crash_after=None):
    """train_alignment on a tiny dataset with every term on: CMCC draws crop positions from its
    own generator across epochs and updates the EMA head, both part of what must be restored;
    CMPC and CMCC start at step ceil(0.5 x 9) = 5, inside epoch 1, after the crash point."""
    root = tmp_path / "avss"
    if not root.exists():
        make_avss(root)
    data = open_dataset({"root": str(root), "img_size": 16})
    train = data.split("train", "val", "test")
    seed_everything(0)
    visual = build_visual({"backbone": "vit_tiny_patch16_224", "num_classes": 70, "img_size": 16,
                           "pretrained": False,
                           "backbone_kwargs": {"patch_size": 8, "depth": 1, "embed_dim": 16,
                                               "num_heads": 2}})
    cfg = AlignConfig(embed_dim=8, crop_size=8, n_crops=2, epochs=3, min_steps=0, batch_videos=2,
                      warmup_epochs=0.0, token_contrast_start=0.5)
    model = build_align_model(visual, 6, cfg)
    audio = np.random.default_rng(0).standard_normal((len(train.frames), 6)).astype(np.float32)

    def on_epoch(epoch, values, points):
        if epoch == crash_after:
            raise Crash(f"killed after epoch {epoch}")

    inputs = AlignInputs(train.clips(visual.mean, visual.std), train.frames, audio)
    history = train_alignment(model, inputs, cfg, RunEnv(log=logging.getLogger("test")),
                              on_epoch=on_epoch, checkpoint=checkpoint)
    return {k: v.clone() for k, v in model.state_dict().items()}, history


def test_alignment_resumes_exactly(tmp_path):
    state, history = _align_run(tmp_path, None)
    path = tmp_path / "ckpt" / "last.pt"
    with pytest.raises(Crash):
        _align_run(tmp_path, EpochCheckpoint(path, PARAMS), crash_after=0)
    state2, history2 = _align_run(tmp_path, EpochCheckpoint(path, PARAMS, resume=True))
    assert "cmcc" not in history[0] and "cmcc" in history[1] and history2 == history
    assert any(k.startswith("crop_head_ema.") for k in state)
    assert _same_state(state, state2)
