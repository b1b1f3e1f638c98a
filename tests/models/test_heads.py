"""The segmentation head and its audio options: the plain head is the module it was before the
options, FiLM starts as the plain head, concat widens the tokens, the gate removes exactly the
classes outside K_t, and a checkpoint rebuilds the head with the audio it needs."""

import pytest
import torch
from torch import nn
import torch.nn.functional as F

from pcas_core.models.heads import (AudioConcat, FiLM, HeadInputs, NoAudio, SegmentationHead,
                                    audio_gate, head_config, load_segmentation_head,
                                    needs_audio, save_segmentation_head)
from pcas_core.storage.weights import save_checkpoint

GRID, D, K, A = (3, 4), 6, 5, 7


def _old_head(hidden_dim: int) -> nn.Module:
    """The head before the audio options, as it was written (one Sequential)."""
    if hidden_dim:
        return nn.Sequential(nn.Conv2d(D, hidden_dim, 3, padding=1), nn.BatchNorm2d(hidden_dim),
                             nn.ReLU(inplace=True), nn.Conv2d(hidden_dim, K, 1))
    return nn.Conv2d(D, K, 1)


def _tokens(b=2, seed=0):
    return torch.randn(b, GRID[0] * GRID[1], D, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("hidden_dim", [0, 8])
def test_plain_head_is_the_old_module(hidden_dim):
    """Same seed -> the same parameters in the same order, and the same logits bit for bit
    (training mode too, so BatchNorm's batch statistics agree), so default metrics do not move."""
    torch.manual_seed(3)
    old = _old_head(hidden_dim)
    torch.manual_seed(3)
    new = SegmentationHead(in_dim=D, num_classes=K, grid=GRID, hidden_dim=hidden_dim)
    old_params, new_params = list(old.parameters()), list(new.parameters())
    assert len(old_params) == len(new_params)
    for a, b in zip(old_params, new_params):
        assert torch.equal(a, b)
    x = _tokens()
    grid = x.transpose(1, 2).reshape(2, D, *GRID)
    old.eval(), new.eval()
    want = F.interpolate(old(grid), size=(9, 12), mode="bilinear", align_corners=False)
    assert torch.equal(new(x, (9, 12)), want)
    assert torch.equal(new(x, (9, 12), torch.randn(2, 3)), want)  # a plain head ignores audio
    old.train(), new.train()
    want = F.interpolate(old(grid), size=(9, 12), mode="bilinear", align_corners=False)
    assert torch.equal(new(x, (9, 12)), want)
    assert all(torch.equal(a, b) for a, b in zip(old.buffers(), new.buffers()))
    assert isinstance(new.film, nn.Identity) and isinstance(new.concat, nn.Identity)


@pytest.mark.parametrize("hidden_dim", [0, 8])
def test_film_at_init_equals_the_plain_head(hidden_dim):
    torch.manual_seed(1)
    plain = SegmentationHead(in_dim=D, num_classes=K, grid=GRID, hidden_dim=hidden_dim)
    torch.manual_seed(1)
    film = SegmentationHead(in_dim=D, num_classes=K, grid=GRID, hidden_dim=hidden_dim,
                            audio_condition="film", audio_dim=A)
    assert set(film.state_dict()) - set(plain.state_dict()) == {"film.proj.weight",
                                                                "film.proj.bias"}
    x, audio = _tokens(), torch.randn(2, A) * 10
    plain.eval(), film.eval()
    assert torch.equal(film(x, (6, 8), audio), plain(x, (6, 8)))
    # and the audio matters once the generator has moved: two frames, same tokens, other audio
    with torch.no_grad():
        film.film.proj.weight.normal_()
    same = x[:1].expand(2, -1, -1)
    out = film(same, (6, 8), audio)
    assert not torch.allclose(out[0], out[1])
    with pytest.raises(ValueError, match="conditioned on audio"):
        film(x, (6, 8))


def test_film_is_a_per_channel_scale_and_shift():
    film = FiLM(audio_dim=2, width=3)
    with torch.no_grad():
        film.proj.weight.zero_()
        film.proj.bias.copy_(torch.tensor([1.0, 0.0, -0.5, 0.25, 0.0, 2.0]))  # gamma-1 | beta
    x = torch.ones(1, 3, 2, 2)
    out = film(x, torch.zeros(1, 2))
    assert torch.equal(out[0, :, 0, 0], torch.tensor([2.0 + 0.25, 1.0, 0.5 + 2.0]))


def test_concat_widens_the_tokens_by_the_audio():
    cat = AudioConcat(audio_dim=A)
    x, a = torch.randn(2, D, *GRID), torch.randn(2, A)
    out = cat(x, a)
    assert out.shape == (2, D + A, *GRID)
    assert torch.equal(out[:, :D], x)
    assert torch.equal(out[1, D:, 2, 3], a[1]) and torch.equal(out[0, D:, 0, 0], a[0])
    head = SegmentationHead(in_dim=D, num_classes=K, grid=GRID, hidden_dim=8,
                            audio_condition="concat", audio_dim=A)
    assert head.embed[0].in_channels == D + A
    assert head(_tokens(), (5, 5), a).shape == (2, K, 5, 5)
    linear = SegmentationHead(in_dim=D, num_classes=K, grid=GRID, audio_condition="concat",
                              audio_dim=A)
    assert linear.classifier.in_channels == D + A
    with pytest.raises(ValueError, match=r"\(2, 7\) audio"):
        head(_tokens(), (5, 5), torch.randn(2, A + 1))


def test_bad_audio_options_are_refused():
    with pytest.raises(ValueError, match="audio_condition must be one of"):
        SegmentationHead(in_dim=D, audio_condition="gate", audio_dim=A)
    with pytest.raises(ValueError, match="audio_dim must be > 0"):
        SegmentationHead(in_dim=D, audio_condition="film")
    with pytest.raises(ValueError, match="audio_dim must be > 0"):
        SegmentationHead(in_dim=D, audio_dim=A)
    with pytest.raises(ValueError, match="audio_input"):
        HeadInputs(audio_input="wave")


def test_gate_masks_exactly_the_classes_outside_k_t():
    logits = torch.randn(2, 4, 3, 3)
    allowed = torch.tensor([[True, False, False], [False, False, False]])
    gated = audio_gate(logits, allowed)
    assert torch.equal(gated[0, :2], logits[0, :2])  # background and class 1 (column 0) kept
    assert torch.isneginf(gated[0, 2:]).all()
    assert torch.equal(gated[1, 0], logits[1, 0]) and torch.isneginf(gated[1, 1:]).all()
    probs = gated.softmax(dim=1)
    assert (probs[0, 2:] == 0).all() and torch.allclose(probs[1, 0], torch.ones(3, 3))
    assert torch.equal(audio_gate(logits, torch.ones(2, 3, dtype=torch.bool)), logits)
    with pytest.raises(ValueError, match="allowed"):
        audio_gate(logits, allowed[:, :2])


def test_checkpoint_round_trip_with_audio_config(tmp_path):
    torch.manual_seed(0)
    head = SegmentationHead(in_dim=D, num_classes=K, grid=GRID, hidden_dim=8,
                            audio_condition="film", audio_dim=A)
    with torch.no_grad():
        head.film.proj.weight.normal_()
    inputs = HeadInputs("patch+final", "scores", True, 0.4)
    save_segmentation_head(tmp_path / "h.safetensors", head, inputs)
    loaded, got = load_segmentation_head(tmp_path / "h.safetensors")
    assert got == inputs and needs_audio(loaded, got)
    assert head_config(loaded) == {"in_dim": D, "num_classes": K, "grid": list(GRID),
                                   "hidden_dim": 8, "audio_condition": "film", "audio_dim": A,
                                   "cam_skip": False}
    x, a = _tokens(), torch.randn(2, A)
    assert torch.equal(loaded(x, (4, 4), a), head.eval()(x, (4, 4), a))
    plain = SegmentationHead(in_dim=D, num_classes=K, grid=GRID)
    assert not needs_audio(plain, HeadInputs()) and needs_audio(plain, HeadInputs(audio_gate=True))


@pytest.mark.parametrize("hidden_dim", [0, 8])
def test_a_checkpoint_from_before_the_audio_options_still_loads(tmp_path, hidden_dim):
    torch.manual_seed(2)
    old = _old_head(hidden_dim)
    holder = nn.Module()
    holder.net = old  # the old class kept its layers in `net`
    config = {"in_dim": D, "num_classes": K, "grid": list(GRID), "hidden_dim": hidden_dim,
              "features": "final"}
    save_checkpoint(tmp_path / "old.safetensors", holder, config)
    head, inputs = load_segmentation_head(tmp_path / "old.safetensors")
    assert inputs == HeadInputs("final") and head.audio_condition == "none"
    x = _tokens()
    want = F.interpolate(old.eval()(x.transpose(1, 2).reshape(2, D, *GRID)), size=(6, 6),
                         mode="bilinear", align_corners=False)
    assert torch.equal(head(x, (6, 6)), want)


def test_no_audio_is_an_identity():
    x = torch.randn(2, 3)
    assert NoAudio()(x, None) is x


def test_cam_skip_starts_as_the_classifiers_per_patch_logits(tmp_path):
    """With the classifier branch zeroed, a head whose CAM skip was set from a linear classifier
    (weight W (K-1, D), bias b) outputs W p + b for each foreground class and 0 for background on
    every patch p; the same seed draws the other weights as without the skip; the skip survives a
    checkpoint; bad shapes and a head without the skip are refused."""
    torch.manual_seed(5)
    plain = SegmentationHead(in_dim=D, num_classes=K, grid=GRID, hidden_dim=8)
    torch.manual_seed(5)
    head = SegmentationHead(in_dim=D, num_classes=K, grid=GRID, hidden_dim=8, cam_skip=True)
    for a, b in zip(plain.parameters(), head.parameters()):
        assert torch.equal(a, b)
    weight = torch.randn(K - 1, D, generator=torch.Generator().manual_seed(1))
    bias = torch.randn(K - 1, generator=torch.Generator().manual_seed(2))
    head.init_cam_skip(weight, bias)
    with torch.no_grad():
        head.classifier.weight.zero_()
        head.classifier.bias.zero_()
    tokens = _tokens()
    out = head.eval()(tokens, GRID)  # out_size = the grid: bilinear at scale 1 is the identity
    want = torch.cat([torch.zeros(2, GRID[0] * GRID[1], 1), tokens @ weight.T + bias], dim=2)
    torch.testing.assert_close(out.flatten(2).transpose(1, 2), want)
    save_segmentation_head(tmp_path / "h.safetensors", head, HeadInputs())
    back, _ = load_segmentation_head(tmp_path / "h.safetensors")
    assert head_config(back)["cam_skip"]
    torch.testing.assert_close(back(tokens, GRID), out)
    with pytest.raises(ValueError, match="expected the classifier's weight"):
        head.init_cam_skip(weight[1:], bias)
    with pytest.raises(ValueError, match="no CAM skip"):
        plain.init_cam_skip(weight, bias)
