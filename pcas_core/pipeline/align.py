"""Stage ``align`` (docs/method.md §3, Listening-before-Segmentation): train the visual model further with
the alignment objective (:func:`pcas_core.method.alignment.alignment_terms`: CMC, CMPC, CMCC beside
L_cls) against frozen audio tokens, then pass every frame for the ``maps`` store (CAMs and sounding
maps, read by the pseudo-masks)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from pcas_core.data.dataset import AVSData
from pcas_core.data.loader import video_loader
from pcas_core.data.table import VideoRows
from pcas_core.method.alignment import (alignment_terms, gradient_shares, term_gradients,
                                        term_weights)
from pcas_core.method.cam import sounding_map
from pcas_core.models.align import AlignModel, running_stats_kept
from pcas_core.models.visual import VisualClassifier
from pcas_core.params import AlignConfig
from pcas_core.runtime.curves import EpochCallback
from pcas_core.runtime.distributed import batch_count, gather_in_order
from pcas_core.runtime.fit import autocast, fit, schedule_epochs, to_device
from pcas_core.runtime.progress import track
from pcas_core.runtime.resume import EpochCheckpoint
from pcas_core.runtime.stage import RunEnv

__all__ = ["build_align_model", "AlignInputs", "training_inputs", "first_token_step",
           "train_alignment", "measure_gradient_shares", "gradient_metrics", "maps_pass"]


def build_align_model(visual: VisualClassifier, audio_dim: int, cfg: AlignConfig) -> AlignModel:
    """The :class:`AlignModel` of ``cfg`` around ``visual`` (the stage-1 classifier).

    Args:
        audio_dim: width Da of the audio tokens a_t.

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


class AlignInputs(NamedTuple):
    """What alignment trains on.

    Attributes:
        clips: a video dataset yielding ``frames`` (T, 3, H, W), ``labels`` (C,), ``video``.
        frames: its frame table (a ``video`` column, rows of a video together, in order).
        audio_tokens: (M, Da) float32 frozen a_t of each row of ``frames``.
    """

    clips: Dataset
    frames: pd.DataFrame
    audio_tokens: np.ndarray


def training_inputs(model: AlignModel, data: AVSData, audio_tokens: np.ndarray,
                    cfg: AlignConfig, env: RunEnv) -> AlignInputs:
    """The train split of ``data`` (clips normalised with the visual model's mean/std,
    ``cfg.augment`` per clip, decoded by ``env.num_workers`` processes) with its frames' rows of
    ``audio_tokens`` ((M, Da) a_t of every frame of ``data``, frame-table order)."""
    train = data.split("train")
    return AlignInputs(train.clips(model.visual.mean, model.visual.std,
                                   augment=cfg.augment or None, num_workers=env.num_workers),
                       train.frames, audio_tokens[data.frames_in("train")])


def first_token_step(cfg: AlignConfig, steps_per_epoch: int) -> int:
    """The first optimiser step (0-based, counted over the whole run) at which CMPC and CMCC take
    part: ceil(``token_contrast_start`` x run epochs x ``steps_per_epoch``), 0 when the start
    is 0. The run's epochs are those :func:`pcas_core.runtime.fit.fit` trains, ``align.epochs``
    or more when ``align.min_steps`` asks for more (:func:`pcas_core.runtime.fit.schedule_epochs`),
    so the start is a fraction of the steps actually taken."""
    epochs = schedule_epochs(cfg.epochs, steps_per_epoch, cfg.min_steps)
    return math.ceil(cfg.token_contrast_start * epochs * steps_per_epoch - 1e-9)


