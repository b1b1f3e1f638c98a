"""The DVC pipeline end to end on a tiny demo dataset, in a temporary copy of the project:
a full run, a no-op rerun, a CRF change that reruns only what it touches, and an experiment whose
metric change `dvc metrics diff` reports."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from layouts import TINY
from pcas_core.params import merge_params

ROOT = Path(__file__).resolve().parents[2]
STAGES = {"demo_data", "fbank", "train_visual", "train_audio", "align", "pseudo_masks", "evaluate",
          "figures"}

def _run(cmd: list[str], cwd: Path, check: bool = True, **extra_env: str) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t", "PCAS_LOG_LEVEL": "WARNING",
           **extra_env}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0 or not check, \
        f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


def _ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pcas")
    for name in ("stages", "pcas_core"):
        shutil.copytree(ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "data" / "demo-assets", root / "data" / "demo-assets")
    shutil.copy(ROOT / "dvc.yaml", root / "dvc.yaml")
    params = merge_params(yaml.safe_load((ROOT / "params.yaml").read_text()), TINY)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _run(["git", "init", "-q"], root)
    _run(["dvc", "init", "-q"], root)
    _run(["git", "add", "-A"], root)
    _run(["git", "commit", "-qm", "tiny project"], root)
    return root


@pytest.mark.slow
def test_full_run_then_nothing_to_do(project):
    first = _run(["dvc", "repro"], project)
    assert _ran(first) == STAGES
    metrics = json.loads((project / "metrics" / "metrics.json").read_text())
    for mode in ("clean", "official"):
        for key in ("miou", "fscore"):
            assert 0.0 <= metrics[mode][key] <= 1.0
    for key in ("miou_present", "fg_miou", "fg_fscore"):
        assert 0.0 <= metrics["clean"][key] <= 1.0
    # the official mode pads each 5-frame test clip with 5 frames, the 10-frame long clip with none
    long_frames = 10 * TINY["demo"]["clips"]["long"]["test"]
    assert metrics["official"]["n_padded"] == metrics["clean"]["n_frames"] - long_frames
    assert set(metrics["baseline"]) == {"background", "listening", "looking"}
    assert metrics["baseline"]["background"]["clean"]["miou"] > 0.0
    assert set(metrics["pseudo_masks"]) == {"clean", "official", "by_kind"}
    assert {"v1s", "v1m", "v2"} <= set(metrics)  # the demo test split has three subsets
    kinds = {"event", "silent", "multi", "long"}  # the kinds of TINY's test clips
    assert set(metrics["by_kind"]) == kinds
    assert set(metrics["baseline"]["looking"]["by_kind"]) == kinds
    for name in ("visual", "audio"):
        frame = json.loads((project / "metrics" / f"{name}.json").read_text())
        assert set(frame["by_kind"]) == kinds and "frame_cls_train" in frame
    for stage in ("train_visual", "train_audio", "align", "evaluate"):
        curve = project / "dvclive" / stage
        steps = [int(r.split("\t")[0]) for r in
                 (curve / "plots" / "metrics" / "loss.tsv").read_text().splitlines()[1:]]
        run = json.loads((curve / "metrics.json").read_text())["step"]  # optimiser steps run
        assert steps[-1] == run and (run > 100 or steps == list(range(1, run + 1)))
    headline = json.loads((project / "metrics" / "headline.json").read_text())
    assert headline["head"]["miou_present"] == metrics["clean"]["miou_present"]
    overlays = project / "plots" / "overlays"
    assert len(list(overlays.glob("*_clip.png"))) == 2  # a strip per drawn clip
    assert len(list(overlays.glob("*.png"))) == 4  # and a frame of each
    assert len(list((project / "plots" / "figures").glob("curves_*.png"))) == 4
    assert "per_class_iou.png" in (project / "plots" / "report.html").read_text()
    plots = _run(["dvc", "plots", "show", "--json"], project)
    for name in ("plots/confusion.csv", "plots/per_class_iou.csv", "plots/overlays",
                 "dvclive/align/plots/metrics", "plots/figures"):
        assert name in plots
    assert "segmentation head" in _run(["pcas", "report"], project)
    assert _ran(_run(["dvc", "repro"], project)) == set()


@pytest.mark.slow
def test_crf_change_reruns_only_pseudo_masks_and_evaluate(project):
    _run(["dvc", "repro"], project)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["pseudo_masks"]["crf"]["iterations"] = 3
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # figures reruns only if evaluate's outputs changed (DVC compares their hashes): on the tiny
    # data the CRF's iteration count may leave every mask as it was
    ran = _ran(_run(["dvc", "repro"], project))
    assert {"pseudo_masks", "evaluate"} <= ran <= {"pseudo_masks", "evaluate", "figures"}, ran


@pytest.mark.slow
def test_experiment_changes_a_metric_that_metrics_diff_shows(project):
    _run(["dvc", "repro"], project)
    _run(["git", "add", "-A"], project)
    _run(["git", "commit", "-qm", "baseline results"], project)
    out = _run(["dvc", "exp", "run", "-S", "pseudo_masks.audio_threshold=0.0"], project)
    assert _ran(out) == {"pseudo_masks", "evaluate", "figures"}
    diff = json.loads(_run(["dvc", "metrics", "diff", "--json"], project).strip().splitlines()[-1])
    changed = diff["metrics/pseudo_masks.json"]["clean.fg_miou"]
    assert changed["diff"] != 0, diff


def _outputs(project: Path) -> dict[str, bytes]:
    """Every metrics/plots file of the DAG (byte content) after a run."""
    files = sorted((project / "metrics").glob("*.json")) + sorted((project / "plots").glob("*.csv"))
    return {str(p.relative_to(project)): p.read_bytes() for p in files}


@pytest.mark.slow
def test_same_params_and_seed_give_identical_metrics(project):
    _run(["dvc", "repro"], project)
    first = _outputs(project)
    assert _ran(_run(["dvc", "repro", "-f"], project)) == STAGES
    assert _outputs(project) == first


@pytest.mark.slow
def test_a_killed_stage_leaves_no_partial_output_and_dvc_restores_the_previous(project):
    import hashlib
    import signal
    import time

    _run(["dvc", "repro"], project)
    outs = [project / "models" / "visual.safetensors", project / "features" / "visual.h5"]
    before = [hashlib.md5(p.read_bytes()).hexdigest() for p in outs]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1"}
    proc = subprocess.Popen(["dvc", "repro", "-f", "-s", "train_visual"], cwd=project, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    seen = ""
    while "Running stage 'train_visual'" not in seen and proc.poll() is None:
        seen += proc.stdout.readline()
    time.sleep(1.0)  # inside the stage: imports, training or writing
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    for path, digest in zip(outs, before):  # gone (DVC removes outs first) or complete, never partial
        assert not path.exists() or hashlib.md5(path.read_bytes()).hexdigest() == digest, path
    _run(["dvc", "checkout", "-f"], project)
    assert [hashlib.md5(p.read_bytes()).hexdigest() for p in outs] == before
    assert _ran(_run(["dvc", "repro"], project)) == set()


# Loaded by every Python process of a `dvc repro` run under this PYTHONPATH; in `pcas` only, it
# kills the process (as a crash or SIGKILL would) right after the resume checkpoint of the given
# epoch is written.
_CRASH_HOOK = """
import os, sys
if os.path.basename(sys.argv[0]) == "pcas" and os.environ.get("PCAS_TEST_KILL_AFTER_EPOCH"):
    import pcas_core.runtime.resume as resume
    _save = resume.EpochCheckpoint.save
    def save(self, epoch, *args, **kwargs):
        _save(self, epoch, *args, **kwargs)
        if epoch == int(os.environ["PCAS_TEST_KILL_AFTER_EPOCH"]):
            os._exit(9)
    resume.EpochCheckpoint.save = save
