"""pcas_core.runtime.fit.fit: the logged epoch means and the non-finite-loss check (which reads the
loss from the device once per FINITE_CHECK_EVERY steps, not once per step)."""

import pytest
import torch

from pcas_core.runtime import fit as training
from pcas_core.runtime.fit import fit


def _run(values, *, epochs=1, lr=0.0, seen=None):
    """fit on a model whose loss at step i is ``values[i] * w`` with w = 1 (lr 0 keeps w = 1
    while the gradients are finite); ``seen`` collects the batches the loss was computed on."""
    w = torch.nn.Parameter(torch.ones(()))
    model = torch.nn.Module()
    model.w = w
    seen = [] if seen is None else seen

    def loss(v):
        seen.append(v)
        return {"loss": v * w, "half": v * w / 2}

    per_epoch = len(values) // epochs
    batches = lambda e: [torch.tensor(v, dtype=torch.float32)
                         for v in values[e * per_epoch:(e + 1) * per_epoch]]
    history = fit(model, batches, loss, epochs=epochs, steps_per_epoch=per_epoch,
                  groups=[(model.parameters(), lr)], device=torch.device("cpu"))
    return history, seen


def test_epoch_means_are_the_means_of_the_steps():
    history, _ = _run([1.0, 2.0, 6.0, 10.0, 20.0, 30.0], epochs=2)
    assert history[0] == pytest.approx({"loss": 3.0, "half": 1.5})
    assert history[1] == pytest.approx({"loss": 20.0, "half": 10.0})


def test_a_term_that_only_some_steps_return_is_averaged_over_those_steps():
    """The alignment's CMPC/CMCC before align.token_contrast_start: not counted as 0."""
    w = torch.nn.Parameter(torch.ones(()))
    model = torch.nn.Module()
    model.w = w
    late = {2: 4.0, 3: 8.0, 4: 30.0}  # step -> value of a term returned from step 2 on

    def loss(step):
        terms = {"loss": w * 0 + 1.0}
        if step in late:
            terms["late"] = torch.tensor(late[step])
        return terms

    history = fit(model, lambda e: list(range(3 * e, 3 * e + 3))[:3], loss, epochs=2,
                  steps_per_epoch=3, groups=[(model.parameters(), 0.0)],
                  device=torch.device("cpu"))
    assert history[0] == pytest.approx({"loss": 1.0, "late": 4.0})   # one step of three
    assert history[1] == pytest.approx({"loss": 1.0, "late": 19.0})  # (8 + 30) / 2, not / 3
    history = fit(model, lambda e: [0, 1], loss, epochs=1, steps_per_epoch=2,
                  groups=[(model.parameters(), 0.0)], device=torch.device("cpu"))
    assert history == [{"loss": 1.0}]  # never returned in the epoch: no key


def test_a_nan_loss_stops_training_within_the_check_interval(monkeypatch):
    monkeypatch.setattr(training, "FINITE_CHECK_EVERY", 3)
    values = [1.0, float("nan")] + [1.0] * 10
    seen = []
    with pytest.raises(FloatingPointError, match=r"epoch 1: the loss became nan within its first 3 steps"):
        _run(values, seen=seen)
    assert len(seen) == 3  # the NaN of step 2 is caught at the look after step 3, not at step 12


def test_an_infinite_loss_in_the_last_short_stretch_is_caught_at_the_end_of_the_epoch(monkeypatch):
    monkeypatch.setattr(training, "FINITE_CHECK_EVERY", 50)
    seen = []
    # an inf gradient makes Adam's update NaN, so the sum may be inf or nan by the end
    with pytest.raises(FloatingPointError, match=r"epoch 2: the loss became (inf|nan) within its first 3 steps"):
        _run([1.0, 1.0, 1.0, 1.0, float("inf"), 1.0], epochs=2, seen=seen)
    assert len(seen) == 6


def test_finite_losses_run_every_step(monkeypatch):
    monkeypatch.setattr(training, "FINITE_CHECK_EVERY", 2)
    history, seen = _run([1.0] * 7)
    assert len(seen) == 7 and history[0]["loss"] == pytest.approx(1.0)


def test_schedule_epochs_reaches_min_steps():
    assert training.schedule_epochs(6, 26, 150) == 6  # the demo: 156 steps already
    assert training.schedule_epochs(6, 4, 150) == 38  # 28 clips: 4 batches an epoch
    assert training.schedule_epochs(2, 3, 6) == 2 and training.schedule_epochs(2, 3, 7) == 3
    assert training.schedule_epochs(0, 4, 150) == 0  # no training stays no training
    assert training.schedule_epochs(3, 0, 10) == 3
    with pytest.raises(ValueError, match="min_steps"):
        training.schedule_epochs(1, 1, -1)


