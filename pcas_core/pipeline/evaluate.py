"""Stage ``evaluate`` (docs/method.md §5): a light segmentation head on the aligned model's tokens, trained
with the training pseudo-masks (:func:`pcas_core.method.losses.segmentation_ce`), then the test
split predicted (:mod:`pcas_core.pipeline.inference`) and scored in both metric modes beside the
test pseudo-masks and the sanity baselines, with the pictures people look at.

The head may hear the frame's audio (the ``audio`` store): gated by K_t (``audio_gate``: the
pseudo-masks' rule, in the loss and at test time) and/or conditioned on a_t or sigmoid(s_t)
(``audio_condition``, ``audio_input``).

Memory does not grow with the dataset: the head's training rows (tokens, targets, audio) are
written once to a scratch store and read in shuffled batches (:func:`training_rows`,
:mod:`pcas_core.data.head_rows`), and the test split is predicted, scored and sampled for the
pictures chunk by chunk (:func:`evaluate_test_split`)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from pcas_core.data.chunks import row_chunks
from pcas_core.data.constants import IGNORE_INDEX
from pcas_core.data.dataset import AVSData
from pcas_core.data.head_rows import head_row_batches, made_with, open_head_rows
from pcas_core.evaluation.baselines import (background_masks, listening_masks, looking_config,
                                            looking_masks, padded_baselines)
from pcas_core.evaluation.clip_strip import ClipStrip
from pcas_core.evaluation.overlay_clips import OverlayClips
from pcas_core.evaluation.scoring import (Prediction, Scores, metrics_file, scored_class_names,
                                          scored_frames, scored_labels)
from pcas_core.evaluation.visualize import Overlay, confusion_pairs, confusion_table
from pcas_core.method.crf import CRFPool
from pcas_core.method.losses import segmentation_ce
from pcas_core.models.heads import HeadInputs, SegmentationHead, audio_gate
from pcas_core.models.visual import VisualClassifier
from pcas_core.params import EvaluateConfig, PseudoMasksConfig, ScoringConfig
from pcas_core.pipeline.inference import (HeadAudio, head_audio, head_input_batches,
                                          padded_prediction, predict_test_split)
from pcas_core.pipeline.pseudo_masks import PseudoMaskPool
from pcas_core.runtime.curves import EpochCallback
from pcas_core.runtime.distributed import barrier, from_main, on_main, rank, rank_batches
from pcas_core.runtime.fit import fit
from pcas_core.runtime.progress import Progress
from pcas_core.runtime.resume import EpochCheckpoint
from pcas_core.runtime.stage import RunEnv
from pcas_core.storage.stores import StoreReader, open_store, store_rows, write_store_batches
from pcas_core.storage.views import StoreDataset

__all__ = ["head_reads", "StoredHeadAudio", "training_rows", "build_head", "train_head",
           "Evaluation", "evaluate_test_split"]


def head_reads(cfg: EvaluateConfig, masks: PseudoMasksConfig) -> HeadInputs:
    """What the head of ``cfg`` reads (recorded in its checkpoint): its visual ``features``, its
    audio input, and the gate with the pseudo-masks' theta_a (``pseudo_masks.audio_threshold``)."""
    return HeadInputs(cfg.features, cfg.audio_input, cfg.audio_gate, masks.audio_threshold)