"""


@pytest.mark.slow
def test_a_killed_training_stage_resumes_to_the_same_outputs(project, tmp_path):
    """`PCAS_RESUME=1 dvc repro` after a stage died mid-training: the same model, metrics and
    curves, bit for bit, as the uninterrupted run (the head's training rows on disk reused);
    dvc.lock as if nothing happened; the checkpoint and the rows deleted at the end."""
    original = (project / "params.yaml").read_text()
    params = yaml.safe_load(original)
    params["evaluate"]["epochs"] = 3
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    outs = lambda: {str(p.relative_to(project)): p.read_bytes() for p in sorted(
        [project / "models" / "seg_head.safetensors", project / "dvc.lock",
         *(project / "dvclive" / "evaluate").rglob("*.*"), *(project / "metrics").glob("*.json"),
         *(project / "plots").glob("*.csv")]) if p.is_file()}
    try:
        _run(["dvc", "repro"], project)
        assert not (project / "checkpoints").exists()  # removed once the stage completed
        first = outs()
        (tmp_path / "sitecustomize.py").write_text(_CRASH_HOOK)
        hook = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
        _run(["dvc", "repro", "-f", "-s", "evaluate"], project, check=False, PYTHONPATH=hook,
             PCAS_TEST_KILL_AFTER_EPOCH="1")
        assert (project / "checkpoints" / "evaluate" / "last.pt").is_file()
        assert (project / "checkpoints" / "evaluate" / "head_rows.h5").is_file()  # its tokens
        assert not (project / "models" / "seg_head.safetensors").exists()
        # -f: the uninterrupted run's outputs are in DVC's cache, which a plain `dvc repro` would
        # check out instead of running the stage
        log = _run(["dvc", "repro", "-f", "-s", "evaluate"], project, PCAS_RESUME="1",
                   PCAS_LOG_LEVEL="INFO")
        assert _ran(log) == {"evaluate"} and "after epoch 2" in log
        assert "reusing the head's training rows" in log  # not encoded again
        assert outs() == first
        assert not (project / "checkpoints").exists()
    finally:
        (project / "params.yaml").write_text(original)
