"""`pcas report` against real `dvc exp show --json` output: a tiny DVC project whose one stage
writes metrics from params.yaml (base.seed, align.cmc, train_audio.tvp) runs a few `dvc exp run
-S ...`; Table 3 and Table 4 are then checked against means, sample stds and paired differences
computed by hand from the metrics the stage wrote. `exp_show_tables.json` beside this file is
that output, saved once (`python tests/evaluation/test_report.py OUT.json` makes it again), so
the parser is also tested without DVC."""

import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from pcas_core.evaluation.report import (exp_show_runs, parse_reference, resolve_metrics,
                                         select_runs, spread_report)
from stages.cli import app

FIXTURE = Path(__file__).with_name("exp_show_tables.json")

#: the stage: metrics from params, with a seed effect shared by every run of a seed and a small
#: seed-dependent jitter in the effect of align.cmc and train_audio.tvp
SCRIPT = """\
import json, os, yaml
p = yaml.safe_load(open("params.yaml"))
s, cmc, tvp = p["base"]["seed"], p["align"]["cmc"], p["train_audio"]["tvp"]
shared = [0.0, 0.03, -0.02][s]
jitter = [0.004, -0.002, 0.001][s]
head = 0.30 + shared + (0.02 + jitter if cmc else 0.0)
f1 = 0.70 + shared + (0.06 + 2 * jitter if tvp else 0.0)
os.makedirs("metrics", exist_ok=True)
json.dump({"clean": {"miou_present": head}, "official": {"miou": head / 8},
           "pseudo_masks": {"clean": {"miou_present": 0.40 + shared + (0.03 if cmc else 0.0)}}},
          open("metrics/metrics.json", "w"))
json.dump({"frame_cls_test": {"f1": f1, "recall": f1 - 0.1,
                              "by_kind": {"event": {"f1": f1 - 0.05}}}, "tvp": tvp},
          open("metrics/audio.json", "w"))
"""

DVC_YAML = """\
stages:
  run:
    cmd: python run.py
    deps: [run.py]
    params: [base.seed, align, train_audio]
    metrics:
      - metrics/metrics.json: {cache: false}
      - metrics/audio.json: {cache: false}
"""

PARAMS = "base:\n  seed: 0\nalign:\n  cmc: true\n  cmpc: true\ntrain_audio:\n  tvp: true\n"

#: experiments run after the committed result (seed 0, everything on). Each sets every switch:
#: `dvc exp run -S` starts from the workspace, which holds the previous experiment's params
EXPERIMENTS = {
    **{f"full-s{s}": ["align.cmc=true", "train_audio.tvp=true", f"base.seed={s}"]
       for s in (1, 2)},
    **{f"nocmc-s{s}": ["align.cmc=false", "train_audio.tvp=true", f"base.seed={s}"]
       for s in range(3)},
    **{f"ast-s{s}": ["align.cmc=true", "train_audio.tvp=false", f"base.seed={s}"]
       for s in range(3)}}

SHARED, JITTER = [0.0, 0.03, -0.02], [0.004, -0.002, 0.001]


def make_project(root: Path) -> list[dict]:
    """The project, its committed result and the experiments; returns `dvc exp show --json`."""
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    dvc = [sys.executable, "-m", "dvc"]

    def run(*cmd):
        subprocess.run(cmd, cwd=root, env=env, check=True, capture_output=True, text=True)

    root.mkdir(parents=True, exist_ok=True)
    (root / "run.py").write_text(SCRIPT)
    (root / "dvc.yaml").write_text(DVC_YAML)
    (root / "params.yaml").write_text(PARAMS)
    run("git", "init", "-q")
    run(*dvc, "init", "-q")
    run(*dvc, "repro", "-q")
    run("git", "add", "-A")
    run("git", "commit", "-qm", "baseline")
    for name, sets in EXPERIMENTS.items():
        run(*dvc, "exp", "run", "-q", "-n", name, *[a for s in sets for a in ("-S", s)])
    done = subprocess.run([*dvc, "exp", "show", "--json"], cwd=root, env=env, check=True,
                          capture_output=True, text=True)
    return json.loads(done.stdout)


