"""`pcas report`: the headline of the last run, or paper tables with their spread from
`dvc exp show --json` (not a DVC stage).

With no option it prints the headline table of `metrics/metrics.json` (`--metrics-file`): the
segmentation head, the test pseudo-masks and each baseline (`pcas_core/evaluation/headline.py`).
With `--table`, `--metric`, `--group`, `--reference` or `--input` it reads the runs (or a saved `--input`), picks a table's runs and metrics, and prints and writes
`report.md` and `report.csv` to `--out`: per group of runs (the params that differ, `base.seed`
aside) the mean ± sample std over seeds, and the paired differences to a reference group with
whether each exceeds the spread (`pcas_core/evaluation/report.py`, docs/experiments.md §3).
"""

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from pcas_core.evaluation.headline import headline, headline_text
from pcas_core.evaluation.report import (TABLES, TableSpec, exp_show_json, exp_show_runs,
                                         parse_reference, resolve_metrics, select_runs,
                                         spread_report)
from pcas_core.evaluation.report_text import report_markdown, report_tables
from pcas_core.storage.atomic import atomic_path


def _print(title: str, frame) -> None:
    table = Table(title=title, show_lines=False)
    for name in ["group", *frame.columns]:
        table.add_column(str(name))
    for group, row in frame.iterrows():
        table.add_row(str(group), *(str(v) for v in row))
    Console().print(table)


def report(
    table: Annotated[Optional[str], typer.Option(help=f"Preset: {', '.join(f'{k} ({v.title})' for k, v in TABLES.items())}.")] = None,
    metric: Annotated[Optional[list[str]], typer.Option(help="Metric FILE:key or key (fnmatch wildcards); repeatable; replaces the preset's.")] = None,
    group: Annotated[Optional[list[str]], typer.Option(help="Param prefix that makes the groups (e.g. align.); repeatable; replaces the preset's. None: every param that differs.")] = None,
    reference: Annotated[Optional[str], typer.Option(help="Reference group KEY=VALUE,... (default: the baseline commit's params).")] = None,
    input: Annotated[Optional[Path], typer.Option(exists=True, help="Saved `dvc exp show --json` output (default: run it in --repo).")] = None,
    repo: Annotated[Path, typer.Option(exists=True, file_okay=False, help="DVC project whose experiments are read.")] = Path("."),
    out: Annotated[Path, typer.Option(help="Folder for report.md and report.csv.")] = Path("reports"),
    metrics_file: Annotated[Path, typer.Option(help="Test metrics whose headline is printed when no --table, --metric or --group is given.")] = Path("metrics/metrics.json"),
) -> None:
    """With no option (or only --metrics-file): the headline table of the last run's test
    metrics (head, test pseudo-masks, baselines). Otherwise: mean ± std over base.seed per
    group of runs of `dvc exp show`, paired differences per seed to a reference group, and
    whether each exceeds the spread; printed, and written as markdown and CSV."""
    if table is None and not metric and not group and input is None and reference is None:
        if not metrics_file.is_file():
            raise typer.BadParameter(f"{metrics_file} does not exist: run `dvc repro` first "
                                     "(or give --metrics-file)", param_hint="--metrics-file")
        typer.echo(headline_text(headline(json.loads(metrics_file.read_text()))))
        return
    if table is not None and table not in TABLES:
        raise typer.BadParameter(f"--table must be one of {sorted(TABLES)}, got {table!r}")
    spec = TABLES.get(table, TableSpec("Runs grouped by the params that differ"))
    if not (metric or spec.metrics):
        raise typer.BadParameter("name the metrics: --metric FILE:key (or a --table preset)")
    shown = json.loads(input.read_text()) if input is not None else exp_show_json(repo)
    runs, keys = select_runs(exp_show_runs(shown), tuple(group or spec.groups))
    metrics = resolve_metrics(metric or spec.metrics, list(runs.metrics.columns),
                              required=bool(metric))
    result = spread_report(runs, metrics, keys, title=spec.title,
                           reference=parse_reference(reference) if reference else None)
    summary, diff = report_tables(result)
    _print(f"{result.title}: mean ± std over base.seed", summary)
    if len(diff):
        _print(f"Paired differences to {result.reference}", diff)
    typer.echo(f"rule: {result.rule}")
    for note in result.notes:
        typer.echo(f"note: {note}")
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "report.md") as tmp:
        tmp.write_text(report_markdown(result))
    with atomic_path(out / "report.csv") as tmp:
        result.groups.to_csv(tmp, index=False)
    typer.echo(f"-> {out / 'report.md'}, {out / 'report.csv'}")
