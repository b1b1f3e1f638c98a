"""Listening (METHOD §2): train the TVP audio encoder on video-level labels, with each frame's
pooled patch token v_t as the prompt of its second of audio, then read out per-frame a_t and s_t."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, TensorDataset

from pcas_core.runtime.curves import EpochCallback
from pcas_core.runtime.distributed import batch_count, gather_in_order, rank_batches
from pcas_core.method.losses import video_bce
from pcas_core.models.tvp import TVPAudioEncoder
from pcas_core.runtime.resume import EpochCheckpoint
from pcas_core.runtime.fit import autocast, fit

__all__ = ["frame_steps", "step_prompts", "train_tvp", "encode_audio", "steps_to_frames"]


def frame_steps(frames: pd.DataFrame) -> np.ndarray:
    """Time step t of every frame: its position within its video (frame k covers second k).

    Args:
        frames: frame table with columns ``video`` and ``frame``, grouped by video in order.

    Returns:
        (M,) int64 step index.
    """
    return frames.groupby("video", sort=False).cumcount().to_numpy(dtype=np.int64)


def step_prompts(frames: pd.DataFrame, pooled_patch: np.ndarray, n_videos: int,
                 max_steps: int) -> np.ndarray:
    """Gather v_t of every frame into a (V, max_steps, D) float32 prompt array, zero-padded.

    Raises:
        ValueError: a video has more frames than ``max_steps``.
    """
    steps = frame_steps(frames)
    if steps.max(initial=0) >= max_steps:
        raise ValueError(f"a video has {steps.max() + 1} frames but the audio encoder takes "
                         f"at most max_steps={max_steps}")
    out = np.zeros((n_videos, max_steps, pooled_patch.shape[1]), dtype=np.float32)
    out[frames["video"].to_numpy(), steps] = pooled_patch
    return out


def _loader(tensors: list[torch.Tensor], batch: int, shuffle: bool, seed: int,
            ranks: bool = False) -> DataLoader:
    gen = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(TensorDataset(*tensors), generator=gen, batch_sampler=rank_batches(
        len(tensors[0]), batch, shuffle=shuffle, generator=gen, split=ranks))


def train_tvp(model: TVPAudioEncoder, fbank: torch.Tensor, prompts: torch.Tensor | None,
              n_steps: torch.Tensor, labels: torch.Tensor, *, epochs: int, batch_videos: int,
              lr: float, warmup_epochs: float, weight_decay: float, seed: int,
              device: torch.device, amp: bool, logger: logging.Logger,
              on_epoch: EpochCallback | None = None,
              checkpoint: EpochCheckpoint | None = None) -> list[dict[str, float]]:
    """BCE of the step logits pooled over valid steps against the video labels (METHOD §2).

    Args:
        fbank: (V, L, n_mels) float32.
        prompts: (V, T, Dv) float32 frozen v_t, or None for the plain-AST baseline (``tvp: false``).
        n_steps: (V,) long, frames (seconds) of each video.
        labels: (V, C) float32 video-level labels.
        on_epoch: per-epoch callback of :func:`pcas_core.runtime.fit.fit` (training curves).
        checkpoint: resume checkpoint of :func:`pcas_core.runtime.fit.fit` (None: none written).
    """
    prompt_t = prompts if prompts is not None else torch.zeros(len(fbank), 1, 1)
    tensors = [fbank, prompt_t, n_steps, labels]

    def compute_loss(batch):
        fb, pr, ns, y = (t.to(device) for t in batch)
        out = model(fb, pr if prompts is not None else None, ns)
        return {"loss": video_bce(out.video_logits.float(), y)}

    return fit(model, lambda e: _loader(tensors, batch_videos, True, seed + e, ranks=True),
               compute_loss,
               epochs=epochs, steps_per_epoch=-(-len(fbank) // batch_videos),
               groups=[(model.parameters(), lr)], warmup_epochs=warmup_epochs,
               weight_decay=weight_decay, device=device, amp=amp, logger=logger,
               on_epoch=on_epoch, checkpoint=checkpoint)


@torch.no_grad()
def encode_audio(model: TVPAudioEncoder, fbank: torch.Tensor, prompts: torch.Tensor | None,
                 n_steps: torch.Tensor, *, batch_videos: int, device: torch.device,
                 amp: bool = False, ranks: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Per-step audio tokens and logits of every video. ``ranks``: in a distributed run each
    process encodes every world-th batch and every process gets them all, in order.

    Returns:
        ``(step_tokens (V, T, D), step_logits (V, T, C))`` float32 NumPy.
    """
    model.to(device).eval()
    prompt_t = prompts if prompts is not None else torch.zeros(len(fbank), 1, 1)

    def encoded():
        for fb, pr, ns in _loader([fbank, prompt_t, n_steps], batch_videos, False, 0, ranks):
            with autocast(device, amp):
                out = model(fb.to(device), pr.to(device) if prompts is not None else None,
                            ns.to(device))
            yield out.step_tokens.float().cpu().numpy(), out.step_logits.float().cpu().numpy()

    parts = list(gather_in_order(encoded(), batch_count(len(fbank), batch_videos)) if ranks
                 else encoded())
    return np.concatenate([t for t, _ in parts]), np.concatenate([lg for _, lg in parts])


def steps_to_frames(per_step: np.ndarray, frames: pd.DataFrame) -> np.ndarray:
    """Pick, for every frame row, its video's entry at the frame's step: (V, T, ...) -> (M, ...)."""
    return per_step[frames["video"].to_numpy(), frame_steps(frames)]
