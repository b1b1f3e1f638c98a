"""Stage ``figures``: the results as pictures that open with no network (docs/results.md §2).

Reads what the other stages wrote (each training stage's DVCLive curves, ``evaluate``'s per-class
IoU, confusion rows, test metrics and overlay folder) and draws, with
:mod:`pcas_core.evaluation.figures`:

- ``<out>/curves_<stage>.png``: every logged term of the stage against the optimiser step;
- ``<out>/per_class_iou.png`` and ``<out>/confusion.png``;
- a static page (``plots/report.html``) with the headline table
  (:mod:`pcas_core.evaluation.headline`), those figures, the overlays and the clip strips.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pcas_core.evaluation.figures import (confusion_figure, curves_figure, per_class_figure,
                                          report_page, save_figure)
from pcas_core.evaluation.headline import headline, headline_text

__all__ = ["FigureInputs", "read_curves", "draw_figures", "page_sections", "report_html"]


@dataclass(frozen=True)
class FigureInputs:
    """Where the figures' data lie.

    Attributes:
        curves: stage name -> its DVCLive folder (``dvclive/<stage>``), in pipeline order.
        per_class: ``plots/per_class_iou.csv``. confusion: ``plots/confusion.csv``.
        metrics: ``metrics/metrics.json`` (the test metrics of ``evaluate``).
        overlays: ``plots/overlays`` (overlay and strip PNGs).
    """

    curves: dict[str, Path]
    per_class: Path
    confusion: Path
    metrics: Path
    overlays: Path


def read_curves(folder: Path) -> dict[str, pd.DataFrame]:
    """The DVCLive curves of one stage: term -> table (``<folder>/plots/metrics/<term>.tsv``,
    columns ``step`` and the term).

    Raises:
        FileNotFoundError: the folder has no curves (names it).
    """
    files = sorted((Path(folder) / "plots" / "metrics").glob("*.tsv"))
    if not files:
        raise FileNotFoundError(f"{folder}: no DVCLive curves (plots/metrics/*.tsv); run the "
                                "stage that writes them first")
    return {f.stem: pd.read_csv(f, sep="\t") for f in files}


def draw_figures(inputs: FigureInputs, out: Path) -> list[str]:
    """Draw every figure into the folder ``out`` (which must exist).

    Returns:
        The file names written, in page order.

    Raises:
        FileNotFoundError / ValueError: a missing input or a table without its columns (names
            the file).
    """
    written = []
    for stage, folder in inputs.curves.items():
        name = f"curves_{stage}.png"
        save_figure(curves_figure(read_curves(folder), f"{stage}: training curves"), out / name)
        written.append(name)
    per_class = pd.read_csv(inputs.per_class)
    save_figure(per_class_figure(per_class, "Per-class IoU of the test split"),
                out / "per_class_iou.png")
    confusion = pd.read_csv(inputs.confusion)
    save_figure(confusion_figure(confusion, "Sampled test pixels, ground truth vs prediction"),
                out / "confusion.png")
    return written + ["per_class_iou.png", "confusion.png"]


def page_sections(figures: list[str], figures_dir: str, overlays: Path,
                  overlays_dir: str) -> list[tuple[str, list[str]]]:
    """The page's sections: results (per-class IoU, confusion), the clip strips, the overlays,
    the training curves; image paths relative to the page (``figures_dir/...``,
    ``overlays_dir/...``). Strips are the overlay folder's ``*_clip.png``."""
    pictures = sorted(p.name for p in Path(overlays).glob("*.png"))
    strips = [p for p in pictures if p.endswith("_clip.png")]
    frames = [p for p in pictures if p not in strips]
    return [("Test split", [f"{figures_dir}/{f}" for f in figures if not f.startswith("curves_")]),
            ("Clips: every frame, and when each class sounds",
             [f"{overlays_dir}/{p}" for p in strips]),
            ("Frames: ground truth and prediction", [f"{overlays_dir}/{p}" for p in frames]),
            ("Training curves", [f"{figures_dir}/{f}" for f in figures if f.startswith("curves_")])]


def report_html(inputs: FigureInputs, figures: list[str], figures_dir: str,
                overlays_dir: str) -> str:
    """The static page of :func:`pcas_core.evaluation.figures.report_page`: the headline of
    ``inputs.metrics`` and every picture."""
    text = headline_text(headline(json.loads(Path(inputs.metrics).read_text())))
    return report_page("pcas results", text,
                       page_sections(figures, figures_dir, inputs.overlays, overlays_dir))
