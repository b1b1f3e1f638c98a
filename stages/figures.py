"""Stage figures: the training curves, per-class IoU and confusion counts as PNG images, and a
static page with the headline table and every picture, all viewable with no network."""

import os
from pathlib import Path
from typing import Annotated

import typer

from pcas_core.pipeline.figures import FigureInputs, draw_figures, report_html
from pcas_core.runtime.stage import start_stage
from pcas_core.storage.atomic import atomic_path

#: the training stages whose DVCLive curves are drawn, in pipeline order
CURVES = ("train_visual", "train_audio", "align", "evaluate")


def figures(
    dvclive: Annotated[Path, typer.Option(exists=True, file_okay=False, help="Folder of each training stage's DVCLive folder.")] = Path("dvclive"),
    per_class: Annotated[Path, typer.Option(exists=True, help="Per-class IoU (.csv) of evaluate.")] = Path("plots/per_class_iou.csv"),
    confusion: Annotated[Path, typer.Option(exists=True, help="Confusion rows (.csv) of evaluate.")] = Path("plots/confusion.csv"),
    metrics: Annotated[Path, typer.Option(exists=True, help="Test metrics (.json) of evaluate.")] = Path("metrics/metrics.json"),
    overlays: Annotated[Path, typer.Option(exists=True, file_okay=False, help="Overlays and clip strips of evaluate.")] = Path("plots/overlays"),
    out: Annotated[Path, typer.Option(help="Folder of the PNG figures.")] = Path("plots/figures"),
    page: Annotated[Path, typer.Option(help="Static HTML page of the headline and every picture.")] = Path("plots/report.html"),
    params: Annotated[Path, typer.Option(exists=True, help="params.yaml")] = Path("params.yaml"),
) -> None:
    """Draw the curves, per-class IoU and confusion counts as PNGs into --out, and write --page:
    the headline table with every figure, overlay and clip strip (no script, no network).

    Reads params `base`."""
    run = start_stage("figures", params)
    inputs = FigureInputs({s: dvclive / s for s in CURVES}, per_class, confusion, metrics,
                          overlays)
    with atomic_path(out, directory=True) as tmp:
        written = draw_figures(inputs, tmp)
    base = page.parent
    with atomic_path(page) as tmp:
        tmp.write_text(report_html(inputs, written, Path(os.path.relpath(out, base)).as_posix(),
                                   Path(os.path.relpath(overlays, base)).as_posix()))
    run.log.info("wrote %d figures to %s and %s", len(written), out, page)
