"""Time `pcas predict` on a video unlike the demo's clips, or on a demo test clip muxed to mp4.

    python benchmarks/predict_video.py --kind hd      # 10 s, 1920x1080, 30 fps, stereo 44.1 kHz,
                                                      # a dog and a guitar from the demo assets
    python benchmarks/predict_video.py --kind demo    # the first test clip of data.root as an mp4

Needs the models of the last `dvc repro` (params `predict.models`). Prints the command, the time
to make the clip (not counted), the end-to-end wall time of `pcas predict` (process start to
exit, imports and model loading included), predict's own wall time per second of video, and
the output files.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import yaml
from PIL import Image

import pcas_core  # noqa: F401
from pcas_core.data.dataset import open_dataset
from pcas_core.demo.video import DemoVideo
from pcas_core.data.video import VideoWriter

ROOT = Path(__file__).resolve().parents[1]


def demo_clip(path: Path, params: dict) -> str:
    """Mux the first test clip of ``data.root`` (JPEG frames at 1 fps, audio.wav) into an mp4."""
    test = open_dataset(params["data"]).split("test")
    first = test.frames[test.frames["video"] == 0]
    frames = [np.asarray(Image.open(p).convert("RGB")) for p in first["frame_path"]]
    wave, rate = sf.read(first["audio_path"].iloc[0], dtype="float32", always_2d=True)
    with VideoWriter(path, fps=1, width=frames[0].shape[1], height=frames[0].shape[0],
                     audio=wave.T, sample_rate=rate) as writer:
        for f in frames:
            writer.add(f)
    return f"{first['uid'].iloc[0]} ({test.metadata['a_obj'].iloc[0]}), {len(frames)} s"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--kind", choices=["hd", "demo"], default="hd")
    ap.add_argument("--classes", nargs="+", default=["dog", "guitar"],
                    help="hd: the objects, classes the models know (params demo.classes)")
    ap.add_argument("--seconds", type=float, default=10.0, help="hd: clip length")
    ap.add_argument("--fps", type=int, default=None, help="predict.fps override")
    ap.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "out")
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    args = ap.parse_args()
    params = yaml.safe_load(args.params.read_text())
    known = (params.get("demo") or {}).get("classes") or []
    unknown = [c for c in args.classes if c not in known]
    if args.kind == "hd" and unknown:
        ap.error(f"--classes {unknown}: not demo classes, which the models never learnt "
                 f"(params demo.classes: {known})")
    args.work.mkdir(parents=True, exist_ok=True)
    video = args.work / f"{args.kind}.mp4"
    start = time.perf_counter()
    if args.kind == "hd":
        DemoVideo(ROOT / "data" / "demo-assets", args.classes, width=1920, height=1080, fps=30,
                  seconds=args.seconds, sample_rate=44100).write(video)
        what = f"{args.seconds:g} s, 1920x1080, 30 fps, stereo 44.1 kHz, objects {args.classes}"
    else:
        what = "demo test clip " + demo_clip(video, params)
    print(f"clip: {video} = {what}; made in {time.perf_counter() - start:.1f} s (not counted)")
    out = args.work / f"{args.kind}-predict"
    cmd = ["pcas", "predict", str(video), "--out", str(out), "--params", str(args.params)]
    cmd += ["--fps", str(args.fps)] if args.fps else []
    print("$", " ".join(cmd), flush=True)
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    sys.stdout.write(done.stdout)
    if done.returncode:
        sys.stderr.write(done.stderr)
        raise SystemExit(done.returncode)
    print(f"end-to-end wall time of the command: {wall:.2f} s (imports and model loading "
          "included)")
    print("outputs:", ", ".join(sorted(p.name for p in out.iterdir())),
          f"({len(list((out / 'masks').glob('*.png')))} mask PNGs)")


if __name__ == "__main__":
    main()
