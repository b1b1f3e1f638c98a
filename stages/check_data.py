"""`pcas check-data ROOT`: validate a dataset folder before a long run (not a DVC stage)."""

from pathlib import Path
from typing import Annotated, Optional

import typer
import yaml

from pcas_core.data.check import check_dataset, format_report
from pcas_core.data.dataset import DATASETS


def check_data(
    root: Annotated[Path, typer.Argument(help="Dataset folder (AVSS root, S4 Single-source, MS3 Multi-sources).")],
    dataset: Annotated[Optional[str], typer.Option(help=f"One of {', '.join(DATASETS)} (default: data.dataset of --params when its root is ROOT, else avss).")] = None,
    audio_dir: Annotated[Optional[Path], typer.Option(help="S4/MS3: folder of <video>.wav or <video>.mp4.")] = None,
    labels_csv: Annotated[Optional[Path], typer.Option(help="MS3: csv of video-level labels (name,labels).")] = None,
    label2idx: Annotated[Optional[Path], typer.Option(help="AVSS/MS3: label2idx.json (default ROOT/label2idx.json).")] = None,
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="Exit 0 when only single videos are bad (they would be skipped); list them.")] = False,
    params: Annotated[Path, typer.Option(help="params.yaml: its `data` section is used when its root is ROOT.")] = Path("params.yaml"),
) -> None:
    """Counts per split, subset and class; frames per video; audio rates and durations; every
    problem with its path. Exit code 1 on errors."""
    data = (yaml.safe_load(params.read_text()) or {}).get("data", {}) if params.is_file() else {}
    if Path(str(data.get("root"))).resolve() != root.resolve():
        data = {}  # the params describe another folder: use only the options given here
    given = {"root": root, "dataset": dataset, "audio_dir": audio_dir, "labels_csv": labels_csv,
             "label2idx": label2idx}
    data = {**data, **{k: v for k, v in given.items() if v is not None}}
    report = check_dataset(data)
    typer.echo(format_report(report, skip_bad=skip_bad))
    raise typer.Exit(0 if report.ok(skip_bad) else 1)
