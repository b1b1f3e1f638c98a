"""Segmentation (METHOD §5): a light head on the aligned ViT's patch tokens, trained with the
training pseudo-masks (cross-entropy, ignore 255), then used to predict masks."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, TensorDataset

from pcas_core.runtime.curves import EpochCallback
from pcas_core.runtime.distributed import batch_count, gather_in_order, mean_over_ranks, rank_batches
from pcas_core.storage.weights import load_checkpoint, save_checkpoint
from pcas_core.pipeline.train_visual import video_loader
from pcas_core.models.heads import SegmentationHead
from pcas_core.models.visual import VisualClassifier
from pcas_core.runtime.resume import EpochCheckpoint
from pcas_core.runtime.fit import autocast, fit

__all__ = ["FEATURES", "PaddedFrame", "patch_tokens_of", "padded_frame", "train_segmentation_head",
           "predict_masks", "head_config", "save_segmentation_head", "load_segmentation_head"]


FEATURES = ("patch", "final", "patch+final")


def _head_input(patch: torch.Tensor, final: torch.Tensor, features: str) -> torch.Tensor:
    """(B, N, D) tokens of layer ``token_layer`` and final layer -> the head input on the CPU."""
    parts = {"patch": [patch], "final": [final], "patch+final": [patch, final]}[features]
    return torch.cat(parts, dim=-1).float().cpu()


@torch.no_grad()
def patch_tokens_of(model: VisualClassifier, clips: Dataset, *, features: str, batch_videos: int,
                    device: torch.device, amp: bool = False, ranks: bool = False) -> torch.Tensor:
    """Dense tokens of every frame of ``clips`` in order, on the CPU.

    The backbone is frozen during segmentation training, so tokens are computed once.

    Args:
        features: ``"patch"`` (P_t, the tokens of ``token_layer``: (M, N, D)), ``"final"`` (the
            final layer's patch tokens: (M, N, D)) or ``"patch+final"`` (both, concatenated on
            the channel axis: (M, N, 2D); local detail plus context when P_t is an early layer).
        ranks: in a distributed run each process encodes every world-th batch and every
            process gets all tokens, in order.

    Raises:
        ValueError: unknown ``features``.
    """
    if features not in FEATURES:
        raise ValueError(f"features must be one of {FEATURES}, got {features!r}")
    model.to(device).eval()

    def encoded():
        for batch in video_loader(clips, batch_videos=batch_videos, shuffle=False, ranks=ranks):
            with autocast(device, amp):
                patch, _, final = model.forward_features(batch["frames"].to(device))
            yield _head_input(patch, final, features)

    return torch.cat(list(gather_in_order(encoded(), batch_count(len(clips), batch_videos))
                          if ranks else encoded()))


class PaddedFrame(NamedTuple):
    """The official AVSS padded frame (:mod:`pcas_core.evaluation.official`, quirk 1) through the ViT.

    Attributes:
        tokens: (1, N, D') float32 head input (as :func:`patch_tokens_of` with the same features).
        cam: (K, h, w) float32 raw CAMs. logits: (K,) float32 frame logits.
        image: (H, W, 3) uint8 what the input looks like: the normalisation mean colour (for a
            CRF and for pictures).
    """

    tokens: torch.Tensor
    cam: np.ndarray
    logits: np.ndarray
    image: np.ndarray


@torch.no_grad()
def padded_frame(model: VisualClassifier, size: int, *, features: str, device: torch.device,
                 amp: bool = False) -> PaddedFrame:
    """Run ``model`` on the input the official AVSS loader pads 5-frame videos with: a
    (3, size, size) tensor of zeros after normalisation (``avss/color_dataloader.py``,
    ``torch.zeros_like(img)``).

    Raises:
        ValueError: unknown ``features``.
    """
    if features not in FEATURES:
        raise ValueError(f"features must be one of {FEATURES}, got {features!r}")
    model.to(device).eval()
    with autocast(device, amp):
        out = model(torch.zeros(1, 3, size, size, device=device))
    colour = np.round(np.asarray(model.mean, dtype=np.float64) * 255.0).astype(np.uint8)
    return PaddedFrame(_head_input(out.patch_tokens, out.final_tokens, features),
                       model.cam(out.patch_tokens.float())[0].cpu().numpy().astype(np.float32),
                       out.logits[0].float().cpu().numpy(),
                       np.broadcast_to(colour, (size, size, 3)).copy())


def train_segmentation_head(head: SegmentationHead, tokens: torch.Tensor, masks: np.ndarray, *,
                            epochs: int, batch_frames: int, lr: float, weight_decay: float,
                            ignore_index: int, train_size: int, background_weight: float = 1.0,
                            seed: int, device: torch.device, logger: logging.Logger,
                            on_epoch: EpochCallback | None = None,
                            checkpoint: EpochCheckpoint | None = None) -> list[dict[str, float]]:
    """Cross-entropy of the head's upsampled logits against pseudo-masks.

    Args:
        tokens: (M, N, D) float32 patch tokens of the training frames.
        masks: (M, H, W) uint8 pseudo-masks (class index, ``ignore_index`` ignored).
        train_size: side in pixels at which the loss is computed: masks are brought there with
            nearest-neighbour sampling and the logits upsampled to it (saves memory and time
            over the full frame; the head only sees a patch grid anyway).
        background_weight: cross-entropy weight of class 0 (others weigh 1); below 1 it counters
            the background's share of the pixels.
        on_epoch: per-epoch callback of :func:`pcas_core.runtime.fit.fit` (training curves).
        checkpoint: resume checkpoint of :func:`pcas_core.runtime.fit.fit` (None: none written).
    """
    if len(tokens) != len(masks):
        raise ValueError(f"{len(tokens)} frames of tokens but {len(masks)} pseudo-masks")
    target = F.interpolate(torch.from_numpy(masks)[:, None].float(), size=(train_size, train_size),
                           mode="nearest")[:, 0].long()
    size = (train_size, train_size)

    def batches(epoch: int) -> DataLoader:
        gen = torch.Generator().manual_seed(seed + epoch)
        return DataLoader(TensorDataset(tokens, target), generator=gen, batch_sampler=rank_batches(
            len(tokens), batch_frames, shuffle=True, generator=gen))

    weight = torch.ones(head.num_classes, device=device)
    weight[0] = background_weight

    def compute_loss(batch):
        x, y = (t.to(device) for t in batch)
        # weighted mean over the labelled pixels (of the global batch when distributed)
        pixel = F.cross_entropy(head(x, size), y, ignore_index=ignore_index, reduction="none")
        pixel_weight = weight[y.clamp_max(len(weight) - 1)] * (y != ignore_index)
        return {"loss": mean_over_ranks(pixel, pixel_weight)}

    return fit(head, batches, compute_loss, epochs=epochs,
               steps_per_epoch=-(-len(tokens) // batch_frames), groups=[(head.parameters(), lr)],
               weight_decay=weight_decay, device=device, logger=logger, on_epoch=on_epoch,
               checkpoint=checkpoint)


@torch.no_grad()
def predict_masks(head: SegmentationHead, tokens: torch.Tensor, out_size: tuple[int, int], *,
                  batch_frames: int, device: torch.device, images: np.ndarray | None = None,
                  crf: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Predicted class masks, optionally refined by a dense CRF.

    Args:
        tokens: (M, N, D) float32 patch tokens.
        out_size: (H, W) pixels.
        images: (M, H, W, 3) uint8 frames, needed with ``crf``.
        crf: ``(image (H, W, 3) uint8, probs (K, H, W) float32) -> refined probs (K, H, W)``,
            e.g. :class:`pcas_core.method.crf.DenseCRF`.

    Returns:
        ``(masks (M, H, W) uint8 class index, foreground (M, H, W) float32 = 1 - p(background))``.
    """
    if crf is not None and (images is None or len(images) != len(tokens)):
        raise ValueError("CRF post-processing needs one image per frame")
    head.to(device).eval()
    masks, foreground = [], []
    for start in range(0, len(tokens), batch_frames):
        probs = head(tokens[start:start + batch_frames].to(device), out_size).softmax(dim=1).cpu()
        if crf is not None:
            probs = torch.from_numpy(np.stack([
                crf(images[start + i], p.numpy().astype(np.float32)) for i, p in enumerate(probs)]))
        masks.append(probs.argmax(dim=1).numpy().astype(np.uint8))
        foreground.append((1.0 - probs[:, 0]).numpy().astype(np.float32))
    return np.concatenate(masks), np.concatenate(foreground)


def save_segmentation_head(path: Path, head: SegmentationHead, *, features: str) -> None:
    """Save a trained head with its constructor config and its input ``features`` (see
    :func:`patch_tokens_of`), so that :func:`load_segmentation_head` rebuilds it alone.

    Raises:
        ValueError: unknown ``features``.
    """
    if features not in FEATURES:
        raise ValueError(f"features must be one of {FEATURES}, got {features!r}")
    save_checkpoint(path, head, {**head_config(head), "features": features})


def head_config(head: SegmentationHead) -> dict:
    """Constructor arguments of ``head``: ``in_dim``, ``num_classes``, ``grid``, ``hidden_dim``."""
    deep = isinstance(head.net, torch.nn.Sequential)
    first = head.net[0] if deep else head.net
    return {"in_dim": first.in_channels, "num_classes": head.num_classes, "grid": list(head.grid),
            "hidden_dim": first.out_channels if deep else 0}


def load_segmentation_head(path: Path) -> tuple[SegmentationHead, str]:
    """Rebuild a head saved by :func:`save_segmentation_head`.

    Returns:
        ``(head on the CPU in eval mode, features)``.

    Raises:
        FileNotFoundError / ValueError: as :func:`pcas_core.storage.weights.load_checkpoint`, or the
            config lacks a key (names the file).
    """
    state, config = load_checkpoint(path)
    try:
        head = SegmentationHead(in_dim=int(config["in_dim"]),
                                num_classes=int(config["num_classes"]),
                                grid=tuple(config["grid"]), hidden_dim=int(config["hidden_dim"]))
        features = str(config["features"])
    except KeyError as err:
        raise ValueError(f"{path}: not a segmentation-head checkpoint (no {err} in its config)") \
            from err
    head.load_state_dict(state)
    return head.eval(), features
