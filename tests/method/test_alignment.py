"""The alignment objective around the losses (pcas_core.method.alignment): the token terms' start
switch, where the token labels come from, the tokens' LayerNorm, BatchNorm statistics under the
CMCC crops (the demo's EfficientNet), and each term's gradient share."""

import copy

import pytest
import torch

from pcas_core.method.alignment import (alignment_terms, gradient_shares, normalise_tokens,
                                        term_gradients, term_weights)
from pcas_core.method.crops import IGNORE, pair_labels
from pcas_core.method.losses import cmpc_loss
from pcas_core.models.align import running_stats_kept
from pcas_core.models.visual import build_visual
from pcas_core.params import AlignConfig
from pcas_core.pipeline.align import build_align_model

CFG = AlignConfig(embed_dim=8, n_crops=3, crop_size=16)
LABELS = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]])
FRAME_VIDEO = torch.tensor([0, 0, 1, 1])


def _vit_model(cfg):
    torch.manual_seed(0)
    visual = build_visual({"backbone": "vit_tiny_patch16_224", "num_classes": 4, "img_size": 32,
                           "backbone_kwargs": {"patch_size": 8, "depth": 2, "embed_dim": 16,
                                               "num_heads": 2}})
    return build_align_model(visual, 6, cfg)


def _inputs(size=32):
    g = torch.Generator().manual_seed(1)
    return torch.randn(4, 3, size, size, generator=g), torch.randn(4, 6, generator=g)


# ------------------------------------------------------------------ token_contrast_start
def test_before_the_start_the_token_terms_are_not_computed_and_leave_no_trace():
    model = _vit_model(CFG)
    with torch.no_grad():
        model.crop_head.net.weight.add_(1.0)   # so that an EMA step would move the EMA head
    ema = copy.deepcopy(model.crop_head_ema.state_dict())
    generator = torch.Generator().manual_seed(0)
    state = generator.get_state()
    frames, audio = _inputs()
    terms = alignment_terms(model, CFG, frames, audio, FRAME_VIDEO, LABELS, generator,
                            token_terms=False)
    assert set(terms) == {"cls", "cmc", "loss"}
    torch.testing.assert_close(terms["loss"], terms["cls"] + CFG.w_cmc * terms["cmc"])
    assert torch.equal(generator.get_state(), state)          # no crop drawn
    assert all(torch.equal(v, ema[k]) for k, v in model.crop_head_ema.state_dict().items())
    on = alignment_terms(model, CFG, frames, audio, FRAME_VIDEO, LABELS, generator)
    assert {"cmpc", "cmcc", "patch_ignored", "crop_positive", "final_token_norm"} <= set(on)
    assert not torch.equal(generator.get_state(), state)
    with torch.no_grad():
        norm = model.visual(frames).final_tokens.norm(dim=-1).mean()
    torch.testing.assert_close(on["final_token_norm"], norm)


# ------------------------------------------------------------------ cmpc_labels
def test_cam_labels_do_not_hear_the_audio_and_follow_the_video_labels():
    frames, audio = _inputs()
    other = torch.randn(4, 6, generator=torch.Generator().manual_seed(5)) * 10
    results = {}
    for source in ("sounding", "cam"):
        cfg = AlignConfig(embed_dim=8, n_crops=3, crop_size=16, cmpc_labels=source)
        model = _vit_model(cfg)
        results[source] = [alignment_terms(model, cfg, frames, a, FRAME_VIDEO, LABELS,
                                           torch.Generator().manual_seed(0)) for a in (audio, other)]
    sounding, cam = results["sounding"], results["cam"]
    assert sounding[0]["cmpc"].item() != pytest.approx(sounding[1]["cmpc"].item())
    assert cam[0]["cmpc"].item() == pytest.approx(cam[1]["cmpc"].item())      # labels from the CAM
    assert cam[0]["crop_positive"].item() == cam[1]["crop_positive"].item()
    # videos without labels: every patch is background, no crop is positive, nothing is ignored
    cfg = AlignConfig(embed_dim=8, n_crops=3, crop_size=16, cmpc_labels="cam")
    silent = alignment_terms(_vit_model(cfg), cfg, frames, audio, FRAME_VIDEO,
                             torch.zeros(2, 4), torch.Generator().manual_seed(0))
    assert silent["patch_ignored"].item() == 0.0 and silent["crop_positive"].item() == 0.0


