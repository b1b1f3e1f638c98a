"""The test-time path of PCAS, once, for the ``evaluate`` stage and for ``pcas predict``.

Per clip of T frames (at most the audio encoder's ``max_steps`` seconds), with no labels:

1. the stage-1 visual classifier encodes each frame: v_t, the TVP prompt (METHOD §1);
2. the TVP audio encoder reads the clip's fbank with one prompt per second: step logits s_t,
   audio scores ``sigmoid(s_t)`` (METHOD §2);
3. the aligned visual model gives patch tokens and frame logits, visual scores
   ``sigmoid(W_v v_t)`` (METHOD §3);
4. the segmentation head turns the patch tokens into a class-index mask (METHOD §5).

The masks come from :func:`segment` alone (steps 3-4). ``evaluate`` calls it on the test split
(:func:`predict_test_split`) and ``pcas predict`` through
:func:`pcas_core.pipeline.predict.predict_clip`, which runs the whole path on a clip, so both give
the same masks for the same frames and models.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from pcas_core.data.dataset import AVSData
from pcas_core.data.loader import video_loader
from pcas_core.evaluation.scoring import Prediction
from pcas_core.models.heads import SegmentationHead, check_features
from pcas_core.models.visual import VisualClassifier
from pcas_core.runtime.distributed import batch_count, gather_in_order
from pcas_core.runtime.fit import autocast
from pcas_core.runtime.stage import RunEnv

__all__ = ["CRF", "head_inputs", "PaddedFrame", "padded_frame", "predict_masks", "segment",
           "predict_test_split"]

#: a dense CRF: ``(image (H, W, 3) uint8, probs (K, H, W) float32) -> refined probs (K, H, W)``
CRF = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _head_input(patch: torch.Tensor, final: torch.Tensor, features: str) -> torch.Tensor:
    """(B, N, D) tokens of layer ``token_layer`` and final layer -> the head input on the CPU."""
    parts = {"patch": [patch], "final": [final], "patch+final": [patch, final]}[features]
    return torch.cat(parts, dim=-1).float().cpu()


@torch.no_grad()
def head_inputs(model: VisualClassifier, clips: Dataset, *, features: str, batch_videos: int,
                env: RunEnv, ranks: bool = False) -> torch.Tensor:
    """The segmentation head's input tokens of every frame of ``clips`` in order, on the CPU.

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
    check_features(features)
    device = env.device
    model.to(device).eval()

    def encoded():
        for batch in video_loader(clips, batch_videos=batch_videos, shuffle=False, ranks=ranks):
            with autocast(device, env.amp):
                patch, _, final = model.forward_features(batch["frames"].to(device))
            yield _head_input(patch, final, features)

    return torch.cat(list(gather_in_order(encoded(), batch_count(len(clips), batch_videos))
                          if ranks else encoded()))


class PaddedFrame(NamedTuple):
    """The official AVSS padded frame (:mod:`pcas_core.evaluation.official`, quirk 1) through the ViT.

    Attributes:
        tokens: (1, N, D') float32 head input (as :func:`head_inputs` with the same features).
        cam: (K, h, w) float32 raw CAMs. logits: (K,) float32 frame logits.
        image: (H, W, 3) uint8 what the input looks like: the normalisation mean colour (for a
            CRF and for pictures).
    """

    tokens: torch.Tensor
    cam: np.ndarray
    logits: np.ndarray
    image: np.ndarray


