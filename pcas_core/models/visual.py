"""Looking: the ViT frame classifier whose patch tokens give class activation maps (METHOD §1).

A timm ViT encodes each frame into a class token c_t and patch tokens P_t (N x D). The classifier
head W_v acts on the pooled patch token v_t = mean(P_t), so that the same weights give a CAM per
class, CAM_k(P_t) = P_t W_v[k] (Zhou et al. 2016, applied to ViT patch tokens as in ToCo).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, NamedTuple

import timm
from torch import Tensor, nn

from pcas_core.cam import cam_from_patch_tokens
from pcas_core.checkpoint import load_checkpoint, load_weights_file
from pcas_core.models.conv_stem import ConvStemPatchEmbed
from pcas_core.models.heads import init_prior_bias

__all__ = ["VisualOutput", "VisualClassifier", "build_visual", "load_visual"]

_log = logging.getLogger(__name__)


class VisualOutput(NamedTuple):
    """What :class:`VisualClassifier` returns for a batch of B frames.

    Attributes:
        patch_tokens: (B, N, D) float, patch tokens P_t (of layer ``token_layer``), N = h * w.
        class_token: (B, D) float, c_t, final layer (normed).
        pooled_patch: (B, D) float, v_t = mean over N of ``patch_tokens``.
        logits: (B, C) float, frame logits W_v v_t + b.
        class_logits: (B, C) float, W_c c_t + b_c (trained only when its loss weight is > 0).
        final_tokens: (B, N, D) float, final-layer (normed) patch tokens; the same tensor as
            ``patch_tokens`` when ``token_layer`` is -1.
    """

    patch_tokens: Tensor
    class_token: Tensor
    pooled_patch: Tensor
    logits: Tensor
    class_logits: Tensor
    final_tokens: Tensor


class VisualClassifier(nn.Module):
    """A timm ViT with a CAM-compatible multi-label head on pooled patch tokens.

    Args:
        backbone: timm model name of a ViT with a class token (``vit_base_patch16_224`` for the
            paper, ``vit_tiny_patch16_224`` with overrides for the demo).
        num_classes: foreground classes C (70 for AVSBench-semantic).
        img_size: input side in pixels (square frames).
        pretrained: ``False`` (random initialisation, said in the log), ``True`` (timm's own
            pretrained mechanism, which needs the weights in the local cache or a network), or the
            path of a local ``.safetensors``/``.pth`` file of the same architecture (position
            embeddings are resampled to ``img_size`` by timm's ViT filter).
        backbone_kwargs: extra keyword arguments for ``timm.create_model`` (``depth``,
            ``embed_dim``, ``num_heads``, ``patch_size``...).
        head_bias_prior: initial probability of every class (see ``init_prior_bias``).
        conv_stem: replace the patchify conv by a convolutional stem
            (:class:`pcas_core.models.conv_stem.ConvStemPatchEmbed`), for training from scratch.
        token_layer: which tokens are P_t: -1 the final (normed) layer, as in the paper; k >= 1
            the output of block k; 0 the embedded patches before any block. ToCo (Ru et al. 2023)
            shows that final-layer ViT patch tokens over-smooth, so that CAMs stop localising; a
            ViT trained from scratch on a small set (the demo) shows it at every depth >= 1.
            The class token c_t always comes from the final layer.
    """

    def __init__(self, *, backbone: str = "vit_base_patch16_224", num_classes: int = 70,
                 img_size: int = 224, pretrained: bool | str = False,
                 backbone_kwargs: dict[str, Any] | None = None,
                 head_bias_prior: float = 0.01, conv_stem: bool = False,
                 token_layer: int = -1) -> None:
        super().__init__()
        kwargs = dict(backbone_kwargs or {})
        if conv_stem:
            kwargs["embed_layer"] = ConvStemPatchEmbed
        # ViTs take any input size (position embeddings resampled per call): the CMCC crops of the
        # alignment stage pass through the same backbone at crop size.
        kwargs.setdefault("dynamic_img_size", True)
        use_timm_weights = pretrained is True
        self.backbone = timm.create_model(backbone, pretrained=use_timm_weights, num_classes=0,
                                          img_size=img_size, **kwargs)
        if isinstance(pretrained, (str, Path)) and str(pretrained):
            self._load_local_weights(Path(pretrained))
        elif not use_timm_weights:
            _log.info("visual backbone %s: random initialisation (no pretrained weights)", backbone)
        if getattr(self.backbone, "cls_token", None) is None:
            raise ValueError(f"backbone '{backbone}' has no class token; PCAS needs one (c_t)")
        self.num_prefix_tokens = int(self.backbone.num_prefix_tokens)
        self.embed_dim = int(self.backbone.embed_dim)
        self.grid = tuple(self.backbone.patch_embed.grid_size)
        depth = len(self.backbone.blocks)
        if not -1 <= token_layer <= depth:
            raise ValueError(f"token_layer must be in [-1, {depth}] for a {depth}-block ViT")
        self.token_layer = token_layer if token_layer != depth else -1
        self.head = nn.Linear(self.embed_dim, num_classes)
        self.class_head = nn.Linear(self.embed_dim, num_classes)
        init_prior_bias(self.head, head_bias_prior)
        init_prior_bias(self.class_head, head_bias_prior)
        cfg = self.backbone.pretrained_cfg
        self.mean = tuple(cfg.get("mean", (0.5, 0.5, 0.5)))
        self.std = tuple(cfg.get("std", (0.5, 0.5, 0.5)))

    def _load_local_weights(self, path: Path) -> None:
        from timm.models.vision_transformer import checkpoint_filter_fn

        state = checkpoint_filter_fn(load_weights_file(path), self.backbone)
        missing, unexpected = self.backbone.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("head")]
        if missing:
            raise ValueError(f"{path}: weights do not fit the backbone, missing {missing[:5]}")
        _log.info("visual backbone: loaded %s (ignored keys: %s)", path, unexpected[:5])

    def forward_features(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Encode frames.

        Args:
            x: (B, 3, H, W) float, normalised with ``self.mean``/``self.std``.

        Returns:
            ``(patch_tokens (B, N, D) of layer token_layer, class_token (B, D),
            final_tokens (B, N, D))``.
        """
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected frames (B, 3, H, W), got {tuple(x.shape)}")
        npt = self.num_prefix_tokens
        if self.token_layer < 0:
            tokens = self.backbone.forward_features(x)
            return tokens[:, npt:], tokens[:, 0], tokens[:, npt:]
        source = (self.backbone.norm_pre if self.token_layer == 0
                  else self.backbone.blocks[self.token_layer - 1])
        captured: list[Tensor] = []
        handle = source.register_forward_hook(lambda module, args, out: captured.append(out))
        try:
            tokens = self.backbone.forward_features(x)
        finally:
            handle.remove()
        return captured[0][:, npt:], tokens[:, 0], tokens[:, npt:]

    def forward_head(self, pooled_patch: Tensor) -> Tensor:
        """(B, D) pooled patch tokens -> (B, C) logits."""
        return self.head(pooled_patch)

    def cam(self, patch_tokens: Tensor) -> Tensor:
        """Class activation maps CAM_k = P W_v[k] (no bias), shape (B, C, h, w)."""
        return cam_from_patch_tokens(patch_tokens, self.head.weight, self.grid)

    def forward(self, x: Tensor) -> VisualOutput:
        patch_tokens, class_token, final_tokens = self.forward_features(x)
        pooled = patch_tokens.mean(dim=1)
        return VisualOutput(patch_tokens, class_token, pooled, self.forward_head(pooled),
                            self.class_head(class_token), final_tokens)


def build_visual(config: dict[str, Any]) -> VisualClassifier:
    """Construct a :class:`VisualClassifier` from a params/checkpoint config mapping.

    ``config`` keys: ``backbone``, ``num_classes``, ``img_size``, ``pretrained``,
    ``backbone_kwargs``, ``head_bias_prior``, ``conv_stem``, ``token_layer`` (all optional; defaults as in the class).
    """
    keys = ("backbone", "num_classes", "img_size", "pretrained", "backbone_kwargs",
            "head_bias_prior", "conv_stem", "token_layer")
    return VisualClassifier(**{k: config[k] for k in keys if k in config})


def load_visual(path: Path) -> tuple[VisualClassifier, dict[str, Any]]:
    """Rebuild a classifier saved with ``save_checkpoint`` (config + safetensors weights).

    Returns:
        ``(model, config)``, the model on the CPU in train mode.

    Raises:
        FileNotFoundError / ValueError: as :func:`pcas_core.checkpoint.load_checkpoint`.
    """
    state, config = load_checkpoint(path)
    model = build_visual(config)
    model.load_state_dict(state)
    return model, config
