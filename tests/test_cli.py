"""The `pcas` command: each stage a plain command with current help naming the params it reads,
`--version`, and bad params, data or input files ending with one message and exit status 1 (no
traceback; the traceback with --debug / PCAS_DEBUG)."""

import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from layouts import make_avss
from pcas_core.params import PcasParams
from pcas_core.params.parsing import to_dict
from stages.cli import app
from test_dvc_deps import _start_stage_sections

ROOT = Path(__file__).resolve().parents[1]
DVC_STAGES = {"demo-data": "demo_data", "fbank": "fbank", "train-visual": "train_visual",
              "train-audio": "train_audio", "align": "align", "pseudo-masks": "pseudo_masks",
              "evaluate": "evaluate", "predict": "predict"}
COMMANDS = [*DVC_STAGES, "check-data", "report"]


def _params(tmp_path: Path, edit=None, **data) -> Path:
    """A params file of the documented defaults, ``data`` keys replaced, then ``edit(params)``."""
    params = to_dict(PcasParams())
    params["data"].update(data)
    if edit:
        edit(params)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def _one_error_line(result, command: str) -> str:
    """The command failed with status 1 and printed exactly one error, no traceback; returns it."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines and lines[0].startswith(f"pcas {command}: error: "), result.stderr
    assert sum("error:" in line for line in lines) == 1, result.stderr
    return result.stderr


def test_every_command_has_current_help_with_its_options():
    runner = CliRunner()
    top = runner.invoke(app, ["--help"])
    assert top.exit_code == 0
    for name in COMMANDS:
        assert name in top.output
        sub = runner.invoke(app, [name, "--help"], prog_name="pcas")
        assert sub.exit_code == 0, sub.output
        usage = next(line for line in sub.output.splitlines() if "Usage:" in line)
        assert f"pcas {name} [OPTIONS]" in usage and "COMMAND" not in usage, usage
        assert "--help" in sub.output and ("--params" in sub.output or name == "report")


@pytest.mark.parametrize("command", sorted(DVC_STAGES))
def test_each_stage_help_names_the_params_it_reads(command):
    """Every section (or dotted key) the stage passes to start_stage is named in its help."""
    text = " ".join(CliRunner().invoke(app, [command, "--help"]).output.split())
    text = text.replace("│", "").replace("  ", " ")
    read = _start_stage_sections(ROOT / "stages" / f"{DVC_STAGES[command]}.py")
    for name in ["base", *read]:
        section, _, key = name.partition(".")
        assert f"`{section}`" in text or f"`{name}`" in text, (command, name)
        assert not key or key in text, (command, name)


def test_help_names_the_shipped_defaults():
    """The one-line helps name what runs by default (the aisfx front end, not only AST)."""
    top = " ".join(CliRunner().invoke(app, ["--help"]).output.split())
    assert PcasParams().fbank.front_end in top and PcasParams().train_audio.encoder in top
    assert "ViT classifier" not in top


def test_version_is_the_installed_package_version():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"pcas {version('pcas')}"


def test_missing_params_file_is_one_message(tmp_path: Path):
    result = CliRunner().invoke(app, ["fbank", "--params", str(tmp_path / "nope.yaml")])
    assert result.exit_code != 0
    assert "nope.yaml" in result.output and "Traceback" not in result.output


def test_misspelt_key_is_one_message_naming_the_closest_key(tmp_path: Path):
    params = _params(tmp_path, lambda p: p["align"].update(cmpcc=1))
    result = CliRunner().invoke(app, ["fbank", "--params", str(params),
                                      "--out", str(tmp_path / "f.h5")])
    err = _one_error_line(result, "fbank")
    assert f"{params}: unknown params key 'align.cmpcc'; did you mean 'align.cmpc'?" in err
    assert not (tmp_path / "f.h5").exists()


def test_out_of_range_value_is_one_message_with_the_value(tmp_path: Path):
    params = _params(tmp_path, lambda p: p["align"].update(theta_hi=2))
    for name in ("v.safetensors", "a.h5"):
        (tmp_path / name).touch()  # align's inputs exist: the params are what fails
    result = CliRunner().invoke(app, ["align", "--params", str(params),
                                      "--visual-model", str(tmp_path / "v.safetensors"),
                                      "--audio-store", str(tmp_path / "a.h5")])
    err = _one_error_line(result, "align")
    assert "align: need theta_lo < theta_hi in [0, 1], got theta_hi=2.0, theta_lo=0.25" in err


def test_invalid_yaml_is_one_message_with_the_line(tmp_path: Path):
    params = tmp_path / "params.yaml"
    params.write_text("base:\n  seed: [1\n")
    err = _one_error_line(CliRunner().invoke(app, ["fbank", "--params", str(params)]), "fbank")
    assert f"{params}: not valid YAML" in err and "line 2" in err


def test_wrong_dataset_root_names_the_file(tmp_path: Path):
    params = _params(tmp_path, root=str(tmp_path / "missing"), img_size=32)
    result = CliRunner().invoke(app, ["fbank", "--params", str(params),
                                      "--out", str(tmp_path / "f.h5")])
    assert "label2idx.json" in _one_error_line(result, "fbank")
    assert not (tmp_path / "f.h5").exists()


def test_truncated_jpg_is_named_with_the_params_key_that_skips_it(tmp_path: Path):
    root = make_avss(tmp_path / "avss")
    jpg = root / "v1s" / "vaA" / "frames" / "2.jpg"
    jpg.write_bytes(jpg.read_bytes()[:-10])  # the header reads; the end marker is gone
    params = _params(tmp_path, root=str(root), img_size=32)
    result = CliRunner().invoke(app, ["fbank", "--params", str(params),
                                      "--out", str(tmp_path / "f.h5")])
    err = _one_error_line(result, "fbank")
    assert f"{jpg}: truncated image (its end marker is missing) (video vaA)" in err
    assert "`data.skip_bad: true` in params.yaml, or `dvc exp run -S data.skip_bad=true`" in err
    assert "--skip-bad" not in err  # an option of check-data only
    assert not (tmp_path / "f.h5").exists()


def test_missing_video_is_one_message_before_any_model_loads(tmp_path: Path):
    params = _params(tmp_path, lambda p: p["predict"]["models"].update(
        visual=str(tmp_path / "no-model.safetensors")))
    result = CliRunner().invoke(app, ["predict", str(tmp_path / "missing.mp4"),
                                      "--out", str(tmp_path / "o"), "--params", str(params)])
    err = _one_error_line(result, "predict")
    assert f"{tmp_path / 'missing.mp4'}: no such file" in err
    assert "no-model" not in err  # the video is checked first


def test_a_bug_keeps_its_traceback(tmp_path: Path, monkeypatch):
    """An exception pcas did not raise on purpose is not turned into a one-line message."""
    import stages.fbank

    def broken(*args, **kwargs):
        return int("not a number")  # a ValueError from a built-in, not a checked input

    monkeypatch.setattr(stages.fbank, "open_dataset", broken)
    result = CliRunner().invoke(app, ["fbank", "--params", str(_params(tmp_path))])
    assert isinstance(result.exception, ValueError) and "not a number" in str(result.exception)
    assert "error:" not in result.stderr


def test_debug_switch_shows_the_traceback_of_a_user_error(tmp_path: Path):
    params = _params(tmp_path, lambda p: p["align"].update(cmpcc=1))
    env = {**os.environ, "PCAS_DEBUG": "1"}
    for args, extra in ((["fbank"], env), (["--debug", "fbank"], None)):
        done = subprocess.run([sys.executable, "-m", "stages.cli", *args, "--params", str(params)],
                              cwd=tmp_path, env=extra, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 1
        assert "Traceback" in done.stderr and "ConfigError" in done.stderr, args
    done = subprocess.run([sys.executable, "-m", "stages.cli", "fbank", "--params", str(params)],
                          cwd=tmp_path, env={k: v for k, v in os.environ.items()
                                             if k != "PCAS_DEBUG"},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("pcas fbank: error: ")


def test_report_outside_a_dvc_repository_is_one_message(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["report", "--table", "3", "--out", str(tmp_path / "r")])
    err = _one_error_line(result, "report")
    assert "`dvc exp show --json` failed in" in err and "not inside of a DVC repository" in err


def test_stages_run_without_pyav(tmp_path: Path):
    """PyAV is imported only where a video file is read or written: `pcas` and the audio reader
    work where it is missing (as on a GPU machine that gets only the stages' packages), and a
    video file then fails with its name."""
    import subprocess
    import sys

    code = f"""
import sys
sys.modules["av"] = None  # `import av` raises ImportError from here on
import numpy as np, soundfile as sf
from stages.cli import app
from pcas_core.audio.wave import read_audio
sf.write({str(tmp_path / "a.wav")!r}, np.full(1600, 0.25, np.float32), 16000)
wave, rate = read_audio({str(tmp_path / "a.wav")!r})
assert rate == 16000 and wave.shape == (1600,) and abs(float(wave.mean()) - 0.25) < 1e-4
try:
    read_audio({str(tmp_path / "clip.mp4")!r})
except ValueError as err:
    print("refused:", err)
"""
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "refused:" in proc.stdout and "clip.mp4" in proc.stdout and "PyAV" in proc.stdout
