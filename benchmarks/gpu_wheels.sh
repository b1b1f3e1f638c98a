#!/usr/bin/env bash
# The wheels of benchmarks/gpu_wheels.txt in .whl/ (or DEST), for the GPU machine's CPython 3.12
# and this machine's 3.11 (the CPU proof, benchmarks/gpu_proof.sh), then the size of what travels
# to a GPU machine (limit 64 MiB): tracked and untracked-not-ignored files plus DEST.
#
#   bash benchmarks/gpu_wheels.sh [DEST]      # make gpu-wheels
#   bash benchmarks/gpu_wheels.sh --sizes     # only the sizes
#
# Wheels the registry serves are fetched with `pip download --only-binary=:all:` for each python
# version and manylinux platform; pydensecrf2 has only an sdist, so it is built with
# `pythonX.Y -m pip wheel` by that python (on PATH, or pyenv's; PYTHONS="3.12 3.11" to choose).
set -euo pipefail
cd "$(dirname "$0")/.."
REQ=benchmarks/gpu_wheels.txt
PYTHONS=${PYTHONS:-"3.12 3.11"}
LIMIT=$((64 * 1024 * 1024))

sizes() {
    local dest=$1 tracked untracked wheels total
    tracked=$(git ls-files -z | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
    untracked=$( (git ls-files -z --others --exclude-standard | du -cb --files0-from=- 2>/dev/null || echo 0) | tail -1 | cut -f1)
    wheels=$(du -cb "$dest" 2>/dev/null | tail -1 | cut -f1)
    total=$((tracked + untracked + wheels))
    awk -v t="$tracked" -v u="$untracked" -v w="$wheels" -v d="$dest" -v l="$LIMIT" 'BEGIN {
        m = 1048576; s = t + u + w
        printf "tracked files %7.1f MiB\nuntracked     %7.1f MiB\n%-13s %7.1f MiB\n", t/m, u/m, d, w/m
        printf "total         %7.1f MiB of %d MiB: %s\n", s/m, l/m, (s <= l ? "fits" : "TOO LARGE") }'
    [ "$total" -le "$LIMIT" ]
}

if [ "${1:-}" = "--sizes" ]; then sizes "${2:-.whl}"; exit; fi
DEST=${1:-.whl}
mkdir -p "$DEST"
binary=$(grep -v '^ *#' "$REQ" | grep -v 'sdist only' | sed 's/#.*//' | xargs)
sdist=$(grep -v '^ *#' "$REQ" | grep 'sdist only' | sed 's/#.*//' | xargs)
platforms="--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
--platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
--platform manylinux1_x86_64"
for v in $PYTHONS; do
    echo "== CPython $v: $binary"
    # shellcheck disable=SC2086
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$v" \
        --implementation cp $platforms -d "$DEST" $binary
    py=""
    for cand in $(command -v "python$v" || true) \
            $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$v"*/bin/python"$v" 2>/dev/null || true); do
        if "$cand" -c "import sys; assert sys.version_info[:2] == tuple(map(int, '$v'.split('.')))" 2>/dev/null; then
            py=$cand; break
        fi
    done
    if [ -z "$py" ]; then
        echo "no python$v here to build $sdist with (install it, e.g. with pyenv, or set PYTHONS)" >&2
        exit 1
    fi
    tag=cp${v/./}
    if ls "$DEST"/pydensecrf2-*-"$tag"-*.whl >/dev/null 2>&1; then
        echo "== $sdist for $tag: already built"
    else
        echo "== building $sdist with $py"
        # shellcheck disable=SC2086
        "$py" -m pip wheel -q --no-deps -w "$DEST" $sdist
    fi
done
ls -l "$DEST"
sizes "$DEST"
