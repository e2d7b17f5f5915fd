#!/usr/bin/env bash
# Download, on a machine with PyPI access, the wheels benchmarks/gpu_check.sh needs on the GPU
# machine (Python 3.12, x86-64, no network): pytest and its plugins, soundfile and its cffi.
# They land in .whl/ (git-ignored); gpu_check.sh installs them from there when present.
# huggingface_hub 2.x is not carried: the check downloads nothing, and the machine's
# transformers pins its own hub client.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
mkdir -p .whl
for wheel in pytest==9.2.0 pluggy==1.7.0 iniconfig==2.3.1 pytest-timeout==2.4.0 \
             soundfile==0.14.0 cffi==2.1.1 pycparser==3.12; do
  "$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "$wheel"
done
ls -l .whl
