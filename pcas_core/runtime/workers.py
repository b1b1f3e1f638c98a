"""Worker processes for independent per-frame jobs (pseudo-masks, the dense CRF), kept for many
calls, or this process when there is one worker."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch

__all__ = ["WorkerPool"]


def _limit_threads() -> None:
    """Pool initializer: one torch thread per worker process, so workers do not oversubscribe."""
    torch.set_num_threads(1)


class WorkerPool:
    """A ``multiprocessing`` pool of ``workers`` processes (each with one torch thread), or none
    when ``workers == 1``: :meth:`imap` then runs the jobs in this process. Use as a context
    manager; on an exception the workers are terminated, else they finish their work.

    Args:
        workers: processes; 1 runs in this process.
        mp_context: start method ("spawn" is safe with torch's thread pools).
        key: the params key ``workers`` comes from, named in the error.

    Raises:
        ValueError: ``workers`` < 1.
    """

    def __init__(self, workers: int, mp_context: str = "spawn", key: str = "workers") -> None:
        if workers < 1:
            raise ValueError(f"{key} must be >= 1, got {workers}")
        self.workers = workers
        self._pool = (multiprocessing.get_context(mp_context).Pool(
            workers, initializer=_limit_threads) if workers > 1 else None)

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close(finished=exc[0] is None)

    def close(self, finished: bool = True) -> None:
        """End the workers (after their work when ``finished``, at once otherwise); later calls of
        :meth:`imap` run in this process. Calling it again does nothing."""
        if self._pool is not None:
            self._pool.close() if finished else self._pool.terminate()
            self._pool.join()
            self._pool = None

    def imap(self, fn: Callable[[Any], Any], jobs: Iterable[Any],
             chunksize: int = 1) -> Iterator[Any]:
        """``fn`` of each job, in the jobs' order (``Pool.imap``; the builtin ``map`` without
        workers). ``fn`` must be a module-level function (it is pickled by name)."""
        if self._pool is None:
            return map(fn, jobs)
        return self._pool.imap(fn, jobs, chunksize=chunksize)
