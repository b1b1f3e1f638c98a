"""Stage demo_data: compose the bundled demo dataset (AVSBench-semantic layout) from real media."""

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from pcas_core.runtime.stage import start_stage
from pcas_core.demo.compose import build_demo_dataset

app = typer.Typer(add_completion=False)


@app.callback(invoke_without_command=True)
def demo_data(
    assets: Annotated[Path, typer.Option(exists=True, file_okay=False,
                                         help="Folder of cut-outs, recordings, backgrounds.")] = Path("data/demo-assets"),
    out: Annotated[Path, typer.Option(help="Dataset folder to (re)create.")] = Path("data/demo"),
    params: Annotated[Path, typer.Option(exists=True, help="params.yaml")] = Path("params.yaml"),
) -> None:
    """Compose demo clips (params section `demo`): backgrounds, moving cut-outs, masks, 16 kHz audio,
    with single-source, multi-source and visible-but-silent clips."""
    _, typed, log, _ = start_stage("demo_data", params, "demo")
    cfg = typed.demo
    meta = build_demo_dataset(assets, out, seed=cfg.seed, clips=asdict(cfg.clips),
                              img_size=cfg.img_size, n_frames=cfg.n_frames,
                              sample_rate=cfg.sample_rate, classes=cfg.classes)
    log.info("wrote %d videos to %s: %s", len(meta), out,
             meta.groupby(["split", "label"]).size().to_dict())
