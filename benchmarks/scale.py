"""Peak memory and wall time of every stage against the number of videos (issue 8, "Full scale").

Writes a synthetic AVSBench-semantic dataset of N videos (subset v1s: 5 frames, a coloured square
of the video's class on noise, its mask, a tone per class in ``audio.wav``), runs each DVC stage's
command on it with tiny models (1 epoch each, ``params.yaml`` otherwise), and prints, per stage
and N, the wall time and peak resident memory:

- ``tree MB``: the peak over time of the summed RSS of the stage process and all its descendants
  (DataLoader workers, the pseudo-mask pool), sampled every 50 ms with psutil (forked workers
  share pages, so this over-counts them);
- ``main MB``: ``ru_maxrss`` of the stage process from ``wait4`` (its own peak).

The ``startup`` row (``pcas --help``: Python, torch, timm, ... imported, nothing run) is the fixed
cost included in every stage's figures; on a loaded machine it is a large part of each time.

Goal (issues 8, 25): peak RSS at N = 1000 at most 1.2x that at N = 250, of the stage process and
of its tree; time growing no faster than N.

With two sizes it then projects what each stage would need on AVSBench-semantic in the paper's
setting on one machine (``benchmarks/projection.py``: peak RSS, disk, hours, from the measured
per-frame costs and a probe of the paper's models on this machine; ``--no-probe`` skips the probe,
a few minutes on a CPU).

    python benchmarks/scale.py                     # N = 250 and 1000 under /tmp/pcas-scale
    python benchmarks/scale.py --sizes 50 --crf    # quick look, with the dense CRF on

Timings depend on the machine's load; run it alone for figures to compare.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import soundfile as sf
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pcas_core.data.palette import index_to_rgb, voc_palette  # noqa: E402

import projection  # noqa: E402  (benchmarks/projection.py, beside this script)

CLASSES = ["dog", "horse", "sheep", "cello", "guitar", "car", "duck", "lion"]
FRAMES = 5
RATE = 16000
SIDE = 128  # pixels of the written frames (stages bring them to data.img_size)

STAGES = [  # (name, command after `pcas`)
    ("startup", ["--help"]),  # imports only: the fixed cost inside every stage's time and RSS
    ("fbank", ["fbank"]),
    ("train_visual", ["train-visual"]),
    ("train_audio", ["train-audio"]),
    ("align", ["align"]),
    ("pseudo_masks", ["pseudo-masks"]),
    ("evaluate", ["evaluate"]),
]


def write_dataset(root: Path, n_videos: int, seed: int = 0) -> None:
    """AVSS layout (metadata.csv, label2idx.json, v1s/<uid>/{frames,labels_rgb,audio.wav}); splits
    70 % train (mask of frame 0), 10 % val and 20 % test (every mask)."""
    if (root / "metadata.csv").is_file():
        return
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    shutil.copyfile(ROOT / "data" / "demo-assets" / "label2idx.json", root / "label2idx.json")
    label2idx = json.loads((root / "label2idx.json").read_text())
    palette = voc_palette()
    rng = np.random.default_rng(seed)
    t = np.arange(FRAMES * RATE) / RATE
    rows = []
    for v in range(n_videos):
        split = "train" if v % 10 < 7 else ("val" if v % 10 == 7 else "test")
        name = CLASSES[v % len(CLASSES)]
        cls = label2idx[name] - 1
        vdir = root / "v1s" / f"vid{v:05d}"
        (vdir / "frames").mkdir(parents=True)
        (vdir / "labels_rgb").mkdir()
        for f in range(FRAMES):
            top, left = rng.integers(0, SIDE // 2, size=2)
            index = np.zeros((SIDE, SIDE), np.uint8)
            index[top:top + SIDE // 2, left:left + SIDE // 2] = cls
            frame = rng.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8) // 2
            frame[index > 0] = palette[cls]
            Image.fromarray(frame).save(vdir / "frames" / f"{f}.jpg", quality=90)
            if f == 0 or split != "train":
                Image.fromarray(index_to_rgb(index, palette)).save(vdir / "labels_rgb" / f"{f}.png")
        wave = 0.3 * np.sin(2 * np.pi * (200 + 60 * (v % len(CLASSES))) * t)
        sf.write(str(vdir / "audio.wav"), wave.astype(np.float32), RATE, subtype="PCM_16")
        rows.append(f"vid{v:05d},vid{v:05d},0,0,{name},{split},v1s\n")
    (root / "metadata.csv").write_text("vid,uid,s_min,s_sec,a_obj,split,label\n" + "".join(rows))


def write_params(work: Path, data_root: Path, *, crf: bool, num_workers: int) -> Path:
    """The repository's params.yaml with the tiny-run overrides."""
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    p["data"]["root"] = str(data_root)
    if "num_workers" in p["base"]:  # absent before issue 8 (to compare with an older checkout)
        p["base"]["num_workers"] = num_workers
    for section in ("train_visual", "train_audio", "align", "evaluate"):
        p[section]["epochs"] = 1
        p[section]["min_steps"] = 0  # one epoch, whatever the size
    for section in ("train_visual", "train_audio", "align"):
        p[section]["warmup_epochs"] = 0
    p["pseudo_masks"]["use_crf"] = crf
    p["evaluate"]["n_overlays"] = 2
    path = work / "params.yaml"
    path.write_text(yaml.safe_dump(p, sort_keys=False))
    return path


