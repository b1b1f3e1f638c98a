"""The GPU path in one command: the demo pipeline on CUDA with bf16, the paper setting's heavy
steps, and the projection of the paper's AVSS schedule on one GPU, as one JSON and a table.

    python benchmarks/gpu_check.py --out $OUT            # on a GPU machine: about 8 minutes
    python benchmarks/gpu_check.py --device cpu --tiny   # the CPU proof: a few minutes

In order, each part with its own time limit, a failure recorded and the next part run:
1. wheels: the packages of ``benchmarks/gpu_wheels.txt`` that this python cannot import are
   installed from the wheel folder (``--wheels``, default ``.whl``, made by
   ``benchmarks/gpu_wheels.sh``) into ``<--work>/site`` with ``pip install --no-index``;
2. probe: python, torch, CUDA, the device and its memory;
3. paper rows (``gpu_paper.py``): the alignment step (ViT-B/16, 224 px, 8 crops of 96 px,
   L_cls + CMC + CMPC + CMCC), the TVP encoder (AST-base, fstride = tstride = 10, 1024 frames,
   prompts) and the ViT-B classifier, at batch 8 and 32, random weights, each in its own process;
4. demo (``gpu_demo.py``): every stage command of ``dvc.yaml`` in DAG order, in ``<--work>/run``
   (``--work`` default ``build/gpu-check``), with the shipped params
   (``base.device`` set to ``--device``; ``--tiny`` shrinks the demo), each stage's wall time
   beside the CPU reference run's (``benchmarks/gpu_check_cpu.json``, when the params match),
   and the metrics beside the committed ones (``metrics/*.json``) with their tolerances;
5. projection (``gpu_paper.projection``) of the paper's schedule from the measured rates, and
   whether the batches it uses fit 24, 40 and 80 GB.
Writes ``gpu_check.json``, ``gpu_check.md`` (the table, also printed) and ``logs.tar.gz`` (every
stage's and row's log) to ``--out``. ``--write-reference FILE`` saves this run's stage times as a
CPU reference (what ``benchmarks/gpu_check_cpu.json`` was made with).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import importlib
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ROWS = [("align", 8), ("align", 32), ("tvp", 8), ("tvp", 32), ("classifier", 8),
        ("classifier", 32)]
TINY_BATCH = {8: 2, 32: 4}


def log(message: str) -> None:
    print(message, flush=True)


def wheel_requirements(path: Path) -> list[tuple[str, str]]:
    """``(name==version, import name)`` of each line of ``gpu_wheels.txt``
    (``name==version  # import: module ...``)."""
    out = []
    for line in path.read_text().splitlines():
        spec = line.split("#", 1)[0].strip()
        found = re.search(r"import:\s*([\w.]+)", line)
        if spec and found:
            out.append((spec, found.group(1)))
    return out


def importable(module: str) -> bool:
    """Whether ``module`` is an installed module or regular package: a folder of that name
    without ``__init__.py`` (the project's own ``dvclive/`` curves, say) does not count."""
    spec = importlib.util.find_spec(module)
    return spec is not None and spec.origin not in (None, "namespace")


def install_wheels(wheels: Path, site: Path) -> dict[str, Any]:
    """Install into ``site`` (and put on ``sys.path``) the listed packages this python cannot
    import, from ``wheels`` alone; the ones it can import are left as they are."""
    reqs = wheel_requirements(HERE / "gpu_wheels.txt")
    missing = [spec for spec, module in reqs if not importable(module)]
    result: dict[str, Any] = {"present": [s for s, _ in reqs if s not in missing],
                              "installed": missing, "seconds": 0.0}
    if missing:
        start = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index",
                               "--no-deps", "--no-compile", "--no-cache-dir",
                               "--disable-pip-version-check", "--upgrade", "--target", str(site),
                               "--find-links", str(wheels), *missing],
                              capture_output=True, text=True, timeout=300)
        result["seconds"] = round(time.monotonic() - start, 2)
        if proc.returncode:
            result["error"] = (proc.stdout + proc.stderr)[-2000:]
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    result["still_missing"] = [s for s, m in reqs if not importable(m)]
    return result


