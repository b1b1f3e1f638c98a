"""Tests of pcas_core.models.tvp: TVP token layout, masking, pooling, training and ImageNet init."""

import numpy as np
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


# --- time steps by centre time; the aisfx patch embedding (pcas_core.models.aisfx) ----------

from pcas_core.models.tvp_tokens import assign_token_steps, token_centre_seconds  # noqa: E402

AISFX = dict(num_classes=4, n_mels=96, target_length=221, embed_dim=32, depth=1, num_heads=2,
             prompt_dim=8, max_steps=5, frames_per_step=44100 / 1024, frame_offset=-0.5,
             front_end="aisfx", encoder="aisfx")


def _aisfx_model(**overrides) -> TVPAudioEncoder:
    torch.manual_seed(0)
    return TVPAudioEncoder(**{**AISFX, **overrides}).eval()


def _aisfx_inputs(batch: int = 2, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(batch, 221, 96, generator=g), torch.randn(batch, 5, 8, generator=g),
            torch.full((batch,), 5, dtype=torch.long))


def test_step_by_centre_time_is_the_old_frame_count_rule_on_ast_columns():
    """For 10 ms frames the time rule gives exactly floor(centre frame / 100), the rule before
    steps were counted in seconds (bit for bit, every column of many grids)."""
    for patch, stride in [(16, 16), (16, 10), (15, 7), (16, 1), (9, 25)]:
        for frames_per_step in (100, 50, 25):
            centre = torch.arange(2000, dtype=torch.float64) * stride + patch / 2
            old = torch.div(centre, frames_per_step, rounding_mode="floor").long().clamp_(max=19)
            new = assign_patch_steps(2000, patch_size=patch, tstride=stride,
                                     frames_per_step=frames_per_step, max_steps=20)
            assert torch.equal(old, new), (patch, stride, frames_per_step)


def test_ast_encoder_is_unchanged_at_a_fixed_seed():
    """Numbers of the TINY encoder recorded with the code before the aisfx encoder (cb4fd78):
    same initial parameters and outputs (``encoder: ast`` is the default).

    Tolerances: what this guards against (a parameter added, dropped, re-initialised or drawn in
    another order; a changed wiring) moves the sum of the 22,628 parameters by about one weight
    (~0.02) or more, and the logits by 1e-2 or more. Recomputing the same model moves the last
    bits only: 3.7e-8 on the sum with other releases of the libraries (before requirements.lock),
    2e-12 under ATEN_CPU_CAPABILITY=default, 0 with 1 or 2 threads, and float32 logits near 4.6
    are 4.8e-7 apart (one ulp). So 1e-6 on the sum and 1e-4 on the logits (1e-3 on their sum of
    24) hold on any machine and still catch every such change."""
    model = _model()
    fbank, prompts, _ = _inputs()
    with torch.no_grad():
        out = model(fbank, prompts, torch.tensor([3, 2]))
    params = float(sum(p.detach().double().sum() for p in model.parameters()))
    assert abs(params - 78.41515121574467) < 1e-6
    torch.testing.assert_close(out.step_logits.flatten()[:4],
                               torch.tensor([-4.588098049163818, -4.61374044418335,
                                             -4.5799970626831055, -4.589944839477539]),
                               rtol=0, atol=1e-4)
    assert abs(float(out.step_logits.double().sum()) - -110.49244546890259) < 1e-3
    assert model.encoder == "ast" and model.front_end == "ast"


def test_aisfx_tokens_belong_to_the_second_that_holds_their_centre_time():
    model = _aisfx_model()
    assert model.patch_embed.grid_size == (1, 27)  # 221 frames -> 27 cells of 8 frames
    centre_s = ((torch.arange(27) * 8 + 4 - 0.5) * 1024 / 44100).tolist()  # frame i centred at i * hop
    for j, step in enumerate(model.patch_step.tolist()):
        assert step <= centre_s[j] < step + 1, (j, centre_s[j], step)
    assert torch.bincount(model.patch_step).tolist() == [5, 6, 5, 6, 5]
    steps = assign_token_steps(token_centre_seconds(torch.tensor([-1.0, 99.0, 100.0]),
                                                    frames_per_second=100.0), max_steps=3)
    assert steps.tolist() == [0, 0, 1]

    cells = _aisfx_model(aisfx_tokens="cells")
    assert cells.patch_embed.grid_size == (12, 27) and cells.pos_embed.shape == (1, 324, 32)
    assert torch.equal(cells.patch_step, model.patch_step.repeat(12))
    out = cells(*_aisfx_inputs())
    assert out.step_tokens.shape == (2, 5, 32) and torch.isfinite(out.step_logits).all()


