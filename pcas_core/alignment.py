"""Listening-before-Segmentation (METHOD §3): train the visual ViT further with the CMC contrast
against frozen audio tokens, then write per-frame CAMs and sounding maps for the pseudo-masks."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from pcas_core.cam import sounding_map
from pcas_core.looking import classification_loss, video_loader
from pcas_core.losses import cmc_loss
from pcas_core.models.align import AlignModel
from pcas_core.training import autocast, fit

__all__ = ["FrameRows", "train_alignment", "iter_maps", "compute_maps"]


class FrameRows:
    """Row numbers of each video's frames in a frame table grouped by video.

    Args:
        frames: frame table with a ``video`` column (0..V-1), rows of a video contiguous.
    """

    def __init__(self, frames: pd.DataFrame) -> None:
        video = frames["video"].to_numpy()
        if len(video) and (np.diff(video) < 0).any():
            raise ValueError("frame table must list videos in order, frames of a video together")
        self.counts = np.bincount(video, minlength=int(video.max(initial=-1)) + 1)
        self.starts = np.concatenate([[0], np.cumsum(self.counts)[:-1]])

    def of(self, videos: torch.Tensor) -> np.ndarray:
        """Frame rows of the given videos, in batch order: (sum of their frame counts,) int64."""
        return np.concatenate([np.arange(self.starts[v], self.starts[v] + self.counts[v])
                               for v in videos.tolist()])


def train_alignment(model: AlignModel, clips: Dataset, frames: pd.DataFrame,
                    audio_tokens: np.ndarray, *, epochs: int, batch_videos: int,
                    lr_backbone: float, lr_heads: float, warmup_epochs: float,
                    weight_decay: float, frame_pool: str, w_cls: float, w_class_token: float,
                    w_cmc: float,
                    temperature: float, seed: int, device: torch.device, amp: bool,
                    logger: logging.Logger) -> list[dict[str, float]]:
    """L = w_cls L_cls + w_cmc L_cmc (METHOD §3; CMPC and CMCC are not implemented yet), with
    L_cls from :func:`pcas_core.looking.classification_loss`.

    Each frame is a contrast item, labelled with its video's labels.

    Args:
        clips: video dataset in the same video order as ``frames``.
        frames: the frame table (rows grouped by video).
        audio_tokens: (M, Da) float32 a_t of every frame row, frozen.
        lr_backbone, lr_heads: learning rates of the visual ViT and of the heads (classifier and
            projections), the paper's two module groups.
    """
    rows = FrameRows(frames)
    audio = torch.from_numpy(np.ascontiguousarray(audio_tokens, dtype=np.float32))
    steps = -(-len(clips) // batch_videos)

    def batches(epoch: int):
        return video_loader(clips, batch_videos=batch_videos, shuffle=True, seed=seed + epoch)

    def compute_loss(batch):
        frame_video = batch["frame_video"].to(device)
        labels = batch["labels"].to(device)
        out = model(batch["frames"].to(device), audio[rows.of(batch["video"])].to(device))
        terms = {"cls": classification_loss(out.visual, frame_video, labels, frame_pool=frame_pool,
                                            w_class_token=w_class_token)}
        terms["cmc"] = cmc_loss(out.audio_emb.float(), out.visual_emb.float(),
                                out.class_emb.float(), labels[frame_video], temperature)
        terms["loss"] = w_cls * terms["cls"] + w_cmc * terms["cmc"]
        return terms

    heads = [p for n, p in model.named_parameters() if not n.startswith("visual.backbone.")]
    return fit(model, batches, compute_loss, epochs=epochs, steps_per_epoch=steps,
               groups=[(model.visual.backbone.parameters(), lr_backbone), (heads, lr_heads)],
               warmup_epochs=warmup_epochs, weight_decay=weight_decay, device=device, amp=amp,
               logger=logger)


@torch.no_grad()
def iter_maps(model: AlignModel, clips: Dataset, frames: pd.DataFrame,
              audio_tokens: np.ndarray, *, batch_videos: int, device: torch.device,
              amp: bool = False) -> Iterator[dict[str, np.ndarray]]:
    """CAMs and sounding maps of every frame, one batch of videos at a time, in frame-table
    order (so a store can be written batch by batch); arrays as in :func:`compute_maps`."""
    rows = FrameRows(frames)
    audio = torch.from_numpy(np.ascontiguousarray(audio_tokens, dtype=np.float32))
    model.to(device).eval()
    for batch in video_loader(clips, batch_videos=batch_videos, shuffle=False):
        with autocast(device, amp):
            out = model(batch["frames"].to(device), audio[rows.of(batch["video"])].to(device))
        tokens = out.visual.patch_tokens.float()
        yield {"cam": model.visual.cam(tokens).cpu().numpy().astype(np.float16),
               "sounding": sounding_map(out.patch_emb.float(), out.audio_emb.float(),
                                        model.visual.grid).cpu().numpy().astype(np.float32)}


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
