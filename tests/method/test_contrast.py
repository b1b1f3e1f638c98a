"""CMPC and CMCC (docs/method.md §3, Eqs. 2-3) on hand-made tensors: labels, losses, gradients, EMA."""

import dataclasses
from pathlib import Path

import pytest
import torch
import yaml

from pcas_core.method.alignment import alignment_terms
from pcas_core.pipeline.align import build_align_model
from pcas_core.params import AlignConfig
from pcas_core.params.parsing import parse
from pcas_core.method.crops import (IGNORE, cam_patch_labels, crop_labels, pair_labels, patch_labels,
                                    sample_crop_boxes, take_crops)
from pcas_core.method.losses import cmcc_loss, cmpc_loss
from pcas_core.models.align import ema_update
from pcas_core.models.visual import build_visual
from pcas_core.runtime.fit import host_syncs

ROOT = Path(__file__).resolve().parents[2]
U = torch.tensor([1.0, 0.0, 0.0])


def test_patch_labels_thresholds_are_inclusive_and_the_band_is_ignored():
    s = torch.tensor([[0.0, 0.25, 0.26, 0.69, 0.7, 1.0]])
    assert patch_labels(s, 0.7, 0.25).tolist() == [[0, 0, IGNORE, IGNORE, 1, 1]]
    with pytest.raises(ValueError, match="theta_lo < theta_hi"):
        patch_labels(s, 0.2, 0.3)


def test_pair_labels_by_hand():
    same, diff = pair_labels(torch.tensor([[1, 0, IGNORE, 1]], dtype=torch.int8))
    expect_same = torch.zeros(4, 4)
    expect_same[0, 3] = expect_same[3, 0] = 1  # i = j and the ignored patch 2 never count
    expect_diff = torch.zeros(4, 4)
    for i, j in [(0, 1), (1, 0), (1, 3), (3, 1)]:
        expect_diff[i, j] = 1
    assert torch.equal(same[0], expect_same) and torch.equal(diff[0], expect_diff)


def test_cam_labels_by_hand_the_video_labels_decide_and_the_thresholds_are_exact():
    # one frame, 6 patches (1 x 6), 3 classes; the video has classes 0 and 1, not 2
    cam = torch.tensor([[[1.0, 0.7, 0.25, 0.5, 0.0, 0.0]],
                        [[-3.0, -3.0, -3.0, 0.6, 1.0, 0.2]],   # relu, then min-max: unchanged
                        [[0.0, 5.0, 5.0, 5.0, 4.0, 5.0]]])[None]  # highest, but not a video label
    labels = cam_patch_labels(cam, torch.tensor([[1.0, 1.0, 0.0]]), 0.7, 0.25)
    assert labels.dtype == torch.int16
    # class index = column + 1; 0.7 exactly is foreground, 0.25 exactly background, 0.6 ignored
    assert labels.tolist() == [[[1, 1, 0, IGNORE, 2, 0]]]
    # with class 2 among the labels it wins where its min-max score (0, 1, 1, 1, 0.8, 1) is highest
    assert cam_patch_labels(cam, torch.ones(1, 3), 0.7, 0.25).tolist() == [[[1, 3, 3, 3, 2, 3]]]
    # a video without labels is background everywhere; each frame uses its own labels
    two = cam_patch_labels(cam.repeat(2, 1, 1, 1), torch.tensor([[0.0, 0, 0], [1, 1, 0]]), 0.7, 0.25)
    assert two[0].tolist() == [[0] * 6] and two[1].tolist() == labels[0].tolist()
    with pytest.raises(ValueError, match="video labels"):
        cam_patch_labels(cam, torch.ones(1, 2), 0.7, 0.25)


def test_cam_label_maps_are_min_max_normalised_per_frame_and_class():
    cam = torch.tensor([[[2.0, 4.0, 10.0]], [[0.0, 0.0, 0.0]]])[None]   # class 0: 0.0, 0.25, 1.0
    labels = cam_patch_labels(cam * 7.0 + 0.0, torch.tensor([[1.0, 1.0]]), 0.7, 0.25)
    assert labels.tolist() == [[[0, 0, 1]]]                          # class 1 constant: zeros


