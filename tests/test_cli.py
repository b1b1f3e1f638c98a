"""The `pcas` command exposes every stage with its own --help, and fails clearly on bad input."""

from pathlib import Path

from typer.testing import CliRunner

from stages.cli import app

STAGES = ["demo-data", "check-data", "fbank", "train-visual", "train-audio", "align", "pseudo-masks",
          "evaluate", "predict"]


def test_every_stage_has_a_documented_command():
    runner = CliRunner()
    top = runner.invoke(app, ["--help"])
    assert top.exit_code == 0
    for name in STAGES:
        assert name in top.output
        sub = runner.invoke(app, [name, "--help"])
        assert sub.exit_code == 0, sub.output
        assert "--params" in sub.output


def test_missing_params_file_is_reported(tmp_path: Path):
    result = CliRunner().invoke(app, ["fbank", "--params", str(tmp_path / "nope.yaml")])
    assert result.exit_code != 0
    assert "nope.yaml" in result.output


def test_wrong_dataset_root_names_the_file(tmp_path: Path):
    params = tmp_path / "params.yaml"
    params.write_text(
        "base: {seed: 0, device: cpu, amp: false, threads: 0}\n"
        f"data: {{root: {tmp_path / 'missing'}, img_size: 32, label_source: masks}}\n"
        "fbank: {sample_rate: 16000, num_mel_bins: 128, target_length: 1024, frame_shift_ms: 10.0,"
        " norm_mean: -4.27, norm_std: 4.57}\n")
    result = CliRunner().invoke(app, ["fbank", "--params", str(params), "--out", str(tmp_path / "f.h5")])
    assert result.exit_code != 0
    assert "label2idx.json" in str(result.exception)
    assert not (tmp_path / "f.h5").exists()


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
