# Two commands do everything on a fresh machine (see README.md):
#   make repro   install, then run the whole DVC pipeline on the bundled demo data, print the headline
#   make test    install with the test extras, then run the test suite
# and one refreshes the tested versions:
#   make lock    re-resolve requirements.lock from pyproject.toml's ranges (DEVELOPERS.md)
#
# Every pip install below runs under requirements.lock (-c): the exact versions the tests and the
# committed results were made with. The lock holds for the CPython minor version in its header
# (3.11); a venv of another Python, or `make install LOCK=`, installs from pyproject.toml's ranges
# instead (with a note: those versions are not the tested ones).
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
LOCK ?= requirements.lock

BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
STAMP := $(VENV)/.pcas-installed
RUN := PATH="$(CURDIR)/$(BIN):$$PATH"
LOCKED := -c $(VENV)/lock-constraint.txt
LOCK_PYTHON = $(shell sed -n 's/.*for CPython \([0-9]*\.[0-9]*\).*/\1/p' $(LOCK) 2>/dev/null)
TORCH_CPU := $(if $(TORCH_INDEX_URL),--extra-index-url $(TORCH_INDEX_URL)) "torch==$(TORCH_VERSION)+cpu"
REQUIREMENTS := "torchvision==$(TORCHVISION_VERSION)" torchaudio -e ".[test]"
LOCK_VENV := .lock-venv

.PHONY: install repro test lock clean-outputs gpu-wheels gpu-proof

install: $(STAMP)

$(STAMP): pyproject.toml Makefile $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@python=$$($(BIN)/python -c "import sys; print('%d.%d' % sys.version_info[:2])"); \
	if [ -n "$(LOCK)" ] && [ "$$python" = "$(LOCK_PYTHON)" ]; then \
		cp $(LOCK) $(VENV)/lock-constraint.txt; echo "installing the versions of $(LOCK)"; \
	else \
		: > $(VENV)/lock-constraint.txt; \
		echo "NOTE: $(if $(LOCK),$(LOCK) is for CPython $(LOCK_PYTHON) and this venv has $$python,LOCK is empty):" \
			"installing from pyproject.toml's ranges, not the tested versions"; \
	fi
	@if $(BIN)/python -c "import torch" 2>/dev/null; then \
		echo "keeping the torch already installed in $(VENV)"; \
	elif command -v nvidia-smi >/dev/null 2>&1; then \
		$(PIP) install $(LOCKED) "torch==$(TORCH_VERSION)"; \
	else \
		$(PIP) install $(LOCKED) $(TORCH_CPU); \
	fi
	$(BIN)/python -c "import torch; print('torch==' + torch.__version__)" > $(VENV)/torch-constraint.txt
	$(PIP) install $(LOCKED) -c $(VENV)/torch-constraint.txt $(REQUIREMENTS)
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

# pip resolves what `make install` would install on a CPU machine, from scratch in a throwaway
# venv, without installing it; tools/lock.py writes that as name==version lines.
lock:
	rm -rf $(LOCK_VENV) && $(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --dry-run --ignore-installed --quiet \
		--report $(LOCK_VENV)/report.json $(TORCH_CPU) $(REQUIREMENTS)
	$(LOCK_VENV)/bin/python tools/lock.py $(LOCK_VENV)/report.json > requirements.lock.tmp
	mv requirements.lock.tmp requirements.lock && rm -rf $(LOCK_VENV)
	@echo "requirements.lock: $$(grep -vc '^#' requirements.lock) packages; git diff requirements.lock shows what moved"

clean-outputs:
	rm -rf data/demo features models metrics/*.json plots dvclive
