"""DVCLive curves written by pcas_core.runtime.fit.fit through pcas_core.runtime.curves.epoch_curves."""

import json

import pandas as pd
import pytest
import torch

from pcas_core.runtime.curves import epoch_curves
from pcas_core.runtime.fit import fit


def _fit(on_epoch, epochs=3):
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1)
    x = torch.randn(8, 2)

    def loss(batch):
        out = model(batch)
        return {"loss": (out ** 2).mean(), "aux": out.abs().mean()}

    return fit(model, lambda e: [x[:4], x[4:]], loss, epochs=epochs, steps_per_epoch=2,
               groups=[(model.parameters(), 0.1)], warmup_epochs=1, device=torch.device("cpu"),
               on_epoch=on_epoch)


def test_fit_writes_one_row_per_epoch_per_term(tmp_path):
    with epoch_curves(tmp_path / "curves") as on_epoch:
        history = _fit(on_epoch)
    plots = tmp_path / "curves" / "plots" / "metrics"
    assert sorted(p.name for p in plots.iterdir()) == ["aux.tsv", "loss.tsv", "lr.tsv"]
    loss = pd.read_csv(plots / "loss.tsv", sep="\t")
    assert loss["step"].tolist() == [0, 1, 2]
    assert loss["loss"].tolist() == pytest.approx([h["loss"] for h in history])
    lr = pd.read_csv(plots / "lr.tsv", sep="\t")["lr"].tolist()
    assert lr == pytest.approx([0.1, 0.05, 0.0])  # warm-up over epoch 1, cosine to 0 after
    summary = json.loads((tmp_path / "curves" / "metrics.json").read_text())
    assert set(summary) == {"loss", "aux", "lr", "step"}  # no timestamps: reruns are identical
    assert summary["step"] == 2 and summary["loss"] == pytest.approx(history[-1]["loss"])
    assert not (tmp_path / "curves" / "dvc.yaml").exists()
    assert not (tmp_path / "dvc.yaml").exists()


def test_a_rerun_replaces_the_curves(tmp_path):
    with epoch_curves(tmp_path / "c") as on_epoch:
        _fit(on_epoch, epochs=3)
    with epoch_curves(tmp_path / "c") as on_epoch:
        _fit(on_epoch, epochs=2)
    assert len(pd.read_csv(tmp_path / "c" / "plots" / "metrics" / "loss.tsv", sep="\t")) == 2


def test_no_directory_means_no_callback_and_bad_values_raise(tmp_path):
    with epoch_curves(None) as on_epoch:
        assert on_epoch is None
    with epoch_curves(tmp_path / "c") as on_epoch:
        with pytest.raises(ValueError, match="epoch 1 logged at DVCLive step 0"):
            on_epoch(1, {"loss": 1.0})
        with pytest.raises(ValueError, match="'loss' is nan"):
            on_epoch(0, {"loss": float("nan")})


def test_without_dvclive_a_warning_and_no_curves(tmp_path, monkeypatch, caplog):
    import sys

    monkeypatch.setitem(sys.modules, "dvclive", None)  # `from dvclive import Live` fails
    with caplog.at_level("WARNING", logger="pcas"), epoch_curves(tmp_path / "c") as on_epoch:
        assert on_epoch is None
        history = _fit(on_epoch)
    assert len(history) == 3 and not (tmp_path / "c").exists()
    assert "DVCLive cannot be imported" in caplog.text and str(tmp_path / "c") in caplog.text
