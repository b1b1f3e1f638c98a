"""Resume checkpoints of the training loop: one file per stage, rewritten after every epoch, so a
run killed mid-training continues from its last finished epoch when asked.

Asked how: the environment variable ``PCAS_RESUME=1`` (``PCAS_RESUME=1 dvc repro``,
``PCAS_RESUME=1 pcas align``). Not a params key: resuming does not change results, and a key would
change the stage's params hash in ``dvc.lock``. Where: ``checkpoints/<stage>/last.pt`` under the
working directory (``$PCAS_CHECKPOINT_DIR`` instead of ``checkpoints``); not a DVC output, so
``dvc repro`` does not delete it before rerunning the stage. A stage removes its checkpoint when it
has written all its outputs.

What a checkpoint holds (``torch.save``; read with ``torch.load(weights_only=True)``, nothing is
unpickled): the model, optimizer and LR-scheduler state dicts, the last finished epoch (0-based),
the torch/NumPy/``random`` global RNG states (and CUDA's), the states of extra generators the loop
draws from (e.g. the alignment's crop positions), the per-epoch history and learning rates, and,
as JSON, the params that made it and the size and modification time of the files it trained on
(an upstream stage rerun since then makes the checkpoint stale: refused). Models whose extra state lives in submodules (the alignment's EMA
crop head) are covered by their state dict. Data order needs no state: each epoch's batches come
from their own seed (``batches(epoch)``). So a resumed run gives the same weights, history and
curves as an uninterrupted one (same params, seed and machine): the curves of the finished epochs
are replayed into the fresh DVCLive folder (``dvc repro`` removes the old one, so
``Live(resume=True)`` would have nothing to continue), then training goes on.
"""

from __future__ import annotations

import json
import logging
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pcas_core.params import flat_keys
from pcas_core.storage.atomic import atomic_path

__all__ = ["RESUME_ENV", "DIR_ENV", "ResumeError", "Restored", "EpochCheckpoint",
           "resume_requested", "file_fingerprints"]

RESUME_ENV = "PCAS_RESUME"
DIR_ENV = "PCAS_CHECKPOINT_DIR"
_FORMAT = 2  # 2: training-curve points per epoch
#: params that do not change results (docs/resuming.md), so a resume may change them
_RESULT_NEUTRAL = ("base.num_workers",)


class ResumeError(ValueError):
    """A resume checkpoint that cannot be used (other params or input files, another format,
    unreadable, state that does not fit the model), or a bad ``$PCAS_RESUME``."""


def resume_requested() -> bool:
    """True when ``$PCAS_RESUME`` is ``1``/``true``/``yes`` (any case).

    Raises:
        ResumeError: any other non-empty value (a typo must not silently start from scratch).
    """
    value = os.environ.get(RESUME_ENV, "").strip().lower()
    if value in ("", "0", "false", "no"):
        return False
    if value in ("1", "true", "yes"):
        return True
    raise ResumeError(f"{RESUME_ENV}={value!r}: expected 1/true/yes or 0/false/no")


def file_fingerprints(paths: Sequence[Path]) -> dict[str, list[int]]:
    """``str(path) -> [size in bytes, modification time in ns]`` of each file: cheap (no
    hashing of multi-GB stores) and changed by any rewrite, e.g. an upstream stage's rerun.

    Raises:
        FileNotFoundError: a path that is not a file (names it).
    """
    out = {}
    for path in map(Path, paths):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: training input not found")
        st = path.stat()
        out[str(path)] = [int(st.st_size), int(st.st_mtime_ns)]
    return out