def _steps_per_epoch(clips: Dataset, cfg: AlignConfig) -> int:
    return -(-len(clips) // cfg.batch_videos)


def train_alignment(model: AlignModel, inputs: AlignInputs, cfg: AlignConfig, env: RunEnv, *,
                    on_epoch: EpochCallback | None = None,
                    checkpoint: EpochCheckpoint | None = None) -> list[dict[str, float]]:
    """Train ``model`` in place with :func:`alignment_terms` (Adam, warm-up + cosine). Each
    frame is a contrast item, labelled with its video's labels.

    CMPC and CMCC take part from step :func:`first_token_step` on. The step of a batch is
    ``epoch x steps_per_epoch + its index in the epoch``, with the epoch that
    :func:`pcas_core.runtime.fit.fit` asks ``batches`` for (after a resume, the first epoch not
    in the checkpoint) and the same ``steps_per_epoch`` that sizes fit's LR schedule, so it is
    the scheduler's step count and a resumed run switches the terms on where an uninterrupted one
    does. Before that step the epoch means hold no ``cmpc``/``cmcc`` (fit averages each term over
    the steps that computed it). With ``cmc`` off and ``sounding`` labels a warning says that the
    labels come from untrained projections.

    Args:
        inputs: clips, their frame table and audio tokens (:func:`training_inputs`).
        cfg: the ``align`` params; ``lr_backbone`` and ``lr_heads`` are the learning rates of the
            visual backbone and of the heads (classifier and projections), the paper's two
            module groups. The EMA head is not optimised.
        env: seed (per-epoch shuffling ``seed + epoch`` and the crop positions), device, amp,
            DataLoader workers, log.
        on_epoch: per-epoch callback of :func:`pcas_core.runtime.fit.fit` (training curves).
        checkpoint: resume checkpoint of :func:`pcas_core.runtime.fit.fit` (None: none written);
            it also carries the crop-position generator (the EMA head is in the model's state).

    Returns:
        Per-epoch means of every term.
    """
    clips = inputs.clips
    rows = VideoRows(inputs.frames)
    audio = torch.from_numpy(np.ascontiguousarray(inputs.audio_tokens, dtype=np.float32))
    steps = _steps_per_epoch(clips, cfg)
    start = first_token_step(cfg, steps)
    generator = torch.Generator().manual_seed(env.seed)
    device = env.device
    if not cfg.cmc and (cfg.cmpc or cfg.cmcc) and cfg.cmpc_labels == "sounding":
        env.log.warning("align.cmc is false: nothing trains g_a and g_v, so the sounding map "
                        "that labels CMPC/CMCC's tokens is the cosine of two random projections "
                        "(align.cmpc_labels: cam labels them from the CAM instead)")

    def batches(epoch: int):
        loader = video_loader(clips, batch_videos=cfg.batch_videos, shuffle=True,
                              seed=env.seed + epoch, ranks=True)
        for i, batch in enumerate(loader):
            yield {**batch, "step": epoch * steps + i}

    def compute_loss(batch):
        return alignment_terms(model, cfg, to_device(batch["frames"], device),
                               to_device(audio[rows.of(batch["video"])], device),
                               to_device(batch["frame_video"], device),
                               to_device(batch["labels"], device), generator,
                               token_terms=batch["step"] >= start)

    heads = [p for n, p in model.named_parameters()
             if not n.startswith("visual.backbone.") and p.requires_grad]
    return fit(model, batches, compute_loss, epochs=cfg.epochs, steps_per_epoch=steps,
               groups=[(model.visual.backbone.parameters(), cfg.lr_backbone),
                       (heads, cfg.lr_heads)], min_steps=cfg.min_steps,
               warmup_epochs=cfg.warmup_epochs, weight_decay=cfg.weight_decay, device=device,
               amp=env.amp, logger=env.log, on_epoch=on_epoch,
               checkpoint=checkpoint.with_generators(crops=generator) if checkpoint else None)


def measure_gradient_shares(model: AlignModel, inputs: AlignInputs, cfg: AlignConfig,
                            env: RunEnv) -> dict[str, Any]:
    """How hard each switched-on weighted term pushes the trainable backbone, over the first
    ``cfg.grad_share_batches`` training batches (the order of epoch 0): per term the mean over
    batches of its gradient norm, its share of the sum of norms and its cosine with CMC's
    (:func:`pcas_core.method.alignment.gradient_shares`), and, with CMPC on, the mean L2 norm of
    the final patch tokens before :func:`pcas_core.method.alignment.normalise_tokens`. Every
    switched-on term is computed, whatever ``token_contrast_start``. Cost per batch: one
    training step's forward and one backward per term, through the trainable layers only.

    Leaves no trace: BatchNorm running statistics (:func:`running_stats_kept`), the EMA head,
    the global RNGs and the crop generator of training are as before (the crops come from a
    generator of their own), no gradient is accumulated, and the model's train/eval mode is
    restored. Every process measures the same batches (no collective runs).

    Returns:
        ``{"norm": {term: float}, "share": {...}, "cos_cmc": {...}, "batches": int}`` and
        ``"final_token_norm": float`` with CMPC on; ``{}`` when ``grad_share_batches`` is 0.
    """
    n = cfg.grad_share_batches
    if n == 0:
        return {}
    device, rows = env.device, VideoRows(inputs.frames)
    audio = torch.from_numpy(np.ascontiguousarray(inputs.audio_tokens, dtype=np.float32))
    params = [p for p in model.visual.backbone.parameters() if p.requires_grad]
    weights = term_weights(cfg)
    generator = torch.Generator().manual_seed(env.seed)
    ema = {k: v.clone() for k, v in model.crop_head_ema.state_dict().items()}
    was_training = model.training
    per_batch: list[dict[str, dict[str, float]]] = []
    token_norms: list[float] = []
    model.to(device).train()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), \
            running_stats_kept(model):
        loader = video_loader(inputs.clips, batch_videos=cfg.batch_videos, shuffle=True,
                              seed=env.seed)
        for batch, _ in track(zip(loader, range(n)), total=min(n, len(loader)), unit="batch",
                              desc="gradient shares", log=env.log):
            with autocast(device, env.amp):
                terms = alignment_terms(model, cfg, to_device(batch["frames"], device),
                                        to_device(audio[rows.of(batch["video"])], device),
                                        to_device(batch["frame_video"], device),
                                        to_device(batch["labels"], device), generator)
            per_batch.append(gradient_shares(term_gradients(terms, weights, params)))
            if "final_token_norm" in terms:
                token_norms.append(float(terms["final_token_norm"]))
    model.crop_head_ema.load_state_dict(ema)
    model.train(was_training)
    if not per_batch:
        return {}
    out: dict[str, Any] = {kind: {k: float(np.mean([b[kind][k] for b in per_batch]))
                                  for k in per_batch[0][kind]} for kind in per_batch[0]}
    if token_norms:
        out["final_token_norm"] = float(np.mean(token_norms))
    return {**out, "batches": len(per_batch)}


