#!/usr/bin/env python3
"""Write ``requirements.lock`` from pip's installation report (run by ``make lock``).

``make lock`` asks pip to resolve, from scratch and without installing, what ``make install``
would install (``pip install --dry-run --ignore-installed --report report.json ...`` on the loose
ranges of ``pyproject.toml``, with the torch/torchvision versions of the Makefile and this
machine's pip configuration); this script turns pip's report into one ``name==version`` line per
package, sorted. The project itself (the editable ``pcas``) is left out.

A local version label (``2.13.0+cpu``) is dropped: a constraint on a public version matches every
local build of it (PEP 440), so ``torch==2.13.0`` admits the CPU build here and a CUDA build on a
GPU machine, and the Makefile's choice between the two stands.

Usage: ``python tools/lock.py report.json > requirements.lock``
"""

from __future__ import annotations

import json
import sys

HEADER = """\
# Exact versions of every package `make install` puts in .venv, resolved by pip from
# pyproject.toml's ranges for CPython {python} on {system} {machine}. Do not edit: refresh with
# `make lock` (DEVELOPERS.md "Installing"); `make install` installs under these constraints.
# torch, torchvision and torchaudio are pinned by public version (no +cpu / +cuXXX), which matches
# the CPU build and a CUDA build alike. aisfx==0.1.2 is pinned in the Makefile (--no-deps).
"""


def lock_lines(report: dict) -> list[str]:
    """``name==version`` of each package in a pip installation report (format version 1),
    sorted case-insensitively, without the editable project and without local version labels.

    Raises:
        ValueError: the report is not pip's installation report, version 1.
    """
    if report.get("version") != "1" or "install" not in report:
        raise ValueError("not a pip installation report (version 1): run pip install --dry-run "
                         "--report FILE")
    lines = []
    for item in report["install"]:
        if "dir_info" in item.get("download_info", {}):  # the project (-e .), not a locked package
            continue
        meta = item["metadata"]
        lines.append(f"{meta['name']}=={meta['version'].split('+')[0]}")
    return sorted(lines, key=lambda line: line.split("==")[0].lower())


def main(path: str) -> None:
    with open(path, encoding="utf-8") as f:
        report = json.load(f)
    env = report.get("environment", {})
    sys.stdout.write(HEADER.format(python=env.get("python_full_version", "?"),
                                   system=env.get("platform_system", "?"),
                                   machine=env.get("platform_machine", "?")))
    sys.stdout.write("".join(line + "\n" for line in lock_lines(report)))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__.rsplit("Usage: ", 1)[1].strip())
    main(sys.argv[1])
