"""Tests of pcas_core.models.tvp: TVP token layout, masking, pooling, training and ImageNet init."""

import pytest
import torch
import torch.nn.functional as F

import pcas_core  # noqa: F401  (import shim before timm)
import timm  # noqa: E402

from pcas_core.models.ast_init import load_imagenet_vit_patch_embed  # noqa: E402
from pcas_core.models.tvp import TVPAudioEncoder, TVPOutput, assign_patch_steps  # noqa: E402

TINY = dict(
    num_classes=4, n_mels=32, target_length=300, patch_size=16, fstride=16, tstride=16,
    embed_dim=32, depth=1, num_heads=2, prompt_dim=8, max_steps=3, frames_per_step=100,
)


def _model(**overrides) -> TVPAudioEncoder:
    torch.manual_seed(0)
    return TVPAudioEncoder(**{**TINY, **overrides}).eval()


def _inputs(batch: int = 2, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    fbank = torch.randn(batch, 300, 32, generator=g)
    prompts = torch.randn(batch, 3, 8, generator=g)
    return fbank, prompts, torch.full((batch,), 3, dtype=torch.long)


def test_output_shapes():
    out = _model()(*_inputs())
    assert isinstance(out, TVPOutput)
    assert out.step_tokens.shape == (2, 3, 32)
    assert out.step_logits.shape == (2, 3, 4)
    assert out.video_logits.shape == (2, 4)
    assert out.step_valid.dtype == torch.bool and out.step_valid.all()


def test_patch_steps_cover_every_patch_once_and_match_centre_second():
    model = _model()
    f_dim, t_dim = model.patch_embed.grid_size
    assert (f_dim, t_dim) == (2, 18)
    cols = assign_patch_steps(t_dim, patch_size=16, tstride=16, frames_per_step=100, max_steps=3)
    for j, step in enumerate(cols.tolist()):
        centre = j * 16 + 8
        assert step * 100 <= centre < (step + 1) * 100
    # every patch appears exactly once in the token sequence, after its own step's prompt
    n_patches, n_seq = f_dim * t_dim, 1 + 3 + f_dim * t_dim
    assert model.seq_index.shape == (n_seq,)
    assert sorted(model.seq_index.tolist()) == list(range(n_seq))
    assert sorted(model.patch_seq_pos.tolist()) == sorted(set(model.patch_seq_pos.tolist()))
    assert len(model.patch_seq_pos) == n_patches
    steps_in_order = model.token_step.tolist()
    assert steps_in_order[0] == -1 and steps_in_order == sorted(steps_in_order)
    prompt_positions = [1 + 0, 1 + 1 + int((cols == 0).sum()) * f_dim]
    assert model.seq_index[prompt_positions].tolist() == [1, 2]
    assert torch.equal(model.token_step[model.patch_seq_pos], model.patch_step)


def test_clamp_last_step_and_steps_without_patches():
    cols = assign_patch_steps(101, patch_size=16, tstride=10, frames_per_step=100, max_steps=10)
    assert cols[-1] == 9 and cols[0] == 0
    assert int((cols == 9).sum()) == 11  # centres 908..1008, the last one clamped
    with pytest.raises(ValueError, match="own no audio patch"):
        TVPAudioEncoder(**{**TINY, "max_steps": 5})


def test_prompt_changes_output_only_when_prompts_are_used():
    fbank, prompts, n_steps = _inputs()
    changed = prompts.clone()
    changed[:, 0] += 3.0
    model = _model()
    with torch.no_grad():
        a, b = model(fbank, prompts, n_steps), model(fbank, changed, n_steps)
    assert not torch.allclose(a.step_tokens, b.step_tokens, atol=1e-4)

    plain = _model(use_prompts=False)
    with torch.no_grad():
        none = plain(fbank, None, n_steps)
        given = plain(fbank, changed, n_steps)
    assert none.step_tokens.shape == (2, 3, 32)
    assert torch.equal(none.step_tokens, given.step_tokens)
    assert plain.seq_index.shape == (1 + 2 * 18,)


def test_invalid_steps_cannot_influence_valid_steps():
    model = _model()
    fbank, prompts, _ = _inputs()
    n_steps = torch.tensor([2, 3])
    garbage_fbank, garbage_prompts = fbank.clone(), prompts.clone()
    # frames 200..299 are read only by step-2 patches (patch 12 spans 192..207, centre 200)
    garbage_fbank[:, 200:] = 50 * torch.randn(2, 100, 32)
    garbage_prompts[:, 2] = 50 * torch.randn(2, 8)
    with torch.no_grad():
        a = model(fbank, prompts, n_steps)
        b = model(garbage_fbank, garbage_prompts, n_steps)
    torch.testing.assert_close(a.step_tokens[0, :2], b.step_tokens[0, :2], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(a.step_tokens[1, :2], b.step_tokens[1, :2], atol=1e-3)  # item 1: all valid
    assert a.step_valid.tolist() == [[True, True, False], [True, True, True]]


@pytest.mark.parametrize("pool", ["max", "mean"])
def test_video_logits_pool_valid_steps(pool):
    model = _model(step_pool=pool)
    fbank, prompts, _ = _inputs()
    n_steps = torch.tensor([1, 3])
    with torch.no_grad():
        out = model(fbank, prompts, n_steps)
    if pool == "max":
        torch.testing.assert_close(out.video_logits[0], out.step_logits[0, 0])
        torch.testing.assert_close(out.video_logits[1], out.step_logits[1].amax(0))
    else:
        torch.testing.assert_close(out.video_logits[1], out.step_logits[1].mean(0))


def test_fewer_prompt_steps_than_max_steps():
    model = _model()
    fbank, prompts, _ = _inputs()
    out = model(fbank, prompts[:, :2], torch.tensor([2, 1]))
    assert out.step_tokens.shape == (2, 2, 32) and out.step_logits.shape == (2, 2, 4)


def test_shape_errors_name_layout():
    model = _model()
    fbank, prompts, n_steps = _inputs()
    with pytest.raises(ValueError, match="prompts"):
        model(fbank, None, n_steps)
    with pytest.raises(ValueError, match=r"\(B, L=300, n_mels=32\)"):
        model(fbank[:, :200], prompts, n_steps)
    with pytest.raises(ValueError, match="prompt_dim=8"):
        model(fbank, prompts[..., :4], n_steps)
    with pytest.raises(ValueError, match="n_steps"):
        model(fbank, prompts, torch.tensor([0, 3]))


def test_training_reduces_bce_on_loud_second_toy_task():
    torch.manual_seed(0)
    model = TVPAudioEncoder(**{**TINY, "num_classes": 2}).train()
    fbank = 0.1 * torch.randn(16, 300, 32)
    labels = torch.zeros(16, 2)
    for i in range(16):
        second = i % 2  # class = which second holds the loud tone
        fbank[i, second * 100 + 10: second * 100 + 90, 10:14] += 3.0
        labels[i, second] = 1.0
    prompts = torch.randn(16, 3, 8)
    n_steps = torch.full((16,), 3)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = F.binary_cross_entropy_with_logits(model(fbank, prompts, n_steps).video_logits, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_imagenet_init_sums_rgb_kernel_and_interpolates_pos_embed():
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False)
    state = vit.state_dict()
    torch.manual_seed(0)
    enc = TVPAudioEncoder(**{**TINY, "embed_dim": 192, "num_heads": 3, "depth": 12})
    load_imagenet_vit_patch_embed(enc, state)
    rgb = state["patch_embed.proj.weight"]
    torch.testing.assert_close(enc.patch_embed.proj.weight, rgb.sum(1, keepdim=True))
    assert enc.pos_embed.shape == (1, 2 * 18, 192)
    grid = state["pos_embed"][:, 1:].reshape(1, 14, 14, 192).permute(0, 3, 1, 2)
    expected = F.interpolate(grid, size=(2, 18), mode="bilinear", align_corners=False)
    torch.testing.assert_close(enc.pos_embed, expected.flatten(2).transpose(1, 2))
    torch.testing.assert_close(enc.blocks[3].attn.qkv.weight, state["blocks.3.attn.qkv.weight"])
    torch.testing.assert_close(enc.norm.weight, state["norm.weight"])

    shallow = TVPAudioEncoder(**{**TINY, "embed_dim": 192, "num_heads": 3, "depth": 1})
    with pytest.warns(UserWarning, match="not copied"):
        load_imagenet_vit_patch_embed(shallow, state)
    with pytest.raises(ValueError, match="patch embedding"):
        load_imagenet_vit_patch_embed(_model(), state)


@pytest.mark.parametrize("position, time_aware", [("step_mean", True), ("learned", True),
                                                  ("none", False)])
def test_swapping_two_prompts_changes_a1_only_when_prompts_know_their_step(position, time_aware):
    model = _model(prompt_position=position)
    # at init (std 0.02) attention is almost uniform and prompts and steps differ little: give
    # positions, prompts and attention the spread of a trained model
    for weight in (model.pos_embed, model.prompt_embed.proj.weight, model.blocks[0].attn.qkv.weight):
        torch.nn.init.normal_(weight, std=0.5)
    if position == "learned":
        torch.nn.init.normal_(model.prompt_embed.step_embed, std=1.0)
    fbank, prompts, n_steps = _inputs()
    swapped = prompts[:, [1, 0, 2]]
    with torch.no_grad():
        a, b = model(fbank, prompts, n_steps), model(fbank, swapped, n_steps)
    change = (a.step_tokens[:, 0] - b.step_tokens[:, 0]).norm() / a.step_tokens[:, 0].norm()
    if time_aware:
        assert change > 1e-3, change
    else:
        assert change < 1e-5, change  # attention cannot tell which prompt sits where


def test_step_mean_position_is_the_mean_position_embedding_of_the_steps_patches():
    model = _model(prompt_position="step_mean")
    fbank, prompts, n_steps = _inputs()
    step_pos = torch.einsum("sn,bnd->bsd", model.step_assign, model.pos_embed)
    for t in range(3):
        torch.testing.assert_close(step_pos[0, t], model.pos_embed[0, model.patch_step == t].mean(0))
    with torch.no_grad():
        tokens = model.prompt_embed(prompts, step_pos)
        bag = model.prompt_embed.proj(prompts) + model.prompt_embed.type_embed
    torch.testing.assert_close(tokens - bag, step_pos.expand(2, -1, -1))
    with pytest.raises(ValueError, match="prompt_position"):
        _model(prompt_position="sinusoid")


def test_audio_init_from_a_local_vit_file(tmp_path):
    from safetensors.torch import save_file

    from pcas_core.models.ast_init import init_audio_encoder

    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, depth=1, embed_dim=32,
                            num_heads=2)
    path = tmp_path / "vit.safetensors"
    save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, str(path))
    enc = _model()
    before = enc.blocks[0].mlp.fc1.weight.clone()
    init_audio_encoder(enc, "none")
    torch.testing.assert_close(enc.blocks[0].mlp.fc1.weight, before)
    init_audio_encoder(enc, str(path))
    torch.testing.assert_close(enc.blocks[0].mlp.fc1.weight, vit.blocks[0].mlp.fc1.weight)
    torch.testing.assert_close(enc.patch_embed.proj.weight,
                               vit.patch_embed.proj.weight.sum(1, keepdim=True))
    wide = timm.create_model("vit_tiny_patch16_224", pretrained=False, depth=1)
    save_file({k: v.contiguous() for k, v in wide.state_dict().items()}, str(tmp_path / "w.safetensors"))
    with pytest.raises(ValueError, match="train_audio.init .*w.safetensors"):
        init_audio_encoder(enc, str(tmp_path / "w.safetensors"))
    with pytest.raises(FileNotFoundError):
        init_audio_encoder(enc, str(tmp_path / "missing.safetensors"))