@torch.no_grad()
def padded_frame(model: VisualClassifier, size: int, *, features: str,
                 env: RunEnv) -> PaddedFrame:
    """Run ``model`` on the input the official AVSS loader pads 5-frame videos with: a
    (3, size, size) tensor of zeros after normalisation (``avss/color_dataloader.py``,
    ``torch.zeros_like(img)``).

    Raises:
        ValueError: unknown ``features``.
    """
    check_features(features)
    device = env.device
    model.to(device).eval()
    with autocast(device, env.amp):
        out = model(torch.zeros(1, 3, size, size, device=device))
    colour = np.round(np.asarray(model.mean, dtype=np.float64) * 255.0).astype(np.uint8)
    return PaddedFrame(_head_input(out.patch_tokens, out.final_tokens, features),
                       model.cam(out.patch_tokens.float())[0].cpu().numpy().astype(np.float32),
                       out.logits[0].float().cpu().numpy(),
                       np.broadcast_to(colour, (size, size, 3)).copy())


@torch.no_grad()
def predict_masks(head: SegmentationHead, tokens: torch.Tensor, out_size: tuple[int, int], *,
                  batch_frames: int, device: torch.device, images: np.ndarray | None = None,
                  crf: CRF | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Predicted class masks, optionally refined by a dense CRF.

    Args:
        tokens: (M, N, D) float32 head input tokens.
        out_size: (H, W) pixels.
        images: (M, H, W, 3) uint8 frames, needed with ``crf``.
        crf: e.g. :class:`pcas_core.method.crf.DenseCRF`.

    Returns:
        ``(masks (M, H, W) uint8 class index, foreground (M, H, W) float32 = 1 - p(background))``.

    Raises:
        ValueError: ``crf`` without one image per frame.
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


def segment(aligned: VisualClassifier, head: SegmentationHead, clips: Dataset, *, features: str,
            out_size: tuple[int, int], batch_videos: int, batch_frames: int, env: RunEnv,
            images: np.ndarray | None = None,
            crf: CRF | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Masks of every frame of ``clips``: the aligned model's tokens through the head (METHOD §5).

    Args:
        clips: videos as items (``VideoClips`` or ``ArrayClips``, normalised with the aligned
            model's mean/std).
        features, batch_videos: as in :func:`head_inputs`.
        out_size, batch_frames, images, crf: as in :func:`predict_masks`.

    Returns:
        ``(masks (M, H, W) uint8 class index, foreground (M, H, W) float32 = 1 - p(background))``
        in frame order.
    """
    tokens = head_inputs(aligned, clips, features=features, batch_videos=batch_videos, env=env)
    return predict_masks(head, tokens, out_size, batch_frames=batch_frames, device=env.device,
                         images=images, crf=crf)


def predict_test_split(aligned: VisualClassifier, head: SegmentationHead, test: AVSData, *,
                       features: str, batch_videos: int, batch_frames: int, env: RunEnv,
                       crf: CRF | None = None) -> tuple[Prediction, np.ndarray, PaddedFrame]:
    """The method's prediction on a test split as the metrics need it: masks and foreground
    probabilities of the annotated frames (:func:`segment`), plus the head's prediction on the
    official AVSS padded frame (:func:`padded_frame`). ``evaluate`` and ``pcas predict --root``
    both score this.

    Args:
        test: the test split (frames at the models' ``img_size``), decoded by
            ``env.num_workers`` DataLoader processes.
        crf: as in :func:`segment` (applied to the padded frame too).

    Returns:
        ``(prediction on the frames with a mask, their (M', S, S, 3) uint8 images, the padded
        frame through the aligned model)``.
    """
    size, has = (test.img_size, test.img_size), test.has_mask()
    masks, foreground = segment(aligned, head,
                                test.clips(aligned.mean, aligned.std, num_workers=env.num_workers),
                                features=features, out_size=size, batch_videos=batch_videos,
                                batch_frames=batch_frames, env=env,
                                images=test.images() if crf is not None else None, crf=crf)
    pad = padded_frame(aligned, test.img_size, features=features, env=env)
    pad_mask, pad_fg = predict_masks(head, pad.tokens, size, batch_frames=1, device=env.device,
                                     images=pad.image[None], crf=crf)
    return (Prediction(masks[has], foreground[has], pad_mask[0], pad_fg[0]), test.images(has),
            pad)
