"""Typed params: the shipped params.yaml equals the documented defaults, and bad params are refused
with the key's name before any work starts."""

from pathlib import Path

import pytest
import yaml

from pcas_core.params import SECTIONS, ConfigError, PcasParams, load_config
from pcas_core.params.parsing import parse, to_dict

ROOT = Path(__file__).resolve().parents[2]


def _write(tmp_path: Path, edit) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    edit(params)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def test_shipped_params_equal_the_code_defaults():
    shipped = load_config(ROOT / "params.yaml")
    assert shipped == PcasParams(), "params.yaml and pcas_core/params.py defaults disagree"
    assert set(yaml.safe_load((ROOT / "params.yaml").read_text())) == set(SECTIONS)


def test_every_key_of_params_yaml_is_a_field_and_round_trips():
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert to_dict(load_config(ROOT / "params.yaml")) == to_dict(parse(PcasParams, raw))
    for name, section in raw.items():
        assert set(section) <= set(to_dict(getattr(PcasParams(), name))), name


@pytest.mark.parametrize("edit, message", [
    (lambda p: p["train_visual"].update(epoch=3), "unknown params key 'train_visual.epoch'; did you mean 'train_visual.epochs'"),
    (lambda p: p.update(trian_visual={"epochs": 3}), "unknown params key 'trian_visual'; did you mean 'train_visual'"),
    (lambda p: p["train_audio"]["model"].update(depht=3), "'train_audio.model.depht'; did you mean 'train_audio.model.depth'"),
    (lambda p: p["evaluate"].update(epochs="ten"), "evaluate.epochs: expected an integer, got 'ten'"),
    (lambda p: p["evaluate"].update(epochs=True), "evaluate.epochs: expected an integer, got True"),
    (lambda p: p["train_audio"].update(tvp="yes"), "train_audio.tvp: expected true or false"),
    (lambda p: p["train_visual"].update(frame_pool="median"), "train_visual.frame_pool: 'median' is not one of ['max', 'mean']"),
    (lambda p: p["data"].update(subsets=["v3"]), "data.subsets"),
    (lambda p: p["pseudo_masks"].update(bg_score_low=0.1), "set both bg_score_low and bg_score_high"),
    (lambda p: p["pseudo_masks"]["crf"].update(iterations=2.5), "pseudo_masks.crf.iterations: expected an integer"),
    (lambda p: p["fbank"].update(frame_shift_ms=5.0), "exceeds fbank.target_length (1024) x frame_shift_ms (5.0) = 5.12 s"),
    (lambda p: p["train_audio"]["model"].update(max_steps=11), "exceeds fbank.target_length"),
    (lambda p: p["train_audio"]["model"].update(max_steps=5), "demo.clips ask for 10-frame clips"),
    (lambda p: p["demo"].update(noise_dbfs=-20.0), "demo: noise_dbfs must be in [-90, -55] dBFS"),
    (lambda p: p["align"].update(min_steps=-1), "min_steps >= 0"),
    (lambda p: p["fbank"].update(front_end="ast") or p["train_audio"].update(encoder="aisfx"), "train_audio.encoder 'aisfx' needs fbank.front_end 'aisfx'"),
    (lambda p: p["train_audio"].update(encoder="cnn"), "train_audio.encoder: 'cnn' is not one of ['ast', 'aisfx']"),
    (lambda p: p["fbank"].update(front_end="aisfx") or p["train_audio"].update(encoder="aisfx", init="vit.pth"),
     "with encoder 'aisfx' set init: none"),
    (lambda p: p["train_audio"]["aisfx"].update(frozen_blocks=5), "frozen_blocks must be in [0, 4]"),
    (lambda p: p["train_audio"]["aisfx"].update(tokens="patches"), "train_audio.aisfx.tokens: 'patches' is not one of"),
    (lambda p: p["train_audio"]["model"].update(frames_per_step=100), "unknown params key 'train_audio.model.frames_per_step'"),
    (lambda p: p["base"].update(device="tpu"), "device must be auto, cpu, cuda or cuda:N"),
])
def test_bad_params_are_refused_with_the_key(tmp_path, edit, message):
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, edit))
    assert message in str(err.value)
    assert str(tmp_path / "params.yaml") in str(err.value)


def test_any_frame_shift_and_the_aisfx_front_end_are_accepted(tmp_path):
    """A time step is one second of the front end's clock, not a count of frames: a 20 ms
    shift (50 frames per second) passes, and aisfx's 23.2 ms frames with it."""
    assert load_config(_write(tmp_path, lambda p: p["fbank"].update(frame_shift_ms=20.0)))
    cfg = load_config(_write(tmp_path, lambda p: (p["fbank"].update(front_end="aisfx"),
                                                  p["train_audio"].update(encoder="aisfx"))))
    assert cfg.fbank.front_end == cfg.train_audio.encoder == "aisfx"
    assert cfg.train_audio.aisfx.frozen_blocks == 4


def test_missing_keys_take_documented_defaults_and_ints_become_floats(tmp_path):
    path = _write(tmp_path, lambda p: (p["evaluate"].pop("lr"), p["align"].update(lr_heads=1)))
    cfg = load_config(path)
    assert cfg.evaluate.lr == PcasParams().evaluate.lr
    assert cfg.align.lr_heads == 1.0 and isinstance(cfg.align.lr_heads, float)


def test_a_stage_stops_on_a_misspelt_key_before_reading_data(tmp_path):
    from typer.testing import CliRunner

    from stages.cli import app

    path = _write(tmp_path, lambda p: (p["fbank"].update(num_mel_bin=64),
                                       p["data"].update(root=str(tmp_path / "nowhere"))))
    result = CliRunner().invoke(app, ["fbank", "--out", str(tmp_path / "f.h5"), "--params", str(path)])
    assert result.exit_code == 1
    assert "fbank.num_mel_bin" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "f.h5").exists()
