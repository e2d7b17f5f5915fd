#!/usr/bin/env bash
# A copy of the GPU machine for CI: a Python 3.12 venv holding only the packages of
# benchmarks/gpu_machine.txt (torch 2.11 CUDA 13 runs on the CPU here), plus the wheels
# benchmarks/gpu_wheels.sh carries. Nothing else is importable in it: the venv sees no system or
# user site-packages. Prints "PYTHON WHEELS_DIR" on stdout (everything else goes to stderr);
# tests/test_gpu_check.py runs `gpu_check.sh --dry-run` with them when .ci/run exports them as
# MGEN_GPU_SIM_PYTHON and MGEN_GPU_SIM_WHEELS.
#
#   benchmarks/gpu_sim.sh            # build (once per package list) and carry
#
# The venv (about 5 GB, a few minutes to build) is kept under ~/.cache/mgen-gpu-machine/<hash of
# the package list>; the carried wheels are kept beside it per hash of what decides them (the
# machine's list, the project's dependencies and benchmarks/gpu_carry.py).
set -euo pipefail
cd "$(dirname "$0")/.."
exec 3>&1 1>&2
PY312=""
for candidate in "${MGEN_PYTHON312:-}" python3.12 "$HOME"/.pyenv/versions/3.12*/bin/python3.12; do
  if [ -n "$candidate" ] && "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then
    PY312=$candidate; break
  fi
done
[ -n "$PY312" ] || { echo "FAIL: no Python 3.12 found (the GPU machine's); set MGEN_PYTHON312"; exit 2; }
ROOT_DIR="${MGEN_GPU_SIM_DIR:-$HOME/.cache/mgen-gpu-machine}"
SIM="$ROOT_DIR/$(sha256sum benchmarks/gpu_machine.txt | cut -c1-16)"
if [ ! -f "$SIM/ready" ]; then
  echo "gpu_sim: building the GPU machine's venv in $SIM (once per package list)"
  rm -rf "$SIM"
  "$PY312" -m venv "$SIM"
  "$SIM/bin/python" -m pip install -q --disable-pip-version-check -r benchmarks/gpu_machine.txt
  touch "$SIM/ready"
fi
export PYTHONNOUSERSITE=1
# The copy is faithful only if what the machine lacks is missing from it too.
"$SIM/bin/python" - <<'PY'
import importlib.util
present = [m for m in ("platformdirs", "pyloudnorm", "soxr", "soundfile", "prompt_toolkit", "pytest", "scipy")
           if importlib.util.find_spec(m) is not None]
assert not present, f"FAIL: the GPU-machine venv has packages the machine lacks: {present}"
PY
WHEELS="$ROOT_DIR/wheels-$("$PY312" benchmarks/gpu_carry.py --key)"
if [ ! -f "$WHEELS/CARRIED" ]; then
  rm -rf "$WHEELS"
  "$PY312" benchmarks/gpu_carry.py --dest "$WHEELS"
fi
echo "gpu_sim: carried $(tr '\n' ' ' < "$WHEELS/CARRIED")"
echo "$SIM/bin/python $WHEELS" >&3
