"""Figures that need no browser script and no network: the training curves, the per-class IoU and
the confusion counts drawn with matplotlib into PNG files (``dvc plots show`` embeds PNG plots as
images, which show offline, while its Vega charts load their library from a CDN), and a static
HTML page that puts them beside the headline table, the overlays and the clip strips.

Every function takes plain tables (as the stages write them) and returns or saves a picture; the
``figures`` stage (:mod:`pcas_core.pipeline.figures`) finds the files.
"""

from __future__ import annotations

import html
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display, no GUI toolkit

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

__all__ = ["DPI", "curves_figure", "per_class_figure", "confusion_figure", "save_figure",
           "report_page"]

DPI = 100
"""Pixels per inch of every saved figure (sizes below are in inches)."""


def _order(names: list[str]) -> list[str]:
    """``loss`` first, ``lr`` last, the other terms alphabetically."""
    rest = sorted(n for n in names if n not in ("loss", "lr"))
    return [n for n in ("loss",) if n in names] + rest + [n for n in ("lr",) if n in names]


def curves_figure(curves: dict[str, pd.DataFrame], title: str) -> Figure:
    """One panel per logged term of a training stage, each against the optimiser step.

    Args:
        curves: term -> table with columns ``step`` and the term (a DVCLive
            ``plots/metrics/<term>.tsv``, :mod:`pcas_core.runtime.curves`).
        title: the figure's title (the stage).

    Returns:
        The figure: a grid of 3 panels per row on one step axis (a term that starts late, such
        as CMPC after ``align.token_contrast_start``, shows where it starts), points marked when a
        curve has at most 30.

    Raises:
        ValueError: no curve, or a table without its ``step`` or term column (names it).
    """
    if not curves:
        raise ValueError(f"{title}: no training curve to draw")
    names = _order(list(curves))
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    for name in names:
        if "step" not in curves[name] or name not in curves[name]:
            raise ValueError(f"{title}: the curve of {name!r} needs columns step and {name}, "
                             f"has {list(curves[name].columns)}")
    first = min(float(curves[n]["step"].min()) for n in names)
    last = max(float(curves[n]["step"].max()) for n in names)
    pad = max(0.5, 0.02 * (last - first))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.8 * rows), squeeze=False)
    for ax, name in zip(axes.ravel(), names):
        table = curves[name]
        ax.plot(table["step"], table[name], marker="o" if len(table) <= 30 else None,
                markersize=3, linewidth=1.2)
        ax.set_xlim(first - pad, last + pad)  # one step axis: a term that starts late shows it
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("optimiser step", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(names):]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    return fig


def per_class_figure(per_class: pd.DataFrame, title: str) -> Figure:
    """Horizontal bars of each class's IoU, best at the top, the class names on the vertical
    (categorical) axis and the value printed at each bar's end.

    Args:
        per_class: columns ``class`` (str) and ``iou`` (float in [0, 1]), as
            ``plots/per_class_iou.csv``.

    Raises:
        ValueError: missing columns or no row.
    """
    if not {"class", "iou"} <= set(per_class.columns) or per_class.empty:
        raise ValueError(f"per-class IoU needs rows with columns class and iou, got "
                         f"{list(per_class.columns)} and {len(per_class)} rows")
    table = per_class.sort_values("iou")
    fig, ax = plt.subplots(figsize=(6.5, 0.9 + 0.32 * len(table)))
    ax.barh(table["class"].astype(str), table["iou"], color="#4c78a8")
    for y, v in enumerate(table["iou"]):
        ax.text(v + 0.01, y, f"{v:.3f}", va="center", fontsize=8)
    ax.set_xlim(0, 1.08)
    ax.set_xlabel("IoU (clean mode)")
    ax.set_title(title, fontsize=11)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def confusion_figure(confusion: pd.DataFrame, title: str) -> Figure:
    """The sampled pixels of ``plots/confusion.csv`` counted per (ground truth, prediction) and
    shown as a matrix, each row normalised to its ground-truth class (the count in each cell).

    Args:
        confusion: columns ``actual`` and ``predicted`` (class names), one sampled pixel a row.

    Raises:
        ValueError: missing columns.
    """
    if not {"actual", "predicted"} <= set(confusion.columns):
        raise ValueError(f"confusion rows need columns actual and predicted, got "
                         f"{list(confusion.columns)}")
    names = sorted(set(confusion["actual"]) | set(confusion["predicted"]),
                   key=lambda n: (n != "background", n))
    counts = pd.crosstab(confusion["actual"], confusion["predicted"]).reindex(
        index=names, columns=names, fill_value=0).to_numpy()
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    side = 1.2 + 0.55 * max(len(names), 1)
    fig, ax = plt.subplots(figsize=(side + 1.0, side))
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(names)):
        for j in range(len(names)):
            if counts[i, j]:
                ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if share[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xlabel("prediction")
    ax.set_ylabel("ground truth")
    ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the row")
    fig.tight_layout()
    return fig


def save_figure(fig: Figure, path: Path) -> None:
    """Save ``fig`` as a PNG at :data:`DPI` and close it (parent folders are created)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def report_page(title: str, headline: str, sections: list[tuple[str, list[str]]]) -> str:
    """A static HTML page (no script, no network): the headline table as preformatted text,
    then one section per ``(heading, [relative image paths])``.

    Args:
        headline: :func:`pcas_core.evaluation.headline.headline_text` output.
        sections: headings and the images under each, paths relative to the page.
    """
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
             "</title><style>body{font-family:sans-serif;margin:1.5em}img{max-width:100%;"
             "margin:0.4em 0}pre{background:#f4f4f4;padding:0.8em}"
             "</style></head><body>", f"<h1>{html.escape(title)}</h1>",
             f"<pre>{html.escape(headline)}</pre>"]
    for heading, images in sections:
        if not images:
            continue
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        parts += [f"<div><img src='{html.escape(p)}' alt='{html.escape(p)}'></div>"
                  for p in images]
    parts.append("</body></html>")
    return "\n".join(parts)
