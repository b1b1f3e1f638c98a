#!/usr/bin/env bash
# The CPU proof of benchmarks/gpu_check.py (make gpu-proof): a clean virtual environment with
# only a CPU torch and the packages the GPU machine's image already has (those pcas imports),
# then `gpu_check.py --device cpu --tiny`, which installs everything else from the wheel folder
# alone (.whl, made by benchmarks/gpu_wheels.sh): so the wheel list is complete.
#
#   bash benchmarks/gpu_proof.sh [OUT]      # default OUT: build/gpu-proof/out
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
TORCHVISION_VERSION=${TORCHVISION_VERSION:-0.28.0}
VENV=build/gpu-proof/venv
OUT=${1:-build/gpu-proof/out}
WORK=build/gpu-proof/work
rm -rf "$VENV" "$WORK"
"$PYTHON" -m venv "$VENV"
pip="$VENV/bin/python -m pip install -q --disable-pip-version-check"
$pip ${TORCH_INDEX_URL:+--extra-index-url $TORCH_INDEX_URL} "torch==$TORCH_VERSION+cpu"
"$VENV/bin/python" -c "import torch; print('torch==' + torch.__version__)" > "$VENV/torch-constraint.txt" 2>/dev/null
# what the GPU image has (KINDS.md's package list), limited to what pcas imports
$pip -c "$VENV/torch-constraint.txt" "torchvision==$TORCHVISION_VERSION" torchaudio timm h5py \
    typer pandas pillow safetensors tqdm rich numpy pyyaml
present=$("$VENV/bin/python" -m pip list --format=freeze 2>/dev/null | cut -d= -f1 | tr 'A-Z_' 'a-z-')
carried=$(grep -o '^[a-z0-9-]*==' benchmarks/gpu_wheels.txt | tr -d '=')
for name in $carried; do
    if echo "$present" | grep -qx "$name"; then echo "$name is in the clean venv already" >&2; exit 1; fi
done
echo "clean venv: $(echo "$present" | wc -l) packages, none of the carried ones:" $carried
nice -n 10 "$VENV/bin/python" benchmarks/gpu_check.py --device cpu --tiny --out "$OUT" --work "$WORK" \
    --budget-s "${BUDGET_S:-1500}" --paper-budget-s "${PAPER_BUDGET_S:-600}"