def _head(seed, cmc):
    return 0.30 + SHARED[seed] + (0.02 + JITTER[seed] if cmc else 0.0)


def _f1(seed, tvp):
    return 0.70 + SHARED[seed] + (0.06 + 2 * JITTER[seed] if tvp else 0.0)


def _row(report, group, metric):
    g = report.groups
    rows = g[(g["group"] == group) & (g["metric"] == metric)]
    assert len(rows) == 1, (group, metric, g[["group", "metric"]])
    return rows.iloc[0]


def check_tables(shown: list[dict]) -> None:
    """Table 4 and Table 3 of the project's runs against the hand-computed values."""
    runs = exp_show_runs(shown)
    # 1 committed result + 8 experiments; the workspace repeats the last one, the baseline
    # commit is its own run (seed 0, everything on)
    assert len(runs.info) == 9
    assert any("workspace" in n and "counted once" in n for n in runs.notes)
    t4, keys = select_runs(runs, ("align.",))
    assert keys == ["align.cmc"] and len(t4.info) == 6  # the tvp=false runs are left out
    metrics = resolve_metrics(["metrics/metrics.json:clean.miou_present",
                               "metrics/metrics.json:official.miou",
                               "metrics/metrics.json:pseudo_masks.clean.miou_present"],
                              list(t4.metrics.columns), required=True)
    report = spread_report(t4, metrics, keys, title="Table 4")
    assert report.reference == "align.cmc=true"  # the baseline commit's group
    full = [_head(s, True) for s in range(3)]
    nocmc = [_head(s, False) for s in range(3)]
    row = _row(report, "align.cmc=true", "metrics/metrics.json:clean.miou_present")
    assert row["n"] == 3 and row["reference"]
    assert row["mean"] == pytest.approx(statistics.mean(full), abs=1e-12)
    assert row["std"] == pytest.approx(statistics.stdev(full), abs=1e-12)
    assert [float(v) for v in row["values"].split()] == pytest.approx(full, abs=1e-6)
    row = _row(report, "align.cmc=false", "metrics/metrics.json:clean.miou_present")
    d = [b - a for a, b in zip(full, nocmc)]  # -(0.02 + jitter)
    assert row["mean"] == pytest.approx(statistics.mean(nocmc), abs=1e-12)
    assert row["diff_n"] == 3
    assert row["diff_mean"] == pytest.approx(statistics.mean(d), abs=1e-12)
    assert row["diff_std"] == pytest.approx(statistics.stdev(d), abs=1e-12)
    assert row["diff_se"] == pytest.approx(statistics.stdev(d) / 3 ** 0.5, abs=1e-12)
    # |-0.021| against 2 SE = 2 * 0.0031 / sqrt(3): exceeds, although each group's seed std
    # (0.025) is larger than the difference: the seed effect is shared and pairing removes it
    assert row["exceeds"] is True and row["std"] > abs(row["diff_mean"])
    row = _row(report, "align.cmc=false", "metrics/metrics.json:official.miou")
    assert row["diff_mean"] == pytest.approx(statistics.mean(d) / 8, abs=1e-12)
    row = _row(report, "align.cmc=false", "metrics/metrics.json:pseudo_masks.clean.miou_present")
    assert row["diff_mean"] == pytest.approx(-0.03, abs=1e-12)
    assert row["diff_std"] == pytest.approx(0.0, abs=1e-12) and row["exceeds"] is True
    # another reference flips the sign
    flipped = spread_report(t4, metrics, keys, title="t",
                            reference=parse_reference("align.cmc=false"))
    assert _row(flipped, "align.cmc=true", metrics[0])["diff_mean"] == \
        pytest.approx(-statistics.mean(d), abs=1e-12)

    t3, keys = select_runs(runs, ("train_audio.",))
    assert keys == ["train_audio.tvp"] and len(t3.info) == 6
    metrics = resolve_metrics(["metrics/audio.json:frame_cls_test.f1",
                               "metrics/audio.json:frame_cls_test.recall",
                               "metrics/audio.json:*kind*.f1"], list(t3.metrics.columns),
                              required=True)
    assert metrics[2] == "metrics/audio.json:frame_cls_test.by_kind.event.f1"
    report = spread_report(t3, metrics, keys, title="Table 3",
                           reference=parse_reference("train_audio.tvp=false"))
    tvp = [_f1(s, True) for s in range(3)]
    ast = [_f1(s, False) for s in range(3)]
    d = [a - b for a, b in zip(tvp, ast)]
    row = _row(report, "train_audio.tvp=true", metrics[0])
    assert row["mean"] == pytest.approx(statistics.mean(tvp), abs=1e-12)
    assert row["std"] == pytest.approx(statistics.stdev(tvp), abs=1e-12)
    assert row["diff_mean"] == pytest.approx(statistics.mean(d), abs=1e-12)
    assert row["diff_std"] == pytest.approx(statistics.stdev(d), abs=1e-12)
    row = _row(report, "train_audio.tvp=true", metrics[2])
    assert row["diff_mean"] == pytest.approx(statistics.mean(d), abs=1e-12)


