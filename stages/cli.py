"""The `pcas` command: every stage of the DVC pipeline, one command each, plus `check-data`,
`predict` and `report` (not DVC stages).

Errors end here, in one place (:class:`_Pcas`): bad params, bad data and unreadable inputs
(:func:`pcas_core.runtime.errors.user_error_message`) print one message on stderr and exit with
status 1; anything else is a bug and keeps its traceback. `pcas --debug` or `PCAS_DEBUG=1` shows the
traceback of every error.
"""

import os
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated

import click
import typer
from typer.core import TyperGroup

from pcas_core.runtime.errors import DEBUG_ENV, debug_enabled, user_error_message

from . import (align, check_data, demo_data, evaluate, fbank, figures, predict, pseudo_masks,
               report, train_audio, train_visual)


class _Pcas(TyperGroup):
    """Typer's command group with pcas's error boundary around every command."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except BrokenPipeError:  # e.g. `pcas report | head`: the reader left, nothing to say
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(1) from None
        except Exception as err:
            message = user_error_message(err)
            if message is None or debug_enabled():
                raise
            command = ctx.invoked_subcommand or ctx.info_name or "pcas"
            typer.echo(f"pcas {command}: error: {message}", err=True)
            raise typer.Exit(1) from None


def _version() -> str:
    try:
        return version("pcas")
    except PackageNotFoundError:  # imported from a source tree that was never installed
        return "unknown (not installed)"


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"pcas {_version()}")
        raise typer.Exit()


app = typer.Typer(
    cls=_Pcas, add_completion=False, no_args_is_help=True,
    help="PCAS: weakly supervised audio-visual semantic segmentation, stage by stage. Each stage "
         "reads params.yaml (its `base` section and those its help names) and writes the outputs "
         "dvc.yaml names; `dvc repro` runs them in order.\n\n"
         "Errors in params, data or input files end with one message and exit status 1; "
         f"`pcas --debug COMMAND` or {DEBUG_ENV}=1 shows the traceback. Progress: a bar in a "
         "terminal, a log line every ~10 % or 30 s otherwise (PCAS_PROGRESS=bar|log|off); "
         "PCAS_LOG_LEVEL=DEBUG logs every params value.")


@app.callback()
def _main(
    version_: Annotated[bool, typer.Option("--version", callback=_show_version, is_eager=True,
                                           help="Print the installed pcas version and exit.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help=f"Show the traceback of every error (as {DEBUG_ENV}=1).")] = False,
) -> None:
    if debug:
        os.environ[DEBUG_ENV] = "1"  # torchrun's processes inherit it


def _command(name: str, function, short_help: str) -> None:
    app.command(name, short_help=short_help)(function)


_command("demo-data", demo_data.demo_data, "Compose the bundled demo dataset (AVSBench-semantic layout).")
_command("fbank", fbank.fbank, "Audio features of every video (fbank.front_end: aisfx log-mel or AST fbank).")
_command("train-visual", train_visual.train_visual, "Visual classifier (train_visual.backbone); v_t, c_t per frame.")
_command("train-audio", train_audio.train_audio, "TVP audio encoder (train_audio.encoder); a_t, s_t per frame.")
_command("align", align.align, "CMC, CMPC, CMCC alignment; CAMs and sounding maps of every frame.")
_command("pseudo-masks", pseudo_masks.pseudo_masks_stage, "Pseudo-masks of every frame, with dense CRF.")
_command("evaluate", evaluate.evaluate, "Segmentation head, test metrics, overlays.")
_command("figures", figures.figures, "Curves, per-class IoU and confusion as PNGs; plots/report.html with the headline and every picture (no network).")
_command("check-data", check_data.check_data, "Validate a dataset folder: counts and every problem (not a DVC stage).")
_command("predict", predict.predict, "Masks of the sounding objects in your own video (docs/predict.md), or --root: another dataset's test split scored (not a DVC stage).")
_command("report", report.report, "The headline table of the last run; or paper tables with their spread from `dvc exp show` (not a DVC stage).")

if __name__ == "__main__":
    app()
