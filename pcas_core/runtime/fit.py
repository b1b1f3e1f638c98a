"""A plain training loop: Adam with linear warm-up then cosine decay, optional CUDA autocast,
per-term loss logging and an optional per-epoch callback (training curves). Stages pass a
``compute_loss`` that returns every term by name."""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn

from pcas_core.runtime import distributed
from pcas_core.runtime.progress import Progress
from pcas_core.runtime.resume import EpochCheckpoint, Restored

__all__ = ["make_optimizer", "warmup_cosine", "schedule_epochs", "curve_window", "fit",
           "autocast", "to_device", "host_syncs", "FINITE_CHECK_EVERY", "CURVE_POINTS"]

#: Steps between the host's looks at the loss (each look waits for the device). Between looks the
#: per-term sums stay on the device, so a step never waits for the GPU; a NaN is caught at most
#: this many steps late, and always before the epoch's checkpoint is written.
FINITE_CHECK_EVERY = 50

#: Points per run of the per-step training curves (at most about this many): each point is the
#: mean of a window of :func:`curve_window` optimiser steps, so a one-epoch run (the demo's
#: ``align``) still draws a curve, a long run writes small files, and the host waits for the
#: device once per window, not per step. It changes what is drawn, not what is trained.
CURVE_POINTS = 100


def make_optimizer(groups: list[tuple[Iterable[nn.Parameter], float]],
                   weight_decay: float = 0.0) -> torch.optim.Adam:
    """Adam over parameter groups, each ``(params, learning_rate)``.

    The paper trains two module groups at learning rates 0.0006 and 0.0012 (PCAS §4.1).
    """
    return torch.optim.Adam([{"params": list(p), "lr": lr} for p, lr in groups],
                            weight_decay=weight_decay)


