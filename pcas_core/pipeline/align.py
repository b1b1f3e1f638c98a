"""Listening-before-Segmentation (METHOD §3): train the visual ViT further with the CMC, CMPC and
CMCC contrasts against frozen audio tokens, then write per-frame CAMs and sounding maps for the
pseudo-masks."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from torch.utils.data import Dataset

from pcas_core.method.cam import sounding_map
from pcas_core.runtime.curves import EpochCallback
from pcas_core.data.table import VideoRows
from pcas_core.method.crops import crop_labels, pair_labels, patch_labels, sample_crop_boxes, take_crops
from pcas_core.runtime.distributed import (batch_count, gather_in_order, gather_rows, mean_over_ranks,
                                   row_offset)
from pcas_core.pipeline.train_visual import classification_loss, video_loader
from pcas_core.method.losses import cmc_loss, cmcc_loss, cmpc_loss
from pcas_core.models.align import AlignModel
from pcas_core.models.visual import VisualClassifier
from pcas_core.params import AlignConfig
from pcas_core.runtime.resume import EpochCheckpoint
from pcas_core.runtime.fit import autocast, fit, to_device

__all__ = ["build_align_model", "alignment_terms", "train_alignment",
           "iter_maps", "compute_maps"]


def build_align_model(visual: VisualClassifier, audio_dim: int, cfg: AlignConfig) -> AlignModel:
    """The :class:`AlignModel` of ``cfg`` around ``visual``.

    Raises:
        ValueError: with CMCC on, ``align.crop_size`` larger than the frames or not a multiple of
            the backbone's token stride (ViT patch size, CNN/PVT feature stride: crops must tile
            into whole cells of the token grid).
    """
    if cfg.cmcc:
        img = int(visual.img_size)
        stride = img // int(visual.grid[0])
        if cfg.crop_size > img or cfg.crop_size % stride:
            raise ValueError(f"align.crop_size {cfg.crop_size} must be <= the frame size {img} "
                             f"and a multiple of the backbone's token stride {stride}")
    return AlignModel(visual, audio_dim=audio_dim, embed_dim=cfg.embed_dim,
                      hidden_dim=cfg.hidden_dim, shared_patch_head=cfg.shared_patch_head)


def alignment_terms(model: AlignModel, cfg: AlignConfig, frames: Tensor, audio: Tensor,
                    frame_video: Tensor, labels: Tensor,
                    generator: torch.Generator) -> dict[str, Tensor]:
    """Every loss term of one alignment step (METHOD §3), by name, and their total under "loss".

    CMPC and CMCC label patches from the sounding map S = minmax_i cos(g_p(P_t[i]), sg(g_a(a_t)))
    of the global view (:func:`pcas_core.method.crops.patch_labels`, no gradient). CMPC contrasts the
    final-layer patch tokens; CMCC cuts ``n_crops`` crops per frame (positions from
    ``generator``), passes all crops of the batch through the same backbone in one forward at
    crop size, and contrasts h(crop class token) with the EMA head on the detached global token
    (for a backbone without a class token, the interface's global token stands in). The EMA head
    takes one step before it is used, as in ToCo. Beside the terms, ``crop_positive`` and
    ``patch_ignored`` (fractions) are returned for the logs; no host-device sync happens here.

    In a distributed step (:mod:`pcas_core.runtime.distributed`) every term is that of the global batch:
    CMC contrasts the embeddings of all ranks' frames, means are global, and the crop positions
    are this rank's rows of the global batch's draw (one process's terms and crops, exactly).

    Args:
        frames: (F, 3, H, W) normalised frames on the model's device.
        audio: (F, Da) a_t of each frame.
        frame_video: (F,) long batch position of each frame's video.
        labels: (B, C) float video labels.
        generator: CPU generator of the crop positions.

    Returns:
        dict of scalar tensors: ``cls``, ``cmc``/``cmpc``/``cmcc`` when switched on, ``loss``.
    """
    out = model(frames, audio)
    terms = {"cls": classification_loss(out.visual, frame_video, labels, frame_pool=cfg.frame_pool,
                                        w_class_token=cfg.w_class_token)}
    loss = cfg.w_cls * terms["cls"]
    if cfg.cmc:
        terms["cmc"] = cmc_loss(*(gather_rows(t) for t in (
            out.audio_emb.float(), out.visual_emb.float(), out.class_emb.float(),
            labels[frame_video])), cfg.temperature)
        loss = loss + cfg.w_cmc * terms["cmc"]
    if cfg.cmpc or cfg.cmcc:
        with torch.no_grad():
            sounding = sounding_map(out.patch_emb.float(), out.audio_emb.float(),
                                    model.visual.grid)
            patches = patch_labels(sounding, cfg.theta_hi, cfg.theta_lo)   # (F, h, w)
            terms["patch_ignored"] = mean_over_ranks((patches < 0).float())
    if cfg.cmpc:
        same, different = pair_labels(patches.flatten(1))
        terms["cmpc"] = cmpc_loss(out.visual.final_tokens.float(), same, different)
        loss = loss + cfg.w_cmpc * terms["cmpc"]
    if cfg.cmcc:
        size = tuple(frames.shape[-2:])
        first, total = row_offset(len(frames), frames.device)
        boxes = sample_crop_boxes(total, cfg.n_crops, size, cfg.crop_size,
                                  generator)[first:first + len(frames)]
        boxes = to_device(boxes, frames.device)
        crops = take_crops(frames, boxes, cfg.crop_size).flatten(0, 1)
        crop_tokens = model.visual(crops).class_token
        positive = crop_labels(patches, boxes, cfg.crop_size, size, cfg.rho)
        with torch.no_grad():
            model.update_ema(cfg.ema_momentum)
            global_head = model.crop_head_ema(out.visual.class_token.detach())
        crop_heads = model.crop_head(crop_tokens).unflatten(0, (len(frames), cfg.n_crops))
        terms["cmcc"] = cmcc_loss(global_head.float(), crop_heads.float(), positive,
                                  cfg.tau_cmcc, cfg.cmcc_eps)
        terms["crop_positive"] = mean_over_ranks(positive)
        loss = loss + cfg.w_cmcc * terms["cmcc"]
    terms["loss"] = loss
    return terms


def train_alignment(model: AlignModel, clips: Dataset, frames: pd.DataFrame,
                    audio_tokens: np.ndarray, cfg: AlignConfig, *, seed: int,
                    device: torch.device, amp: bool, logger: logging.Logger,
                    on_epoch: EpochCallback | None = None,
                    checkpoint: EpochCheckpoint | None = None) -> list[dict[str, float]]:
    """Train ``model`` in place with :func:`alignment_terms` (Adam, warm-up + cosine).

    Each frame is a contrast item, labelled with its video's labels.

    Args:
        clips: video dataset in the same video order as ``frames``.
        frames: the frame table (rows grouped by video).
        audio_tokens: (M, Da) float32 a_t of every frame row, frozen.
        cfg: the ``align`` params; ``lr_backbone`` and ``lr_heads`` are the learning rates of the
            visual backbone and of the heads (classifier and projections), the paper's two
            module groups. The EMA head is not optimised.
        on_epoch: per-epoch callback of :func:`pcas_core.runtime.fit.fit` (training curves).
        checkpoint: resume checkpoint of :func:`pcas_core.runtime.fit.fit` (None: none written);
            it also carries the crop-position generator (the EMA head is in the model's state).
        seed: base seed of the per-epoch shuffling and of the crop positions.

    Returns:
        Per-epoch means of every term.
    """
    rows = VideoRows(frames)
    audio = torch.from_numpy(np.ascontiguousarray(audio_tokens, dtype=np.float32))
    steps = -(-len(clips) // cfg.batch_videos)
    generator = torch.Generator().manual_seed(seed)

    def batches(epoch: int):
        return video_loader(clips, batch_videos=cfg.batch_videos, shuffle=True, seed=seed + epoch,
                            ranks=True)

    def compute_loss(batch):
        return alignment_terms(model, cfg, to_device(batch["frames"], device),
                               to_device(audio[rows.of(batch["video"])], device),
                               to_device(batch["frame_video"], device),
                               to_device(batch["labels"], device), generator)

    heads = [p for n, p in model.named_parameters()
             if not n.startswith("visual.backbone.") and p.requires_grad]
    return fit(model, batches, compute_loss, epochs=cfg.epochs, steps_per_epoch=steps,
               groups=[(model.visual.backbone.parameters(), cfg.lr_backbone),
                       (heads, cfg.lr_heads)],
               warmup_epochs=cfg.warmup_epochs, weight_decay=cfg.weight_decay, device=device,
               amp=amp, logger=logger, on_epoch=on_epoch,
               checkpoint=checkpoint.with_generators(crops=generator) if checkpoint else None)


@torch.no_grad()
def iter_maps(model: AlignModel, clips: Dataset, frames: pd.DataFrame,
              audio_tokens: np.ndarray, *, batch_videos: int, device: torch.device,
              amp: bool = False, ranks: bool = False) -> Iterator[dict[str, np.ndarray]]:
    """CAMs and sounding maps of every frame, one batch of videos at a time, in frame-table
    order (so a store can be written batch by batch); arrays as in :func:`compute_maps`.
    ``ranks``: in a distributed run each process maps every world-th batch and every process
    gets all batches in order (:func:`pcas_core.runtime.distributed.gather_in_order`)."""
    rows = VideoRows(frames)
    audio = torch.from_numpy(np.ascontiguousarray(audio_tokens, dtype=np.float32))
    model.to(device).eval()

    def mapped():
        for batch in video_loader(clips, batch_videos=batch_videos, shuffle=False, ranks=ranks):
            with autocast(device, amp):
                out = model(batch["frames"].to(device), audio[rows.of(batch["video"])].to(device))
            tokens = out.visual.patch_tokens.float()
            yield {"cam": model.visual.cam(tokens).cpu().numpy().astype(np.float16),
                   "sounding": sounding_map(out.patch_emb.float(), out.audio_emb.float(),
                                            model.visual.grid).cpu().numpy().astype(np.float32)}

    yield from (gather_in_order(mapped(), batch_count(len(clips), batch_videos)) if ranks
                else mapped())


def compute_maps(model: AlignModel, clips: Dataset, frames: pd.DataFrame,
                 audio_tokens: np.ndarray, *, batch_videos: int, device: torch.device,
                 amp: bool = False) -> dict[str, np.ndarray]:
    """CAMs and sounding maps of every frame, in frame-table order.

    Returns:
        ``cam`` (M, C, h, w) float16 raw CAM_k = P_t W_v[k]; ``sounding`` (M, h, w) float32
        S_t = minmax over patches of cos(g_p(P_t[i]), g_a(a_t)).
    """
    parts = list(iter_maps(model, clips, frames, audio_tokens, batch_videos=batch_videos,
                           device=device, amp=amp))
    return {k: np.concatenate([part[k] for part in parts]) for k in ("cam", "sounding")}
