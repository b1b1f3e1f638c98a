"""Tests of the aisfx patch embedding's checkpoint loader (pcas_core.models.aisfx) and front end
(pcas_core.audio.aisfx_mel, pcas_core.audio.front_end), on files and signals the tests make; the
installed package's checkpoint is loaded when aisfx is installed."""

import hashlib
import importlib.util
import math
import sys
from collections import OrderedDict
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import pcas_core  # noqa: F401  (import shim before torchaudio)
from pcas_core.audio.aisfx_mel import (AISFX_FRONT_END, aisfx_frames, aisfx_logmel,  # noqa: E402
                                       aisfx_mel_filters)
from pcas_core.audio.fbank import ast_fbank  # noqa: E402
from pcas_core.audio.front_end import (front_end_features, front_end_shape,  # noqa: E402
                                       front_end_timing, store_timing)
from pcas_core.models.aisfx import (AISFX_SHA256, AisfxCNN, aisfx_checkpoint_path,  # noqa: E402
                                    load_aisfx_weights, read_aisfx_checkpoint)
from pcas_core.params import FbankConfig  # noqa: E402

SR = AISFX_FRONT_END.sample_rate
INSTALLED = importlib.util.find_spec("aisfx") is not None


class NotAWeight:
    """A global no weights-only allowlist should let through."""

    def __init__(self) -> None:
        self.payload = 1


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _aisfx_like_file(tmp_path: Path, model: AisfxCNN, *, extra=None, drop=None,
                     ds_value=None, name="ckpt.pth") -> Path:
    """A checkpoint in aisfx's format: (state_dict with embedding_net.* and fc.* tensors,
    {dataset: (numpy int64 index, classes)})."""
    state = OrderedDict((f"embedding_net.{k}", v.clone()) for k, v in model.state_dict().items())
    state["fc.0.0.weight"] = torch.randn(256, 512)
    state["fc.0.0.bias"] = torch.zeros(256)
    for key in drop or []:
        del state[key]
    state.update(extra or {})
    ds = {"prosfx": (np.int64(0), 78), "ucsMixed": (np.int64(1), 69)}
    if ds_value is not None:
        ds["other"] = ds_value
    path = tmp_path / name
    torch.save((state, ds), path)
    return path


def _cnn(seed: int, **kwargs) -> AisfxCNN:
    torch.manual_seed(seed)
    model = AisfxCNN(**kwargs)
    for m in model.modules():  # non-trivial BatchNorm statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
            m.num_batches_tracked.fill_(7)
    return model


def test_a_checkpoint_in_aisfx_format_loads_strictly(tmp_path):
    source, target = _cnn(0), _cnn(1)
    path = _aisfx_like_file(tmp_path, source)
    assert load_aisfx_weights(target, path, sha256=_sha(path)) == path
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key


def test_another_global_is_refused_by_the_allowlist(tmp_path):
    """Only numpy's int64 scalar is let through: a custom class, and even a float64 scalar (whose
    dtype class the checkpoint does not need), are refused, naming the file and the global."""
    model = _cnn(0)
    for value, name, global_name in [(NotAWeight(), "custom.pth", "NotAWeight"),
                                      (np.float64(0.5), "float64.pth", "Float64DType")]:
        path = _aisfx_like_file(tmp_path, model, ds_value=value, name=name)
        with pytest.raises(ValueError, match="refused by the weights-only reader") as err:
            read_aisfx_checkpoint(path, sha256=_sha(path))
        assert str(path) in str(err.value) and global_name in str(err.value), str(err.value)


def test_a_wrong_hash_is_refused_before_reading(tmp_path):
    path = _aisfx_like_file(tmp_path, _cnn(0))
    with pytest.raises(ValueError, match=f"sha256 {_sha(path)} is not the expected {AISFX_SHA256}"):
        read_aisfx_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="not found"):
        read_aisfx_checkpoint(tmp_path / "missing.pth")


@pytest.mark.parametrize("edit, message", [
    (dict(drop=["embedding_net.conv_block4.bn2.running_var"]),
     r"missing \['embedding_net.conv_block4.bn2.running_var'\]"),
    (dict(extra={"embedding_net.conv_block5.conv1.weight": torch.zeros(1)}),
     r"unexpected \['embedding_net.conv_block5.conv1.weight'\]"),
    (dict(extra={"head.weight": torch.zeros(1)}), r"unexpected \['head.weight'\]"),
    (dict(extra={"embedding_net.conv_block1.conv1.weight": torch.zeros(64, 1, 5, 5)}),
     r"conv_block1.conv1.weight is \(64, 1, 5, 5\)"),
])
def test_missing_unexpected_and_misshapen_keys_are_named(tmp_path, edit, message):
    path = _aisfx_like_file(tmp_path, _cnn(0), **edit)
    with pytest.raises(ValueError, match=message) as err:
        load_aisfx_weights(_cnn(1), path, sha256=_sha(path))
    assert str(path) in str(err.value)