def gradient_metrics(start: dict[str, Any], end: dict[str, Any]) -> dict[str, Any]:
    """The ``metrics/align.json`` layout of two :func:`measure_gradient_shares` results:
    ``grad_share``, ``grad_norm``, ``grad_cos_cmc`` and ``final_token_norm``, each with a
    ``start`` (the stage-1 model and fresh heads) and an ``end`` (after training) entry keyed by
    term (e.g. ``grad_share.start.cmpc``; ``final_token_norm`` only with CMPC on), and
    ``grad_share_batches``; only the latter when the measurement is off."""
    out: dict[str, Any] = {"grad_share_batches": int(start.get("batches", 0))}
    if not start:
        return out
    for name, kind in (("grad_share", "share"), ("grad_norm", "norm"),
                       ("grad_cos_cmc", "cos_cmc"), ("final_token_norm", "final_token_norm")):
        if kind in start:
            out[name] = {"start": start[kind], "end": end[kind]}
    return out


@torch.no_grad()
def maps_pass(model: AlignModel, clips: Dataset, frames: pd.DataFrame, audio_tokens: np.ndarray,
              *, batch_videos: int, env: RunEnv,
              ranks: bool = False) -> Iterator[dict[str, np.ndarray]]:
    """The ``maps`` store's rows of every frame, one batch of videos at a time, in frame-table
    order (so the store is written batch by batch).

    Args:
        clips: the videos of ``frames``, in its order.
        frames: the frame table of ``clips``.
        audio_tokens: (M, Da) float32 a_t of each frame row.
        ranks: in a distributed run each process maps every world-th batch and every process
            gets all batches in order (:func:`pcas_core.runtime.distributed.gather_in_order`).

    Yields:
        ``cam`` (m, C, h, w) float16 raw CAM_k = P_t W_v[k]; ``sounding`` (m, h, w) float32
        S_t = minmax over patches of cos(g_p(P_t[i]), g_a(a_t)).
    """
    rows = VideoRows(frames)
    audio = torch.from_numpy(np.ascontiguousarray(audio_tokens, dtype=np.float32))
    device = env.device
    model.to(device).eval()

    def mapped():
        for batch in video_loader(clips, batch_videos=batch_videos, shuffle=False, ranks=ranks):
            with autocast(device, env.amp):
                out = model(batch["frames"].to(device), audio[rows.of(batch["video"])].to(device))
            tokens = out.visual.patch_tokens.float()
            yield {"cam": model.visual.cam(tokens).cpu().numpy().astype(np.float16),
                   "sounding": sounding_map(out.patch_emb.float(), out.audio_emb.float(),
                                            model.visual.grid).cpu().numpy().astype(np.float32)}

    n = batch_count(len(clips), batch_videos)
    yield from track(gather_in_order(mapped(), n) if ranks else mapped(), total=n,
                     desc="maps pass", unit="batch", log=env.log)