# ------------------------------------------------------------------ token_norm
def _pairs():
    return pair_labels(torch.tensor([[1, 1, 0, 0, IGNORE, 1, 2]], dtype=torch.int16))


@pytest.mark.parametrize("kind", ["none", "layernorm"])
def test_cmpc_on_scaled_tokens_same_loss_and_the_gradient_scales_as_one_over_the_scale(kind):
    """Scaling the tokens by 63 leaves CMPC unchanged with or without the LayerNorm, and the
    gradient w.r.t. the tokens is 1/63 of the unscaled one in BOTH cases: any loss with
    L(c x) = L(x) has grad L(c x) = grad L(x) / c (differentiate the identity), so no
    normalisation of x can keep that gradient unchanged. What reaches the parameters that make
    the tokens, t = c * W z, is unchanged by c in both cases (c * grad L(c t) = grad L(t))."""
    same, different = _pairs()
    torch.manual_seed(0)
    x = torch.randn(1, 7, 16) + 2.0
    losses, grads = [], []
    for c in (1.0, 63.0):
        t = (x * c).requires_grad_()
        loss = cmpc_loss(normalise_tokens(t, kind), same, different)
        loss.backward()
        losses.append(loss.item())
        grads.append(t.grad)
    assert losses[1] == pytest.approx(losses[0], abs=1e-6)
    torch.testing.assert_close(grads[1] * 63.0, grads[0], rtol=1e-4, atol=1e-7)
    w = torch.randn(16, 16, requires_grad=True)
    z = torch.randn(1, 7, 16)
    upstream = []
    for c in (1.0, 63.0):
        w.grad = None
        cmpc_loss(normalise_tokens(c * z @ w, kind), same, different).backward()
        upstream.append(w.grad.clone())
    torch.testing.assert_close(upstream[1], upstream[0], rtol=1e-4, atol=1e-7)


def test_layernorm_makes_cmpc_blind_to_a_common_offset_of_the_channels():
    """A CNN's features share a large common component: with every channel of every token offset
    by the same 10, the plain cosines crowd towards 1 and CMPC's gradient collapses; after the
    LayerNorm (which removes each token's mean over its channels) loss and gradient are those of
    the centred tokens."""
    same, different = _pairs()
    torch.manual_seed(0)
    x = torch.randn(1, 7, 16)
    out = {}
    for kind in ("none", "layernorm"):
        for shift in (0.0, 10.0):
            t = (x + shift).requires_grad_()
            loss = cmpc_loss(normalise_tokens(t, kind), same, different)
            loss.backward()
            out[kind, shift] = (loss.item(), t.grad.norm().item())
    assert out["layernorm", 10.0] == pytest.approx(out["layernorm", 0.0], rel=1e-4)
    assert out["none", 10.0][1] < out["none", 0.0][1] / 5
    assert out["none", 10.0][0] == pytest.approx(0.5, abs=0.01)   # every cosine near 1


def test_normalise_tokens_is_a_parameter_free_layernorm():
    x = torch.randn(3, 5, 8) * 4 + 1
    y = normalise_tokens(x, "layernorm")
    torch.testing.assert_close(y.mean(-1), torch.zeros(3, 5), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(-1, unbiased=False), torch.ones(3, 5), atol=1e-3, rtol=0)
    assert normalise_tokens(x, "none") is x
    with pytest.raises(ValueError, match="align.token_norm"):
        normalise_tokens(x, "rms")


# ------------------------------------------------------------------ BatchNorm under the crops
def _efficientnet():
    """The demo's backbone config (params.yaml train_visual) on 64-pixel frames, random init."""
    torch.manual_seed(0)
    return build_visual({"backbone": "tf_efficientnet_lite0", "pretrained": False,
                         "num_classes": 4, "img_size": 64, "token_layer": 3, "frozen_stages": 3})


def _bn_buffers(module):
    return {k: v.clone() for k, v in module.state_dict().items()
            if k.endswith(("running_mean", "running_var", "num_batches_tracked"))}