class StoredHeadAudio:
    """What the head hears of the frames of ``frames`` (:func:`pcas_core.pipeline.inference.
    head_audio`), read from an open ``audio`` store (``audio_token`` a_t, ``logits`` s_t) rows at
    a time: :meth:`rows` gives the :class:`HeadAudio` of a slice of ``frames``. The store is not
    read when the head hears nothing.

    Args:
        store: the open ``audio`` store. frames: frame table rows (``uid``, ``frame``).
        inputs: what the head reads (:func:`head_reads`). conditioned: the head is conditioned on
            audio. num_foreground: its foreground classes.

    Raises:
        ValueError: a frame missing from the store (names it).
    """

    def __init__(self, store: StoreReader, frames: pd.DataFrame, inputs: HeadInputs, *,
                 conditioned: bool, num_foreground: int) -> None:
        self.store, self.inputs, self.n_frames = store, inputs, len(frames)
        self.conditioned, self.num_foreground = conditioned, num_foreground
        self.hears = conditioned or inputs.audio_gate
        self.store_rows = (store_rows(store.keys, frames, source=store.path) if self.hears
                           else np.zeros(len(frames), dtype=np.int64))

    def rows(self, index: slice) -> HeadAudio:
        """The :class:`HeadAudio` of rows ``index`` of ``frames``."""
        rows = self.store_rows[index]
        if not self.hears:
            return head_audio(self.inputs, conditioned=False, n_frames=len(rows),
                              num_foreground=self.num_foreground)
        tokens = self.conditioned and self.inputs.audio_input == "token"
        return head_audio(self.inputs, conditioned=self.conditioned, n_frames=len(rows),
                          num_foreground=self.num_foreground,
                          logits=self.store.rows("logits", rows),
                          tokens=self.store.rows("audio_token", rows) if tokens else None)


def training_rows(visual: VisualClassifier, data: AVSData, cfg: EvaluateConfig,
                  masks: PseudoMasksConfig, env: RunEnv, *, pseudo_store: Path, audio_store: Path,
                  checkpoint: EpochCheckpoint) -> StoreDataset:
    """The head's rows of every training frame (:mod:`pcas_core.data.head_rows`): its input
    tokens (``cfg.features``, the backbone is frozen here), pseudo-mask at ``cfg.train_size`` and
    audio (``masks.audio_threshold`` for the gate), written once to a scratch store beside the
    resume checkpoint (:meth:`EpochCheckpoint.scratch` ``head_rows.h5``, deleted with it when the
    stage completes) and opened as a dataset of (tokens, target, audio vector, allowed) rows in
    frame-table order. A resumed run (``PCAS_RESUME=1``) reuses the store when the params and
    input files that made it are the checkpoint's.

    The tokens are encoded batch by batch (round-robin over the processes of a distributed run,
    :func:`pcas_core.pipeline.inference.head_input_batches`); rank 0 writes the store, which every
    process then reads, so the checkpoint folder must be on a disk all machines see.

    Args:
        checkpoint: the stage's resume checkpoint (its folder, params, input files, resume).

    Raises:
        FileNotFoundError / ValueError: a store is missing or lacks a frame (names it); tokens
            beyond float16's range (:func:`pcas_core.data.head_rows.head_row_batches`); the
            store not visible from a process.
    """
    log, path = env.log, checkpoint.scratch("head_rows.h5")
    made_by = {"params": checkpoint.params, "inputs": checkpoint.inputs}
    if from_main(checkpoint.resume and made_with(path, made_by)):
        log.info("reusing the head's training rows in %s (resumed run)", path)
    else:
        on_main(Path(path).unlink, missing_ok=True)  # no second copy on disk while writing
        train = data.split("train")
        with open_store(pseudo_store, "pseudo_masks", ["mask"]) as pseudo, \
                open_store(audio_store, "audio", ["audio_token", "logits"]) as audio:
            heard = StoredHeadAudio(audio, train.frames, head_reads(cfg, masks),
                                    conditioned=cfg.audio_condition != "none",
                                    num_foreground=data.labels.shape[1])
            mask_rows = store_rows(pseudo.keys, train.frames, source=pseudo.path)
            tokens = head_input_batches(
                visual, train.clips(visual.mean, visual.std, num_workers=env.num_workers),
                features=cfg.features, batch_videos=cfg.batch_videos, env=env, ranks=True,
                desc="head's training rows")
            batches = head_row_batches(tokens, lambda r: pseudo.rows("mask", mask_rows[r]),
                                       lambda r: heard.rows(r)[:2], train_size=cfg.train_size,
                                       token_dtype=cfg.token_dtype)
            on_main(write_store_batches, path, "head_rows", train.frames, batches, params=made_by)
        log.info("head's training rows of %d frames written to %s (tokens %s)",
                 len(train.frames), path, cfg.token_dtype)
    barrier()
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: the head's training rows that rank 0 wrote are not "
                                f"visible to rank {rank()}: put $PCAS_CHECKPOINT_DIR on a disk "
                                "every machine sees")
    return open_head_rows(path)


