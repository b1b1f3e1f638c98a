"""Training curves through DVCLive: one value per epoch of every logged term, for ``dvc plots``.

:func:`pcas_core.runtime.fit.fit` calls an ``on_epoch(epoch, values)`` callback after each epoch;
:func:`epoch_curves` turns that callback into DVCLive steps. Inside a DVC pipeline, DVCLive must not
write its own ``dvc.yaml`` or save an experiment (``dvc repro`` / ``dvc exp run`` own both), so
``Live`` is opened with ``dvcyaml=None, save_dvc_exp=False`` (DVCLive docs, "DVCLive in DVC
pipelines") and the stage declares what it writes in ``dvc.yaml``:

- ``<dir>/plots/metrics/<name>.tsv``: columns ``step`` (epoch, 0-based) and ``<name>``, one row per
  epoch (``plots:``, ``x: step``);
- ``<dir>/metrics.json``: the last epoch's values plus ``step`` (``metrics:``).

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

#: ``(epoch (0-based), {term: value}) -> None``, called by :func:`pcas_core.runtime.fit.fit`.
EpochCallback = Callable[[int, dict[str, float]], None]


@contextlib.contextmanager
def epoch_curves(directory: Path | str | None) -> Iterator[EpochCallback | None]:
    """Open a DVCLive ``Live`` at ``directory`` and yield an ``on_epoch`` callback that logs to it.

    Args:
        directory: DVCLive folder (e.g. ``dvclive/train_visual``); ``None`` yields ``None`` (no
            curves, nothing written), as do the ranks other than 0 of a distributed run and,
            with a WARNING, a python where DVCLive cannot be imported.

    Yields:
        ``on_epoch(epoch, values)``: logs each value (a float; NaN/inf raise) as a metric of step
        ``epoch`` and advances DVCLive's step. Epochs must arrive in order 0, 1, 2, ...

    Raises:
        ValueError: an epoch out of order, or a non-finite value (names the term).
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

        def on_epoch(epoch: int, values: dict[str, float]) -> None:
            if epoch != live.step:
                raise ValueError(f"{directory}: epoch {epoch} logged at DVCLive step {live.step}")
            for name, value in values.items():
                value = float(value)
                if not math.isfinite(value):
                    raise ValueError(f"{directory}: term '{name}' is {value} at epoch {epoch}")
                live.log_metric(name, value)
            live.next_step()

        yield on_epoch
