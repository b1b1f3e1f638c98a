"""The alignment objective of Listening-before-Segmentation (METHOD §3): every loss term of one
step, L = w_cls L_cls + w_cmc L_cmc + w_cmpc L_cmpc + w_cmcc L_cmcc, and the token and crop labels
they are computed from. The formulas are :mod:`pcas_core.method.losses`; the training loop around
this is :mod:`pcas_core.pipeline.align`."""

from __future__ import annotations

import torch
from torch import Tensor

from pcas_core.method.cam import sounding_map
from pcas_core.method.crops import (crop_labels, pair_labels, patch_labels, sample_crop_boxes,
                                    take_crops)
from pcas_core.method.losses import classification_loss, cmc_loss, cmcc_loss, cmpc_loss
from pcas_core.models.align import AlignModel
from pcas_core.params import AlignConfig
from pcas_core.runtime.distributed import gather_rows, mean_over_ranks, row_offset
from pcas_core.runtime.fit import to_device

__all__ = ["alignment_terms"]


def alignment_terms(model: AlignModel, cfg: AlignConfig, frames: Tensor, audio: Tensor,
                    frame_video: Tensor, labels: Tensor,
                    generator: torch.Generator) -> dict[str, Tensor]:
    """Every loss term of one alignment step (METHOD §3), by name, and their total under "loss".

    CMPC and CMCC label patches from the sounding map S = minmax_i cos(g_p(P_t[i]), sg(g_a(a_t)))
    of the global view (:func:`pcas_core.method.crops.patch_labels`, no gradient). CMPC contrasts the
    final-layer patch tokens; CMCC cuts ``n_crops`` crops per frame (positions from
    ``generator``), passes all crops of the batch through the same backbone in one forward at
    crop size, and contrasts h(crop class token) with the EMA head on the detached global token
    (for a backbone without a class token, the interface's global token stands in). The EMA head
    takes one step before it is used, as in ToCo. Beside the terms, ``crop_positive`` and
    ``patch_ignored`` (fractions) are returned for the logs; no host-device sync happens here.

    In a distributed step (:mod:`pcas_core.runtime.distributed`) every term is that of the global batch:
    CMC contrasts the embeddings of all ranks' frames, means are global, and the crop positions
    are this rank's rows of the global batch's draw (one process's terms and crops, exactly).

    Args:
        frames: (F, 3, H, W) normalised frames on the model's device.
        audio: (F, Da) a_t of each frame.
        frame_video: (F,) long batch position of each frame's video.
        labels: (B, C) float video labels.
        generator: CPU generator of the crop positions.

    Returns:
        dict of scalar tensors: ``cls``, ``cmc``/``cmpc``/``cmcc`` when switched on, ``loss``.
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
    if cfg.cmpc or cfg.cmcc:
        with torch.no_grad():
            sounding = sounding_map(out.patch_emb.float(), out.audio_emb.float(),
                                    model.visual.grid)
            patches = patch_labels(sounding, cfg.theta_hi, cfg.theta_lo)   # (F, h, w)
            terms["patch_ignored"] = mean_over_ranks((patches < 0).float())
    if cfg.cmpc:
        same, different = pair_labels(patches.flatten(1))
        terms["cmpc"] = cmpc_loss(out.visual.final_tokens.float(), same, different)
        loss = loss + cfg.w_cmpc * terms["cmpc"]
    if cfg.cmcc:
        size = tuple(frames.shape[-2:])
        first, total = row_offset(len(frames), frames.device)
        boxes = sample_crop_boxes(total, cfg.n_crops, size, cfg.crop_size,
                                  generator)[first:first + len(frames)]
        boxes = to_device(boxes, frames.device)
        crops = take_crops(frames, boxes, cfg.crop_size).flatten(0, 1)
        crop_tokens = model.visual(crops).class_token
        positive = crop_labels(patches, boxes, cfg.crop_size, size, cfg.rho)
        with torch.no_grad():
            model.update_ema(cfg.ema_momentum)
            global_head = model.crop_head_ema(out.visual.class_token.detach())
        crop_heads = model.crop_head(crop_tokens).unflatten(0, (len(frames), cfg.n_crops))
        terms["cmcc"] = cmcc_loss(global_head.float(), crop_heads.float(), positive,
                                  cfg.tau_cmcc, cfg.cmcc_eps)
        terms["crop_positive"] = mean_over_ranks(positive)
        loss = loss + cfg.w_cmcc * terms["cmcc"]
    terms["loss"] = loss
    return terms
