"""How every stage starts: validate ``params.yaml``, seed, pick the device, log (:func:`start_stage`).

``params.yaml`` has one section per stage plus ``base`` (seed, device) and ``data`` (dataset root,
image size). A stage reads its own section, the shared ones and the few keys of other sections it
shares (``dvc.yaml`` lists exactly those keys), as DVC's example project does. What the library
functions of :mod:`pcas_core.pipeline` need of ``base`` travels as one :class:`RunEnv`.
"""

from __future__ import annotations

import logging
import os
import platform
import random
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from pcas_core.runtime import distributed
from pcas_core.params import PcasParams, config_sections, flat_keys, load_config

__all__ = ["seed_everything", "resolve_device", "log_run_header", "get_logger", "RunEnv",
           "start_stage", "StageRun"]


def get_logger(name: str) -> logging.Logger:
    """Return a logger that prints ``time level name: message`` to stderr once configured."""
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=os.environ.get("PCAS_LOG_LEVEL", "INFO"),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
    return logging.getLogger(name)


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch, and make torch pick deterministic kernels.

    Same params, same seed, same machine give the same numbers: ``torch.use_deterministic_algorithms``
    is switched on (``warn_only`` so that an op without a deterministic kernel warns rather than
    stops a run), and cuDNN autotuning is off.

    Returns:
        A CPU ``torch.Generator`` seeded with ``seed``, for data shuffling.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    return torch.Generator().manual_seed(seed)


def resolve_device(requested: str) -> torch.device:
    """Map ``"auto" | "cpu" | "cuda" | "cuda:N"`` to a device; ``auto`` is CUDA when available.

    Raises:
        ValueError: CUDA was requested explicitly but is not available.
    """
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device '{requested}' requested but torch.cuda.is_available() is False")
    return device


#: per params section, the settings the run header names (every value is in the DEBUG lines and in
#: each store's ``params`` attribute)
HEADER_KEYS: dict[str, tuple[str, ...]] = {
    "demo": ("seed", "img_size", "classes"),
    "fbank": ("front_end", "sample_rate"),
    "train_visual": ("backbone", "epochs", "batch_videos", "lr"),
    "train_audio": ("encoder", "tvp", "epochs", "batch_videos", "lr"),
    "align": ("cmc", "cmpc", "cmcc", "epochs", "batch_videos", "lr_backbone"),
    "pseudo_masks": ("audio_threshold", "bg_score", "use_crf", "workers"),
    "evaluate": ("features", "audio_gate", "audio_condition", "epochs", "crf"),
    "predict": ("fps",),
}


def log_run_header(logger: logging.Logger, stage: str, params: dict[str, Any], *,
                   device: torch.device | str = "cpu",
                   defaults: dict[str, Any] | None = None) -> None:
    """Say briefly what runs, in two INFO lines: the stage, device, processes, seed and dataset;
    a few key settings of its own section (:data:`HEADER_KEYS`) and every value read that differs
    from the documented default. The whole ``params`` and the library versions go to DEBUG
    (``PCAS_LOG_LEVEL=DEBUG``).

    Args:
        params: the sections and keys the stage reads (``config_sections``), nested.
        device: where it runs.
        defaults: the same sections and keys with their documented defaults (None: not compared).
    """
    import h5py
    import timm

    base, data = params.get("base", {}), params.get("data")
    world = distributed.world_size()
    where = f"{device}" + (f", process {distributed.rank() + 1} of {world}" if world > 1 else "")
    read = f"data {data['dataset']} at {data['root']}, {data['img_size']} px" if data else ""
    logger.info("stage %s on %s, seed %s%s", stage, where, base.get("seed"),
                f", {read}" if read else "")
    keys = [f"{s}.{k}={params[s][k]}" for s, names in HEADER_KEYS.items() if s in params
            for k in names if k in params[s]]
    if defaults is not None:
        now, shipped = flat_keys(params), flat_keys(defaults)
        changed = [f"{k}={v}" for k, v in now.items() if shipped.get(k, object()) != v]
        keys.append(f"changed from the defaults: {', '.join(changed) if changed else 'none'}")
    if keys:
        logger.info("%s", "; ".join(keys))
    logger.debug("stage %s: params %s", stage, params)
    logger.debug(
        "python %s, torch %s (cuda %s), timm %s, h5py %s, numpy %s, threads %d",
        platform.python_version(), torch.__version__, torch.version.cuda, timm.__version__,
        h5py.__version__, np.__version__, torch.get_num_threads(),
    )


