"""Stage ``train_visual`` (docs/method.md §1, Looking): train the frame classifier on video-level labels
(:func:`pcas_core.method.losses.classification_loss`), then pass every frame for the ``visual``
store (v_t, c_t, frame logits: the TVP prompts and the looking baseline's classes)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from pcas_core.data.dataset import AVSData
from pcas_core.data.loader import video_loader
from pcas_core.method.losses import classification_loss
from pcas_core.models.backbones import stage_parameters
from pcas_core.models.visual import VisualClassifier, build_visual, visual_model_config
from pcas_core.params import TrainVisualConfig
from pcas_core.runtime.curves import EpochCallback
from pcas_core.runtime.distributed import batch_count, gather_in_order
from pcas_core.runtime.fit import autocast, fit
from pcas_core.runtime.progress import track
from pcas_core.runtime.resume import EpochCheckpoint
from pcas_core.runtime.stage import RunEnv

__all__ = ["VISUAL_ROWS", "build_classifier", "training_clips", "parameter_groups",
           "train_classifier", "visual_pass"]

#: datasets of the ``visual`` store, as :class:`pcas_core.models.visual.VisualOutput` names them
VISUAL_ROWS = ("pooled_patch", "class_token", "logits")


def build_classifier(data: AVSData, cfg: TrainVisualConfig) -> tuple[VisualClassifier,
                                                                      dict[str, Any]]:
    """The classifier of ``cfg`` for ``data``'s classes and frame size (weights as
    ``cfg.pretrained`` says), with its constructor config (saved in its checkpoint)."""
    config = visual_model_config(cfg, num_classes=data.labels.shape[1], img_size=data.img_size)
    return build_visual(config), config


def training_clips(model: VisualClassifier, data: AVSData, cfg: TrainVisualConfig,
                   env: RunEnv) -> Dataset:
    """The train split of ``data`` as training items: normalised with the model's mean/std,
    ``cfg.max_frames`` random frames per clip and step, ``cfg.augment`` per clip, decoded by
    ``env.num_workers`` processes."""
    return data.split("train").clips(model.mean, model.std, augment=cfg.augment or None,
                                     max_frames=cfg.max_frames, num_workers=env.num_workers)


def parameter_groups(model: VisualClassifier, cfg: TrainVisualConfig
                     ) -> tuple[list[tuple[list[torch.nn.Parameter], float]], list[int]]:
    """The optimiser's ``(parameters, learning rate)`` groups and their start steps
    (:func:`pcas_core.runtime.fit.warmup_cosine`): the heads at ``cfg.lr`` from step 0; each
    trainable backbone stage (:func:`pcas_core.models.backbones.stage_parameters`, input side
    first) at ``cfg.lr * cfg.backbone_lr_scale * cfg.layer_decay ** (S - 1 - k)`` from step
    ``cfg.probe_steps``."""
    backbone = {id(p) for p in model.backbone.parameters()}
    heads = [p for p in model.parameters() if id(p) not in backbone and p.requires_grad]
    stages = stage_parameters(model.backbone)
    top = len(stages) - 1
    groups = [(heads, cfg.lr)] + [(params, cfg.lr * cfg.backbone_lr_scale
                                   * cfg.layer_decay ** (top - k))
                                  for k, params in enumerate(stages)]
    return groups, [0] + [cfg.probe_steps] * len(stages)


def train_classifier(model: VisualClassifier, clips: Dataset, cfg: TrainVisualConfig,
                     env: RunEnv, *, on_epoch: EpochCallback | None = None,
                     checkpoint: EpochCheckpoint | None = None) -> list[dict[str, float]]:
    """Train ``model`` in place with L_cls (frame logits pooled over each video's frames), the
    learning rates of :func:`parameter_groups`: for the first ``cfg.probe_steps`` steps the
    backbone is a fixed feature extractor (``VisualClassifier.forward(train_backbone=False)``).

    Args:
        clips: a video dataset yielding ``frames`` (T, 3, H, W), ``labels`` (C,), ``video``
            (e.g. :func:`training_clips`).
        env: seed (per-epoch shuffling ``seed + epoch``), device, amp, DataLoader workers, log.
        on_epoch: per-epoch callback of :func:`pcas_core.runtime.fit.fit` (training curves).
        checkpoint: resume checkpoint of :func:`pcas_core.runtime.fit.fit` (None: none written).

    Returns:
        Per-epoch mean losses.
    """
    steps = -(-len(clips) // cfg.batch_videos)
    device = env.device

    def batches(epoch: int):
        loader = video_loader(clips, batch_videos=cfg.batch_videos, shuffle=True,
                              seed=env.seed + epoch, ranks=True)
        for i, batch in enumerate(loader):
            yield {**batch, "step": epoch * steps + i}

    def compute_loss(batch):
        out = model(batch["frames"].to(device), train_backbone=batch["step"] >= cfg.probe_steps)
        return {"loss": classification_loss(out.logits, out.class_logits,
                                            batch["frame_video"].to(device),
                                            batch["labels"].to(device), frame_pool=cfg.frame_pool,
                                            w_class_token=cfg.w_class_token)}

    groups, starts = parameter_groups(model, cfg)
    return fit(model, batches, compute_loss, epochs=cfg.epochs, steps_per_epoch=steps,
               groups=groups, group_starts=starts, min_steps=cfg.min_steps,
               warmup_epochs=cfg.warmup_epochs, weight_decay=cfg.weight_decay, device=device,
               amp=env.amp, logger=env.log, on_epoch=on_epoch, checkpoint=checkpoint)


@torch.no_grad()
def visual_pass(model: VisualClassifier, clips: Dataset, *, batch_videos: int, env: RunEnv,
                ranks: bool = False) -> Iterator[dict[str, np.ndarray]]:
    """The ``visual`` store's rows of every frame of ``clips``, one batch of videos at a time,
    in dataset order (video by video, frame by frame).

    Args:
        ranks: in a distributed run each process encodes every world-th batch and every process
            gets all batches in order (:func:`pcas_core.runtime.distributed.gather_in_order`).

    Yields:
        ``pooled_patch`` (m, D), ``class_token`` (m, D), ``logits`` (m, C), float32 NumPy.
    """
    device = env.device
    model.to(device).eval()

    def encoded():
        for batch in video_loader(clips, batch_videos=batch_videos, shuffle=False, ranks=ranks):
            with autocast(device, env.amp):
                out = model(batch["frames"].to(device))
            yield {name: getattr(out, name).float().cpu().numpy() for name in VISUAL_ROWS}

    n = batch_count(len(clips), batch_videos)
    yield from track(gather_in_order(encoded(), n) if ranks else encoded(), total=n,
                     desc="visual pass", unit="batch", log=env.log)