def test_not_installed_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "aisfx" else real(name, *a))
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps aisfx==0\.1\.2"):
        aisfx_checkpoint_path()
    with pytest.raises(FileNotFoundError, match="not installed"):
        load_aisfx_weights(AisfxCNN())


@pytest.mark.skipif(not INSTALLED, reason="the aisfx package is not installed")
def test_the_installed_checkpoint_loads_strictly_and_gives_finite_features():
    path = aisfx_checkpoint_path()
    assert _sha(path) == AISFX_SHA256
    model = AisfxCNN(frozen_blocks=4)
    load_aisfx_weights(model)
    assert "aisfx" not in sys.modules, "the package itself (and librosa) must not be imported"
    state = read_aisfx_checkpoint(path)
    assert len(state) == 102 and sum(k.startswith("fc.") for k in state) == 54
    torch.testing.assert_close(model.conv_block3.bn2.running_var,
                               state["embedding_net.conv_block3.bn2.running_var"], rtol=0, atol=0)
    t = torch.arange(5 * 16000) / 16000
    wave = 0.5 * torch.sin(2 * math.pi * 440 * t) + 0.05 * torch.randn(len(t), generator=torch.Generator().manual_seed(0))
    logmel = aisfx_logmel(wave, sample_rate=16000, target_length=221)
    with torch.no_grad():
        out = model.eval()(torch.stack([logmel, torch.zeros_like(logmel)]))
    assert out.shape == (2, 512, 27, 12) and out.dtype == torch.float32
    assert torch.isfinite(out).all() and (out >= 0).all()  # after ReLU
    assert out[0].mean() != out[1].mean()


def test_frozen_blocks_keep_weights_and_batchnorm_statistics():
    model = _cnn(0, frozen_blocks=2).train()
    assert [b.training for b in model.blocks()] == [False, False, True, True]
    assert not any(p.requires_grad for b in model.blocks()[:2] for p in b.parameters())
    assert all(p.requires_grad for b in model.blocks()[2:] for p in b.parameters())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model(torch.randn(2, 64, 32)).mean().backward()
    after = model.state_dict()
    for key in before:  # no optimiser step: only the trainable blocks' BatchNorm statistics move
        statistic = key.rsplit(".", 1)[1] in ("running_mean", "running_var", "num_batches_tracked")
        trainable = key.startswith(("conv_block3.", "conv_block4."))
        assert torch.equal(before[key], after[key]) != (statistic and trainable), key
    assert model.conv_block1.conv1.weight.grad is None and model.conv_block3.conv1.weight.grad is not None
    with pytest.raises(ValueError, match=r"frozen_blocks must be in \[0, 4\]"):
        AisfxCNN(frozen_blocks=5)


def _htk_filters(n_bins: int) -> np.ndarray:
    """HTK-mel triangles over 0-22050 Hz, unit sum each, written out from their definition."""
    mel = lambda f: 2595.0 * math.log10(1.0 + f / 700.0)  # noqa: E731
    hz = lambda m: 700.0 * (10 ** (m / 2595.0) - 1.0)  # noqa: E731
    top = mel(22050.0)
    edges = [hz(top * i / 97) for i in range(98)]
    freqs = np.arange(n_bins) * SR / 2048
    fb = np.zeros((n_bins, 96))
    for m in range(96):
        lo, mid, hi = edges[m], edges[m + 1], edges[m + 2]
        fb[:, m] = np.maximum(0, np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)))
        fb[:, m] /= fb[:, m].sum()
    return fb


def test_the_mel_weights_are_the_htk_triangles_with_unit_sum():
    """Both in float64 from the same definition: equal to rounding (1e-12), 96 non-empty bands."""
    fb = aisfx_mel_filters()
    assert fb.shape == (1025, 96) and fb.dtype == torch.float64
    np.testing.assert_allclose(fb.numpy(), _htk_filters(1025), rtol=0, atol=1e-12)
    np.testing.assert_allclose(fb.sum(dim=0).numpy(), 1.0, rtol=0, atol=1e-12)


