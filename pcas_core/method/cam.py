"""Class activation maps, sounding maps and sounding-class score maps (docs/method.md §1, §3, §4).

All helpers take and return torch tensors, check their input layout first and raise ``ValueError``
naming the expected layout. Nothing here keeps gradients on purpose: callers that turn maps into
pseudo-labels should pass detached tensors (as ToCo does).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _check_grid(n_tokens: int, grid: tuple[int, int]) -> tuple[int, int]:
    """Return ``(h, w)`` after checking that ``h * w == n_tokens``; raise ``ValueError`` otherwise."""
    h, w = (int(g) for g in grid)
    if h * w != n_tokens:
        raise ValueError(f"grid {grid} has {h * w} cells but there are {n_tokens} patch tokens (N = h*w)")
    return h, w


def minmax_normalize(x: Tensor, dims: tuple[int, ...], eps: float = 1e-6) -> Tensor:
    """Min-max normalise ``x`` to [0, 1] independently over each slice spanned by ``dims``.

    ``(x - min) / (max - min)``, where min and max are taken over ``dims`` (kept dims, broadcast
    back). A slice whose range is below ``eps`` (constant slice) becomes all zeros.

    Args:
        x: floating tensor of any shape.
        dims: the dimensions that make one slice, e.g. ``(-2, -1)`` for per-map normalisation.
        eps: range below which a slice counts as constant.

    Returns:
        Tensor with the shape and dtype of ``x``, values in [0, 1].

    Raises:
        ValueError: if ``x`` is not floating point or ``dims`` is empty.
    """
    if not torch.is_floating_point(x):
        raise ValueError(f"minmax_normalize expects a floating tensor, got {x.dtype}")
    if len(dims) == 0:
        raise ValueError("minmax_normalize needs at least one dim to normalise over")
    lo = torch.amin(x, dim=dims, keepdim=True)
    hi = torch.amax(x, dim=dims, keepdim=True)
    rng = hi - lo
    out = (x - lo) / rng.clamp_min(eps)
    return torch.where(rng >= eps, out, torch.zeros_like(out))


def cam_from_patch_tokens(patch_tokens: Tensor, weight: Tensor, grid: tuple[int, int]) -> Tensor:
    """Class activation maps from patch tokens and a linear head: ``CAM_k = P W[k]`` (docs/method.md §1).

    The head acts on pooled patch tokens, so applying it to every patch gives the CAM (no bias:
    a constant shift is removed later by min-max normalisation anyway).

    Args:
        patch_tokens: ``(B, N, D)`` float patch tokens, N = h * w in row-major order.
        weight: ``(K, D)`` float head weight (e.g. ``nn.Linear.weight``), K classes.
        grid: ``(h, w)`` patch grid.

    Returns:
        ``(B, K, h, w)`` raw (un-normalised, may be negative) activation maps, dtype of the inputs.

    Raises:
        ValueError: if the layouts are not ``B x N x D`` / ``K x D``, D differs, or h*w != N.
    """
    if patch_tokens.ndim != 3:
        raise ValueError(f"patch_tokens must be B x N x D, got shape {tuple(patch_tokens.shape)}")
    if weight.ndim != 2 or weight.shape[1] != patch_tokens.shape[2]:
        raise ValueError(
            f"weight must be K x D with D={patch_tokens.shape[2]}, got shape {tuple(weight.shape)}"
        )
    b, n, _ = patch_tokens.shape
    h, w = _check_grid(n, grid)
    cam = torch.einsum("bnd,kd->bkn", patch_tokens, weight)
    return cam.reshape(b, weight.shape[0], h, w)


def sounding_map(patch_emb: Tensor, audio_emb: Tensor, grid: tuple[int, int], eps: float = 1e-6) -> Tensor:
    """Sounding map ``S[i] = cos(p_i, a)``, min-max normalised per frame (docs/method.md §3, §4).

    Args:
        patch_emb: ``(B, N, d)`` float projected patch embeddings, N = h * w row-major.
        audio_emb: ``(B, d)`` float projected audio embedding of each frame's time step.
        grid: ``(h, w)`` patch grid.
        eps: passed to :func:`minmax_normalize` (a constant map becomes zeros).

    Returns:
        ``(B, h, w)`` float map in [0, 1]; 1 at the patch most similar to the audio.

    Raises:
        ValueError: if the layouts are not ``B x N x d`` / ``B x d``, or B, d or h*w disagree.
    """
    if patch_emb.ndim != 3:
        raise ValueError(f"patch_emb must be B x N x d, got shape {tuple(patch_emb.shape)}")
    expected = (patch_emb.shape[0], patch_emb.shape[2])
    if tuple(audio_emb.shape) != expected:
        raise ValueError(f"audio_emb must be B x d = {expected}, got {tuple(audio_emb.shape)}")
    b, n, _ = patch_emb.shape
    h, w = _check_grid(n, grid)
    cos = F.cosine_similarity(patch_emb, audio_emb[:, None, :], dim=-1)  # (B, N)
    return minmax_normalize(cos, dims=(1,), eps=eps).reshape(b, h, w)


def class_score_maps(
    cams: Tensor, sounding: Tensor, classes: Tensor, gamma: float = 1.0, eps: float = 1e-6
) -> Tensor:
    """Sounding-class score maps ``M_k = minmax(relu(CAM_k)) * S ** gamma`` for k in ``classes`` (docs/method.md §4).

    Args:
        cams: ``(K, h, w)`` float raw CAMs of one frame (K = 70 foreground logits in pcas).
        sounding: ``(h, w)`` float sounding map in [0, 1] (see :func:`sounding_map`).
        classes: ``(k,)`` integer tensor of CAM rows to keep (foreground column indices, not
            class indices); may be empty.
        gamma: exponent on the sounding map (0 ignores audio, larger sharpens it).
        eps: passed to :func:`minmax_normalize`.

    Returns:
        ``(k, h, w)`` float scores in [0, 1], rows in the order of ``classes``.

    Raises:
        ValueError: on a layout other than ``K x h x w`` / ``h x w`` / ``(k,)`` integer, or an
            out-of-range class.
    """
    if cams.ndim != 3:
        raise ValueError(f"cams must be K x h x w, got shape {tuple(cams.shape)}")
    if sounding.shape != cams.shape[1:]:
        raise ValueError(f"sounding must be h x w = {tuple(cams.shape[1:])}, got {tuple(sounding.shape)}")
    if classes.ndim != 1 or classes.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise ValueError(
            f"classes must be a 1-D integer tensor (k,), got {classes.dtype} {tuple(classes.shape)}"
        )
    if classes.numel() and (int(classes.min()) < 0 or int(classes.max()) >= cams.shape[0]):
        raise ValueError(f"classes must lie in [0, {cams.shape[0]}), got {classes.tolist()}")
    selected = cams[classes.long()]
    norm = minmax_normalize(torch.relu(selected), dims=(1, 2), eps=eps)
    return norm * sounding.clamp_min(0).pow(gamma)[None]