def build_head(rows: Dataset, data: AVSData, visual: VisualClassifier,
               cfg: EvaluateConfig) -> SegmentationHead:
    """The head of ``cfg`` for the training ``rows`` (:func:`train_head`: their tokens' channels,
    their audio vectors' width) on ``visual``'s grid, predicting the dataset's classes
    (background included); conditioned on the audio vectors when ``cfg.audio_condition`` is not
    ``none``; with ``cfg.cam_skip`` its CAM skip starts as ``visual``'s linear head.

    Raises:
        ValueError: a conditioned head without audio (vectors of width 0); a CAM skip on tokens
            that are not the ones ``visual``'s head reads (``features`` other than ``patch``).
    """
    conditioned = cfg.audio_condition != "none"
    tokens, _, audio, _ = rows[0]
    in_dim, audio_dim = tokens.shape[-1], audio.shape[0]
    head = SegmentationHead(in_dim=in_dim, num_classes=data.labels.shape[1] + 1,
                            grid=visual.grid, hidden_dim=cfg.hidden_dim,
                            audio_condition=cfg.audio_condition,
                            audio_dim=audio_dim if conditioned else 0, cam_skip=cfg.cam_skip)
    if cfg.cam_skip:
        if cfg.features != "patch":
            raise ValueError(f"evaluate.cam_skip needs evaluate.features: patch (the tokens the "
                             f"classifier's CAM reads), got {cfg.features!r}")
        head.init_cam_skip(visual.head.weight.detach().float().cpu(),
                           visual.head.bias.detach().float().cpu())
    return head