def warmup_cosine(optimizer: torch.optim.Optimizer, *, total_steps: int, warmup_steps: int,
                  starts: list[int] | None = None) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up from 0 over ``warmup_steps`` optimiser steps, then cosine decay to 0 at
    ``total_steps``.

    Args:
        starts: per parameter group, the optimiser step (0-based) before which its learning rate
            is 0; from there it warms up over ``warmup_steps`` and then follows the cosine of the
            run (the LP-FT schedule of Kumar et al. 2022: the head alone first, then the
            backbone). None: every group starts at step 0.
    """
    total_steps = max(total_steps, 1)
    starts = list(starts) if starts is not None else [0] * len(optimizer.param_groups)
    if len(starts) != len(optimizer.param_groups):
        raise ValueError(f"{len(starts)} start steps for {len(optimizer.param_groups)} groups")

    def factor_from(start: int) -> Callable[[int], float]:
        def factor(step: int) -> float:
            if step < start:
                return 0.0
            if step - start < warmup_steps:
                return (step - start + 1) / warmup_steps
            progress = (step - start - warmup_steps) / max(total_steps - start - warmup_steps, 1)
            return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
        return factor

    return torch.optim.lr_scheduler.LambdaLR(optimizer, [factor_from(s) for s in starts])


def schedule_epochs(epochs: int, steps_per_epoch: int, min_steps: int) -> int:
    """Epochs a run takes so that it makes at least ``min_steps`` optimiser steps:
    ``max(epochs, ceil(min_steps / steps_per_epoch))``. ``epochs`` 0 (no training) and an empty
    epoch (``steps_per_epoch`` 0) stay as they are.

    Raises:
        ValueError: a negative argument.
    """
    if min(epochs, steps_per_epoch, min_steps) < 0:
        raise ValueError(f"epochs ({epochs}), steps_per_epoch ({steps_per_epoch}) and min_steps "
                         f"({min_steps}) must be >= 0")
    if epochs == 0 or steps_per_epoch == 0:
        return epochs
    return max(epochs, -(-min_steps // steps_per_epoch))


def curve_window(total_steps: int, points: int = CURVE_POINTS) -> int:
    """Optimiser steps per point of the training curves: ``max(1, ceil(total_steps / points))``
    (every step when the run has at most ``points`` steps).

    Raises:
        ValueError: ``points < 1``.
    """
    if points < 1:
        raise ValueError(f"points must be >= 1, got {points}")
    return max(1, -(-int(total_steps) // points))


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """bfloat16 autocast on CUDA when ``enabled``; a no-op context otherwise (CPU runs in float32)."""
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_device(tensor: Tensor, device: torch.device) -> Tensor:
    """Copy a batch tensor to ``device`` without making the host wait for the GPU.

    On CUDA the tensor is first put in page-locked memory (unless it is already there, as
    ``DataLoader(pin_memory=True)`` batches are), since a copy from pageable memory may wait for
    the stream; the copy is then queued with ``non_blocking=True``. On the CPU it is ``.to``.
    """
    if device.type == "cuda" and tensor.device.type == "cpu" and not tensor.is_pinned():
        tensor = tensor.pin_memory()
    return tensor.to(device, non_blocking=True)


def host_syncs(step: Callable[[], Any]) -> int:
    """How many times one call of ``step`` makes the host wait for the GPU, counted by
    ``torch.cuda.set_sync_debug_mode("warn")`` (each synchronising call warns once).

    Raises:
        RuntimeError: CUDA is not available.
    """
    if not torch.cuda.is_available():
        raise RuntimeError("host_syncs counts CUDA synchronisations; CUDA is not available")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            step()
    finally:
        torch.cuda.set_sync_debug_mode(0)
    return sum("synchroniz" in str(w.message) for w in caught)


def fit(model: nn.Module, batches: Callable[[int], Iterable[Any]],
        compute_loss: Callable[[Any], dict[str, Tensor]], *, epochs: int, steps_per_epoch: int,
        groups: list[tuple[Iterable[nn.Parameter], float]], min_steps: int = 0,
        warmup_epochs: float = 0.0, group_starts: list[int] | None = None,
        weight_decay: float = 0.0, grad_clip: float = 0.0, device: torch.device,
        amp: bool = False, logger: logging.Logger | None = None,
        on_epoch: Callable[[int, dict[str, float], list], None] | None = None,
        checkpoint: EpochCheckpoint | None = None) -> list[dict[str, float]]:
    """Train ``model`` in place.

    Args:
        batches: ``epoch -> iterable of batches`` (so each epoch can reshuffle from its own seed).
        compute_loss: batch -> dict of scalar tensors; key ``"loss"`` is optimised, every key is
            logged as its epoch mean: the mean over the steps that returned it (a term that a
            step leaves out, e.g. before the alignment's ``token_contrast_start``, is not counted
            as 0; an epoch in which no step returned it has no such key).
        epochs, steps_per_epoch: schedule length (steps_per_epoch sizes the LR schedule).
        groups: ``(parameters, learning rate)`` per module group.
        min_steps: fewest optimiser steps of the run: when ``epochs * steps_per_epoch`` is
            fewer, the run takes :func:`schedule_epochs` epochs instead (logged at INFO with
            both step counts), the warm-up keeping its share of the run and the cosine decay
            spanning all of it, so a small dataset does not stop after a handful of steps.
        warmup_epochs: linear warm-up length in epochs (of ``epochs``).
        group_starts: per group, the optimiser step before which its learning rate is 0
            (:func:`warmup_cosine` ``starts``); None: all groups from the first step.
        grad_clip: max global gradient norm (0: no clipping).
        device: where the model runs (batches are moved by ``compute_loss``).
        amp: bfloat16 autocast on CUDA.
        on_epoch: called after each epoch with ``(epoch (0-based), values, points)``:
            ``values`` the epoch mean of every logged term plus ``lr``, the first parameter
            group's learning rate at the end of the epoch; ``points`` the epoch's training-curve
            points, ``[(step, values), ...]``, one per window of :func:`curve_window` optimiser
            steps (windows restart at each epoch; the last one may be shorter), ``step`` the
            optimiser steps done at the window's end (1-based over the run) and ``values`` the
            window's means plus ``lr`` (e.g. :func:`pcas_core.runtime.curves.epoch_curves` for
            DVCLive curves); rank 0 only in a distributed run.
        checkpoint: written after each epoch; when it resumes, training continues after its
            epoch and ``on_epoch`` is first replayed for the finished epochs
            (:class:`pcas_core.runtime.resume.EpochCheckpoint`), so weights, history and curves equal an
            uninterrupted run's. Rank 0 alone writes it; every rank restores it.

    Several processes (:mod:`pcas_core.runtime.distributed`): ``batches`` yields this rank's share of
    each global batch, ``compute_loss`` runs inside ``DistributedDataParallel`` (gradients
    averaged over ranks) and the logged epoch means are averaged over ranks, i.e. the global
    values when each term is a :func:`pcas_core.runtime.distributed.mean_over_ranks`.

    Returns:
        One dict per epoch (of the epochs run) with the mean of each logged term.

    Raises:
        FloatingPointError: the loss became NaN or infinite.
        ValueError: a negative ``epochs``, ``steps_per_epoch`` or ``min_steps``.
        pcas_core.runtime.resume.ResumeError: a resume checkpoint made with other params.
    """
    logger = logger or logging.getLogger(__name__)
    run_epochs = schedule_epochs(epochs, steps_per_epoch, min_steps)
    if run_epochs != epochs:
        logger.info("%d epochs x %d steps = %d optimiser steps, fewer than min_steps %d: running "
                    "%d epochs (%d steps), warm-up %.3g epochs", epochs, steps_per_epoch,
                    epochs * steps_per_epoch, min_steps, run_epochs, run_epochs * steps_per_epoch,
                    warmup_epochs * run_epochs / epochs)
        warmup_epochs, epochs = warmup_epochs * run_epochs / epochs, run_epochs
    optimizer = make_optimizer(groups, weight_decay)
    scheduler = warmup_cosine(optimizer, total_steps=epochs * steps_per_epoch,
                              warmup_steps=int(round(warmup_epochs * steps_per_epoch)),
                              starts=group_starts)
    model.to(device).train()
    done = checkpoint.restore(model, optimizer, scheduler) if checkpoint else Restored()
    history, lrs, points = done.history, done.lrs, done.points
    if on_epoch is not None and distributed.is_main():
        for epoch, means in enumerate(history):  # curves of the restored epochs
            on_epoch(epoch, {**means, "lr": lrs[epoch]}, points[epoch])
    step = distributed.ddp_step(model, compute_loss, device)  # compute_loss itself in one process
    window = curve_window(epochs * steps_per_epoch)
    with Progress((epochs - len(history)) * steps_per_epoch, "training", unit="step", log=logger,
                  closing=False) as progress:  # the run's steps; each epoch logs its losses
        for epoch in range(len(history), epochs):
            means, curve = _train_epoch(step, batches(epoch), optimizer, scheduler, model, epoch,
                                        device=device, amp=amp, grad_clip=grad_clip,
                                        progress=progress, window=window)
            history.append(means)
            lrs.append(float(scheduler.get_last_lr()[0]))
            points.append(curve)
            if checkpoint is not None and distributed.is_main():
                checkpoint.save(epoch, model, optimizer, scheduler, history, lrs, points)
            if on_epoch is not None and distributed.is_main():
                on_epoch(epoch, {**means, "lr": lrs[-1]}, curve)
            logger.info("epoch %d/%d %s", epoch + 1, epochs,
                        " ".join(f"{k}={v:.4f}" for k, v in means.items()))
    model.eval()
    return history


def _train_epoch(step: Callable[[Any], dict[str, Tensor]], batches: Iterable[Any],
                 optimizer: torch.optim.Optimizer, scheduler: Any, model: nn.Module, epoch: int,
                 *, device: torch.device, amp: bool, grad_clip: float, progress: Progress,
                 window: int) -> tuple[dict[str, float], list[tuple[int, dict[str, float]]]]:
    """One epoch of optimiser steps: the mean of each returned term over the epoch's steps (and
    over the processes of a distributed run), and the training-curve points of its windows of
    ``window`` steps (:func:`curve_window`). ``epoch`` is 0-based, for messages."""
    sums: dict[str, Tensor] = {}  # float64 on the device: no wait for the GPU per step
    counts: dict[str, int] = {}  # steps that returned each term
    curve = _Window()
    n = 0
    for batch in batches:
        with autocast(device, amp):
            terms = step(batch)
        loss = terms["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        scheduler.step()
        for k, v in terms.items():
            v = v.detach().to(torch.float64)
            sums[k] = sums[k] + v if k in sums else v
            counts[k] = counts.get(k, 0) + 1
            curve.add(k, v)
        n += 1
        if n % FINITE_CHECK_EVERY == 0:
            _check_finite(sums["loss"], epoch, n)
        if n % window == 0:
            curve.close(scheduler)
        progress.update()
    if n:
        _check_finite(sums["loss"], epoch, n)
        curve.close(scheduler)
    return distributed.all_mean({k: float(v) / counts[k] for k, v in sums.items()}), curve.points


class _Window:
    """Sums of each term over the steps of one training-curve window, on the device."""

    def __init__(self) -> None:
        self.sums: dict[str, Tensor] = {}
        self.counts: dict[str, int] = {}
        self.points: list[tuple[int, dict[str, float]]] = []

    def add(self, name: str, value: Tensor) -> None:
        self.sums[name] = self.sums[name] + value if name in self.sums else value
        self.counts[name] = self.counts.get(name, 0) + 1

    def close(self, scheduler: torch.optim.lr_scheduler.LRScheduler) -> None:
        """End the window (if it has steps): its means (averaged over ranks) and the learning
        rate, at the optimiser step count the scheduler has reached."""
        if not self.counts:
            return
        means = distributed.all_mean({k: float(v) / self.counts[k] for k, v in self.sums.items()})
        self.points.append((int(scheduler.last_epoch),
                            {**means, "lr": float(scheduler.get_last_lr()[0])}))
        self.sums, self.counts = {}, {}


def _check_finite(loss_sum: Tensor, epoch: int, steps: int) -> None:
    """Raise when the running loss sum of ``epoch`` (0-based) is NaN or infinite (one device sync).

    Raises:
        FloatingPointError: naming the epoch and the step by which the loss was non-finite.
    """
    if not bool(torch.isfinite(loss_sum)):
        raise FloatingPointError(f"epoch {epoch + 1}: the loss became {float(loss_sum)} "
                                 f"within its first {steps} steps")
