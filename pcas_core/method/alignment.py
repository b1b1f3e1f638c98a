"""The alignment objective of Listening-before-Segmentation (docs/method.md §3): every loss term of one
step, L = w_cls L_cls + w_cmc L_cmc + w_cmpc L_cmpc + w_cmcc L_cmcc, the token and crop labels
they are computed from, and how hard each weighted term pushes the backbone (its gradient's norm,
share and direction). The formulas are :mod:`pcas_core.method.losses`; the training loop around
this is :mod:`pcas_core.pipeline.align`."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pcas_core.method.cam import sounding_map
from pcas_core.method.crops import (cam_patch_labels, crop_labels, pair_labels, patch_labels,
                                    sample_crop_boxes, take_crops)
from pcas_core.method.losses import classification_loss, cmc_loss, cmcc_loss, cmpc_loss
from pcas_core.models.align import AlignModel, AlignOutput, running_stats_kept
from pcas_core.params import AlignConfig
from pcas_core.runtime.distributed import gather_rows, mean_over_ranks, row_offset
from pcas_core.runtime.fit import to_device

__all__ = ["TERMS", "term_weights", "normalise_tokens", "token_labels", "alignment_terms",
           "term_gradients", "gradient_shares"]

#: The weighted terms of the objective, in the order of docs/method.md §3.
TERMS = ("cls", "cmc", "cmpc", "cmcc")


def term_weights(cfg: AlignConfig) -> dict[str, float]:
    """``{term: weight}`` of the switched-on terms of ``cfg`` (L_cls always)."""
    on = {"cls": True, "cmc": cfg.cmc, "cmpc": cfg.cmpc, "cmcc": cfg.cmcc}
    return {k: float(getattr(cfg, f"w_{k}")) for k in TERMS if on[k]}


def normalise_tokens(tokens: Tensor, kind: str) -> Tensor:
    """The tokens CMPC contrasts and CMCC's heads read, normalised as ``align.token_norm`` says.

    ``layernorm``: parameter-free LayerNorm over the last dim (zero mean, unit variance per
    token; Ba et al. 2016), as the final ``norm`` of the ViTs that ToCo's PTC and CTC read;
    a CNN's feature map has no such layer. ``none``: unchanged.

    Args:
        tokens: (..., D) float.

    Raises:
        ValueError: an unknown ``kind``.
    """
    if kind == "none":
        return tokens
    if kind == "layernorm":
        return F.layer_norm(tokens, tokens.shape[-1:])
    raise ValueError(f"align.token_norm: unknown '{kind}', expected 'layernorm' or 'none'")


@torch.no_grad()
def token_labels(model: AlignModel, out: AlignOutput, cfg: AlignConfig,
                 frame_labels: Tensor) -> Tensor:
    """Patch labels of the global view for CMPC and CMCC, as ``align.cmpc_labels`` says (no
    gradient, no sync).

    ``sounding``: :func:`pcas_core.method.crops.patch_labels` of the sounding map
    S = minmax_i cos(g_p(P_t[i]), sg(g_a(a_t))) (docs/method.md §3), 1 sounding / 0 / ignored.
    ``cam``: :func:`pcas_core.method.crops.cam_patch_labels` of the CAM of the visual model's head
    on P_t (layer ``token_layer``, ToCo's auxiliary CAM), restricted to the frame's video labels.

    Args:
        out: the model's output on the frames.
        frame_labels: (F, C) video labels of each frame.

    Returns:
        (F, h, w) int labels (0 background, >= 1 foreground, -1 ignored).
    """
    if cfg.cmpc_labels == "cam":
        cam = model.visual.cam(out.visual.patch_tokens.float())
        return cam_patch_labels(cam, frame_labels, cfg.theta_hi, cfg.theta_lo)
    sounding = sounding_map(out.patch_emb.float(), out.audio_emb.float(), model.visual.grid)
    return patch_labels(sounding, cfg.theta_hi, cfg.theta_lo)


def alignment_terms(model: AlignModel, cfg: AlignConfig, frames: Tensor, audio: Tensor,
                    frame_video: Tensor, labels: Tensor, generator: torch.Generator, *,
                    token_terms: bool = True) -> dict[str, Tensor]:
    """Every loss term of one alignment step (docs/method.md §3), by name, and their total under "loss".

    CMPC and CMCC label patches of the global view with :func:`token_labels` (no gradient).
    CMPC contrasts the final-layer patch tokens (after :func:`normalise_tokens`); CMCC cuts
    ``n_crops`` crops per frame (positions from ``generator``), passes all crops of the batch
    through the same backbone in one forward at crop size, and contrasts h(crop class token) with
    the EMA head on the detached global token (for a backbone without a class token, the
    interface's global token stands in), both after :func:`normalise_tokens`. The EMA head takes
    one step before it is used, as in ToCo. The crop forward leaves every BatchNorm's running
    statistics as they were (:func:`pcas_core.models.align.running_stats_kept`): the crops are
    normalised with their batch's statistics, as the global view is, but 48-pixel crops do not
    move the statistics that later stages normalise whole frames with. Beside the terms,
    ``crop_positive`` and ``patch_ignored`` (fractions) and, with CMPC, ``final_token_norm`` (the
    mean L2 norm of the final patch tokens before :func:`normalise_tokens`) are returned for the
    logs; no host-device sync happens here.

    In a distributed step (:mod:`pcas_core.runtime.distributed`) every term is that of the global batch:
    CMC contrasts the embeddings of all ranks' frames, means are global, and the crop positions
    are this rank's rows of the global batch's draw (one process's terms and crops, exactly).

    Args:
        frames: (F, 3, H, W) normalised frames on the model's device.
        audio: (F, Da) a_t of each frame.
        frame_video: (F,) long batch position of each frame's video.
        labels: (B, C) float video labels.
        generator: CPU generator of the crop positions.
        token_terms: False before ``align.token_contrast_start``: CMPC and CMCC are neither
            computed nor returned (no crop is drawn, the EMA head does not move).

    Returns:
        dict of scalar tensors: ``cls``, ``cmc`` and (with ``token_terms``) ``cmpc``/``cmcc``
        when switched on, ``loss``.
    """
    out = model(frames, audio)
    terms = {"cls": classification_loss(out.visual.logits, out.visual.class_logits, frame_video,
                                        labels, frame_pool=cfg.frame_pool,
                                        w_class_token=cfg.w_class_token)}
    loss = cfg.w_cls * terms["cls"]
    if cfg.cmc:
        terms["cmc"] = cmc_loss(*(gather_rows(t) for t in (
            out.audio_emb.float(), out.visual_emb.float(), out.class_emb.float(),
            labels[frame_video])), cfg.temperature)
        loss = loss + cfg.w_cmc * terms["cmc"]
    cmpc, cmcc = cfg.cmpc and token_terms, cfg.cmcc and token_terms
    if cmpc or cmcc:
        patches = token_labels(model, out, cfg, labels[frame_video])   # (F, h, w)
        terms["patch_ignored"] = mean_over_ranks((patches < 0).float())
    if cmpc:
        same, different = pair_labels(patches.flatten(1))
        tokens = normalise_tokens(out.visual.final_tokens.float(), cfg.token_norm)
        terms["cmpc"] = cmpc_loss(tokens, same, different)
        terms["final_token_norm"] = mean_over_ranks(
            out.visual.final_tokens.detach().float().norm(dim=-1))
        loss = loss + cfg.w_cmpc * terms["cmpc"]
    if cmcc:
        size = tuple(frames.shape[-2:])
        first, total = row_offset(len(frames), frames.device)
        boxes = sample_crop_boxes(total, cfg.n_crops, size, cfg.crop_size,
                                  generator)[first:first + len(frames)]
        boxes = to_device(boxes, frames.device)
        crops = take_crops(frames, boxes, cfg.crop_size).flatten(0, 1)
        with running_stats_kept(model.visual):
            crop_tokens = model.visual(crops).class_token
        positive = crop_labels(patches, boxes, cfg.crop_size, size, cfg.rho)
        with torch.no_grad():
            model.update_ema(cfg.ema_momentum)
            global_head = model.crop_head_ema(
                normalise_tokens(out.visual.class_token.detach().float(), cfg.token_norm))
        crop_heads = model.crop_head(normalise_tokens(crop_tokens.float(), cfg.token_norm))
        crop_heads = crop_heads.unflatten(0, (len(frames), cfg.n_crops))
        terms["cmcc"] = cmcc_loss(global_head.float(), crop_heads.float(), positive,
                                  cfg.tau_cmcc, cfg.cmcc_eps)
        terms["crop_positive"] = mean_over_ranks(positive)
        loss = loss + cfg.w_cmcc * terms["cmcc"]
    terms["loss"] = loss
    return terms


def term_gradients(terms: dict[str, Tensor], weights: dict[str, float],
                   params: Sequence[nn.Parameter]) -> dict[str, Tensor]:
    """The gradient of each weighted term w_k L_k on ``params``, flattened into one vector.

    Every term must hang on the same graph (one :func:`alignment_terms` call); the graph is kept
    between terms and freed after the last. A parameter a term does not reach contributes zeros.

    Args:
        terms: scalar terms by name (``alignment_terms``' output).
        weights: ``{term: weight}`` of the terms to differentiate (:func:`term_weights`); each
            must be in ``terms``.
        params: the parameters (e.g. the trainable backbone's), each with ``requires_grad``.

    Returns:
        ``{term: (P,) float32}``, P the total number of elements of ``params``.

    Raises:
        KeyError: a weighted term missing from ``terms``.
    """
    missing = sorted(set(weights) - set(terms))
    if missing:
        raise KeyError(f"terms {missing} were not computed")
    out = {}
    names = list(weights)
    for i, name in enumerate(names):
        grads = torch.autograd.grad(weights[name] * terms[name], list(params),
                                    retain_graph=i < len(names) - 1, allow_unused=True)
        out[name] = torch.cat([(g if g is not None else torch.zeros_like(p)).float().flatten()
                               for g, p in zip(grads, params)])
    return out


def gradient_shares(grads: dict[str, Tensor], reference: str = "cmc") -> dict[str, dict[str, float]]:
    """How hard, and where, each term pushes: per term the gradient's L2 norm, its share of the
    sum of all terms' norms (shares sum to 1), and its cosine with the ``reference`` term's
    gradient (CMC's, the term that aligns; absent when that term is off or for itself).

    Args:
        grads: ``{term: (P,) gradient}`` (:func:`term_gradients`).

    Returns:
        ``{"norm": {term: float}, "share": {term: float}, "cos_cmc": {term: float}}`` (the last
        keyed ``cos_<reference>``).
    """
    norms = {k: float(g.norm()) for k, g in grads.items()}
    total = sum(norms.values())
    out = {"norm": norms,
           "share": {k: (v / total if total > 0 else 0.0) for k, v in norms.items()},
           f"cos_{reference}": {}}
    if reference in grads:
        ref = grads[reference]
        out[f"cos_{reference}"] = {k: float(F.cosine_similarity(g, ref, dim=0))
                                   for k, g in grads.items() if k != reference}
    return out
