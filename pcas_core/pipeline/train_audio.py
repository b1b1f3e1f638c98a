"""Stage ``train_audio`` (docs/method.md §2, Listening): train the TVP audio encoder on video-level labels,
with each frame's pooled patch token v_t (the ``visual`` store) as the prompt of its second of
audio, then pass every video for the ``audio`` store (a_t and s_t of every frame)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, TensorDataset

from pcas_core.audio.front_end import AST_CLOCK, FrameTiming, store_timing
from pcas_core.data.dataset import AVSData
from pcas_core.data.table import VideoRows
from pcas_core.method.losses import video_bce
from pcas_core.models.ast_init import init_audio_encoder
from pcas_core.models.tvp import TVPAudioEncoder
from pcas_core.params import TrainAudioConfig
from pcas_core.runtime.curves import EpochCallback
from pcas_core.runtime.distributed import (barrier, batch_count, gather_in_order, on_main, rank,
                                           rank_batches)
from pcas_core.runtime.fit import autocast, fit
from pcas_core.runtime.progress import track
from pcas_core.runtime.resume import EpochCheckpoint
from pcas_core.runtime.stage import RunEnv
from pcas_core.storage.stores import (StoreReader, open_store, read_rows, store_rows,
                                      write_store_batches)
from pcas_core.storage.views import StoreRowsView

__all__ = ["AudioInputs", "audio_inputs", "tvp_model_config", "build_audio_encoder", "train_audio_encoder",
           "with_trunk_cells", "encode_steps", "audio_pass", "frame_steps", "step_prompts", "steps_to_frames"]


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


def steps_to_frames(per_step: np.ndarray, frames: pd.DataFrame) -> np.ndarray:
    """Pick, for every frame row, its video's entry at the frame's step: (V, T, ...) -> (M, ...)."""
    return per_step[frames["video"].to_numpy(), frame_steps(frames)]


@dataclass(frozen=True)
class AudioInputs:
    """What the TVP encoder reads of each of V videos (row v = video v of the dataset).

    Attributes:
        fbank: (V, L, n_mels) float32 normalised fbank, read from the store row by row
            (:class:`pcas_core.storage.views.StoreRowsView`) or a tensor.
        prompts: (V, max_steps, Dv) float32 frozen v_t, zero-padded; None for plain AST
            (``train_audio.tvp: false``).
        prompt_dim: Dv, the width of v_t (recorded in the encoder's config even without prompts).
        n_steps: (V,) int64 frames (= seconds) of each video.
        labels: (V, C) float32 video-level labels.
        clock: the frame clock and front end of ``fbank`` (default: the AST fbank at 10 ms).
        trunk: ``fbank`` holds the encoder's frozen-trunk cells (V, N, W) instead of features
            (:func:`with_trunk_cells`).
    """

    fbank: Any
    prompts: torch.Tensor | None
    prompt_dim: int
    n_steps: torch.Tensor
    labels: torch.Tensor
    clock: FrameTiming = AST_CLOCK
    trunk: bool = False

    def videos(self, index: np.ndarray) -> AudioInputs:
        """The inputs of the videos ``index`` ((V',) int64 or (V,) bool), in that order."""
        index = torch.from_numpy(np.array(index))
        return AudioInputs(self.fbank[index],
                           self.prompts[index] if self.prompts is not None else None,
                           self.prompt_dim, self.n_steps[index], self.labels[index], self.clock,
                           self.trunk)


def audio_inputs(data: AVSData, fbank: StoreReader, visual_store: Path,
                 cfg: TrainAudioConfig) -> AudioInputs:
    """Every video's encoder inputs: its fbank rows of the open ``fbank`` store (read on demand,
    valid while the store is open), its step count, and its frames' v_t from ``visual_store`` as
    prompts (when ``cfg.tvp``); the store's frame clock from the params it was made with.

    Raises:
        ValueError: a video or frame missing from a store (names the store), or a video longer
            than ``train_audio.model.max_steps``.
    """
    pooled = read_rows(visual_store, "visual", data.frames, ["pooled_patch"])["pooled_patch"]
    rows = store_rows(fbank.keys, data.metadata, source=fbank.path)
    prompts = torch.from_numpy(step_prompts(data.frames, pooled, len(data.metadata),
                                            cfg.model.max_steps)) if cfg.tvp else None
    return AudioInputs(StoreRowsView(fbank, "fbank", rows), prompts, int(pooled.shape[1]),
                       torch.from_numpy(fbank.rows("n_steps", rows).astype(np.int64)),
                       torch.from_numpy(data.labels), store_timing(fbank.path))


def tvp_model_config(cfg: TrainAudioConfig, *, num_classes: int, target_length: int, n_mels: int,
                     prompt_dim: int, frames_per_second: float = 100.0, frame_offset: float = 0.0,
                     front_end: str = "ast") -> dict[str, Any]:
    """The encoder's constructor config (JSON-able; saved in its checkpoint): ``train_audio.model``
    plus the switches ``tvp`` (``use_prompts``), ``prompt_position`` and ``encoder`` (with
    ``aisfx``'s options), and the data's shapes and frame clock.

    Args:
        cfg: the ``train_audio`` section.
        num_classes: foreground classes. target_length, n_mels: fbank frames and mel bins.
        prompt_dim: width D of the prompts v_t (the visual store's ``pooled_patch``).
        frames_per_second, frame_offset, front_end: the fbank store's frame clock and front end
            (:func:`pcas_core.audio.front_end.store_timing`; defaults: the AST fbank at 10 ms).

    Raises:
        ValueError: ``encoder: aisfx`` on features of another front end.
    """
    if cfg.encoder == "aisfx" and front_end != "aisfx":
        raise ValueError(f"train_audio.encoder 'aisfx' needs an fbank store made with "
                         f"fbank.front_end 'aisfx', this one was made with {front_end!r}")
    return {**asdict(cfg.model), "num_classes": int(num_classes),
            "target_length": int(target_length), "n_mels": int(n_mels),
            "prompt_dim": int(prompt_dim), "use_prompts": bool(cfg.tvp),
            "prompt_position": cfg.prompt_position, "prompt_norm": cfg.prompt_norm,
            "prompt_mask": cfg.prompt_mask, "frames_per_step": float(frames_per_second),
            "frame_offset": float(frame_offset), "front_end": front_end,
            "encoder": cfg.encoder, "aisfx_frozen_blocks": cfg.aisfx.frozen_blocks,
            "aisfx_tokens": cfg.aisfx.tokens}


def build_audio_encoder(inputs: AudioInputs, cfg: TrainAudioConfig
                        ) -> tuple[TVPAudioEncoder, dict[str, Any]]:
    """The encoder of ``cfg`` for these inputs' shapes and classes, initialised as
    ``cfg.init`` says, with its constructor config (saved in its checkpoint).

    Raises:
        FileNotFoundError / ValueError: as :func:`pcas_core.models.ast_init.init_audio_encoder`;
            ``encoder: aisfx`` on features of another front end.
    """
    clock = inputs.clock
    config = tvp_model_config(cfg, num_classes=inputs.labels.shape[1],
                              target_length=inputs.fbank.shape[1], n_mels=inputs.fbank.shape[2],
                              prompt_dim=inputs.prompt_dim, frames_per_second=clock.frames_per_second,
                              frame_offset=clock.frame_offset, front_end=clock.front_end)
    model = TVPAudioEncoder(**config)
    init_audio_encoder(model, cfg.init)
    return model, config


@contextlib.contextmanager
def with_trunk_cells(model: TVPAudioEncoder, inputs: AudioInputs, keys: pd.DataFrame, *,
                     scratch: Path, batch_videos: int, env: RunEnv) -> Iterator[AudioInputs]:
    """When the encoder's patch embedding starts with a frozen trunk (``encoder: aisfx`` with all
    four conv blocks frozen, :attr:`TVPAudioEncoder.frozen_trunk`), its output for every video,
    computed once, in place of the features: the trunk is a fixed function (eval-mode
    BatchNorm, no gradient), so training and the store pass give the same encoder outputs while
    the CNN runs once per video instead of once per epoch. Otherwise ``inputs`` unchanged.

    The cells ((V, N, 512) float32: about 0.11 MB per 10-second video with ``aisfx.tokens:
    columns``, 1.3 GB for AVSS's 12,000 videos; ``cells`` tokens: 12 times more) go batch by
    batch to the scratch ``trunk_cells`` store ``scratch`` (uncompressed, a chunk per row;
    :mod:`pcas_core.storage.stores`), read back a row at a time while the block runs, so memory
    holds a batch whatever the dataset's size. The store is rewritten on every run (a resumed one
    too: one pass of the trunk). In a distributed run each process computes every world-th batch,
    rank 0 writes the store and every process reads it (``scratch`` on a disk all see).

    Args:
        keys: the store's row keys, one per video of ``inputs`` (columns ``uid``, ``split``:
            the dataset's ``metadata``).
        scratch: the store file (e.g. :meth:`pcas_core.runtime.resume.EpochCheckpoint.scratch`).

    Yields:
        ``inputs`` with ``fbank`` the cells (a :class:`StoreRowsView`) and ``trunk`` set.

    Raises:
        FileNotFoundError: the store rank 0 wrote is not visible to this process.
    """
    if not model.frozen_trunk or inputs.trunk:
        yield inputs
        return
    device = env.device
    model.to(device).eval()

    @torch.no_grad()
    def cells() -> Iterator[dict[str, np.ndarray]]:
        for (fb,) in _loader([inputs.fbank], batch_videos, False, 0, ranks=True):
            with autocast(device, env.amp):
                yield {"cells": model.trunk_cells(fb.to(device)).float().cpu().numpy()}

    n = batch_count(len(inputs.fbank), batch_videos)
    on_main(Path(scratch).unlink, missing_ok=True)  # no second copy on disk while writing
    on_main(write_store_batches, scratch, "trunk_cells", keys,
            track(gather_in_order(cells(), n), total=n, desc="frozen aisfx trunk", unit="batch",
                  log=env.log), params={})
    barrier()
    if not Path(scratch).is_file():
        raise FileNotFoundError(f"{scratch}: the trunk cells that rank 0 wrote are not visible "
                                f"to rank {rank()}: put $PCAS_CHECKPOINT_DIR on a disk every "
                                "machine sees")
    with open_store(scratch, "trunk_cells") as store:
        yield replace(inputs, fbank=StoreRowsView(store, "cells", np.arange(len(store.keys))),
                      trunk=True)


def _loader(tensors: list[Any], batch: int, shuffle: bool, seed: int,
            ranks: bool = False) -> DataLoader:
    gen = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(TensorDataset(*tensors), generator=gen, batch_sampler=rank_batches(
        len(tensors[0]), batch, shuffle=shuffle, generator=gen, split=ranks))


def train_audio_encoder(model: TVPAudioEncoder, inputs: AudioInputs, cfg: TrainAudioConfig,
                        env: RunEnv, *, on_epoch: EpochCallback | None = None,
                        checkpoint: EpochCheckpoint | None = None) -> list[dict[str, float]]:
    """BCE of the step logits pooled over valid steps against the video labels (docs/method.md §2).

    Args:
        inputs: the training videos (:meth:`AudioInputs.videos`).
        env: seed (per-epoch shuffling ``seed + epoch``), device, amp, log.
        on_epoch: per-epoch callback of :func:`pcas_core.runtime.fit.fit` (training curves).
        checkpoint: resume checkpoint of :func:`pcas_core.runtime.fit.fit` (None: none written).

    Returns:
        Per-epoch mean losses.
    """
    n = len(inputs.fbank)
    prompts = inputs.prompts
    tensors = [inputs.fbank, prompts if prompts is not None else torch.zeros(n, 1, 1),
               inputs.n_steps, inputs.labels]
    device = env.device

    def compute_loss(batch):
        fb, pr, ns, y = (t.to(device) for t in batch)
        out = model(fb, pr if prompts is not None else None, ns, trunk=inputs.trunk)
        return {"loss": video_bce(out.video_logits.float(), y)}

    return fit(model, lambda e: _loader(tensors, cfg.batch_videos, True, env.seed + e, ranks=True),
               compute_loss, epochs=cfg.epochs, steps_per_epoch=-(-n // cfg.batch_videos),
               groups=[(model.parameters(), cfg.lr)], min_steps=cfg.min_steps,
               warmup_epochs=cfg.warmup_epochs, weight_decay=cfg.weight_decay, device=device,
               amp=env.amp, logger=env.log, on_epoch=on_epoch, checkpoint=checkpoint)


@torch.no_grad()
def _step_batches(model: TVPAudioEncoder, fbank: Any, prompts: torch.Tensor | None,
                  n_steps: torch.Tensor, *, batch_videos: int, env: RunEnv, ranks: bool,
                  trunk: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(step tokens (b, T, D), step logits (b, T, C)) float32 of consecutive batches of videos
    (``trunk``: ``fbank`` holds frozen-trunk cells, :func:`with_trunk_cells`)."""
    device = env.device
    model.to(device).eval()
    prompt_t = prompts if prompts is not None else torch.zeros(len(fbank), 1, 1)

    def encoded():
        for fb, pr, ns in _loader([fbank, prompt_t, n_steps], batch_videos, False, 0, ranks):
            with autocast(device, env.amp):
                out = model(fb.to(device), pr.to(device) if prompts is not None else None,
                            ns.to(device), trunk=trunk)
            yield out.step_tokens.float().cpu().numpy(), out.step_logits.float().cpu().numpy()

    n = batch_count(len(fbank), batch_videos)
    yield from track(gather_in_order(encoded(), n) if ranks else encoded(), total=n,
                     desc="audio pass", unit="batch", log=env.log)


def encode_steps(model: TVPAudioEncoder, fbank: Any, prompts: torch.Tensor | None,
                 n_steps: torch.Tensor, *, batch_videos: int,
                 env: RunEnv) -> tuple[np.ndarray, np.ndarray]:
    """Per-step audio tokens and logits of V videos (e.g. the phases of ``pcas predict``).

    Args:
        fbank: (V, L, n_mels) float32; prompts: (V, T, Dv) float32 or None; n_steps: (V,) int64.

    Returns:
        ``(step_tokens (V, T, D), step_logits (V, T, C))`` float32 NumPy.
    """
    parts = list(_step_batches(model, fbank, prompts, n_steps, batch_videos=batch_videos,
                               env=env, ranks=False))
    return np.concatenate([t for t, _ in parts]), np.concatenate([lg for _, lg in parts])


def audio_pass(model: TVPAudioEncoder, inputs: AudioInputs, frames: pd.DataFrame, *,
               batch_videos: int, env: RunEnv,
               ranks: bool = False) -> Iterator[dict[str, np.ndarray]]:
    """The ``audio`` store's rows of every frame, one batch of videos at a time, in frame-table
    order: each frame gets its video's a_t and s_t at the frame's step.

    Args:
        inputs: every video of ``frames`` (video v = row v).
        frames: the frame table (grouped by video in order).
        ranks: in a distributed run each process encodes every world-th batch and every process
            gets all batches in order.

    Yields:
        ``audio_token`` (m, D) and ``logits`` (m, C) float32.
    """
    rows, steps = VideoRows(frames), frame_steps(frames)
    batches = _step_batches(model, inputs.fbank, inputs.prompts, inputs.n_steps,
                            batch_videos=batch_videos, env=env, ranks=ranks, trunk=inputs.trunk)
    for b, (tokens, logits) in enumerate(batches):
        first = b * batch_videos
        videos = torch.arange(first, first + len(tokens))
        frame_rows = rows.of(videos)
        video = frames["video"].to_numpy()[frame_rows] - first
        yield {"audio_token": tokens[video, steps[frame_rows]],
               "logits": logits[video, steps[frame_rows]]}