def _check_command(tmp_path: Path, args: list[str]) -> pd.DataFrame:
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["report", *args, "--out", str(out)],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "2 SE" in result.output and "align.cmc=false" in result.output
    text = (out / "report.md").read_text()
    assert "| align.cmc=false |" in text and "rule:" in text.lower()
    return pd.read_csv(out / "report.csv")


def test_saved_exp_show_gives_the_hand_computed_tables(tmp_path):
    shown = json.loads(FIXTURE.read_text())
    check_tables(shown)
    table = _check_command(tmp_path, ["--table", "4", "--input", str(FIXTURE)])
    assert set(table["group"]) == {"align.cmc=true", "align.cmc=false"}
    assert table["metric"].nunique() == 3
    row = table[(table["group"] == "align.cmc=false")
                & (table["metric"] == "metrics/metrics.json:clean.miou_present")].iloc[0]
    d = [_head(s, False) - _head(s, True) for s in range(3)]
    assert row["diff_mean"] == pytest.approx(statistics.mean(d), abs=1e-9)
    assert bool(row["exceeds"])


def test_report_errors_name_what_is_wrong(tmp_path):
    runs = exp_show_runs(json.loads(FIXTURE.read_text()))
    with pytest.raises(ValueError, match="no metric matches 'nope'"):
        resolve_metrics(["nope"], list(runs.metrics.columns), required=True)
    t4, keys = select_runs(runs, ("align.",))
    with pytest.raises(ValueError, match="do not tell the groups apart"):
        spread_report(t4, list(t4.metrics.columns)[:1], keys, title="t",
                      reference={"align.cmpc": "true"})
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_reference("align.cmc")
    with pytest.raises(ValueError, match="dvc exp show --json"):
        exp_show_runs({"not": "a list"})
    result = CliRunner().invoke(app, ["report", "--input", str(FIXTURE), "--out",
                                      str(tmp_path)])
    assert result.exit_code != 0 and "--metric" in result.output


def test_every_param_that_differs_groups_without_a_preset():
    runs = exp_show_runs(json.loads(FIXTURE.read_text()))
    chosen, keys = select_runs(runs, ())
    assert keys == ["align.cmc", "train_audio.tvp"] and len(chosen.info) == 9
    report = spread_report(chosen, ["metrics/metrics.json:clean.miou_present"], keys, title="t")
    assert set(report.groups["group"]) == {"align.cmc=true, train_audio.tvp=true",
                                           "align.cmc=false, train_audio.tvp=true",
                                           "align.cmc=true, train_audio.tvp=false"}


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_real_dvc_experiments_give_the_hand_computed_tables(tmp_path):
    """9 runs of a one-stage project (about 40 s): real `dvc exp run -S`, then `pcas report`."""
    shown = make_project(tmp_path / "proj")
    check_tables(shown)
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path / "proj")  # the command runs `dvc exp show --json` itself
        _check_command(tmp_path, ["--table", "4"])
    finally:
        os.chdir(cwd)


if __name__ == "__main__":  # python tests/evaluation/test_report.py OUT.json: a new fixture
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        Path(sys.argv[1]).write_text(json.dumps(make_project(Path(tmp) / "proj"), indent=1))
