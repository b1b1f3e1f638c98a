"""Progress of long loops: a tqdm bar in a terminal, periodic log lines everywhere else.

Every loop that can run more than a few seconds (feature passes, training epochs, the CRF of
pseudo-masks and baselines, the demo's clips) reports through :class:`Progress` or :func:`track`:

- stderr is a terminal: a tqdm bar (``leave=False``: it disappears when the loop ends);
- otherwise (``dvc repro`` writing a log, CI, a pipe): a log line ``desc: done/total units
  (pct %), elapsed, ~left`` (the time left at the pace since the first unit, so a slow start does
  not count) each time another ~10 % is done (at most one per :data:`MIN_LINE_S` seconds) and at
  least every :data:`EVERY_S` seconds, plus a closing line when any was written; loops shorter
  than :data:`MIN_LINE_S` write nothing.

Only the main process of a distributed run reports (:func:`pcas_core.runtime.distributed.is_main`).
``PCAS_PROGRESS=bar|log|off`` forces one behaviour (``log`` e.g. to see the lines in a terminal).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

from pcas_core.runtime import distributed

__all__ = ["Progress", "track", "EVERY_S", "MIN_LINE_S", "FRACTION"]

T = TypeVar("T")

EVERY_S = 30.0
"""Seconds between two log lines at most (while the loop runs)."""

MIN_LINE_S = 5.0
"""Seconds between two log lines at least (so a short loop writes none)."""

FRACTION = 0.1
"""Share of the total after which the next log line is due (when ``MIN_LINE_S`` have passed)."""

_log = logging.getLogger("pcas.progress")


def _mode() -> str:
    forced = os.environ.get("PCAS_PROGRESS", "").strip().lower()
    if forced in ("bar", "log", "off"):
        return forced
    return "bar" if sys.stderr.isatty() else "log"


def _seconds(s: float) -> str:
    s = int(round(s))
    return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{s} s"


class Progress:
    """Progress of one loop of ``total`` units; :meth:`update` after each, :meth:`close` at the end
    (or use it as a context manager).

    Args:
        total: units the loop will do (videos, frames, batches, steps); 0 or less: unknown, lines
            then say only how many are done.
        desc: what runs, first word of each line (e.g. ``"maps pass"``).
        unit: name of one unit, plural in the lines (``"frame"`` -> ``"frames"``, ``"batch"`` ->
            ``"batches"``).
        log: where the lines go (the stage's logger); default the ``pcas.progress`` logger.
        every_s, min_line_s, fraction: default :data:`EVERY_S`, :data:`MIN_LINE_S`,
            :data:`FRACTION` (read when the loop starts).
        closing: write the closing line (False where the caller logs its own summary, e.g. the
            epoch's losses).
        clock: seconds, monotonic (tests pass their own).
    """

    def __init__(self, total: int, desc: str, *, unit: str = "it",
                 log: logging.Logger | None = None, every_s: float | None = None,
                 min_line_s: float | None = None, fraction: float | None = None,
                 closing: bool = True, clock: Callable[[], float] = time.monotonic) -> None:
        self.total, self.desc, self.unit = int(total), desc, unit
        self.log = log or _log
        self.every_s = EVERY_S if every_s is None else every_s
        self.min_line_s = MIN_LINE_S if min_line_s is None else min_line_s
        self.fraction = FRACTION if fraction is None else fraction
        self.clock, self.closing = clock, closing
        self.done = 0
        self.lines = 0
        mode = _mode() if distributed.is_main() else "off"
        self._bar = (tqdm(total=self.total if self.total > 0 else None, desc=desc, unit=unit,
                          leave=False, dynamic_ncols=True) if mode == "bar" else None)
        self._logs = mode == "log"
        self._start = self._last_time = clock()
        self._last_done = 0
        self._first: tuple[float, int] | None = None  # (time, units done) at the first update

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close(completed=exc[0] is None)

    def _units(self) -> str:
        return f"{self.unit}es" if self.unit.endswith(("s", "x", "ch", "sh")) else f"{self.unit}s"

    def _line(self, now: float) -> str:
        elapsed = now - self._start
        if self.total > 0:
            share = self.done / self.total
            eta = ""
            if self._first is not None and self.done > self._first[1] and self.done < self.total:
                # the rate since the first unit: a slow start (a worker pool spawning, imports)
                # is not taken for the pace of the rest
                rate = (now - self._first[0]) / (self.done - self._first[1])
                eta = f", ~{_seconds(rate * (self.total - self.done))} left"
            return (f"{self.desc}: {self.done}/{self.total} {self._units()} ({100 * share:.0f} %), "
                    f"{_seconds(elapsed)}{eta}")
        return f"{self.desc}: {self.done} {self._units()}, {_seconds(elapsed)}"

    def update(self, n: int = 1) -> None:
        """``n`` more units are done."""
        self.done += n
        if self._first is None:
            self._first = (self.clock(), self.done)
        if self._bar is not None:
            self._bar.update(n)
        if not self._logs:
            return
        now = self.clock()
        since = now - self._last_time
        step = self.fraction * self.total if self.total > 0 else float("inf")
        if since >= self.every_s or (self.done - self._last_done >= step and since >= self.min_line_s):
            if self.total > 0 and self.done >= self.total:
                return  # the closing line says it
            self.log.info("%s", self._line(now))
            self.lines += 1
            self._last_time, self._last_done = now, self.done

    def close(self, completed: bool = True) -> None:
        """End the bar; in log mode, a closing line (when a line was written or the loop took
        :data:`MIN_LINE_S` or more) unless the loop was interrupted."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if (self._logs and completed and self.closing
                and (self.lines or self.clock() - self._start >= self.min_line_s)):
            self.log.info("%s", self._line(self.clock()))
            self.lines += 1
        self._logs = False


def track(items: Iterable[T], *, total: int, desc: str, unit: str = "it",
          log: logging.Logger | None = None, count: Callable[[T], int] | None = None,
          closing: bool = True) -> Iterator[T]:
    """``items`` as they come, reporting progress (:class:`Progress`) after each.

    Args:
        total: units in all of ``items`` (``len(items)`` when each item is one unit).
        count: units in one item (e.g. the rows of a batch); default 1.
        desc, unit, log, closing: as :class:`Progress`.

    Yields:
        each item, unchanged.
    """
    with Progress(total, desc, unit=unit, log=log, closing=closing) as bar:
        for item in items:
            yield item
            bar.update(count(item) if count else 1)
