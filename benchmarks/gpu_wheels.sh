#!/usr/bin/env bash
# Download, on a machine with PyPI access, the wheels benchmarks/gpu_check.sh needs on the GPU
# machine (Python 3.12, x86-64, no network): the project's dependencies and the check's own
# (pyproject's gpu-check extra) that the machine's packages (benchmarks/gpu_machine.txt) do not
# bring, with everything they pull in. benchmarks/gpu_carry.py derives the list with pip's
# resolver. They land in .whl/ (git-ignored, with CARRIED listing them); gpu_check.sh installs
# them from there, offline, when present.
set -euo pipefail
cd "$(dirname "$0")/.."
"${PYTHON:-python3}" benchmarks/gpu_carry.py --dest .whl
ls -l .whl
