"""Several processes, GPUs and machines through PyTorch's own engine: ``torchrun``
(``torch.distributed.run``) starts the processes, ``torch.distributed`` connects them (NCCL on GPUs,
Gloo on the CPU) and ``DistributedDataParallel`` averages the gradients.

One process is the default (``base.nproc_per_node: 1``, ``base.nnodes: 1``); every helper here is
then a no-op that returns its input, so one-process results are unchanged. With more, a stage
started the usual way (``pcas train-visual ...``, ``dvc repro``) relaunches itself under torchrun
(:func:`relaunch`), and each process:

- trains on its share of every global batch: the global batch is ``batch_videos`` (or
  ``batch_frames``) items drawn from the same seeded permutation as one process, cut into
  contiguous near-equal shares, one per rank (:func:`rank_batches`); learning rates are not
  rescaled;
- computes each loss as its part of the global-batch loss: means over the batch become
  ``world * local sum / global count`` (:func:`mean_over_ranks`), batch-coupled terms (the CMC
  contrast) see every rank's rows (:func:`gather_rows`), so DDP's gradient average equals the
  one-process gradient of the same global batch;
- in feature passes, encodes whole batches round-robin (batch ``i`` on rank ``i % world``) and
  :func:`gather_in_order` hands every rank all batches in dataset order;
- writes nothing unless it is rank 0 (:func:`is_main`, :func:`on_main`).
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import BatchSampler, RandomSampler, Sampler, SequentialSampler

__all__ = ["launched", "relaunch", "init", "world_size", "rank", "is_main", "on_main",
           "from_main", "barrier", "rank_batches", "batch_count", "gather_in_order", "ddp_step", "all_mean",
           "mean_over_ranks", "gather_rows", "row_offset"]

T = TypeVar("T")
_IN_STEP = False  # True while a DDP training step runs (collectives inside losses are allowed)


def launched() -> bool:
    """True in a process started by torchrun (its ``LOCAL_RANK`` and ``WORLD_SIZE`` are set)."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def relaunch(*, nproc_per_node: int, nnodes: int, node_rank: int, master_addr: str,
             master_port: int, argv: list[str] | None = None) -> None:
    """Run this stage command again under torchrun with ``nproc_per_node`` processes on each of
    ``nnodes`` machines, then exit this process with the run's status.

    One machine uses torchrun's ``--standalone`` rendezvous (a free local port); several use a
    static rendezvous at ``master_addr:master_port`` (the same on every machine), this machine
    being ``node_rank``. The workers run ``python -m stages.cli <the same arguments>``.

    Raises:
        SystemExit: always: 0 when every rank finished, otherwise 1 with a message naming the
            failed rank(s) and their exit codes (torchrun stops the other ranks).
    """
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun

    args = [f"--nproc-per-node={nproc_per_node}", f"--nnodes={nnodes}", "--max-restarts=0"]
    if nnodes == 1:
        args.append("--standalone")
    else:
        args += [f"--node-rank={node_rank}", f"--master-addr={master_addr}",
                 f"--master-port={master_port}"]
    argv = sys.argv[1:] if argv is None else argv
    try:
        torchrun(args + ["-m", "stages.cli", *argv])
    except ChildFailedError as err:
        failed = ", ".join(f"rank {r} (exit code {f.exitcode})" for r, f in
                           sorted(err.failures.items()))
        raise SystemExit(f"distributed run of '{' '.join(argv)}' failed: {failed}; outputs "
                         "not yet written are left as they were (rank 0 writes each one "
                         "atomically)") from None
    raise SystemExit(0)


def init(device: torch.device) -> torch.device:
    """Join the process group when started by torchrun: NCCL for a CUDA ``device`` (each process
    on GPU ``LOCAL_RANK``), Gloo for the CPU. Ranks other than 0 log warnings only.

    Returns:
        The device this process uses (``cuda:LOCAL_RANK`` on GPUs); ``device`` unchanged when not
        under torchrun.
    """
    if not launched() or dist.is_initialized():
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device)
    else:
        dist.init_process_group("gloo")
    atexit.register(_close)
    if not is_main():
        logging.getLogger("pcas").setLevel(logging.WARNING)
    return device


def _close() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def world_size() -> int:
    """Processes in the run (1 without a process group)."""
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    """This process's rank, 0..world_size-1 (0 without a process group)."""
    return dist.get_rank() if dist.is_initialized() else 0


def is_main() -> bool:
    """True on rank 0, the only process that writes stores, checkpoints, metrics and logs."""
    return rank() == 0


