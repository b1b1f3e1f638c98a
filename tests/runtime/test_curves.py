"""DVCLive curves written by pcas_core.runtime.fit.fit through pcas_core.runtime.curves.epoch_curves:
one point per window of optimiser steps (so a one-epoch run draws a curve), the epoch means in
the summary."""

import json

import pandas as pd
import pytest
import torch

from pcas_core.runtime.curves import epoch_curves
from pcas_core.runtime.fit import curve_window, fit


def _fit(on_epoch, epochs=3, steps=2, points=None):
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1)
    x = torch.randn(4 * steps, 2)
    seen = []

    def loss(batch):
        out = model(batch)
        terms = {"loss": (out ** 2).mean(), "aux": out.abs().mean()}
        seen.append({k: float(v.detach()) for k, v in terms.items()})
        return terms

    history = fit(model, lambda e: [x[4 * i:4 * i + 4] for i in range(steps)], loss,
                  epochs=epochs, steps_per_epoch=steps, groups=[(model.parameters(), 0.1)],
                  warmup_epochs=1, device=torch.device("cpu"), on_epoch=on_epoch)
    return history, seen


def test_curve_window():
    assert curve_window(26) == 1  # the demo's align: every optimiser step is a point
    assert curve_window(720) == 8  # the demo's head: 90 points
    assert curve_window(100) == 1 and curve_window(101) == 2 and curve_window(0) == 1
    with pytest.raises(ValueError):
        curve_window(10, points=0)


def test_fit_writes_one_row_per_step_and_the_epoch_means(tmp_path):
    with epoch_curves(tmp_path / "curves") as on_epoch:
        history, seen = _fit(on_epoch)
    plots = tmp_path / "curves" / "plots" / "metrics"
    assert sorted(p.name for p in plots.iterdir()) == ["aux.tsv", "loss.tsv", "lr.tsv"]
    loss = pd.read_csv(plots / "loss.tsv", sep="\t")
    assert loss["step"].tolist() == [1, 2, 3, 4, 5, 6]  # optimiser steps, 2 per epoch
    assert loss["loss"].tolist() == pytest.approx([s["loss"] for s in seen])
    lr = pd.read_csv(plots / "lr.tsv", sep="\t")["lr"].tolist()
    # warm-up over epoch 1 (2 steps), then cosine to 0 over the remaining 4 steps
    assert lr == pytest.approx([0.1, 0.1, 0.0854, 0.05, 0.0146, 0.0], abs=1e-4)  # after the step
    summary = json.loads((tmp_path / "curves" / "metrics.json").read_text())
    assert set(summary) == {"loss", "aux", "lr", "epoch", "step"}  # no timestamps
    assert summary["step"] == 6 and summary["epoch"] == 3
    assert summary["loss"] == pytest.approx(history[-1]["loss"])  # the last epoch's mean
    assert not (tmp_path / "curves" / "dvc.yaml").exists()
    assert not (tmp_path / "dvc.yaml").exists()


def test_a_single_epoch_draws_a_curve_and_long_runs_are_windowed(tmp_path):
    with epoch_curves(tmp_path / "one") as on_epoch:
        _, seen = _fit(on_epoch, epochs=1, steps=5)
    loss = pd.read_csv(tmp_path / "one" / "plots" / "metrics" / "loss.tsv", sep="\t")
    assert loss["step"].tolist() == [1, 2, 3, 4, 5]
    # 3 epochs x 70 steps = 210 steps: windows of 3 steps, restarting at each epoch (70 = 23 x 3 + 1)
    with epoch_curves(tmp_path / "long") as on_epoch:
        _, seen = _fit(on_epoch, epochs=3, steps=70)
    loss = pd.read_csv(tmp_path / "long" / "plots" / "metrics" / "loss.tsv", sep="\t")
    first_epoch = [3 * (i + 1) for i in range(23)] + [70]
    assert loss["step"].tolist()[:24] == first_epoch and loss["step"].iloc[-1] == 210
    assert len(loss) == 3 * 24
    assert loss["loss"].iloc[0] == pytest.approx(sum(s["loss"] for s in seen[:3]) / 3)
    assert loss["loss"].iloc[23] == pytest.approx(seen[69]["loss"])  # the 1-step last window


def test_a_rerun_replaces_the_curves(tmp_path):
    with epoch_curves(tmp_path / "c") as on_epoch:
        _fit(on_epoch, epochs=3)
    with epoch_curves(tmp_path / "c") as on_epoch:
        _fit(on_epoch, epochs=2)
    assert len(pd.read_csv(tmp_path / "c" / "plots" / "metrics" / "loss.tsv", sep="\t")) == 4


def test_no_directory_means_no_callback_and_bad_values_raise(tmp_path):
    with epoch_curves(None) as on_epoch:
        assert on_epoch is None
    with epoch_curves(tmp_path / "c") as on_epoch:
        with pytest.raises(ValueError, match="epoch 1 logged after 0 epochs"):
            on_epoch(1, {"loss": 1.0}, [])
        with pytest.raises(ValueError, match="'loss' is nan"):
            on_epoch(0, {"loss": 1.0}, [(1, {"loss": float("nan")})])
    with epoch_curves(tmp_path / "d") as on_epoch:
        on_epoch(0, {"loss": 1.0}, [(2, {"loss": 1.0})])
        with pytest.raises(ValueError, match="step 2 logged after step 2"):
            on_epoch(1, {"loss": 1.0}, [(2, {"loss": 1.0})])


def test_without_dvclive_a_warning_and_no_curves(tmp_path, monkeypatch, caplog):
    import sys

    monkeypatch.setitem(sys.modules, "dvclive", None)  # `from dvclive import Live` fails
    with caplog.at_level("WARNING", logger="pcas"), epoch_curves(tmp_path / "c") as on_epoch:
        assert on_epoch is None
        history, _ = _fit(on_epoch)
    assert len(history) == 3 and not (tmp_path / "c").exists()
    assert "DVCLive cannot be imported" in caplog.text and str(tmp_path / "c") in caplog.text
