"""Tests for pcas_core.method.cam: CAMs, sounding maps, sounding-class score maps."""

import pytest
import torch

from pcas_core.method.cam import cam_from_patch_tokens, class_score_maps, minmax_normalize, sounding_map


def test_minmax_per_slice_and_constant_slice_is_zero():
    x = torch.tensor([[1.0, 3.0, 2.0], [5.0, 5.0, 5.0]])
    out = minmax_normalize(x, dims=(1,))
    assert torch.allclose(out, torch.tensor([[0.0, 1.0, 0.5], [0.0, 0.0, 0.0]]))


def test_cam_equals_hand_matmul():
    # B=1, N=4 (2x2 grid), D=2; K=2
    tokens = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, -1.0]]])
    weight = torch.tensor([[1.0, 2.0], [-1.0, 0.5]])
    cam = cam_from_patch_tokens(tokens, weight, (2, 2))
    assert cam.shape == (1, 2, 2, 2)
    # class 0: 1, 2, 3, 0 ; class 1: -1, 0.5, -0.5, -2.5
    assert torch.allclose(cam[0, 0], torch.tensor([[1.0, 2.0], [3.0, 0.0]]))
    assert torch.allclose(cam[0, 1], torch.tensor([[-1.0, 0.5], [-0.5, -2.5]]))


def test_cam_shape_errors():
    with pytest.raises(ValueError, match="B x N x D"):
        cam_from_patch_tokens(torch.zeros(4, 2), torch.zeros(3, 2), (2, 2))
    with pytest.raises(ValueError, match="K x D"):
        cam_from_patch_tokens(torch.zeros(1, 4, 2), torch.zeros(3, 5), (2, 2))
    with pytest.raises(ValueError, match="grid"):
        cam_from_patch_tokens(torch.zeros(1, 4, 2), torch.zeros(3, 2), (3, 2))


def test_sounding_map_is_normalised_cosine():
    audio = torch.tensor([[1.0, 0.0]])
    # cosines with (1,0): 1, 0, -1, 1/sqrt(2)  -> minmax: 1, 0.5, 0, (1/sqrt2 + 1)/2
    patches = torch.tensor([[[2.0, 0.0], [0.0, 3.0], [-1.0, 0.0], [1.0, 1.0]]])
    s = sounding_map(patches, audio, (2, 2))
    assert s.shape == (1, 2, 2)
    expected = torch.tensor([[1.0, 0.5], [0.0, (2 ** -0.5 + 1) / 2]])
    assert torch.allclose(s[0], expected, atol=1e-6)
    assert s.max() == 1.0 and s.min() == 0.0


def test_sounding_map_shape_errors():
    with pytest.raises(ValueError, match="B x d"):
        sounding_map(torch.zeros(2, 4, 3), torch.zeros(2, 5), (2, 2))
    with pytest.raises(ValueError, match="B x N x d"):
        sounding_map(torch.zeros(4, 3), torch.zeros(1, 3), (2, 2))


def test_class_score_maps_selects_normalises_and_weights():
    cams = torch.tensor([
        [[-1.0, 1.0], [2.0, 4.0]],   # relu -> 0,1,2,4 -> minmax 0,.25,.5,1
        [[9.0, 9.0], [9.0, 9.0]],
        [[0.0, 3.0], [0.0, 0.0]],    # -> 0,1,0,0
    ])
    sounding = torch.tensor([[1.0, 0.5], [0.5, 0.0]])
    out = class_score_maps(cams, sounding, torch.tensor([2, 0]), gamma=2.0)
    assert out.shape == (2, 2, 2)
    assert torch.allclose(out[0], torch.tensor([[0.0, 0.25], [0.0, 0.0]]))
    assert torch.allclose(out[1], torch.tensor([[0.0, 0.0625], [0.125, 0.0]]))


def test_class_score_maps_errors():
    with pytest.raises(ValueError, match="h x w"):
        class_score_maps(torch.zeros(3, 2, 2), torch.zeros(3, 3), torch.tensor([0]))
    with pytest.raises(ValueError, match="integer"):
        class_score_maps(torch.zeros(3, 2, 2), torch.zeros(2, 2), torch.tensor([0.0]))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        class_score_maps(torch.zeros(3, 2, 2), torch.zeros(2, 2), torch.tensor([3]))