def train_head(head: SegmentationHead, rows: Dataset, cfg: EvaluateConfig, env: RunEnv, *,
               on_epoch: EpochCallback | None = None,
               checkpoint: EpochCheckpoint | None = None) -> list[dict[str, float]]:
    """Train ``head`` in place: cross-entropy of its upsampled logits against the pseudo-masks.

    The loss is computed at ``cfg.train_size`` pixels: the targets are the pseudo-masks brought
    there with nearest-neighbour sampling and the logits upsampled to it (saves memory and time
    over the full frame; the head only sees a patch grid anyway); class 0 weighs
    ``cfg.background_weight``, 255 is ignored. With the gate the foreground logits outside each
    frame's K_t (``allowed``) are -inf before the cross-entropy
    (:func:`pcas_core.models.heads.audio_gate`; not with ``cfg.gate_in_loss`` false), and a
    pixel whose pseudo-label lies outside K_t is ignored (none is when the pseudo-masks were made
    with the same theta_a and logits: they hold only classes of K_t).

    Args:
        rows: the training frames as a map-style dataset of ``(tokens (N, D) float16/float32,
            target (S, S) uint8/int64 at cfg.train_size, audio vector (A,) float32, allowed (C,)
            bool)`` (:func:`training_rows`, or
            :func:`pcas_core.data.head_rows.head_rows_in_memory`); each epoch's batches are drawn
            from the permutation seeded ``seed + epoch`` and read by ``env.num_workers``
            DataLoader processes (the same batches with any number).
        env: seed, device, DataLoader workers, log.
        on_epoch: per-epoch callback of :func:`pcas_core.runtime.fit.fit` (training curves).
        checkpoint: resume checkpoint of :func:`pcas_core.runtime.fit.fit` (None: none written).
    """
    size = (cfg.train_size, cfg.train_size)
    device = env.device

    def batches(epoch: int) -> DataLoader:
        if env.num_workers and hasattr(rows, "close"):
            rows.close()  # workers open their own file handles: none crosses the fork
        gen = torch.Generator().manual_seed(env.seed + epoch)
        return DataLoader(rows, generator=gen, num_workers=env.num_workers,
                          pin_memory=torch.cuda.is_available(), batch_sampler=rank_batches(
                              len(rows), cfg.batch_frames, shuffle=True, generator=gen))

    def compute_loss(batch):
        x, y, a, allowed = (t.to(device) for t in batch)
        x, y = x.float(), y.long()
        keep = torch.cat([torch.ones_like(allowed[:, :1]), allowed], dim=1)  # (B, K), 0 = bg
        heard = keep.gather(1, y.clamp_max(keep.shape[1] - 1).flatten(1)).view_as(y)
        y = y.masked_fill(~heard, IGNORE_INDEX)  # pseudo-labels outside K_t (255 stays 255)
        logits = head(x, size, a)
        if cfg.gate_in_loss:
            logits = audio_gate(logits, allowed)
        return {"loss": segmentation_ce(logits, y,
                                        background_weight=cfg.background_weight,
                                        ignore_index=IGNORE_INDEX)}

    return fit(head, batches, compute_loss, epochs=cfg.epochs,
               steps_per_epoch=-(-len(rows) // cfg.batch_frames),
               groups=[(head.parameters(), cfg.lr)], min_steps=cfg.min_steps,
               weight_decay=cfg.weight_decay,
               device=device, logger=env.log, on_epoch=on_epoch, checkpoint=checkpoint)


@dataclass(frozen=True)
class Evaluation:
    """What ``evaluate`` writes.

    Attributes:
        metrics: the metrics file (:func:`pcas_core.evaluation.scoring.metrics_file`): the head in
            both modes (and per subset and clip kind), beside ``pseudo_masks`` and
            ``baseline.*`` (each per clip kind too).
        per_class: columns ``class``, ``iou`` (clean mode, classes that occur).
        confusion: columns ``actual``, ``predicted``: one sampled foreground pixel per row.
        overlays: the frames to draw. strips: the clips to draw (those of the overlays).
        palette: (K, 3) uint8 display colours of the pictures (the classes they show told apart).
        class_names: names of the scored label space.
    """

    metrics: dict
    per_class: pd.DataFrame
    confusion: pd.DataFrame
    overlays: list[Overlay]
    strips: list[ClipStrip]
    palette: np.ndarray
    class_names: list[str]


def evaluate_test_split(visual: VisualClassifier, head: SegmentationHead, data: AVSData,
                        cfg: EvaluateConfig, masks: PseudoMasksConfig, scoring: ScoringConfig,
                        env: RunEnv, *, pseudo_store: Path, audio_store: Path,
                        visual_store: Path, maps_store: Path) -> Evaluation:
    """Predict the test split with the head (CRF with ``masks.crf`` when ``cfg.crf``, in
    ``masks.workers`` processes; the audio it hears from ``audio_store``,
    :class:`StoredHeadAudio`) and score it in the clean and official modes beside the test
    pseudo-masks and the sanity baselines
    (:mod:`pcas_core.evaluation.baselines`), which read the ``audio``, ``visual`` and ``maps``
    stores.

    Chunk by chunk of frames (:func:`pcas_core.pipeline.inference.predict_test_split`): each
    chunk's predictions, store rows and ground truth are scored (:class:`Scores`, every metric a
    sum over frames or official test batches), sampled for the confusion rows (two class indices
    a row), the rows of the clips to draw kept (:class:`pcas_core.evaluation.overlay_clips.
    OverlayClips`: ground truth, prediction and audio logits of those clips' frames only), then
    dropped, so memory does not grow with the test split. The looking baseline (the pseudo-mask
    machinery, its CRF in ``masks.workers`` processes) takes a second pass of its own, so its
    worker processes live only then, not beside the head's. Both passes write progress lines to
    ``env.log``.

    Args:
        visual: the aligned visual model. head: the trained head.
        masks: the ``pseudo_masks`` section (theta_a, CRF kernels, workers of the baselines).
        scoring: the ``scoring`` section.

    Raises:
        ValueError: a test frame without mask, or a frame missing from a store (names it).
    """
    kind, test = data.dataset, data.split("test")
    scored = scored_frames(test.frames, require_all=True)  # every frame: rows of test.frames
    names = scored_class_names(kind, data.class_names)
    batch = scoring.official_batch_videos
    shown_clips = OverlayClips(scored, cfg.n_overlays, cfg.overlay_uid_contains, names)
    with contextlib.ExitStack() as stack:
        audio = stack.enter_context(open_store(audio_store, "audio", ["audio_token", "logits"]))
        stores = {"audio": audio,
                  "maps": stack.enter_context(open_store(maps_store, "maps", ["cam"])),
                  "visual": stack.enter_context(open_store(visual_store, "visual", ["logits"])),
                  "pseudo": stack.enter_context(open_store(pseudo_store, "pseudo_masks",
                                                           ["mask"]))}
        rows = {k: store_rows(s.keys, scored, source=s.path) for k, s in stores.items()}
        heard = StoredHeadAudio(audio, scored, head_reads(cfg, masks),
                                conditioned=head.audio_condition != "none",
                                num_foreground=head.num_classes - 1)
        # the head's CRF in masks.workers processes, for the head's pass only
        crf = (stack.enter_context(CRFPool(masks.crf, masks.workers)) if cfg.crf else None)
        pad, pad_mask, _ = padded_prediction(visual, head, test.img_size, features=cfg.features,
                                             env=env, audio=heard.rows(slice(0, 0)), crf=crf)
        padded = padded_baselines(pad.image, pad.cam, pad.logits, cfg=cfg.baselines, masks=masks)
        method = Scores(kind, batch_videos=batch, padded_mask=pad_mask, subsets=True)
        refs = {"pseudo_masks": Scores(kind, batch_videos=batch),
                **{f"baseline.{k}": Scores(kind, batch_videos=batch, padded_mask=v)
                   for k, v in padded.items()}}
        pairs = []
        for chunk in predict_test_split(visual, head, test, features=cfg.features,
                                        batch_videos=cfg.batch_videos,
                                        batch_frames=cfg.batch_frames, env=env, audio=heard,
                                        crf=crf):
            r = chunk.rows
            frames = scored.iloc[r].reset_index(drop=True)
            gts = test.masks(np.arange(r.start, r.stop))
            method.update(Prediction(chunk.masks, chunk.foreground), gts, frames)
            refs["pseudo_masks"].update(Prediction(stores["pseudo"].rows(
                "mask", rows["pseudo"][r])), gts, frames)
            refs["baseline.background"].update(
                Prediction(background_masks(len(gts), gts.shape[1:])), gts, frames)
            logits = audio.rows("logits", rows["audio"][r])
            refs["baseline.listening"].update(Prediction(listening_masks(
                logits, gts.shape[1:], masks.audio_threshold)), gts, frames)
            shown = scored_labels(kind, chunk.masks)  # binary kinds: foreground, as scored
            pairs.append(confusion_pairs(shown, gts, len(names), cfg.confusion_stride))
            shown_clips.update(r, gts, shown, logits)  # the rows of the clips drawn, no more
        if crf is not None:
            crf.close()  # its workers end before the looking baseline's start
        images = test.frame_images()
        with PseudoMaskPool(looking_config(masks, cfg.baselines.visual_threshold),
                            masks.workers) as pool, \
                Progress(len(scored), "looking baseline", unit="frame", log=env.log) as done:
            for r in row_chunks(len(scored)):
                refs["baseline.looking"].update(Prediction(looking_masks(
                    images[r].array(), stores["maps"].rows("cam", rows["maps"][r]),
                    stores["visual"].rows("logits", rows["visual"][r]),
                    threshold=cfg.baselines.visual_threshold, masks=masks, pool=pool,
                    progress=done)),
                    test.masks(np.arange(r.start, r.stop)), scored.iloc[r].reset_index(drop=True))
    scores = method.compute()
    metrics = metrics_file(kind, "test", scores, {k: v.compute() for k, v in refs.items()})
    per_class = pd.DataFrame({"class": names, "iou": scores["clean"]["per_class_iou"]}).dropna()
    confusion = confusion_table(np.concatenate([a for a, _ in pairs]),
                                np.concatenate([p for _, p in pairs]), names)
    overlays, strips, palette = shown_clips.pictures()
    return Evaluation(metrics, per_class, confusion, overlays, strips, palette, names)