def _rng_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "numpy_keys": torch.from_numpy(keys.astype(np.int64)),
             "numpy": [kind, int(pos), int(has_gauss), float(gauss)],
             "python": list(random.getstate()[1]), "python_gauss": random.getstate()[2]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, state["numpy_keys"].numpy().astype(np.uint32), pos, has_gauss,
                         gauss))
    random.setstate((3, tuple(state["python"]), state["python_gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class Restored:
    """Where :meth:`EpochCheckpoint.restore` leaves the loop.

    Attributes:
        start_epoch: first epoch still to train (0: nothing restored).
        history: per finished epoch, the mean of each logged term.
        lrs: per finished epoch, the first group's learning rate at its end.
        points: per finished epoch, its training-curve points ``[(step, values), ...]``
            (:func:`pcas_core.runtime.fit.fit`).
    """

    start_epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)
    points: list[list[tuple[int, dict[str, float]]]] = field(default_factory=list)


@dataclass
class EpochCheckpoint:
    """The resume checkpoint of one training run, passed to :func:`pcas_core.runtime.fit.fit`.

    Args:
        path: the checkpoint file (``.pt``).
        params: JSON-able params that made the run; a checkpoint made with other params is
            refused (``base.num_workers`` aside: it does not change results).
        resume: restore from ``path`` when it exists (else the run starts from scratch and
            overwrites it after its first epoch).
        inputs: ``path -> [size, mtime_ns]`` of the files the training reads (upstream stores,
            checkpoints); a checkpoint made from other files (an upstream stage rerun since) is
            refused. See :func:`file_fingerprints`.
        generators: extra random generators the loop draws from across epochs, by name; their
            states are saved and restored too.
        logger: where restore/ignore notes go.
    """

    path: Path
    params: dict[str, Any]
    resume: bool = False
    inputs: dict[str, list[int]] = field(default_factory=dict)
    generators: dict[str, torch.Generator] = field(default_factory=dict)
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger(__name__))
    scratch_files: list[Path] = field(default_factory=list)

    @classmethod
    def for_stage(cls, stage: str, params: dict[str, Any], inputs: Sequence[Path] = (), *,
                  logger: logging.Logger | None = None) -> EpochCheckpoint:
        """``$PCAS_CHECKPOINT_DIR/<stage>/last.pt`` (default ``checkpoints/<stage>/last.pt``),
        resumed when :func:`resume_requested`; ``inputs``: the files training reads.

        Raises:
            ResumeError: as :func:`resume_requested`.
        """
        path = Path(os.environ.get(DIR_ENV) or "checkpoints") / stage / "last.pt"
        return cls(path, params, resume_requested(), file_fingerprints(inputs),
                   logger=logger or logging.getLogger(__name__))

    def with_generators(self, **generators: torch.Generator) -> EpochCheckpoint:
        """A copy that also saves and restores ``generators`` (name -> CPU generator)."""
        return replace(self, generators={**self.generators, **generators})

    def save(self, epoch: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
             scheduler: torch.optim.lr_scheduler.LRScheduler, history: list[dict[str, float]],
             lrs: list[float], points: list | None = None) -> None:
        """Write the state after finished epoch ``epoch`` (0-based) atomically: a kill during the
        write leaves the previous epoch's checkpoint. ``points``: each finished epoch's
        training-curve points (:class:`Restored`)."""
        meta = {"format": _FORMAT, "epoch": epoch, "params": self.params, "inputs": self.inputs,
                "history": history, "lrs": lrs, "points": points or [[] for _ in history]}
        state = {"meta": json.dumps(meta), "model": model.state_dict(),  # order kept: curves
                 "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                 "rng": _rng_state(),
                 "generators": {k: g.get_state() for k, g in self.generators.items()}}
        with atomic_path(self.path) as tmp:
            torch.save(state, tmp)

    def restore(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                scheduler: torch.optim.lr_scheduler.LRScheduler) -> Restored:
        """Load the checkpoint into ``model``, ``optimizer``, ``scheduler``, the global RNGs and
        the generators, when resuming and the file exists; otherwise change nothing.

        Returns:
            :class:`Restored` (``start_epoch`` 0 when nothing was restored).

        Raises:
            ResumeError: unreadable file, another format, params that differ (each differing
                dotted key with both values), other generators, or state that does not fit.
        """
        if not self.path.is_file():
            if self.resume:
                self.logger.info("%s=1 but no checkpoint at %s: training from scratch",
                                 RESUME_ENV, self.path)
            return Restored()
        if not self.resume:
            self.logger.info("%s exists from an unfinished run; it is overwritten (set %s=1 to "
                             "resume from it)", self.path, RESUME_ENV)
            return Restored()
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
            meta = json.loads(state["meta"])
        except Exception as e:
            raise ResumeError(f"{self.path}: cannot read the resume checkpoint "
                              f"({type(e).__name__}: {e}); delete it to start from scratch") from e
        if meta.get("format") != _FORMAT:
            raise ResumeError(f"{self.path}: checkpoint format {meta.get('format')}, expected "
                              f"{_FORMAT}; delete it to start from scratch")
        self._check_params(meta["params"])
        changed = sorted(k for k in set(meta["inputs"]) | set(self.inputs)
                         if meta["inputs"].get(k) != self.inputs.get(k))
        if changed:
            raise ResumeError(f"{self.path} was made from other input files ({', '.join(changed)} "
                              f"changed since: size or modification time); run without "
                              f"{RESUME_ENV} to start from scratch")
        if set(state["generators"]) != set(self.generators):
            raise ResumeError(f"{self.path}: saved generators {sorted(state['generators'])}, "
                              f"this run has {sorted(self.generators)}")
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as e:
            raise ResumeError(f"{self.path}: the saved state does not fit this model ({e})") from e
        scheduler.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"])
        for name, g in self.generators.items():
            g.set_state(state["generators"][name])
        epoch = int(meta["epoch"])
        self.logger.info("resumed from %s after epoch %d", self.path, epoch + 1)
        points = [[(int(step), values) for step, values in epoch_points]
                  for epoch_points in meta["points"]]
        return Restored(epoch + 1, meta["history"], meta["lrs"], points)

    def _check_params(self, saved: dict[str, Any]) -> None:
        ours = json.loads(json.dumps(self.params))  # the JSON round trip the saved ones took
        if saved == ours:
            return
        a, b = flat_keys(saved), flat_keys(ours)
        diff = [f"{k}: {a.get(k, '<absent>')!r} -> {b.get(k, '<absent>')!r}"
                for k in sorted(set(a) | set(b))
                if a.get(k, "<absent>") != b.get(k, "<absent>") and k not in _RESULT_NEUTRAL]
        if not diff:
            return
        raise ResumeError(f"{self.path} was made with other params ({'; '.join(diff)}); run "
                          f"without {RESUME_ENV} to start from scratch, or restore those params")

    def scratch(self, name: str) -> Path:
        """``<checkpoint folder>/<name>``: a file of data the run rebuilds from its inputs (e.g.
        ``evaluate``'s head rows), kept beside the checkpoint so that a resumed run may reuse it;
        not a DVC output, deleted by :meth:`remove` with the checkpoint."""
        path = self.path.parent / name
        self.scratch_files.append(path)
        return path

    def remove(self) -> None:
        """Delete the checkpoint (the run is complete) and its :meth:`scratch` files, then its
        folder and that folder's parent (``checkpoints/<stage>``, ``checkpoints``) when they are
        left empty."""
        for path in self.scratch_files:
            path.unlink(missing_ok=True)
        self.path.unlink(missing_ok=True)
        for folder in (self.path.parent, self.path.parent.parent):
            try:
                folder.rmdir()
            except OSError:
                break
