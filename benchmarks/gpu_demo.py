"""The demo pipeline for ``gpu_check.py``: every stage command of ``dvc.yaml`` in DAG order, run
directly (no DVC needed), in a scratch folder, each timed, and the metrics it writes beside the
committed ones.

The stage commands are ``dvc.yaml``'s ``cmd`` lines with ``pcas`` replaced by
``python -m stages.cli``; they run in the scratch folder (``params.yaml`` there: the project's,
with ``base.device`` and any overrides merged in; ``data/demo-assets`` linked from the project),
so the project's own outputs (``metrics/``, ``models/``, ...) are never touched. Without DVCLive
(it imports DVC, whose wheels are too large to carry to a GPU machine: ``gpu_wheels.txt``) the
training stages warn and write no curves (``pcas_core.runtime.curves``); nothing else changes.

Metrics tolerance: the CUDA run uses bfloat16 autocast (``base.amp``), whose 8-bit mantissa
rounds every matrix product to about 3 significant digits, and other kernels than the CPU's even
in float32; over hundreds of optimiser steps such a change moves the training trajectory as much
as another seed does, and thresholds (sigmoid >= theta_a, argmax, the CRF) turn small weight
changes into whole pixels and frames. So the GPU metrics are expected to differ from the CPU's by
about the seed-to-seed spread, not to match: the tolerance of a metric is twice its standard
deviation over seeds 0, 1, 2 on the CPU, as README "Results on the demo" reports them
(:data:`TOLERANCES`). Metrics that depend on the data alone (the background-everywhere baseline,
frame counts) must match exactly: a difference there means the demo data differ (other library
versions composing it), and then the rest is not comparable either.
"""

from __future__ import annotations

import json
import math
import os
import re
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from pcas_core.params import merge_params

ROOT = Path(__file__).resolve().parents[1]

#: Seed standard deviations (3 seeds, CPU float32, README "Results on the demo") of the demo's
#: headline metrics: ``(file, dotted key) -> (sd, where the README gives it)``. Tolerance = 2 sd.
SEED_SD = {
    ("metrics.json", "clean.miou_present"): (0.009, "Table 4, full method: head 0.163 +- 0.009"),
    ("metrics.json", "official.miou"): (0.0011, "Table 4, full method: 0.0211 +- 0.0011"),
    ("metrics.json", "clean.fg_miou"): (0.002, "head with the audio, gated: fg_miou 0.361 +- 0.002"),
    ("metrics.json", "pseudo_masks.clean.miou_present"): (0.015, "Table 4: test PM 0.149 +- 0.015"),
    ("pseudo_masks.json", "clean.miou_present"): (0.023, "Table 4: train PM 0.416 +- 0.023"),
    ("audio.json", "frame_cls_test.f1"): (0.048, "Table 3, aisfx + TVP shipped: 0.419 +- 0.048"),
}
TOLERANCES = {key: 2 * sd for key, (sd, _) in SEED_SD.items()}
#: Metrics of the data alone (no model): equal on any machine that composes the same demo.
EXACT = [("metrics.json", "baseline.background.clean.miou"), ("metrics.json", "clean.n_frames"),
         ("metrics.json", "official.n_frames"), ("pseudo_masks.json", "clean.n_frames")]

#: ``--tiny``: a few clips of 3 classes at 64 px, one epoch each, small models (minutes on 2 CPU
#: cores). Keys as params.yaml's.
TINY = {
    "data": {"img_size": 64},
    "demo": {"classes": ["dog", "guitar", "hen"], "img_size": 64, "clips": {  # (train, test)
        kind: {"train": train, "val": 0, "test": test} for kind, (train, test) in {
            "always": (2, 0), "event": (1, 1), "silent": (1, 1), "multi": (2, 1),
            "long": (1, 1)}.items()}},
    "train_visual": {"epochs": 1, "min_steps": 0},
    "train_audio": {"model": {"embed_dim": 32, "depth": 1, "num_heads": 2}, "epochs": 1,
                    "min_steps": 0},
    "align": {"epochs": 1, "min_steps": 0, "embed_dim": 16, "crop_size": 32, "n_crops": 2},
    "pseudo_masks": {"workers": 1, "crf": {"iterations": 3}},
    "evaluate": {"epochs": 1, "min_steps": 0, "hidden_dim": 0, "n_overlays": 2},
}