def on_main(write: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    """``write(*args, **kwargs)`` on rank 0. Other ranks write nothing but run every iterator
    among ``args`` to its end (so they take part in its :func:`gather_in_order` rounds).

    Returns:
        What ``write`` returns on rank 0; None elsewhere.
    """
    if is_main():
        return write(*args, **kwargs)
    for arg in args:
        if isinstance(arg, Iterator):
            for _ in arg:
                pass
    return None


def from_main(value: T) -> T:
    """Rank 0's ``value`` (picklable) on every rank, e.g. a decision every rank must share;
    ``value`` itself in one process."""
    if world_size() == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    """Wait until every rank gets here (e.g. until rank 0 has written a file all read); no-op in
    one process."""
    if world_size() > 1:
        dist.barrier()


class _RankShares(Sampler[list[int]]):
    """This rank's contiguous share of each global batch of ``batches`` (sizes differ by at most
    one, lower ranks first)."""

    def __init__(self, batches: BatchSampler, n: int, batch: int) -> None:
        self.batches, self.world, self.rank = batches, world_size(), rank()
        smallest = min(batch, n % batch or batch)
        if smallest < self.world:
            raise ValueError(f"a global batch of {smallest} items cannot feed {self.world} "
                             f"processes ({n} items in batches of {batch}): choose the batch "
                             "size (batch_videos / batch_frames) so that every batch, the last "
                             "included, has at least one item per process")

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[list[int]]:
        for indices in self.batches:
            size, extra = divmod(len(indices), self.world)
            start = self.rank * size + min(self.rank, extra)
            yield indices[start:start + size + (self.rank < extra)]


class _RoundRobin(Sampler[list[int]]):
    """Whole batches ``rank, rank + world, ...`` of ``batches``."""

    def __init__(self, batches: BatchSampler) -> None:
        self.batches, self.world, self.rank = batches, world_size(), rank()

    def __len__(self) -> int:
        return len(range(self.rank, len(self.batches), self.world))

    def __iter__(self) -> Iterator[list[int]]:
        for i, indices in enumerate(self.batches):
            if i % self.world == self.rank:
                yield indices


def rank_batches(n: int, batch: int, *, shuffle: bool, generator: torch.Generator | None = None,
                 split: bool = True) -> Sampler[list[int]]:
    """Batch sampler (``DataLoader(batch_sampler=...)``) of ``n`` items in global batches of
    ``batch``, drawn as ``DataLoader(batch_size=batch, shuffle=shuffle, generator=generator)``
    draws them (pass the same ``generator`` to the DataLoader).

    One process, or ``split`` false: exactly those batches. Several: with ``shuffle`` (training)
    this rank's share of every global batch; without (feature passes) whole batches round-robin,
    to be put back in order by :func:`gather_in_order`.

    Raises:
        ValueError: training with a global batch smaller than the number of processes.
    """
    order = RandomSampler(range(n), generator=generator) if shuffle else SequentialSampler(range(n))
    batches = BatchSampler(order, batch, drop_last=False)
    if not split or world_size() == 1:
        return batches
    return _RankShares(batches, n, batch) if shuffle else _RoundRobin(batches)


def batch_count(n: int, batch: int) -> int:
    """Global batches of ``n`` items: ceil(n / batch)."""
    return -(-n // batch)


def gather_in_order(parts: Iterable[T], n_batches: int) -> Iterator[T]:
    """Results of round-robin batches (:func:`rank_batches` without shuffle), in global batch
    order, on every rank: ``parts`` yields this rank's results, ``n_batches`` is the global count.
    Objects travel pickled (``all_gather_object``), one round of ``world`` batches at a time.
    One process: ``parts`` as they come."""
    world = world_size()
    if world == 1:
        yield from parts
        return
    mine = iter(parts)
    for first in range(0, n_batches, world):
        local = next(mine) if first + rank() < n_batches else None
        gathered: list[Any] = [None] * world
        dist.all_gather_object(gathered, local)
        for i, part in enumerate(gathered):
            if first + i < n_batches:
                yield part


class _Step(nn.Module):
    """``compute_loss(batch)`` as the forward of a module owning ``model``, so that it runs
    inside ``DistributedDataParallel.forward``."""

    def __init__(self, model: nn.Module, compute_loss: Callable[[Any], dict[str, Tensor]]) -> None:
        super().__init__()
        self.model = model
        self.compute_loss = compute_loss

    def forward(self, batch: Any) -> dict[str, Tensor]:
        global _IN_STEP
        _IN_STEP = True
        try:
            return self.compute_loss(batch)
        finally:
            _IN_STEP = False


def ddp_step(model: nn.Module, compute_loss: Callable[[Any], dict[str, Tensor]],
             device: torch.device) -> Callable[[Any], dict[str, Tensor]]:
    """``compute_loss`` itself in one process; with several, the same call run inside
    ``DistributedDataParallel`` over ``model`` (already on ``device``), so backward averages the
    gradients over ranks. On GPUs trainable BatchNorms become ``SyncBatchNorm`` (statistics of
    the global batch; ``model`` is changed in place, its state dict keys stay); on the CPU they
    keep per-rank statistics (torch has no CPU SyncBatchNorm).
    """
    if world_size() == 1:
        return compute_loss
    if device.type == "cuda":  # timm's: also converts its BatchNormAct2d (norm + activation)
        from timm.layers import convert_sync_batchnorm

        convert_sync_batchnorm(model)  # in place below the root; same parameter objects
    return nn.parallel.DistributedDataParallel(
        _Step(model, compute_loss), device_ids=[device] if device.type == "cuda" else None,
        find_unused_parameters=True)


def all_mean(values: dict[str, float]) -> dict[str, float]:
    """Mean over ranks of each value (same keys on every rank); ``values`` in one process."""
    if world_size() == 1:
        return values
    names = sorted(values)
    t = torch.tensor([values[k] for k in names], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return {k: float(v) / world_size() for k, v in zip(names, t.tolist())}


def _communicating() -> bool:
    return _IN_STEP and world_size() > 1


def _all_sum(t: Tensor) -> Tensor:
    t = t.detach().clone()
    dist.all_reduce(t)
    return t


def mean_over_ranks(values: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean of ``values`` (weighted by ``mask``, same shape, e.g. 0/1) over the global batch.

    One process, or outside a DDP step: ``values.mean()``, or ``sum(values * mask) /
    max(sum(mask), 1)``. Inside a DDP step: ``world * local sum / max(global count, 1)``, which
    DDP's gradient average turns into the global-batch mean (the count carries no gradient).
    """
    if not _communicating():
        return values.mean() if mask is None else \
            (values * mask).sum() / mask.sum().clamp_min(1.0)
    total = values.sum() if mask is None else (values * mask).sum()
    count = (torch.tensor(float(values.numel()), device=values.device) if mask is None
             else mask.sum())
    return total * world_size() / _all_sum(count.to(total.dtype)).clamp_min(1.0)


class _GatherRows(torch.autograd.Function):
    """All-gather of row blocks padded to ``longest``; backward sums the gradient over ranks and
    returns this rank's block."""

    @staticmethod
    def forward(ctx, x: Tensor, counts: list[int]) -> Tensor:
        ctx.counts, ctx.rank = counts, rank()
        longest = max(counts)
        padded = x.new_zeros((longest, *x.shape[1:]))
        padded[:len(x)] = x
        out = [torch.empty_like(padded) for _ in counts]
        dist.all_gather(out, padded.contiguous())
        return torch.cat([o[:c] for o, c in zip(out, counts)])

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        start = sum(ctx.counts[:ctx.rank])
        return grad[start:start + ctx.counts[ctx.rank]], None


def _counts(n: int, device: torch.device) -> list[int]:
    out = [torch.zeros(1, dtype=torch.long, device=device) for _ in range(world_size())]
    dist.all_gather(out, torch.tensor([n], dtype=torch.long, device=device))
    return [int(c) for c in out]


def gather_rows(x: Tensor) -> Tensor:
    """Every rank's rows of ``x`` (N_r, ...) concatenated in rank order (sum N_r, ...) inside a DDP
    step, with the gradient flowing back to each rank's own rows; ``x`` otherwise. A loss of the
    gathered rows is the global-batch loss on every rank; backward hands each rank ``world``
    times its rows' gradient, which DDP's average brings back to the one-process gradient."""
    if not _communicating():
        return x
    return _GatherRows.apply(x, _counts(len(x), x.device))


def row_offset(n: int, device: torch.device) -> tuple[int, int]:
    """``(offset of this rank's first row, global rows)`` of a global batch whose rank ``r``
    holds ``n`` rows (in rank order) inside a DDP step; ``(0, n)`` otherwise."""
    if not _communicating():
        return 0, n
    counts = _counts(n, device)
    return sum(counts[:rank()]), sum(counts)

