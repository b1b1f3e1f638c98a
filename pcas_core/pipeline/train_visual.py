"""Looking (METHOD §1): train the visual classifier with video-level labels, then encode every
frame into the tokens that later stages need (v_t, c_t, frame logits)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset

from pcas_core.runtime.curves import EpochCallback
from pcas_core.data.loader import video_loader
from pcas_core.runtime.distributed import batch_count, gather_in_order
from pcas_core.method.losses import pool_frames, video_bce
from pcas_core.models.visual import VisualClassifier, VisualOutput
from pcas_core.runtime.resume import EpochCheckpoint
from pcas_core.runtime.fit import autocast, fit

__all__ = ["video_loader", "classification_loss", "train_visual_classifier", "iter_encoded",
           "encode_frames"]


def classification_loss(out: VisualOutput, frame_video: torch.Tensor, labels: torch.Tensor, *,
                        frame_pool: str, w_class_token: float) -> torch.Tensor:
    """L_cls: BCE of the patch-token frame logits pooled over each video (METHOD §1), plus
    ``w_class_token`` times the same BCE on the class-token logits (0 turns that term off).

    Args:
        out: visual outputs of the F frames of a batch.
        frame_video: (F,) long, batch position of each frame's video.
        labels: (B, C) float video labels.
    """
    n = len(labels)
    loss = video_bce(pool_frames(out.logits.float(), frame_video, n, frame_pool), labels)
    if w_class_token > 0:
        loss = loss + w_class_token * video_bce(
            pool_frames(out.class_logits.float(), frame_video, n, frame_pool), labels)
    return loss


def train_visual_classifier(model: VisualClassifier, clips: Dataset, *, epochs: int,
                            batch_videos: int, lr: float, warmup_epochs: float,
                            weight_decay: float, frame_pool: str, w_class_token: float, seed: int,
                            device: torch.device, amp: bool, logger: logging.Logger,
                            on_epoch: EpochCallback | None = None,
                            checkpoint: EpochCheckpoint | None = None) -> list[dict[str, float]]:
    """Train with :func:`classification_loss` (frame logits pooled over each video's frames).

    Args:
        model: the classifier, trained in place.
        clips: a video dataset yielding ``frames`` (T, 3, H, W), ``labels`` (C,), ``video``.
        frame_pool: ``"max"`` or ``"mean"`` pooling of frame logits into the video logit.
        seed: base seed of the per-epoch shuffling.
        on_epoch: per-epoch callback of :func:`pcas_core.runtime.fit.fit` (training curves).
        checkpoint: resume checkpoint of :func:`pcas_core.runtime.fit.fit` (None: none written).

    Returns:
        Per-epoch mean losses.
    """
    steps = -(-len(clips) // batch_videos)

    def batches(epoch: int):
        return video_loader(clips, batch_videos=batch_videos, shuffle=True, seed=seed + epoch,
                            ranks=True)

    def compute_loss(batch):
        out = model(batch["frames"].to(device))
        return {"loss": classification_loss(out, batch["frame_video"].to(device),
                                            batch["labels"].to(device), frame_pool=frame_pool,
                                            w_class_token=w_class_token)}

    return fit(model, batches, compute_loss, epochs=epochs, steps_per_epoch=steps,
               groups=[(model.parameters(), lr)], warmup_epochs=warmup_epochs,
               weight_decay=weight_decay, device=device, amp=amp, logger=logger,
               on_epoch=on_epoch, checkpoint=checkpoint)


@torch.no_grad()
def iter_encoded(model: VisualClassifier, clips: Dataset, *, batch_videos: int,
                 device: torch.device, amp: bool = False,
                 ranks: bool = False) -> Iterator[dict[str, np.ndarray]]:
    """:func:`encode_frames` one batch of videos at a time (frame-table order), so a store can be
    written batch by batch. ``ranks``: in a distributed run each process encodes every
    world-th batch and every process gets all batches in order
    (:func:`pcas_core.runtime.distributed.gather_in_order`)."""
    model.to(device).eval()

    def encoded():
        for batch in video_loader(clips, batch_videos=batch_videos, shuffle=False, ranks=ranks):
            with autocast(device, amp):
                out = model(batch["frames"].to(device))
            yield {name: getattr(out, name).float().cpu().numpy()
                   for name in ("pooled_patch", "class_token", "logits")}

    yield from (gather_in_order(encoded(), batch_count(len(clips), batch_videos)) if ranks
                else encoded())


def encode_frames(model: VisualClassifier, clips: Dataset, *, batch_videos: int,
                  device: torch.device, amp: bool = False) -> dict[str, np.ndarray]:
    """Run the classifier over every frame, in dataset order (video by video, frame by frame).

    Returns:
        ``pooled_patch`` (M, D), ``class_token`` (M, D), ``logits`` (M, C), all float32 NumPy.
    """
    parts = list(iter_encoded(model, clips, batch_videos=batch_videos, device=device, amp=amp))
    return {k: np.concatenate([part[k] for part in parts]).astype(np.float32)
            for k in ("pooled_patch", "class_token", "logits")}
