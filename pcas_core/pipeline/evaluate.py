"""Stage ``evaluate`` (docs/method.md §5): a light segmentation head on the aligned model's tokens, trained
with the training pseudo-masks (:func:`pcas_core.method.losses.segmentation_ce`), then the test
split predicted (:mod:`pcas_core.pipeline.inference`) and scored in both metric modes beside the
test pseudo-masks and the sanity baselines, with the pictures people look at.

The head may hear the frame's audio (the ``audio`` store): gated by K_t (``audio_gate``: the
pseudo-masks' rule, in the loss and at test time) and/or conditioned on a_t or sigmoid(s_t)
(``audio_condition``, ``audio_input``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from pcas_core.data.constants import IGNORE_INDEX
from pcas_core.data.dataset import AVSData
from pcas_core.data.images import open_image
from pcas_core.evaluation.baselines import sanity_baselines
from pcas_core.evaluation.scoring import (Prediction, metrics_file, score_by_kind,
                                          score_by_subset, scored_class_names, scored_frames,
                                          scored_labels)
from pcas_core.evaluation.clip_strip import ClipStrip
from pcas_core.evaluation.visualize import (Overlay, confusion_rows, display_palette, mask_classes,
                                            pick_overlay_frames)
from pcas_core.method.crf import DenseCRF
from pcas_core.method.losses import segmentation_ce
from pcas_core.models.heads import HeadInputs, SegmentationHead, audio_gate
from pcas_core.models.visual import VisualClassifier
from pcas_core.params import EvaluateConfig, PseudoMasksConfig, ScoringConfig
from pcas_core.pipeline.inference import HeadAudio, head_audio, head_inputs, predict_test_split
from pcas_core.runtime.curves import EpochCallback
from pcas_core.runtime.distributed import rank_batches
from pcas_core.runtime.fit import fit
from pcas_core.runtime.resume import EpochCheckpoint
from pcas_core.runtime.stage import RunEnv
from pcas_core.storage.stores import read_rows

__all__ = ["training_tokens", "head_reads", "stored_head_audio", "build_head", "train_head",
           "Evaluation", "evaluate_test_split", "pictures"]


def training_tokens(visual: VisualClassifier, data: AVSData, cfg: EvaluateConfig,
                    env: RunEnv) -> torch.Tensor:
    """The head's input tokens (``cfg.features``) of every training frame, once (the backbone
    is frozen here): (M_train, N, D') float32 on the CPU, in frame-table order. Every process of
    a distributed run gets all of them."""
    train = data.split("train")
    return head_inputs(visual, train.clips(visual.mean, visual.std, num_workers=env.num_workers),
                       features=cfg.features, batch_videos=cfg.batch_videos, env=env, ranks=True)


def head_reads(cfg: EvaluateConfig, masks: PseudoMasksConfig) -> HeadInputs:
    """What the head of ``cfg`` reads (recorded in its checkpoint): its visual ``features``, its
    audio input, and the gate with the pseudo-masks' theta_a (``pseudo_masks.audio_threshold``)."""
    return HeadInputs(cfg.features, cfg.audio_input, cfg.audio_gate, masks.audio_threshold)


def stored_head_audio(audio_store: Path, frames: pd.DataFrame, inputs: HeadInputs, *,
                      conditioned: bool, num_foreground: int) -> HeadAudio:
    """What the head hears of ``frames`` (:func:`pcas_core.pipeline.inference.head_audio`), from
    the ``audio`` store's ``audio_token`` (a_t) and ``logits`` (s_t); the store is not opened
    when the head hears nothing.

    Raises:
        FileNotFoundError / ValueError: the store is missing, or lacks a frame (names it).
    """
    if not (conditioned or inputs.audio_gate):
        return head_audio(inputs, conditioned=False, n_frames=len(frames),
                          num_foreground=num_foreground)
    rows = read_rows(audio_store, "audio", frames, ["audio_token", "logits"])
    return head_audio(inputs, conditioned=conditioned, n_frames=len(frames),
                      num_foreground=num_foreground, logits=rows["logits"],
                      tokens=rows["audio_token"])


def build_head(tokens: torch.Tensor, data: AVSData, visual: VisualClassifier,
               cfg: EvaluateConfig, *, audio_dim: int = 0) -> SegmentationHead:
    """The head of ``cfg`` for tokens of this width on ``visual``'s grid, predicting the
    dataset's classes (background included); conditioned on audio vectors of width
    ``audio_dim`` (``HeadAudio.vector.shape[1]``) when ``cfg.audio_condition`` is not ``none``.

    Raises:
        ValueError: a conditioned head without audio (``audio_dim`` 0).
    """
    conditioned = cfg.audio_condition != "none"
    return SegmentationHead(in_dim=tokens.shape[-1], num_classes=data.labels.shape[1] + 1,
                            grid=visual.grid, hidden_dim=cfg.hidden_dim,
                            audio_condition=cfg.audio_condition,
                            audio_dim=audio_dim if conditioned else 0)


def train_head(head: SegmentationHead, tokens: torch.Tensor, masks: np.ndarray,
               cfg: EvaluateConfig, env: RunEnv, *, audio: HeadAudio | None = None,
               on_epoch: EpochCallback | None = None,
               checkpoint: EpochCheckpoint | None = None) -> list[dict[str, float]]:
    """Train ``head`` in place: cross-entropy of its upsampled logits against the pseudo-masks.

    The loss is computed at ``cfg.train_size`` pixels: masks are brought there with
    nearest-neighbour sampling and the logits upsampled to it (saves memory and time over the
    full frame; the head only sees a patch grid anyway); class 0 weighs
    ``cfg.background_weight``, 255 is ignored. With the gate (``audio.gated``) the foreground
    logits outside each frame's K_t are -inf before the cross-entropy
    (:func:`pcas_core.models.heads.audio_gate`), and a pixel whose pseudo-label lies outside K_t
    is ignored (none is when the pseudo-masks were made with the same theta_a and logits: they
    hold only classes of K_t).

    Args:
        tokens: (M, N, D) float32 head input tokens of the training frames.
        masks: (M, H, W) uint8 pseudo-masks (class index, 255 ignored).
        env: seed (per-epoch shuffling ``seed + epoch``), device, log.
        audio: what the head hears of each training frame; None for a plain head.
        on_epoch: per-epoch callback of :func:`pcas_core.runtime.fit.fit` (training curves).
        checkpoint: resume checkpoint of :func:`pcas_core.runtime.fit.fit` (None: none written).

    Raises:
        ValueError: as many tokens as masks (and audio rows) are needed.
    """
    if len(tokens) != len(masks):
        raise ValueError(f"{len(tokens)} frames of tokens but {len(masks)} pseudo-masks")
    if audio is None:
        audio = head_audio(HeadInputs(cfg.features), conditioned=False, n_frames=len(tokens),
                           num_foreground=head.num_classes - 1)
    if len(audio.vector) != len(tokens):
        raise ValueError(f"{len(tokens)} frames of tokens but audio of {len(audio.vector)}")
    size = (cfg.train_size, cfg.train_size)
    target = F.interpolate(torch.from_numpy(masks)[:, None].float(), size=size,
                           mode="nearest")[:, 0].long()
    device = env.device

    def batches(epoch: int) -> DataLoader:
        gen = torch.Generator().manual_seed(env.seed + epoch)
        return DataLoader(TensorDataset(tokens, target, audio.vector, audio.allowed),
                          generator=gen, batch_sampler=rank_batches(
                              len(tokens), cfg.batch_frames, shuffle=True, generator=gen))

    def compute_loss(batch):
        x, y, a, allowed = (t.to(device) for t in batch)
        keep = torch.cat([torch.ones_like(allowed[:, :1]), allowed], dim=1)  # (B, K), 0 = bg
        heard = keep.gather(1, y.clamp_max(keep.shape[1] - 1).flatten(1)).view_as(y)
        y = y.masked_fill(~heard, IGNORE_INDEX)  # pseudo-labels outside K_t (255 stays 255)
        return {"loss": segmentation_ce(audio_gate(head(x, size, a), allowed), y,
                                        background_weight=cfg.background_weight,
                                        ignore_index=IGNORE_INDEX)}

    return fit(head, batches, compute_loss, epochs=cfg.epochs,
               steps_per_epoch=-(-len(tokens) // cfg.batch_frames),
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
    """Predict the test split with the head (CRF with ``masks.crf`` when ``cfg.crf``; the audio
    it hears from ``audio_store``, :func:`stored_head_audio`) and score it in the clean and
    official modes beside the test pseudo-masks and the sanity baselines
    (:func:`pcas_core.evaluation.baselines.sanity_baselines`), which read the ``audio``,
    ``visual`` and ``maps`` stores.

    Args:
        visual: the aligned visual model. head: the trained head.
        masks: the ``pseudo_masks`` section (theta_a, CRF kernels, workers of the baselines).
        scoring: the ``scoring`` section.

    Raises:
        ValueError: a test frame without mask, or a frame missing from a store (names it).
    """
    kind, test = data.dataset, data.split("test")
    scored = scored_frames(test.frames, require_all=True)
    audio = stored_head_audio(audio_store, test.frames, head_reads(cfg, masks),
                              conditioned=head.audio_condition != "none",
                              num_foreground=head.num_classes - 1)
    method, images, pad = predict_test_split(
        visual, head, test, features=cfg.features, batch_videos=cfg.batch_videos,
        batch_frames=cfg.batch_frames, env=env, audio=audio,
        crf=DenseCRF(masks.crf) if cfg.crf else None)
    logits = read_rows(audio_store, "audio", scored, ["logits"])["logits"]
    baselines = sanity_baselines(images, logits,
                                 read_rows(maps_store, "maps", scored, ["cam"])["cam"],
                                 read_rows(visual_store, "visual", scored, ["logits"])["logits"],
                                 padded_image=pad.image, padded_cam=pad.cam,
                                 padded_logits=pad.logits, cfg=cfg.baselines, masks=masks,
                                 log=env.log)
    pseudo = Prediction(read_rows(pseudo_store, "pseudo_masks", scored, ["mask"])["mask"])
    gts, batch = test.masks(), scoring.official_batch_videos
    scores = score_by_subset(kind, method, gts, scored, batch_videos=batch)
    refs = {"pseudo_masks": pseudo, **{f"baseline.{k}": v for k, v in baselines.items()}}
    metrics = metrics_file(kind, "test", scores, {
        name: score_by_kind(kind, pred, gts, scored, batch_videos=batch)
        for name, pred in refs.items()})
    names = scored_class_names(kind, data.class_names)
    shown = scored_labels(kind, method.masks)  # binary kinds: foreground, as scored
    per_class = pd.DataFrame({"class": names, "iou": scores["clean"]["per_class_iou"]}).dropna()
    confusion = pd.DataFrame(confusion_rows(shown, gts, names, cfg.confusion_stride),
                             columns=["actual", "predicted"])
    overlays, strips, palette = pictures(scored, gts, shown, logits, names, cfg)
    return Evaluation(metrics, per_class, confusion, overlays, strips, palette, names)


def pictures(scored: pd.DataFrame, gts: np.ndarray, shown: np.ndarray, logits: np.ndarray,
             names: list[str], cfg: EvaluateConfig
             ) -> tuple[list[Overlay], list[ClipStrip], np.ndarray]:
    """The frames and clips to draw: :func:`pcas_core.evaluation.visualize.pick_overlay_frames`
    (a frame where something sounds first) with each frame at its own size (read from its
    file), every frame of their clips with the audio scores sigmoid(s_t), and display colours
    that tell apart every class the pictures show.

    Args:
        scored: the scored test frames (column ``frame_path``). gts, shown: (M, H, W) uint8
            ground truth and prediction in the scored label space. logits: (M, C - 1) float32
            step logits s_t of the ``audio`` store. names: the scored label space.

    Returns:
        ``(overlays, strips, palette)``.

    Raises:
        ValueError: a frame file that cannot be read (names it).
    """
    sounding = np.array([bool(mask_classes(g, len(names))) for g in gts])
    picked = pick_overlay_frames(scored, cfg.n_overlays, cfg.overlay_uid_contains, sounding)
    native = {}

    def image(i: int) -> np.ndarray:
        if i not in native:
            native[i] = np.asarray(open_image(scored["frame_path"].iloc[i]).convert("RGB"))
        return native[i]

    scores = 1.0 / (1.0 + np.exp(-np.asarray(logits, np.float64)))
    strips, classes = [], set()
    for i in picked:
        rows = np.flatnonzero((scored["uid"] == scored["uid"].iloc[i]).to_numpy())
        strips.append(ClipStrip(str(scored["uid"].iloc[i]), [image(r) for r in rows], gts[rows],
                                shown[rows], scores[rows].astype(np.float32)))
        classes.update(*(mask_classes(m, len(names)) for r in rows for m in (gts[r], shown[r])))
    overlays = [Overlay(f"{scored.uid[i]}_{scored.frame[i]}", image(i), gts[i], shown[i],
                        int(scored.frame[i])) for i in picked]
    return overlays, strips, display_palette(classes, len(names))
