# Two commands do everything on a fresh machine (see README.md):
#   make repro   install, then run the whole DVC pipeline on the bundled demo data, print the headline
#   make test    install with the test extras, then run the test suite
#
# torch is installed first and then pinned, so that nothing later swaps it (DEVELOPERS.md):
# - a torch already in the venv (CPU or CUDA) is kept;
# - with an NVIDIA driver (nvidia-smi), torch==$(TORCH_VERSION) from the package index (CUDA build);
# - otherwise the CPU build torch==$(TORCH_VERSION)+cpu, which pip finds in a local wheel folder
#   (pip's find-links) or in TORCH_INDEX_URL; it never falls back to a CUDA build on a CPU machine.
# Last, aisfx==0.1.2 (the pretrained audio CNN of train_audio.encoder: aisfx; its checkpoint's sha256
# is pinned in pcas_core/models/aisfx.py) with --no-deps: pcas reads only its checkpoint file, and
# its pins (numpy 1.23, librosa 0.9.2) would replace newer packages.

PYTHON ?= python3
VENV ?= .venv
TORCH_VERSION ?= 2.13.0
TORCHVISION_VERSION ?= 0.28.0
TORCH_INDEX_URL ?=

BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
STAMP := $(VENV)/.pcas-installed
RUN := PATH="$(CURDIR)/$(BIN):$$PATH"

.PHONY: install repro test clean-outputs gpu-wheels gpu-proof

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@if $(BIN)/python -c "import torch" 2>/dev/null; then \
		echo "keeping the torch already installed in $(VENV)"; \
	elif command -v nvidia-smi >/dev/null 2>&1; then \
		$(PIP) install "torch==$(TORCH_VERSION)"; \
	else \
		$(PIP) install $(if $(TORCH_INDEX_URL),--extra-index-url $(TORCH_INDEX_URL)) "torch==$(TORCH_VERSION)+cpu"; \
	fi
	$(BIN)/python -c "import torch; print('torch==' + torch.__version__)" > $(VENV)/torch-constraint.txt
	$(PIP) install -c $(VENV)/torch-constraint.txt "torchvision==$(TORCHVISION_VERSION)" torchaudio -e ".[test]"
	$(PIP) install --no-deps "aisfx==0.1.2"
	$(BIN)/python -c "from pcas_core.models.aisfx import aisfx_checkpoint_path as p, read_aisfx_checkpoint as r; r(p()); print('aisfx checkpoint', p())"
	$(BIN)/python -c "import pcas_core, timm, torchaudio.compliance.kaldi, pydensecrf.densecrf; print('pcas installed, torch', __import__('torch').__version__)"
	touch $@

repro: $(STAMP)
	$(RUN) dvc repro
	@echo
	@$(RUN) pcas report
	@echo "more: dvc metrics diff --targets metrics/headline.json; plots/report.html (offline); docs/results.md"

test: $(STAMP)
	$(RUN) python -m pytest

# The GPU check (DEVELOPERS.md "GPU check"): the wheels a GPU machine lacks, in .whl/ (carried to
# it), for CPython 3.12 (its python) and 3.11 (the CPU proof); then the proof on this machine.
gpu-wheels:
	bash benchmarks/gpu_wheels.sh .whl

gpu-proof: gpu-wheels
	bash benchmarks/gpu_proof.sh

clean-outputs:
	rm -rf data/demo features models metrics/*.json plots dvclive
