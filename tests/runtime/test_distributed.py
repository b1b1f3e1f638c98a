"""Several processes (pcas_core.runtime.distributed): two Gloo processes on the CPU train and encode as one
process does with the same global batch, the stages relaunch themselves under torchrun when
base.nproc_per_node > 1 and write the stores of one process, and a killed rank ends the run with a
clear error, leaving the previous outputs as they were."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from pcas_core.params import BaseConfig
from layouts import TINY
from pcas_core.params import merge_params

import ddp_check

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
       "OMP_NUM_THREADS": "1", "PCAS_LOG_LEVEL": "WARNING"}


def _torchrun(script: Path, *args: str, nproc: int = 2, cwd: Path = ROOT) -> None:
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           f"--nproc-per-node={nproc}", str(script), *args], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]


def test_two_gloo_processes_train_and_encode_as_one_process(tmp_path):
    _torchrun(Path(__file__).with_name("ddp_check.py"), str(tmp_path / "two.npz"))
    two = np.load(tmp_path / "two.npz")
    one = ddp_check.run()
    assert int(two["world"]) == 2
    for name, value in one.items():
        # same rows in the same order, same values (float tolerance), same per-epoch losses
        assert two[name].shape == value.shape, name
        np.testing.assert_allclose(two[name], value, rtol=1e-5, atol=1e-5, err_msg=name)
    assert one["visual_loss"][1] < one["visual_loss"][0]  # it did train
    # a global batch smaller than the number of processes is refused with a clear message
    assert "cannot feed 2 processes" in str(two["too_small"])


def test_base_config_checks_the_distributed_keys():
    assert BaseConfig().nproc_per_node == 1 and BaseConfig().nnodes == 1
    with pytest.raises(ValueError, match="nproc_per_node and nnodes must be >= 1"):
        BaseConfig(nproc_per_node=0)
    with pytest.raises(ValueError, match=r"node_rank must be in \[0, nnodes=2\)"):
        BaseConfig(nnodes=2, node_rank=2)
    with pytest.raises(ValueError, match="master_port must be a TCP port"):
        BaseConfig(master_port=70000)


# ------------------------------------------------------------------ the stages under torchrun
VIT = {"backbone": "vit_tiny_patch16_224", "pretrained": False, "token_layer": -1,
       "frozen_stages": 0, "backbone_kwargs": {"patch_size": 8, "depth": 1, "embed_dim": 24,
                                               "num_heads": 2, "output_stride": None}}
# output_stride None: params.yaml's EfficientNet default (16) is merged into these kwargs, and a
# ViT takes none (timm leaves a None argument out)
CHAIN = ["train-visual", "train-audio", "align", "pseudo-masks", "evaluate"]
CURVES = ["train_visual", "train_audio", "align", "evaluate"]
STORES = ["visual", "audio", "maps", "pseudo_masks"]


def _stage(project: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "stages.cli", *args], cwd=project, env=ENV,
                          capture_output=True, text=True, timeout=900)
    if check:
        assert proc.returncode == 0, f"{args} failed:\n{proc.stderr[-4000:]}"
    return proc


def _set_nproc(project: Path, nproc: int) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["base"]["nproc_per_node"] = nproc
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture(scope="module")
def projects(tmp_path_factory) -> dict[int, Path]:
    """The tiny demo (11 training videos: global batches of 8 split 4 + 4, then 2 + 1) with a
    small ViT (LayerNorm: no per-rank BatchNorm statistics on the CPU), its fbank store, and
    the stage chain run in one process and in two."""
    base = tmp_path_factory.mktemp("ddp")
    params = merge_params(yaml.safe_load((ROOT / "params.yaml").read_text()), TINY)
    merge_params(params, {"train_visual": {**VIT, "epochs": 2}, "train_audio": {"epochs": 2},
                    "align": {"epochs": 2}, "evaluate": {"epochs": 2}})
    out = {}
    for nproc in (1, 2):
        project = base / f"nproc{nproc}"
        project.mkdir()
        (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        _stage(project, "demo-data", "--assets", str(ROOT / "data" / "demo-assets"), "--out",
               "data/demo")
        _stage(project, "fbank", "--out", "features/fbank.h5")
        _set_nproc(project, nproc)
        for stage in CHAIN:
            _stage(project, stage)
        out[nproc] = project
    return out


def _curve(project: Path, stage: str) -> np.ndarray:
    rows = (project / "dvclive" / stage / "plots" / "metrics" / "loss.tsv").read_text().split()
    return np.array([float(v) for v in rows[3::2]])


@pytest.mark.slow
def test_stages_under_torchrun_match_one_process(projects):
    one, two = projects[1], projects[2]
    for stage in CURVES:
        a, b = _curve(one, stage), _curve(two, stage)
        steps = json.loads((one / "dvclive" / stage / "metrics.json").read_text())["step"]
        assert len(a) == steps and steps >= 4, stage  # a point per optimiser step (2 epochs)
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6, err_msg=stage)
    for name in STORES:
        with h5py.File(one / "features" / f"{name}.h5") as a, \
                h5py.File(two / "features" / f"{name}.h5") as b:
            assert sorted(a) == sorted(b)
            for key in a:
                x, y = a[key][()], b[key][()]
                if x.dtype.kind == "f":  # cam is float16: one unit in the last place
                    np.testing.assert_allclose(y, x, rtol=2e-3 if x.dtype == np.float16 else 1e-4,
                                               atol=1e-5, err_msg=f"{name}/{key}")
                else:  # keys (uid, frame, split) and masks: same rows, same order, same values
                    np.testing.assert_array_equal(y, x, err_msg=f"{name}/{key}")
    for name in ("visual", "audio", "pseudo_masks", "metrics"):
        assert json.loads((two / "metrics" / f"{name}.json").read_text()) == \
            json.loads((one / "metrics" / f"{name}.json").read_text())


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


@pytest.mark.slow
def test_a_killed_rank_fails_clearly_and_leaves_previous_outputs(projects):
    project = projects[2]
    outs = [project / "models" / "visual.safetensors", project / "features" / "visual.h5",
            project / "metrics" / "visual.json"]
    before = [hashlib.md5(p.read_bytes()).hexdigest() for p in outs]
    proc = subprocess.Popen([sys.executable, "-m", "stages.cli", "train-visual"], cwd=project,
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while len(_children(proc.pid)) < 2 and time.time() < deadline:
        time.sleep(0.2)
    workers = _children(proc.pid)
    assert len(workers) == 2, "torchrun did not start two processes"
    time.sleep(3)  # the workers import torch and start training
    os.kill(workers[-1], signal.SIGKILL)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode != 0
    assert "distributed run of 'train-visual' failed" in err and "exit code -9" in err, err[-3000:]
    assert [hashlib.md5(p.read_bytes()).hexdigest() for p in outs] == before