def stage_commands(dvc_yaml: Path, params: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """``(stage, argv)`` of every stage of ``dvc_yaml`` in an order where each stage comes after
    the stages whose outputs it depends on (ties: the file's order); ``${section.key}`` in deps
    resolved from ``params``.

    Raises:
        ValueError: a dependency cycle, or a command that does not start with ``pcas``.
    """
    stages = yaml.safe_load(dvc_yaml.read_text())["stages"]

    def resolve(text: str) -> str:
        def value(match: re.Match) -> str:
            node: Any = params
            for key in match.group(1).split("."):
                node = node[key]
            return str(node)
        return re.sub(r"\$\{([^}]+)\}", value, text)

    outs = {name: [resolve(str(o)) for o in s.get("outs", [])] for name, s in stages.items()}
    needs = {name: {other for other in stages if other != name for dep in s.get("deps", [])
                    for out in outs[other] if resolve(str(dep)) == out
                    or resolve(str(dep)).startswith(out.rstrip("/") + "/")}
             for name, s in stages.items()}
    order: list[str] = []
    while len(order) < len(stages):
        ready = [n for n in stages if n not in order and needs[n] <= set(order)]
        if not ready:
            raise ValueError(f"{dvc_yaml}: dependency cycle among {set(stages) - set(order)}")
        order.append(ready[0])
    commands = []
    for name in order:
        argv = shlex.split(" ".join(str(stages[name]["cmd"]).split()))
        if argv[0] != "pcas":
            raise ValueError(f"{dvc_yaml}: stage {name} runs {argv[0]!r}, not pcas")
        commands.append((name, argv[1:]))
    return commands


def prepare(workdir: Path, overrides: dict[str, Any]) -> dict[str, Any]:
    """Make the scratch folder: ``params.yaml`` (the project's merged with ``overrides``) and a
    link to ``data/demo-assets``. Returns the merged params."""
    (workdir / "data").mkdir(parents=True, exist_ok=True)
    assets = workdir / "data" / "demo-assets"
    if not assets.exists():
        assets.symlink_to(ROOT / "data" / "demo-assets", target_is_directory=True)
    params = merge_params(yaml.safe_load((ROOT / "params.yaml").read_text()), overrides)
    (workdir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return params


def run_stages(workdir: Path, params: dict[str, Any], env: dict[str, str], *, deadline: float,
               stage_limit_s: float, log) -> list[dict[str, Any]]:
    """Run every stage command in DAG order in ``workdir``; each gets at most ``stage_limit_s``
    and none starts after ``deadline`` (``time.monotonic``). A stage after a failed or skipped one
    is skipped. Returns one record per stage: ``stage``, ``status`` (ok | failed | timeout |
    skipped), ``seconds`` (wall), ``cpu_used_s`` (user + system CPU seconds of the stage's
    processes: beside the wall time, how much a shared machine held it back), ``command``,
    ``log`` (file), ``tail`` (last lines, unless ok)."""
    records, broken = [], None
    logs = workdir / "logs"
    logs.mkdir(exist_ok=True)
    for name, argv in stage_commands(ROOT / "dvc.yaml", params):
        command = [sys.executable, "-m", "stages.cli", *argv]
        record: dict[str, Any] = {"stage": name, "command": "pcas " + shlex.join(argv),
                                  "log": f"logs/{name}.log"}
        left = deadline - time.monotonic()
        if broken or left < 5:
            records.append({**record, "status": "skipped", "seconds": None,
                            "tail": f"not run: {broken or 'out of time'}"})
            broken = broken or "out of time"
            log(f"  {name}: skipped ({records[-1]['tail']})")
            continue
        start, used = time.monotonic(), _children_cpu_s()
        with open(logs / f"{name}.log", "w") as out:
            try:
                rc = subprocess.run(command, cwd=workdir, env=env, stdout=out,
                                    stderr=subprocess.STDOUT,
                                    timeout=min(stage_limit_s, left)).returncode
                status = "ok" if rc == 0 else f"failed (exit {rc})"
            except subprocess.TimeoutExpired:
                status = "timeout"
        seconds = time.monotonic() - start
        record.update(status=status, seconds=round(seconds, 2),
                      cpu_used_s=round(_children_cpu_s() - used, 2))
        if status != "ok":
            lines = (logs / f"{name}.log").read_text(errors="replace").splitlines()
            record["tail"] = "\n".join(lines[-25:])
            broken = f"{name} {status}"
        records.append(record)
        log(f"  {name}: {status} in {seconds:.1f} s")
    return records


def _children_cpu_s() -> float:
    """User + system CPU seconds of this process's finished children (and theirs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def flatten(tree: Any, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a metrics JSON as ``{dotted key: value}`` (booleans left out)."""
    if isinstance(tree, dict):
        out: dict[str, float] = {}
        for key, value in tree.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    if isinstance(tree, (int, float)) and not isinstance(tree, bool):
        return {prefix[:-1]: float(tree)}
    return {}


def compare_metrics(run_dir: Path, reference_dir: Path) -> dict[str, Any]:
    """Every numeric metric of ``run_dir/*.json`` beside ``reference_dir``'s: ``checked`` (the
    keyed metrics with their tolerance, difference and whether it is within), ``largest`` (the
    20 largest absolute differences among all metrics), ``n_metrics``, ``missing`` (files)."""
    checked, diffs, missing = [], [], []
    for ref_file in sorted(reference_dir.glob("*.json")):
        run_file = run_dir / ref_file.name
        if not run_file.is_file():
            missing.append(ref_file.name)
            continue
        ref, run = (flatten(json.loads(f.read_text())) for f in (ref_file, run_file))
        for key in sorted(ref.keys() & run.keys()):
            diff = run[key] - ref[key]
            if not math.isnan(diff):
                diffs.append({"file": ref_file.name, "metric": key, "cpu": ref[key],
                              "run": run[key], "diff": diff})
        for file, key in [k for k in TOLERANCES if k[0] == ref_file.name] + \
                [k for k in EXACT if k[0] == ref_file.name]:
            if key not in ref or key not in run:
                checked.append({"file": file, "metric": key, "status": "absent"})
                continue
            tol = TOLERANCES.get((file, key), 1e-9)
            diff = run[key] - ref[key]
            checked.append({"file": file, "metric": key, "cpu": ref[key], "run": run[key],
                            "diff": diff, "tolerance": tol,
                            "why": SEED_SD[(file, key)][1] + " (2 sd)" if (file, key) in SEED_SD
                            else "data only: must be equal",
                            "status": "within" if abs(diff) <= tol else "beyond"})
    diffs.sort(key=lambda d: -abs(d["diff"]))
    return {"checked": checked, "largest": diffs[:20], "n_metrics": len(diffs),
            "n_differing": sum(d["diff"] != 0 for d in diffs), "missing": missing}


def child_env(site: Path | None, workdir: Path) -> dict[str, str]:
    """The stages' environment: the project (and the carried wheels' folder) on PYTHONPATH, the
    label cache and resume checkpoints inside the scratch folder."""
    paths = [str(ROOT)] + ([str(site)] if site else [])
    old = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths + ([old] if old else [])),
            "PCAS_CACHE_DIR": str(workdir / "cache"),
            "PCAS_CHECKPOINT_DIR": str(workdir / "checkpoints"), "PYTHONUNBUFFERED": "1"}