def probe(env: dict[str, str], device: str) -> dict[str, Any]:
    """Python, torch, CUDA and device facts, read in a child process (so that this one holds
    no CUDA context while the stages run)."""
    code = ("import json, os, platform, torch; d = torch.device(%r); c = d.type == 'cuda' and "
            "torch.cuda.is_available(); p = torch.cuda.get_device_properties(d) if c else None; "
            "print(json.dumps({'python': platform.python_version(), 'torch': torch.__version__, "
            "'cuda': torch.version.cuda, 'cuda_available': torch.cuda.is_available(), "
            "'device': p.name if c else platform.processor() or 'cpu', 'memory_gib': "
            "p.total_memory / 2**30 if c else None, 'cpus': os.cpu_count(), "
            "'torch_threads': torch.get_num_threads()}))" % device)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=180)
    if proc.returncode:
        return {"error": proc.stderr[-2000:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def paper_rows(env: dict[str, str], device: str, tiny: bool, deadline: float,
               row_limit_s: float, logs: Path) -> dict[str, dict[int, dict]]:
    """Every row of :data:`ROWS` in its own process (``gpu_paper.py``), each within
    ``row_limit_s`` and none started after ``deadline``."""
    rows: dict[str, dict[int, dict]] = {}
    for row, batch in ROWS:
        batch = TINY_BATCH[batch] if tiny else batch
        left = deadline - time.monotonic()
        if left < 10:
            rows.setdefault(row, {})[batch] = {"error": "not run: out of time"}
            continue
        cmd = [sys.executable, str(HERE / "gpu_paper.py"), row, "--batch", str(batch),
               "--device", device] + (["--tiny", "--steps", "2", "--warmup", "1"] if tiny else [])
        start = time.monotonic()
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True,
                                  timeout=min(row_limit_s, left))
            (logs / f"paper_{row}_{batch}.log").write_text(proc.stdout + proc.stderr)
            try:
                result = json.loads(proc.stdout.strip().splitlines()[-1])
            except (IndexError, json.JSONDecodeError):  # it died before printing its result
                result = {"error": f"exit {proc.returncode}: {proc.stderr[-1500:]}"}
        except subprocess.TimeoutExpired:
            result = {"error": f"timeout after {min(row_limit_s, left):.0f} s"}
        result["wall_s"] = round(time.monotonic() - start, 1)
        rows.setdefault(row, {})[batch] = result
        log(f"  {row} B={batch}: " + (result.get("error") or
            f"{result['train']['steps_per_s']:.2f} steps/s, peak {result['train']['peak_gib']}"))
    return rows


def params_key(params: dict[str, Any]) -> str:
    """Hash of the params that decide the demo's work (``base`` aside: device, threads)."""
    return hashlib.sha256(json.dumps({k: v for k, v in params.items() if k != "base"},
                                     sort_keys=True).encode()).hexdigest()[:16]


def demo_part(args, env: dict[str, str], deadline: float) -> dict[str, Any]:
    """Part 4: the stages, their times beside the CPU reference, the metrics comparison."""
    import gpu_demo

    run_dir = args.work / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    overrides = {"base": {"device": args.device}, **(gpu_demo.TINY if args.tiny else {})}
    params = gpu_demo.prepare(run_dir, overrides)
    # as the stages will import it: from the run folder, with their PYTHONPATH (where the
    # project's committed dvclive/ curves folder would pass for a namespace package)
    curves = subprocess.run([sys.executable, "-c", "from dvclive import Live"], cwd=run_dir,
                            env=env, capture_output=True, timeout=120).returncode == 0
    stages = gpu_demo.run_stages(run_dir, params, env, deadline=deadline,
                                 stage_limit_s=args.budget_s, log=log)
    out: dict[str, Any] = {"params_key": params_key(params), "tiny": args.tiny,
                           "img_size": params["data"]["img_size"],
                           "curves": curves, "stages": stages}
    if not curves:
        out["curves_note"] = ("DVCLive cannot be imported here (it imports DVC, whose wheels "
                              "are too large to carry): the training stages warn and write no "
                              "curves")
    ref = json.loads(Path(args.reference).read_text()) if Path(args.reference).is_file() else {}
    if ref.get("params_key") == out["params_key"]:
        out["reference"] = {k: ref[k] for k in ("machine", "commit", "date", "note", "total_s")
                            if k in ref}
        for s in stages:
            s["cpu_seconds"] = ref.get("stages", {}).get(s["stage"])
    else:
        out["reference"] = {"note": f"no CPU reference for these params in {args.reference}"}
    if args.tiny:
        out["metrics_note"] = "--tiny: the committed metrics are the shipped params', not compared"
    else:
        out["metrics"] = gpu_demo.compare_metrics(run_dir / "metrics", ROOT / "metrics")
    frames = [run_dir / "metrics" / f for f in ("pseudo_masks.json", "metrics.json")]
    if all(f.is_file() for f in frames):
        out["frames"] = sum(int(json.loads(f.read_text())["clean"]["n_frames"]) for f in frames)
    return out


def _fmt(value: Any, spec: str = ".3g") -> str:
    return "-" if value is None else format(value, spec) if isinstance(value, float) else str(value)


def table(report: dict[str, Any]) -> str:
    """The short Markdown table of a report."""
    p = report.get("probe", {})
    lines = [f"# gpu_check: {p.get('device')} ({_fmt(p.get('memory_gib'), '.1f')} GiB), "
             f"python {p.get('python')}, torch {p.get('torch')} (CUDA {p.get('cuda')}), "
             f"--device {report['device']}{' --tiny' if report['tiny'] else ''}, "
             f"{report['started']}, {report['seconds']:.0f} s", ""]
    demo = report.get("demo", {})
    if demo.get("stages"):
        lines += ["## Demo pipeline, every stage of dvc.yaml", "",
                  "| stage | status | this run s | CPU reference s | CPU / this |",
                  "|---|---|---|---|---|"]
        for s in demo["stages"]:
            ratio = (s["cpu_seconds"] / s["seconds"]) if s.get("cpu_seconds") and s["seconds"] \
                else None
            lines.append(f"| {s['stage']} | {s['status']} | {_fmt(s['seconds'], '.1f')} | "
                         f"{_fmt(s.get('cpu_seconds'), '.1f')} | {_fmt(ratio, '.2f')} |")
        total = sum(s["seconds"] for s in demo["stages"] if s["seconds"] is not None)
        ref_total = demo["reference"].get("total_s")
        lines.append(f"| all stages | | {total:.1f} | {_fmt(ref_total)} | "
                     f"{_fmt(ref_total / total if ref_total and total else None, '.2f')} |")
        lines += ["", f"CPU reference: {demo['reference'].get('note', '-')}", ""]
        lines += [f"Note: {demo['curves_note']}.", ""] if demo.get("curves_note") else []
    metrics = demo.get("metrics")
    if metrics:
        lines += [f"## Metrics beside the committed CPU metrics ({metrics['n_differing']} of "
                  f"{metrics['n_metrics']} numeric metrics differ)", "",
                  "| file | metric | CPU | this run | difference | tolerance | |",
                  "|---|---|---|---|---|---|---|"]
        for c in metrics["checked"]:
            lines.append(f"| {c['file']} | {c['metric']} | {_fmt(c.get('cpu'), '.4f')} | "
                         f"{_fmt(c.get('run'), '.4f')} | {_fmt(c.get('diff'), '+.4f')} | "
                         f"{_fmt(c.get('tolerance'), '.4g')} | {c['status']} |")
        lines.append("")
    elif demo.get("metrics_note"):
        lines += [f"Metrics: {demo['metrics_note']}.", ""]
    rows = report.get("paper", {})
    if rows:
        lines += ["## Paper setting, random weights (training step with Adam; forward: no grad)",
                  "", "| row | B | steps/s | items/s | frames or clips/s | peak GiB | host syncs "
                  "| forward items/s |", "|---|---|---|---|---|---|---|---|"]
        for row, by in rows.items():
            for batch, r in by.items():
                if "error" in r:
                    lines.append(f"| {row} | {batch} | {r['error'][:80]} | | | | | |")
                    continue
                t, f = r["train"], r["forward"]
                lines.append(f"| {row} | {batch} | {t['steps_per_s']:.2f} | {t['items_per_s']:.1f}"
                             f" | {_fmt(r.get('frames_per_s', r.get('clips_per_s')), '.1f')} | "
                             f"{_fmt(t['peak_gib'], '.2f')} | {_fmt(t['host_syncs'])} | "
                             f"{f['items_per_s']:.1f} |")
        lines.append("")
    proj = report.get("projection")
    if proj:
        lines += ["## Projection: the paper's AVSS schedule on this device", "",
                  "| part | count | s each | hours | source |", "|---|---|---|---|---|"]
        for part in proj["parts"]:
            lines.append(f"| {part['part']} | {part['count']:.0f} {part['unit']} | "
                         f"{_fmt(part['seconds_each'], '.3g')} | "
                         f"{_fmt(None if part['seconds'] is None else part['seconds'] / 3600, '.2f')}"
                         f" | {part['source']} |")
        lines += ["", f"Total {proj['total_s'] / 3600:.2f} h"
                  + ("" if proj["complete"] else " (parts without a rate left out)"), "",
                  "| batch | peak GiB | " + " | ".join(f"fits {gb} GB" for gb in (24, 40, 80))
                  + " |", "|---|---|---|---|---|"]
        for name, fit in proj["fits"].items():
            lines.append(f"| {name} | {_fmt(fit['peak_gib'], '.2f')} | " + " | ".join(
                _fmt(fit[f"{gb} GB"]) for gb in (24, 40, 80)) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda", help="cuda | cuda:N | cpu")
    ap.add_argument("--tiny", action="store_true", help="shrunken demo and models (CPU proof)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "gpu_check")
    ap.add_argument("--wheels", type=Path, default=ROOT / ".whl")
    ap.add_argument("--work", type=Path, default=ROOT / "build" / "gpu-check",
                    help="scratch folder (emptied parts: run/, logs/); one per concurrent run")
    ap.add_argument("--budget-s", type=float, default=480.0, help="the whole run's time limit")
    ap.add_argument("--paper-budget-s", type=float, default=180.0,
                    help="time limit of the paper rows together (each: half of it); the demo "
                    "gets the rest")
    ap.add_argument("--parts", nargs="*", default=["paper", "demo"], choices=["paper", "demo"])
    ap.add_argument("--reference", default=str(HERE / "gpu_check_cpu.json"))
    ap.add_argument("--write-reference", type=Path, default=None)
    args = ap.parse_args()
    args.work, args.out, args.wheels = (p.resolve() for p in (args.work, args.out, args.wheels))
    start = time.monotonic()
    deadline = start + args.budget_s
    report: dict[str, Any] = {"started": datetime.datetime.now().isoformat(timespec="seconds"),
                              "device": args.device, "tiny": args.tiny, "argv": sys.argv[1:]}
    logs = args.work / "logs"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    log("wheels ...")
    report["wheels"] = install_wheels(args.wheels, args.work / "site")
    log(f"  installed {report['wheels']['installed']}, missing "
        f"{report['wheels']['still_missing']}")
    sys.path.insert(0, str(ROOT))
    import gpu_demo
    from gpu_paper import projection

    env = gpu_demo.child_env(args.work / "site", args.work / "run")
    report["probe"] = probe(env, args.device)
    log(f"probe: {report['probe']}")
    if "paper" in args.parts:
        log("paper setting ...")
        report["paper"] = paper_rows(env, args.device, args.tiny,
                                     min(deadline, time.monotonic() + args.paper_budget_s),
                                     args.paper_budget_s / 2, logs)
    if "demo" in args.parts:
        log("demo pipeline ...")
        try:
            report["demo"] = demo_part(args, env, deadline)
        except Exception as err:  # recorded; the projection and the files are still written
            report["demo"] = {"error": f"{type(err).__name__}: {err}"}
        for f in (args.work / "run" / "logs").glob("*.log"):
            shutil.copy(f, logs / f"demo_{f.name}")
    demo = report.get("demo", {})
    stage_s = {s["stage"]: s["seconds"] for s in demo.get("stages", []) if s["status"] == "ok"}
    report["projection"] = projection(report.get("paper", {}), stage_s, demo.get("frames"),
                                      demo.get("img_size", 160))
    report["seconds"] = round(time.monotonic() - start, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str))
    text = table(report)
    (args.out / "gpu_check.md").write_text(text)
    with tarfile.open(args.out / "logs.tar.gz", "w:gz") as tar:
        tar.add(logs, arcname="logs")
    complete = bool(demo.get("stages")) and all(s["status"] == "ok" for s in demo["stages"])
    if args.write_reference and not complete:
        log(f"{args.write_reference} not written: the demo did not run every stage")
    elif args.write_reference:
        args.write_reference.write_text(json.dumps({
            "note": f"CPU run of `{' '.join(['python benchmarks/gpu_check.py'] + sys.argv[1:])}`",
            "machine": report["probe"], "date": report["started"], "commit": _commit(),
            "params_key": demo.get("params_key"), "total_s": round(sum(stage_s.values()), 1),
            "stages": stage_s,
            "stages_cpu_used_s": {s["stage"]: s.get("cpu_used_s") for s in demo.get("stages", [])
                                  if s["status"] == "ok"}}, indent=1) + "\n")
    log("")
    log(text)


def _commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                              capture_output=True).stdout.strip() or None
    except OSError:
        return None


if __name__ == "__main__":
    main()
