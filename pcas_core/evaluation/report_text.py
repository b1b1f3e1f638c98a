"""A :class:`pcas_core.evaluation.report.SpreadReport` as text: the two tables ``pcas report``
prints (group x metric: mean ± std with each seed's value; paired differences to the reference
with their verdict) and the markdown file it writes."""

from __future__ import annotations

import math

import pandas as pd

from pcas_core.evaluation.report import SEED, SpreadReport

__all__ = ["report_tables", "report_markdown"]


def _summary_cell(row: pd.Series) -> str:
    spread = "" if math.isnan(row["std"]) else f" ± {row['std']:.4f}"
    seeds = " ".join(f"{float(v):.4f}" for v in row["values"].split())
    return f"{row['mean']:.4f}{spread} ({seeds})"


def _diff_cell(row: pd.Series) -> str:
    if row["diff_n"] == 0:
        return "no common seed"
    verdict = {True: "exceeds", False: "within", None: "n/a"}[row["exceeds"]]
    spread = "" if math.isnan(row["diff_std"]) else f" ± {row['diff_std']:.4f}"
    return f"{row['diff_mean']:+.4f}{spread} (n={row['diff_n']}, {verdict})"


def _wide(rows: pd.DataFrame, cell) -> pd.DataFrame:
    """One row per group (in report order), one column per metric (named by its key alone when
    every metric is of one file), cells as text."""
    out = rows.assign(cell=[cell(r) for _, r in rows.iterrows()])
    metrics = list(dict.fromkeys(rows["metric"]))
    wide = out.pivot(index="group", columns="metric", values="cell").reindex(
        index=list(dict.fromkeys(rows["group"])), columns=metrics)
    if len({m.split(":", 1)[0] for m in metrics}) == 1:
        wide.columns = [m.split(":", 1)[-1] for m in metrics]
    return wide


def report_tables(report: SpreadReport) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(summary, differences)`` as text tables: group x metric, "mean ± std (each seed)" and
    "mean d ± sd(d) (n, verdict)" for every group but the reference."""
    g = report.groups
    return _wide(g, _summary_cell), _wide(g[~g["reference"]], _diff_cell)


def report_markdown(report: SpreadReport) -> str:
    """The report as markdown: the groups, a table of mean ± std (each seed's value), one of
    paired differences to the reference with the rule, then the notes."""
    summary, diff = report_tables(report)
    files = sorted({m.split(":", 1)[0] for m in report.groups["metric"]})
    lines = [f"# {report.title}", "", f"Groups by {', '.join(report.keys) or '(one group)'}; "
             f"metrics of {', '.join(files)}; mean ± sample std over `{SEED}` (each seed's value, "
             "in seed order).", "",
             summary.reset_index().to_markdown(index=False), "",
             f"Paired differences to the reference **{report.reference}** (group - reference, "
             f"per seed): mean ± std (n seeds, verdict). Rule: {report.rule}.", "",
             diff.reset_index().to_markdown(index=False) if len(diff) else "(one group only)",
             ""]
    if report.notes:
        lines += ["Notes:", ""] + [f"- {n}" for n in report.notes] + [""]
    return "\n".join(lines)