def test_pair_labels_of_multi_class_patches():
    same, diff = pair_labels(torch.tensor([[1, 2, 0, 2, IGNORE]], dtype=torch.int16))
    expect_same = torch.zeros(5, 5)
    expect_same[1, 3] = expect_same[3, 1] = 1           # the two patches of class 2
    expect_diff = torch.zeros(5, 5)
    for i, j in [(0, 1), (0, 2), (0, 3), (1, 2), (2, 3)]:  # two classes, or class and background
        expect_diff[i, j] = expect_diff[j, i] = 1
    assert torch.equal(same[0], expect_same) and torch.equal(diff[0], expect_diff)


def test_crop_labels_count_every_foreground_class():
    labels = torch.tensor([[[2, 0], [0, 5]]], dtype=torch.int16)   # 2x2 patches of 2x2 pixels
    boxes = torch.tensor([[[0, 0], [2, 2], [0, 2]]])               # class 2, class 5, background
    assert crop_labels(labels, boxes, 2, (4, 4), rho=1.0).tolist() == [[1.0, 1.0, 0.0]]


def _cmpc(tokens, labels):
    same, diff = pair_labels(labels)
    return cmpc_loss(tokens, same, diff)


def test_cmpc_is_minimal_when_aligned_and_maximal_when_swapped():
    labels = torch.tensor([[1, 1, 0, 0]], dtype=torch.int8)
    aligned = torch.stack([U, U, -U, -U])[None]      # same label equal, different labels opposite
    swapped = torch.stack([U, -U, U, -U])[None]      # same label opposite, different labels equal
    assert _cmpc(aligned, labels).item() == pytest.approx(-0.5)
    assert _cmpc(swapped, labels).item() == pytest.approx(1.0)


def test_cmpc_ignores_ignored_patches_and_sends_them_no_gradient():
    torch.manual_seed(0)
    labels = torch.tensor([[1, IGNORE, 0, 1, IGNORE]], dtype=torch.int8)
    tokens = torch.randn(1, 5, 8, requires_grad=True)
    loss = _cmpc(tokens, labels)
    loss.backward()
    assert torch.all(tokens.grad[0, [1, 4]] == 0) and torch.all(tokens.grad[0, [0, 2, 3]] != 0)
    moved = tokens.detach().clone()
    moved[0, [1, 4]] = torch.randn(2, 8) * 100
    assert _cmpc(moved, labels).item() == pytest.approx(loss.item())
    # dropping the ignored patches altogether gives the same loss
    kept = tokens.detach()[:, [0, 2, 3]]
    assert _cmpc(kept, labels[:, [0, 2, 3]]).item() == pytest.approx(loss.item())


def test_cmcc_near_zero_when_aligned_large_when_swapped():
    g = U[None].repeat(2, 1)                               # h_g of 2 frames
    positive = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    aligned = torch.where(positive[..., None] > 0, U, -U)  # positives on h_g, negatives opposite
    loss = cmcc_loss(g, aligned, positive, temperature=0.1, eps=1e-8)
    assert 0.0 <= loss.item() < 1e-6
    swapped = cmcc_loss(g, -aligned, positive, temperature=0.1, eps=1e-8)
    assert swapped.item() > 15.0


def test_cmcc_counts_negatives_of_the_same_frame_only_and_is_zero_without_positives():
    torch.manual_seed(0)
    g, h = torch.randn(2, 4), torch.randn(2, 3, 4)
    positive = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    base = cmcc_loss(g, h, positive)
    h2 = h.clone()
    h2[1] = torch.randn(3, 4)  # frame 1 has no positive: it changes nothing
    assert cmcc_loss(g, h2, positive).item() == pytest.approx(base.item())
    assert cmcc_loss(g, h, torch.zeros(2, 3)).item() == 0.0