def _lr_run(epochs, min_steps, caplog=None):
    """fit on a toy model, 3 batches an epoch, warm-up 1 epoch: (steps taken, lr at each epoch's end)."""
    w = torch.nn.Parameter(torch.ones(()))
    model = torch.nn.Module()
    model.w = w
    steps, lrs = [], []
    history = fit(model, lambda e: [torch.tensor(1.0)] * 3,
                  lambda v: steps.append(v) or {"loss": (v * w) ** 2}, epochs=epochs,
                  steps_per_epoch=3, min_steps=min_steps, groups=[(model.parameters(), 0.1)],
                  warmup_epochs=1.0, device=torch.device("cpu"),
                  on_epoch=lambda e, values, points: lrs.append(values["lr"]))
    assert len(history) == len(lrs)
    return len(steps), lrs


def test_min_steps_adds_epochs_and_the_schedule_spans_them(caplog):
    # 2 epochs x 3 steps: warm-up 3 steps, cosine over steps 3..6
    steps, lrs = _lr_run(2, min_steps=0)
    assert steps == 6 and lrs == pytest.approx([0.1, 0.0])
    # min_steps 10 -> 4 epochs (12 steps); warm-up keeps its half of the run (6 steps), the
    # cosine decays over the other 6: lr factor after steps 3, 6, 9, 12 = 4/6, 1, 0.5, 0
    with caplog.at_level("INFO"):
        steps, lrs = _lr_run(2, min_steps=10)
    assert steps == 12 and lrs == pytest.approx([0.1 * 4 / 6, 0.1, 0.05, 0.0], abs=1e-12)
    assert "2 epochs x 3 steps = 6 optimiser steps, fewer than min_steps 10: running 4 epochs " \
           "(12 steps)" in caplog.text
    caplog.clear()
    with caplog.at_level("INFO"):
        assert _lr_run(2, min_steps=6)[0] == 6  # already enough: unchanged, nothing logged
    assert "min_steps" not in caplog.text


def test_a_group_that_starts_later_has_no_learning_rate_before_and_warms_up_after():
    """LP-FT: the backbone group's rate is 0 for ``start`` steps, then warms up over the same
    number of steps as the others and decays to 0 with them at the end of the run."""
    from pcas_core.runtime.fit import warmup_cosine
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([{"params": [a], "lr": 1.0}, {"params": [b], "lr": 0.5}])
    sched = warmup_cosine(opt, total_steps=20, warmup_steps=2, starts=[0, 5])
    lrs = []
    for _ in range(20):
        lrs.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    assert [r[1] for r in lrs[:5]] == [0.0] * 5
    assert lrs[5][1] == pytest.approx(0.25) and lrs[6][1] == pytest.approx(0.5)  # (k+1)/2 of 0.5
    assert lrs[0][0] == pytest.approx(0.5) and lrs[1][0] == pytest.approx(1.0)
    assert lrs[19][1] < 0.05 and lrs[19][0] < 0.05  # both near 0 at the end
    with pytest.raises(ValueError, match="start steps"):
        warmup_cosine(opt, total_steps=20, warmup_steps=2, starts=[0])


def test_progress_lines_count_the_steps_of_the_whole_run(monkeypatch, caplog):
    """Off a terminal (DVC's log) training reports the run's steps every ~10 % (here every step:
    the minimum interval is 0 for the test), between the epochs' loss lines."""
    import io
    import logging
    import sys

    from pcas_core.runtime import progress

    monkeypatch.delenv("PCAS_PROGRESS", raising=False)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    monkeypatch.setattr(progress, "MIN_LINE_S", 0.0)
    monkeypatch.setattr(progress, "FRACTION", 0.25)
    with caplog.at_level(logging.INFO):
        _run([1.0] * 8, epochs=2)
    lines = [r.getMessage().split(" (")[0] for r in caplog.records
             if r.getMessage().startswith(("training:", "epoch"))]
    assert lines == ["training: 2/8 steps", "training: 4/8 steps", "epoch 1/2 loss=1.0000 half=0.5000",
                     "training: 6/8 steps", "epoch 2/2 loss=1.0000 half=0.5000"]
