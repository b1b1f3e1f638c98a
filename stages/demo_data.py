"""Stage demo_data: compose the bundled demo dataset (AVSBench-semantic layout) from real media."""

from pathlib import Path
from typing import Annotated

import typer

from pcas_core.runtime.stage import start_stage
from pcas_core.demo.compose import build_demo_dataset

def demo_data(
    assets: Annotated[Path, typer.Option(exists=True, file_okay=False,
                                         help="Folder of cut-outs, recordings, backgrounds.")] = Path("data/demo-assets"),
    out: Annotated[Path, typer.Option(help="Dataset folder to (re)create.")] = Path("data/demo"),
    params: Annotated[Path, typer.Option(exists=True, help="params.yaml")] = Path("params.yaml"),
) -> None:
    """Compose the demo clips: backgrounds, moving cut-outs, masks by who sounds when, 16 kHz
    audio over a noise floor; kinds always, event, silent, multi, long; train clips from the
    assets' train pool, val/test clips from the test pool.

    Reads params `base`, `demo`."""
    _, typed, log, _ = start_stage("demo_data", params, "demo")
    meta = build_demo_dataset(assets, out, typed.demo, log)
    log.info("wrote %d videos to %s: %s", len(meta), out,
             meta.groupby(["split", "kind"]).size().to_dict())
