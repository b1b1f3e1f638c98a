"""The visual classifier: token layout, CAM consistency with the logits, local weight loading."""

import pytest
import torch

from pcas_core.storage.weights import load_checkpoint, load_weights_file, save_checkpoint
from pcas_core.models.visual import build_visual

TINY = {"backbone": "vit_tiny_patch16_224", "num_classes": 5, "img_size": 32,
        "backbone_kwargs": {"patch_size": 8, "depth": 1, "embed_dim": 24, "num_heads": 2}}


def test_outputs_and_cam_average_equals_logits():
    torch.manual_seed(0)
    model = build_visual(TINY).eval()
    out = model(torch.randn(3, 3, 32, 32))
    assert out.patch_tokens.shape == (3, 16, 24) and out.class_token.shape == (3, 24)
    assert out.logits.shape == (3, 5)
    cam = model.cam(out.patch_tokens)
    assert cam.shape == (3, 5, 4, 4)
    # CAM_k = P W_v[k]: its spatial mean plus the bias is exactly the frame logit
    torch.testing.assert_close(cam.mean(dim=(2, 3)) + model.head.bias, out.logits)
    # the head starts every class at the prior probability
    assert torch.allclose(torch.sigmoid(model.head.bias), torch.full((5,), 0.01))


def test_conv_stem_keeps_the_token_layout():
    model = build_visual({**TINY, "conv_stem": True}).eval()
    out = model(torch.randn(2, 3, 32, 32))
    assert out.patch_tokens.shape == (2, 16, 24) and model.grid == (4, 4)


def test_checkpoint_round_trip_and_no_unpickling(tmp_path):
    model = build_visual(TINY)
    save_checkpoint(tmp_path / "m.safetensors", model, TINY)
    state, config = load_checkpoint(tmp_path / "m.safetensors")
    assert config == TINY
    clone = build_visual(config)
    clone.load_state_dict(state)
    torch.testing.assert_close(clone.head.weight, model.head.weight)
    evil = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "extra": object()}, evil)
    with pytest.raises(ValueError, match="evil.pth: cannot read weights"):
        load_weights_file(evil)


def test_a_fixed_backbone_gives_no_gradient_and_eval_features_but_trains_the_heads():
    """The linear-probe phase of LP-FT: ``train_backbone=False`` is the eval-mode backbone
    without gradient, whatever the module's mode; the heads get gradients."""
    from pcas_core.models.visual import build_visual
    model = build_visual({"backbone": "resnet50", "num_classes": 3, "img_size": 64,
                          "backbone_kwargs": {"layers": [1, 1, 1, 1]}})
    x = torch.randn(2, 3, 64, 64)
    model.eval()
    reference = model(x).logits
    model.train()
    out = model(x, train_backbone=False)
    torch.testing.assert_close(out.logits, reference)
    assert model.backbone.training  # mode restored
    out.logits.sum().backward()
    out.class_logits.sum().backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert model.head.weight.grad is not None and model.class_head.weight.grad is not None