def test_aisfx_prompts_sit_before_each_steps_tokens_and_invalid_steps_stay_out():
    model = _aisfx_model()
    steps = model.token_step.tolist()
    assert steps[0] == -1 and steps == sorted(steps)
    starts = [steps.index(t) for t in range(5)]  # first token of each step is its prompt
    assert model.seq_index[starts].tolist() == [1, 2, 3, 4, 5]
    logmel, prompts, _ = _aisfx_inputs()
    garbage = prompts.clone()
    garbage[:, 3:] = 50 * torch.randn(2, 2, 8)
    n_steps = torch.tensor([3, 5])
    with torch.no_grad():
        a, b = model(logmel, prompts, n_steps), model(logmel, garbage, n_steps)
    torch.testing.assert_close(a.step_tokens[0, :3], b.step_tokens[0, :3], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(a.step_tokens[1, :3], b.step_tokens[1, :3], atol=1e-3)


@pytest.mark.parametrize("position, time_aware", [("step_mean", True), ("learned", True),
                                                  ("none", False)])
def test_aisfx_swapping_two_prompts_changes_a1_only_when_prompts_know_their_step(position, time_aware):
    model = _aisfx_model(prompt_position=position)
    for weight in (model.pos_embed, model.prompt_embed.proj.weight, model.blocks[0].attn.qkv.weight):
        torch.nn.init.normal_(weight, std=0.5)
    if position == "learned":
        torch.nn.init.normal_(model.prompt_embed.step_embed, std=1.0)
    logmel, prompts, n_steps = _aisfx_inputs()
    swapped = prompts[:, [1, 0, 2, 3, 4]]
    with torch.no_grad():
        a, b = model(logmel, prompts, n_steps), model(logmel, swapped, n_steps)
    change = (a.step_tokens[:, 0] - b.step_tokens[:, 0]).norm() / a.step_tokens[:, 0].norm()
    assert (change > 1e-3) if time_aware else (change < 1e-5), change


def test_aisfx_frozen_blocks_do_not_train_and_the_saved_config_rebuilds_the_encoder(tmp_path):
    from pcas_core.storage.weights import save_checkpoint
    from pcas_core.models.tvp import load_audio_encoder
    from pcas_core.pipeline.train_audio import tvp_model_config
    from pcas_core.params import TrainAudioConfig
    from pcas_core.params.training import AisfxEncoderConfig, TVPModelConfig

    cfg = TrainAudioConfig(encoder="aisfx", model=TVPModelConfig(max_steps=5),
                           aisfx=AisfxEncoderConfig(frozen_blocks=3))
    config = tvp_model_config(cfg, num_classes=4, target_length=221, n_mels=96, prompt_dim=8,
                              frames_per_second=44100 / 1024, frame_offset=-0.5, front_end="aisfx")
    with pytest.raises(ValueError, match="needs an fbank store made with fbank.front_end 'aisfx'"):
        tvp_model_config(cfg, num_classes=4, target_length=221, n_mels=96, prompt_dim=8)
    torch.manual_seed(0)
    model = TVPAudioEncoder(**config).train()
    cnn = model.patch_embed.cnn
    frozen = {k: v.clone() for k, v in cnn.state_dict().items() if not k.startswith("conv_block4.")}
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    logmel, prompts, n_steps = _aisfx_inputs(4)
    for _ in range(2):
        loss = model(logmel, prompts, n_steps).video_logits.sigmoid().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert all(torch.equal(cnn.state_dict()[k], v) for k, v in frozen.items())
    assert not torch.equal(cnn.conv_block4.bn1.running_mean, torch.zeros(512))
    model.eval()
    save_checkpoint(tmp_path / "audio.safetensors", model, config)
    rebuilt, saved = load_audio_encoder(tmp_path / "audio.safetensors")
    assert saved["encoder"] == "aisfx" and saved["front_end"] == "aisfx"
    assert rebuilt.patch_embed.cnn.frozen_blocks == 3
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(logmel, prompts, n_steps).step_logits,
                                   model(logmel, prompts, n_steps).step_logits, rtol=0, atol=0)


def test_aisfx_encoder_starts_from_the_checkpoint_and_refuses_an_ast_init(tmp_path, monkeypatch):
    from pcas_core.models import ast_init

    calls = []
    monkeypatch.setattr(ast_init, "load_aisfx_weights", lambda cnn: calls.append(cnn) or tmp_path)
    model = _aisfx_model()
    ast_init.init_audio_encoder(model, "none")
    assert calls == [model.patch_embed.cnn]
    with pytest.raises(ValueError, match="set init: none"):
        ast_init.init_audio_encoder(model, str(tmp_path / "vit.safetensors"))


def _time_share(model: TVPAudioEncoder, fbank, prompts, n_steps) -> float:
    """How much of what the prompts do to a_1 depends on which prompt sits at step 1: the change
    of a_1 when p_1 and p_2 swap, over its change when every prompt is zeroed (1: a_1 hears only
    its own frame's v_t; 0: the prompts are an unordered bag to it)."""
    swapped = prompts[:, [1, 0, *range(2, prompts.shape[1])]]
    with torch.no_grad():
        a, b = model(fbank, prompts, n_steps), model(fbank, swapped, n_steps)
        z = model(fbank, torch.zeros_like(prompts), n_steps)
    return float((a.step_tokens[:, 0] - b.step_tokens[:, 0]).norm()
                 / (a.step_tokens[:, 0] - z.step_tokens[:, 0]).norm())