def run_stage(cmd: list[str], cwd: Path, env: dict) -> tuple[float, float, float, int]:
    """Run one stage; returns (wall s, peak tree RSS MB, main-process maxrss MB, exit code)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                            stderr=open(cwd / "stage.log", "a"))
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        try:
            parent = psutil.Process(proc.pid)
        except psutil.Error:
            return
        while not done.is_set():
            total = 0
            try:
                for p in [parent, *parent.children(recursive=True)]:
                    try:
                        total += p.memory_info().rss
                    except psutil.Error:
                        pass
            except psutil.Error:
                pass
            peak[0] = max(peak[0], total)
            done.wait(0.05)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    _, status, usage = os.wait4(proc.pid, 0)
    done.set()
    thread.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    return wall, peak[0] / 2**20, usage.ru_maxrss / 1024, proc.returncode


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[250, 1000], help="videos per run")
    ap.add_argument("--work", type=Path, default=Path("/tmp/pcas-scale"), help="scratch folder")
    ap.add_argument("--crf", action="store_true", help="dense CRF on in pseudo_masks")
    ap.add_argument("--num-workers", type=int, default=0, help="base.num_workers")
    ap.add_argument("--stages", nargs="+", default=[s for s, _ in STAGES],
                    help="stages to run (each needs the outputs of the ones before)")
    ap.add_argument("--reuse", action="store_true",
                    help="keep an earlier run's outputs in --work: --stages reruns only those, "
                         "the other stages' figures are the earlier run's")
    ap.add_argument("--no-probe", action="store_true",
                    help="project without measuring the paper's models (data costs only)")
    ap.add_argument("--v2", type=int, nargs=3, metavar=("TRAIN", "VAL", "TEST"),
                    help="AVSS v2 videos per split (default: the rest of 12,000, 70/15/15)")
    args = ap.parse_args()
    pcas = shutil.which("pcas") or sys.exit("the `pcas` command is not on PATH")
    results: dict[int, dict[str, tuple]] = {}
    for n in args.sizes:
        data_root = args.work / f"data-{n}"
        t0 = time.perf_counter()
        write_dataset(data_root, n)
        print(f"N={n}: dataset at {data_root} ({time.perf_counter() - t0:.1f} s to write)",
              flush=True)
        work = args.work / f"run-{n}"
        record = work / "figures.json"  # each stage's (wall s, tree MB, main MB)
        if not args.reuse:
            shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True, exist_ok=True)
        write_params(work, data_root, crf=args.crf, num_workers=args.num_workers)
        env = {**os.environ, "PCAS_CACHE_DIR": str(work / "cache"),
               "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        results[n] = ({k: tuple(v) for k, v in json.loads(record.read_text()).items()}
                      if args.reuse and record.is_file() else {})
        for name, sub in STAGES:
            if name not in args.stages:
                continue
            cmd = [pcas, *sub] + ([] if name == "startup" else ["--params", "params.yaml"])
            wall, tree, main_rss, rc = run_stage(cmd, work, env)
            results[n][name] = (wall, tree, main_rss)
            record.write_text(json.dumps(results[n]))
            print(f"  {name:13s} {wall:7.1f} s  tree {tree:7.0f} MB  main {main_rss:7.0f} MB"
                  + ("" if rc == 0 else f"  FAILED (exit {rc}, see {work / 'stage.log'})"),
                  flush=True)
            if rc:
                break
    sizes = [n for n in args.sizes if results.get(n)]
    print("\nstage          " + "".join(f"| N={n:<5d} s  tree MB  main MB " for n in sizes)
          + ("| ratio time  tree  main" if len(sizes) == 2 else ""))
    for name, _ in STAGES:
        if not all(name in results[n] for n in sizes):
            continue
        row = "".join(f"| {results[n][name][0]:7.1f} {results[n][name][1]:8.0f} "
                      f"{results[n][name][2]:8.0f} " for n in sizes)
        if len(sizes) == 2:
            a, b = results[sizes[0]][name], results[sizes[1]][name]
            row += f"| {b[0] / a[0]:9.2f} {b[1] / a[1]:5.2f} {b[2] / a[2]:5.2f}"
        print(f"{name:14s} {row}")
    if len(sizes) == 2:
        print(f"(N grows {sizes[1] / sizes[0]:.1f}x; goal: RSS ratio <= 1.2, time ratio <= "
              f"{sizes[1] / sizes[0]:.1f})")
        staged = [name for name, _ in STAGES[1:] if all(name in results[n] for n in sizes)]
        if staged == [name for name, _ in STAGES[1:]]:
            counts = projection.avss_counts(args.v2)
            print("\nprobing the paper's models (one small batch each, on the CPU) ..."
                  if not args.no_probe else "", flush=True)
            costs = None if args.no_probe else projection.probe()
            rows = projection.project({n: results[n] for n in sizes},
                                      yaml.safe_load((ROOT / "params.yaml").read_text()),
                                      FRAMES, costs, counts)
            projection.print_projection(rows, counts, costs is not None,
                                        f"cpu ({os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