def test_a_pure_tone_lands_in_its_band_with_the_value_of_log10_1e4x_plus_1():
    """A sine at FFT bin k = 93 (2002.6 Hz), exactly periodic in every 2048-sample frame: the periodic
    Hann window leaves |X| = 512 A at bin k and 256 A at k +- 1, nothing else. The tone is peak
    normalised first (A = 1 / max |y|)."""
    k = 93
    n = np.arange(SR)  # one second
    y = 0.25 * np.sin(2 * np.pi * k * n / 2048)
    amp = 1.0 / np.abs(y).max() * 0.25
    out = aisfx_logmel(torch.from_numpy(y).float(), sample_rate=SR, target_length=50).double()
    assert out.shape == (50, 96)
    power = np.zeros(1025)
    power[k], power[k - 1], power[k + 1] = (512 * amp) ** 2, (256 * amp) ** 2, (256 * amp) ** 2
    mel = power @ _htk_filters(1025)
    expected = np.log10(1e4 * mel + 1.0) / 9.457798957824707
    frame = out[20].numpy()  # an interior frame (centred at 0.46 s)
    assert frame.argmax() == expected.argmax() == int(np.argmax(_htk_filters(1025)[k]))
    np.testing.assert_allclose(frame, expected, rtol=1e-4, atol=1e-5)
    assert np.abs(frame[expected == 0]).max() < 1e-3  # bands without the tone's bins: ~0
    # 1 + S // 1024 = 44 frames of signal, then zero padding to target_length
    assert out[44:].abs().max() == 0 and out[43].max() > 0


def test_front_end_resamples_silence_stays_zero_and_16k_audio_leaves_the_top_bands_empty():
    def sine(rate):
        return torch.sin(2 * math.pi * 1000 * torch.arange(rate * 2, dtype=torch.float64) / rate)

    tone = aisfx_logmel(sine(16000), sample_rate=16000, target_length=87)
    native = aisfx_logmel(sine(SR), sample_rate=SR, target_length=87)
    assert tone.shape == (87, 96) and aisfx_frames(2.0) == 87
    assert tone[40].argmax() == native[40].argmax() == 24  # 1 kHz: band 24 (centre 1011 mel)
    torch.testing.assert_close(tone[5:80, 20:29], native[5:80, 20:29], atol=2e-3, rtol=0)
    top = [m for m in range(96) if _htk_filters(1025)[:, m].nonzero()[0].min() * SR / 2048 > 8200]
    assert len(top) >= 25 and tone[5:80, top].max() < 1e-3
    assert aisfx_logmel(torch.zeros(4000), sample_rate=16000, target_length=10).abs().max() == 0
    with pytest.raises(ValueError, match="mono"):
        aisfx_logmel(torch.zeros(2, 100), sample_rate=16000, target_length=10)


def test_front_ends_shapes_clocks_and_the_unchanged_ast_path(tmp_path):
    from pcas_core.storage.stores import write_store

    ast, aisfx = FbankConfig(front_end="ast", target_length=512), FbankConfig(front_end="aisfx", target_length=512)
    assert front_end_shape(ast) == (512, 128) and front_end_shape(aisfx) == (221, 96)
    assert front_end_shape(FbankConfig(front_end="aisfx", target_length=1024)) == (442, 96)  # 10.24 s
    assert front_end_timing(ast).frames_per_second == 100.0 and front_end_timing(ast).frame_offset == 0
    clock = front_end_timing(aisfx)
    assert clock.frames_per_second == 44100 / 1024 and clock.frame_offset == -0.5
    wave = torch.randn(16000 * 3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(front_end_features(wave, ast), ast_fbank(wave, target_length=512))
    assert front_end_features(wave, aisfx).shape == (221, 96)
    import pandas as pd

    keys = pd.DataFrame({"uid": ["a"], "split": ["train"], "frame": [-1]})
    data = {"fbank": np.zeros((1, 221, 96), np.float32), "n_steps": np.array([3], np.int32)}
    for recorded, want in [({"fbank": {"front_end": "aisfx"}}, "aisfx"), ({"data": {}}, "ast")]:
        write_store(tmp_path / "f.h5", "fbank", keys, data, params=recorded)
        assert store_timing(tmp_path / "f.h5").front_end == want


def test_predict_refuses_fbank_params_of_another_front_end():
    from pcas_core.pipeline.predict import check_fbank_params

    models = SimpleNamespace(audio_config={"front_end": "aisfx", "target_length": 221, "n_mels": 96,
                                           "frames_per_step": 44100 / 1024})
    check_fbank_params(models, FbankConfig(front_end="aisfx", target_length=512))
    with pytest.raises(ValueError, match="fbank.front_end gives ast"):
        check_fbank_params(models, FbankConfig(front_end="ast", target_length=512))
    legacy = SimpleNamespace(audio_config={"target_length": 512, "n_mels": 128, "frames_per_step": 100})
    check_fbank_params(legacy, FbankConfig(front_end="ast", target_length=512))  # from before front_end was recorded
    with pytest.raises(ValueError, match="fbank.frame_shift_ms gives 50"):
        check_fbank_params(legacy, FbankConfig(front_end="ast", frame_shift_ms=20.0, target_length=512))