def test_take_crops_matches_slicing():
    images = torch.arange(2 * 3 * 6 * 5, dtype=torch.float32).reshape(2, 3, 6, 5)
    boxes = torch.tensor([[[0, 0], [2, 1]], [[3, 2], [1, 3]]])
    crops = take_crops(images, boxes, 2)
    assert crops.shape == (2, 2, 3, 2, 2)
    for f in range(2):
        for k in range(2):
            y, x = boxes[f, k].tolist()
            assert torch.equal(crops[f, k], images[f, :, y:y + 2, x:x + 2])


def test_sample_crop_boxes_stay_inside_and_follow_the_seed():
    a = sample_crop_boxes(4, 6, (10, 12), 4, torch.Generator().manual_seed(3))
    b = sample_crop_boxes(4, 6, (10, 12), 4, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.shape == (4, 6, 2)
    assert a[..., 0].max() <= 6 and a[..., 1].max() <= 8 and a.min() >= 0
    with pytest.raises(ValueError, match="crop size"):
        sample_crop_boxes(1, 1, (10, 12), 11, torch.Generator())


@pytest.mark.parametrize("sounding,positive", [(20, 1.0), (19, 0.0), (21, 1.0)])
def test_crop_label_follows_rho_exactly_at_the_boundary(sounding, positive):
    labels = torch.zeros(1, 10, 10, dtype=torch.int8)  # one label per pixel (patch size 1)
    labels.view(-1)[:sounding] = 1
    labels.view(-1)[sounding:sounding + 30] = IGNORE   # ignored patches do not count as sounding
    boxes = torch.zeros(1, 1, 2, dtype=torch.long)
    assert crop_labels(labels, boxes, 10, (10, 10), rho=0.2).item() == positive


def test_crop_labels_upsample_the_patch_grid():
    labels = torch.tensor([[[1, 0], [0, 0]]], dtype=torch.int8)  # 2x2 patches of 4x4 pixels
    boxes = torch.tensor([[[0, 0], [4, 4], [2, 2]]])             # on, off, a quarter on
    got = crop_labels(labels, boxes, 4, (8, 8), rho=0.25)
    assert got.tolist() == [[1.0, 0.0, 1.0]]
    assert crop_labels(labels, boxes, 4, (8, 8), rho=0.26).tolist() == [[1.0, 0.0, 0.0]]


def test_ema_update_math():
    target, source = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    t0, s0 = target.weight.detach().clone(), source.weight.detach().clone()
    ema_update(target, source, 0.9)
    torch.testing.assert_close(target.weight, 0.9 * t0 + 0.1 * s0)
    ema_update(target, source, 0.0)
    torch.testing.assert_close(target.weight, s0)
    with pytest.raises(ValueError, match="momentum"):
        ema_update(target, source, 1.5)


SECTION = {"embed_dim": 8, "hidden_dim": 0, "shared_patch_head": True, "w_cls": 1.0,
           "w_class_token": 1.0, "frame_pool": "max", "cmc": True, "w_cmc": 1.0,
           "temperature": 0.1, "cmpc": True, "w_cmpc": 0.2, "theta_hi": 0.7, "theta_lo": 0.25,
           "cmcc": True, "w_cmcc": 0.5, "n_crops": 3, "crop_size": 16, "rho": 0.2,
           "tau_cmcc": 0.5, "cmcc_eps": 1e-4, "ema_momentum": 0.9, "token_contrast_start": 0.0,
           "cmpc_labels": "sounding", "token_norm": "none", "grad_share_batches": 2,
           "augment": {}, "epochs": 1, "min_steps": 0,
           "batch_videos": 2, "lr_backbone": 1e-4, "lr_heads": 1e-4, "warmup_epochs": 0,
           "weight_decay": 0.0}


def _config(**overrides) -> AlignConfig:
    return parse(AlignConfig, {**SECTION, **overrides}, "align")


def test_params_yaml_align_section_is_a_valid_config():
    cfg = parse(AlignConfig, yaml.safe_load(open(ROOT / "params.yaml"))["align"], "align")
    assert set(dataclasses.asdict(cfg)) == set(SECTION)


def test_align_config_rejects_unknown_and_bad_keys():
    section = SECTION
    with pytest.raises(ValueError, match="unknown params key 'align.cmpcc'"):
        parse(AlignConfig, {**section, "cmpcc": True}, "align")
    with pytest.raises(ValueError, match="align: need theta_lo < theta_hi"):
        parse(AlignConfig, {**section, "theta_lo": 0.8}, "align")
    with pytest.raises(ValueError, match="align.cmc: expected true or false"):
        parse(AlignConfig, {**section, "cmc": "no"}, "align")
    with pytest.raises(ValueError, match="token_contrast_start in \\[0, 1\\)"):
        parse(AlignConfig, {**section, "token_contrast_start": 1.0}, "align")
    with pytest.raises(ValueError, match="align.cmpc_labels: 'toco' is not one of"):
        parse(AlignConfig, {**section, "cmpc_labels": "toco"}, "align")
    with pytest.raises(ValueError, match="align.token_norm: 'batchnorm' is not one of"):
        parse(AlignConfig, {**section, "token_norm": "batchnorm"}, "align")
    with pytest.raises(ValueError, match="grad_share_batches >= 0"):
        parse(AlignConfig, {**section, "grad_share_batches": -1}, "align")


def _tiny_model(cfg):
    torch.manual_seed(0)
    visual = build_visual({"backbone": "vit_tiny_patch16_224", "num_classes": 4, "img_size": 32,
                           "backbone_kwargs": {"patch_size": 8, "depth": 2, "embed_dim": 16,
                                               "num_heads": 2}})
    return build_align_model(visual, 6, cfg)


def _step(cfg):
    model = _tiny_model(cfg)
    frames, audio = torch.randn(4, 3, 32, 32), torch.randn(4, 6)
    labels = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]])
    terms = alignment_terms(model, cfg, frames, audio, torch.tensor([0, 0, 1, 1]), labels,
                            torch.Generator().manual_seed(0))
    terms["loss"].backward()
    return model, terms


