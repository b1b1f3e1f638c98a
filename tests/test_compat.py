"""The CPU-only import shim: timm and torchaudio import on this install; a CUDA torch is left alone."""

import subprocess
import sys

import torch


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_timm_and_kaldi_fbank_work_after_import_pcas_core():
    proc = _run(
        "import pcas_core, timm, torch\n"
        "from torchaudio.compliance import kaldi\n"
        "m = timm.create_model('vit_tiny_patch16_224', pretrained=False, img_size=32, depth=1)\n"
        "f = kaldi.fbank(torch.zeros(1, 16000) + 0.01 * torch.randn(1, 16000), num_mel_bins=128,"
        " htk_compat=True, window_type='hanning', dither=0.0, use_energy=False)\n"
        "print(tuple(f.shape), m.patch_embed.grid_size)\n"
    )
    assert proc.returncode == 0, proc.stderr
    assert "(98, 128) (2, 2)" in proc.stdout


def test_shim_reports_what_it_repaired_on_cpu_torch():
    raw = _run("import torchvision")  # without the shim
    proc = _run("from pcas_core.compat import ensure_importable; print(ensure_importable())")
    assert proc.returncode == 0, proc.stderr
    if torch.version.cuda is None and raw.returncode != 0:
        # this machine has CUDA builds of torchvision/torchaudio over CPU torch
        assert "operator torchvision::nms does not exist" in raw.stderr
        assert "'torchvision': True" in proc.stdout and "'torchaudio': True" in proc.stdout
    elif torch.version.cuda is None:
        assert "'torchvision': False" in proc.stdout


def test_shim_does_nothing_when_torch_has_cuda():
    proc = _run(
        "import sys, torch\n"
        "torch.version.cuda = '13.0'  # pretend to be a CUDA build\n"
        "from pcas_core.compat import ensure_importable\n"
        "print(ensure_importable(), 'torchvision' in sys.modules, 'torchaudio' in sys.modules)\n"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "{} False False"