class RunEnv(NamedTuple):
    """Where and how a pipeline function runs: what it needs of ``base`` besides its own section.

    Attributes:
        seed: ``base.seed``; each loop derives its shuffling (``seed + epoch``) and crop draws.
        device: this process's device.
        amp: bfloat16 autocast on CUDA (``base.amp``; the CPU always runs float32).
        num_workers: DataLoader processes decoding frames (``base.num_workers``; same results).
        log: the stage's logger.
    """

    seed: int = 0
    device: torch.device = torch.device("cpu")
    amp: bool = False
    num_workers: int = 0
    log: logging.Logger = logging.getLogger("pcas")


class StageRun(NamedTuple):
    """What :func:`start_stage` hands a stage.

    Attributes:
        params: the sections and keys the stage depends on (``base``, its own, shared keys of
            other sections) as plain values, defaults filled in: recorded in its stores and
            resume checkpoints.
        config: the whole file as typed configs (:class:`pcas_core.params.PcasParams`), the one
            place a stage reads a value from.
        log: the stage's logger.
        device: where it runs (this rank's GPU under torchrun).
    """

    params: dict[str, dict[str, Any]]
    config: PcasParams
    log: logging.Logger
    device: torch.device

    @property
    def env(self) -> RunEnv:
        """The :class:`RunEnv` of this stage (``base`` seed, amp, num_workers; device; log)."""
        base = self.config.base
        return RunEnv(base.seed, self.device, base.amp, base.num_workers, self.log)


def start_stage(stage: str, params_file: Path, *sections: str, ranks: bool = False) -> StageRun:
    """What every stage does first: validate ``params.yaml``, read ``base`` and its sections, seed,
    pick the device, log.

    ``sections`` are section names (``"align"``) or dotted keys of another section that the
    stage shares (``"pseudo_masks.crf"``), as its ``dvc.yaml`` params list them.

    The file is read once and parsed strictly as :func:`pcas_core.params.load_config` does, so a
    misspelt key (``dvc exp run -S train_visual.epoch=3``) or a wrong type stops every stage
    before it reads any data. ``base.threads`` (0 = torch's default) caps torch's CPU threads.

    ``ranks`` (stages that run on several processes): with ``base.nproc_per_node`` *
    ``base.nnodes`` > 1 and not already under torchrun, the stage command is run again under
    torchrun and this process exits with its status (:func:`pcas_core.runtime.distributed.relaunch`);
    under torchrun the process joins the group and gets its own GPU
    (:func:`pcas_core.runtime.distributed.init`).

    Raises:
        FileNotFoundError: no such file.
        pcas_core.params.ConfigError: as :func:`pcas_core.params.load_config`.

    Returns:
        a :class:`StageRun` ``(params, config, log, device)``.
    """
    config = load_config(params_file)  # the whole file, strictly: unknown keys, types
    base = config.base
    if ranks and base.nproc_per_node * base.nnodes > 1 and not distributed.launched():
        distributed.relaunch(nproc_per_node=base.nproc_per_node, nnodes=base.nnodes,
                             node_rank=base.node_rank, master_addr=base.master_addr,
                             master_port=base.master_port)
    params = config_sections(config, "base", *sections)
    logger = get_logger(f"pcas.{stage}")
    if base.threads > 0:
        torch.set_num_threads(base.threads)
    seed_everything(base.seed)
    device = resolve_device(base.device)
    if ranks:
        device = distributed.init(device)
    log_run_header(logger, stage, params, device=device,
                   defaults=config_sections(PcasParams(), "base", *sections))
    return StageRun(params, config, logger, device)