def test_the_default_prompts_carry_their_time_step_at_init():
    """With the shipped train_audio params (prompt_norm layernorm, prompt_mask step), a freshly
    initialised encoder's a_1 depends on which prompt is p_1 about as much as on the prompts at
    all; with both off, swapping p_1 and p_2 moves a_1 by a tiny fraction (the time identity is
    a 0.02-std position mean beside W_p v_t)."""
    from pcas_core.pipeline.train_audio import tvp_model_config
    from pcas_core.params import TrainAudioConfig

    config = tvp_model_config(TrainAudioConfig(encoder="ast"), num_classes=4, target_length=300, n_mels=32,
                              prompt_dim=8)
    assert (config["prompt_norm"], config["prompt_mask"]) == ("layernorm", "step")
    config.update(max_steps=3, embed_dim=32, depth=1, num_heads=2)
    fbank, prompts, n_steps = _inputs()
    prompts = 60 * prompts  # a backbone's feature scale (demo EfficientNet: norm ~60)
    torch.manual_seed(0)
    default = TVPAudioEncoder(**config).eval()
    torch.manual_seed(0)
    bag = TVPAudioEncoder(**{**config, "prompt_norm": "none", "prompt_mask": "none"}).eval()
    assert _time_share(default, fbank, prompts, n_steps) > 0.5
    assert _time_share(bag, fbank, prompts, n_steps) < 0.05


def test_step_mask_lets_an_audio_token_read_its_own_prompt_only():
    """prompt_mask step, one block: a_1 does not depend on p_2 or p_3 at all (not even with no
    time identity, prompt_position none), but does on p_1; with two blocks p_2 reaches a_1 only
    indirectly, through the tokens that did read it."""
    fbank, prompts, n_steps = _inputs()
    other = prompts.clone()
    other[:, 1:] = torch.randn(2, 2, 8)
    own = prompts.clone()
    own[:, 0] = torch.randn(2, 8)
    one = _model(prompt_mask="step", prompt_position="none")
    with torch.no_grad():
        base, moved, mine = (one(fbank, p, n_steps).step_tokens[:, 0] for p in (prompts, other, own))
    torch.testing.assert_close(base, moved, rtol=0, atol=1e-6)
    assert (base - mine).norm() > 1e-4
    two = _model(prompt_mask="step", prompt_position="none", depth=2)
    with torch.no_grad():
        assert (two(fbank, prompts, n_steps).step_tokens[:, 0]
                - two(fbank, other, n_steps).step_tokens[:, 0]).norm() > 0
    with pytest.raises(ValueError, match="prompt_mask"):
        _model(prompt_mask="diagonal")


def test_layernormed_prompts_ignore_the_scale_of_v_t():
    model = _model(prompt_norm="layernorm")
    fbank, prompts, n_steps = _inputs()
    with torch.no_grad():
        a, b = model(fbank, prompts, n_steps), model(fbank, 63 * prompts, n_steps)
    torch.testing.assert_close(a.step_tokens, b.step_tokens, rtol=1e-4, atol=1e-5)
    plain = _model()
    with torch.no_grad():
        assert not torch.allclose(plain(fbank, prompts, n_steps).step_tokens,
                                  plain(fbank, 63 * prompts, n_steps).step_tokens, atol=1e-4)


def test_a_frozen_aisfx_trunk_computed_once_gives_the_same_encoder_outputs(tmp_path):
    """The cells go to a scratch store and are read back a row at a time: the same encoder
    outputs as from the features, nothing of the kind for a trunk that trains."""
    import pandas as pd

    from pcas_core.pipeline.train_audio import AudioInputs, with_trunk_cells
    from pcas_core.runtime.stage import RunEnv

    model = _aisfx_model(aisfx_frozen_blocks=4)
    logmel, prompts, n_steps = _aisfx_inputs()
    inputs = AudioInputs(logmel, prompts, 8, n_steps, torch.zeros(2, 4))
    keys = pd.DataFrame({"uid": ["a", "b"], "split": ["train", "test"]})
    scratch = tmp_path / "ckpt" / "trunk_cells.h5"
    with with_trunk_cells(model, inputs, keys, scratch=scratch, batch_videos=1,
                          env=RunEnv()) as cached:
        assert cached.trunk and cached.fbank.shape == (2, 27, 512) and scratch.is_file()
        cells = torch.stack([cached.fbank[i] for i in range(2)])
        with torch.no_grad():
            direct = model(logmel, prompts, n_steps)
            via = model(cells, prompts, n_steps, trunk=True)
            torch.testing.assert_close(cells, model.trunk_cells(logmel))
        assert cached.videos(np.array([1])).fbank.shape == (1, 27, 512)  # rows stay on disk
    torch.testing.assert_close(via.step_logits, direct.step_logits, rtol=1e-5, atol=1e-5)
    with with_trunk_cells(_aisfx_model(aisfx_frozen_blocks=3), inputs, keys,
                          scratch=tmp_path / "other.h5", batch_videos=1, env=RunEnv()) as same:
        assert same is inputs and not (tmp_path / "other.h5").exists()  # a trainable block
    with pytest.raises(ValueError, match="frozen trunk"):
        _model()(logmel, prompts, n_steps, trunk=True)
