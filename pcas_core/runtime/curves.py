"""Training curves through DVCLive: every logged term per window of optimiser steps, for
``dvc plots``, and each epoch's means in the summary.

:func:`pcas_core.runtime.fit.fit` calls an ``on_epoch(epoch, values, points)`` callback after each
epoch; :func:`epoch_curves` turns that callback into DVCLive metrics. A curve has one point per
window of :func:`pcas_core.runtime.fit.curve_window` optimiser steps (every step on short runs,
at most about :data:`pcas_core.runtime.fit.CURVE_POINTS` points per run), so a run of one or two
epochs (the demo's ``align``) still draws a curve. Inside a DVC pipeline, DVCLive must not write
its own ``dvc.yaml`` or save an experiment (``dvc repro`` / ``dvc exp run`` own both), so
``Live`` is opened with ``dvcyaml=None, save_dvc_exp=False`` (DVCLive docs, "DVCLive in DVC
pipelines") and the stage declares what it writes in ``dvc.yaml``:

- ``<dir>/plots/metrics/<name>.tsv``: columns ``step`` (optimiser steps done at the window's end,
  1-based over the run) and ``<name>`` (the window's mean; ``lr`` at its end), one row per
  window (``plots:``, ``x: step``);
- ``<dir>/metrics.json``: the last epoch's mean of each term, ``epoch`` (epochs run) and
  ``step`` (optimiser steps run) (``metrics:``).

No timestamps are written, so the same run gives the same files. DVCLive empties ``dir`` when it
opens it, so a rerun never mixes two runs. Where DVCLive cannot be imported (it imports DVC; a
GPU machine that gets only the stages' packages, ``benchmarks/gpu_check.py``) a WARNING says so
and no curves are written; the stage's other outputs are the same.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Iterator
from pathlib import Path

from pcas_core.runtime.distributed import is_main

__all__ = ["EpochCallback", "epoch_curves"]

#: ``(epoch (0-based), {term: epoch mean}, [(step, {term: window mean}), ...]) -> None``, called
#: by :func:`pcas_core.runtime.fit.fit`.
EpochCallback = Callable[[int, dict[str, float], list[tuple[int, dict[str, float]]]], None]


def _finite(directory: Path | str, name: str, value: float, where: str) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{directory}: term '{name}' is {value} at {where}")
    return value


@contextlib.contextmanager
def epoch_curves(directory: Path | str | None) -> Iterator[EpochCallback | None]:
    """Open a DVCLive ``Live`` at ``directory`` and yield an ``on_epoch`` callback that logs to it.

    Args:
        directory: DVCLive folder (e.g. ``dvclive/train_visual``); ``None`` yields ``None`` (no
            curves, nothing written), as do the ranks other than 0 of a distributed run and,
            with a WARNING, a python where DVCLive cannot be imported.

    Yields:
        ``on_epoch(epoch, values, points)``: logs each point's values (floats; NaN/inf raise) at
        DVCLive step ``step`` and writes the epoch means ``values`` to the summary. Epochs must
        arrive in order 0, 1, 2, ... and steps must increase.

    Raises:
        ValueError: an epoch out of order, a step that does not increase, or a non-finite value
            (names the term).
    """
    if directory is None or not is_main():  # one writer in a distributed run: rank 0
        yield None
        return
    try:
        from dvclive import Live
    except ImportError as err:  # a folder named dvclive without the package fails here too
        logging.getLogger("pcas").warning("no training curves in %s: DVCLive cannot be imported "
                                          "(%s; pip install dvclive)", directory, err)
        yield None
        return

    with Live(dir=str(directory), dvcyaml=None, save_dvc_exp=False, report=None,
              monitor_system=False) as live:
        state = {"epoch": 0, "step": 0}

        def on_epoch(epoch: int, values: dict[str, float],
                     points: list[tuple[int, dict[str, float]]]) -> None:
            if epoch != state["epoch"]:
                raise ValueError(f"{directory}: epoch {epoch} logged after {state['epoch']} "
                                 "epochs")
            for step, point in points:
                if step <= state["step"]:
                    raise ValueError(f"{directory}: step {step} logged after step "
                                     f"{state['step']}")
                live.step = state["step"] = int(step)
                for name, value in point.items():
                    live.log_metric(name, _finite(directory, name, value, f"step {step}"))
            live.summary = {name: _finite(directory, name, value, f"epoch {epoch}")
                            for name, value in values.items()}
            live.summary["epoch"] = state["epoch"] = epoch + 1
            live.step = state["step"]
            live.make_summary()

        yield on_epoch
