"""Training-time augmentation of a whole video clip: one draw per clip, applied to all its frames,
so that frames of a video stay consistent with each other (and with its audio).

Used only for classifier training, where labels are per video; never where tokens or maps must
line up with the stored frames (feature extraction, pseudo-masks, evaluation).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["augment_clip"]


def augment_clip(frames: Tensor, *, scale: tuple[float, float] = (0.35, 1.0),
                 flip: float = 0.5, brightness: float = 0.2,
                 generator: torch.Generator | None = None) -> Tensor:
    """Random resized crop, horizontal flip and brightness/contrast jitter of a clip.

    Args:
        frames: (T, 3, H, W) float32 normalised frames of one video.
        scale: range of the crop's area as a fraction of the frame (square crops, side in pixels
            = sqrt(area) * H); the crop is resized back to (H, W) bilinearly.
        flip: probability of a horizontal flip.
        brightness: max relative change of contrast (multiplicative) and brightness (additive,
            in normalised units).
        generator: random source (default: torch's global one, seeded by ``seed_everything``).

    Returns:
        (T, 3, H, W) float32 augmented frames.

    Raises:
        ValueError: ``frames`` is not (T, 3, H, W) or ``scale`` is not within (0, 1].
    """
    if frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(f"expected frames (T, 3, H, W), got {tuple(frames.shape)}")
    if not 0 < scale[0] <= scale[1] <= 1:
        raise ValueError(f"scale must satisfy 0 < low <= high <= 1, got {scale}")
    _, _, h, w = frames.shape

    def uniform(lo: float, hi: float) -> float:
        return lo + (hi - lo) * torch.rand((), generator=generator).item()

    side = max(1, int(round(math.sqrt(uniform(*scale)) * min(h, w))))
    top = int(torch.randint(0, h - side + 1, (), generator=generator))
    left = int(torch.randint(0, w - side + 1, (), generator=generator))
    out = frames[:, :, top:top + side, left:left + side]
    out = F.interpolate(out, size=(h, w), mode="bilinear", align_corners=False)
    if uniform(0.0, 1.0) < flip:
        out = out.flip(-1)
    contrast = uniform(1 - brightness, 1 + brightness)
    shift = uniform(-brightness, brightness)
    return out * contrast + shift