def test_the_cmcc_crops_leave_the_batchnorm_statistics_to_the_global_view():
    cfg = AlignConfig(embed_dim=8, n_crops=2, crop_size=32, cmpc=False)
    model = build_align_model(_efficientnet(), 6, cfg).train()
    trainable = [m for m in model.visual.modules()
                 if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.training]
    assert trainable  # the trainable stride-16 stage has BatchNorms that track statistics
    global_only = copy.deepcopy(model)
    before = _bn_buffers(model)
    frames, audio = _inputs(64)
    terms = alignment_terms(model, cfg, frames, audio, FRAME_VIDEO, LABELS,
                            torch.Generator().manual_seed(0))
    assert "cmcc" in terms
    with torch.no_grad():
        global_only.visual(frames)
    after, expected = _bn_buffers(model), _bn_buffers(global_only)
    assert any(not torch.equal(expected[k], before[k]) for k in before)  # the global view moves them
    assert all(torch.equal(after[k], expected[k]) for k in expected)      # the crops do not
    assert all(m.track_running_stats for m in trainable)


def test_running_stats_kept_normalises_with_the_batch_and_changes_nothing_else():
    model = _efficientnet().train()
    twin = copy.deepcopy(model)
    crops = torch.randn(6, 3, 32, 32)
    before = _bn_buffers(model)
    with running_stats_kept(model):
        kept = model(crops).class_token
    plain = twin(crops).class_token                 # train mode: batch statistics, buffers move
    torch.testing.assert_close(kept, plain)         # same normalisation, same outputs
    kept.sum().backward()
    plain.sum().backward()
    for (name, p), q in zip(model.named_parameters(), twin.parameters()):
        if p.grad is not None:
            torch.testing.assert_close(p.grad, q.grad, msg=name)
    assert all(torch.equal(v, before[k]) for k, v in _bn_buffers(model).items())
    assert any(not torch.equal(v, before[k]) for k, v in _bn_buffers(twin).items())


# ------------------------------------------------------------------ gradient shares
def test_gradient_shares_by_hand():
    p = torch.nn.Parameter(torch.zeros(2))
    terms = {"cmc": p @ torch.tensor([3.0, 4.0]), "cls": p @ torch.tensor([0.0, 2.0])}
    grads = term_gradients(terms, {"cmc": 1.0, "cls": 0.5}, [p])
    assert grads["cls"].tolist() == [0.0, 1.0]
    shares = gradient_shares(grads)
    assert shares["norm"] == pytest.approx({"cmc": 5.0, "cls": 1.0})
    assert shares["share"] == pytest.approx({"cmc": 5 / 6, "cls": 1 / 6})
    assert shares["cos_cmc"] == pytest.approx({"cls": 0.8})
    assert gradient_shares({"cls": grads["cls"]})["cos_cmc"] == {}   # CMC off
    with pytest.raises(KeyError, match="cmpc"):
        term_gradients(terms, {"cmpc": 0.2}, [p])


def test_term_weights_follow_the_switches():
    assert term_weights(CFG) == {"cls": 1.0, "cmc": 1.0, "cmpc": 0.2, "cmcc": 0.5}
    assert term_weights(AlignConfig(cmc=False, cmcc=False)) == {"cls": 1.0, "cmpc": 0.2}


def test_term_gradients_of_an_alignment_step_reach_the_backbone_by_term():
    model = _vit_model(CFG)
    twin = copy.deepcopy(model)
    frames, audio = _inputs()
    terms = alignment_terms(model, CFG, frames, audio, FRAME_VIDEO, LABELS,
                            torch.Generator().manual_seed(0))
    params = [p for p in model.visual.backbone.parameters() if p.requires_grad]
    grads = term_gradients(terms, term_weights(CFG), params)
    assert all(p.grad is None for p in params)  # nothing accumulated
    total = sum(g for g in grads.values())
    alignment_terms(twin, CFG, frames, audio, FRAME_VIDEO, LABELS,
                    torch.Generator().manual_seed(0))["loss"].backward()
    expected = torch.cat([p.grad.flatten() for p in twin.visual.backbone.parameters()
                          if p.requires_grad])
    torch.testing.assert_close(total, expected, rtol=1e-4, atol=1e-6)  # they add up to the loss's
    shares = gradient_shares(grads)["share"]
    assert set(shares) == {"cls", "cmc", "cmpc", "cmcc"}
    assert sum(shares.values()) == pytest.approx(1.0) and min(shares.values()) > 0