def test_alignment_step_gradients_flow_only_where_the_formulas_say():
    model, terms = _step(_config(cmc=False, shared_patch_head=False))
    assert {"cls", "cmpc", "cmcc", "loss"} <= set(terms) and "cmc" not in terms
    # the sounding map takes sg(audio) and g_p only through thresholded labels: no gradient
    assert model.g_a.net.weight.grad is None and model.g_p.net.weight.grad is None
    # the EMA head is never trained; the crop head and the backbone are
    assert all(p.grad is None and not p.requires_grad for p in model.crop_head_ema.parameters())
    assert model.crop_head.net.weight.grad.abs().sum() > 0
    assert model.visual.backbone.blocks[-1].mlp.fc2.weight.grad.abs().sum() > 0


def test_alignment_step_switches_select_the_terms():
    _, terms = _step(_config(cmpc=False, cmcc=False))
    assert set(terms) == {"cls", "cmc", "loss"}
    _, terms = _step(_config(cmc=False, cmpc=False, cmcc=False))
    assert set(terms) == {"cls", "loss"}
    torch.testing.assert_close(terms["loss"], terms["cls"])


def test_crop_size_must_fit_the_frames():
    with pytest.raises(ValueError, match="align.crop_size 12"):
        _tiny_model(_config(crop_size=12))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="counts host-device syncs; needs CUDA")
def test_the_alignment_step_never_makes_the_host_wait_for_the_gpu():
    cfg = _config()
    model = _tiny_model(cfg).cuda().train()
    frames, audio = torch.randn(4, 3, 32, 32, device="cuda"), torch.randn(4, 6, device="cuda")
    labels = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]], device="cuda")
    frame_video = torch.tensor([0, 0, 1, 1], device="cuda")
    generator = torch.Generator().manual_seed(0)

    def step():
        alignment_terms(model, cfg, frames, audio, frame_video, labels, generator)["loss"].backward()

    step()  # warm-up
    assert host_syncs(step) == 0
