#!/usr/bin/env bash
# The GPU verification in one command, sized for under 8 minutes on one H100/H200:
#
#   benchmarks/gpu_check.sh            # on a CUDA machine; figures and logs under $OUT
#   benchmarks/gpu_check.sh --dry-run  # the same kinds of step on the CPU with tiny shapes (CI runs it)
#
# On the GPU machine: run benchmarks/gpu_wheels.sh where PyPI is reachable first; the wheels it
# puts in .whl/ (or $WHEELS) are installed offline into this run's own folder. CI runs the dry run
# inside a copy of the GPU machine (benchmarks/gpu_sim.sh): its packages plus the carried wheels.
#
# Each step has a time limit; the limits of both modes are added up before anything runs and must
# fit the budget. A step fails on a non-zero exit, and the steps assert what the check exists for:
# token identity where it is promised (float32 greedy on every engine; sampled too off CUDA),
# predicted peak VRAM within 15 % of the measured peak, no NaN/inf logits (NonFiniteLogits), no
# out-of-memory in a planned job. Every failure prints a `FAIL` line, and the script exits 1.
# $OUT/summary.txt is a table of the steps with their figures, then the FAIL lines; $OUT/steps.log
# holds every step's output as it runs, under a `=== NAME` line (two files: what comes back from a
# lent GPU machine is a few files, so one log per step would not all come back).
set -uo pipefail
cd "$(dirname "$0")/.."
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
OUT="${OUT:-./gpu-check-out}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
WHEELS="${WHEELS:-.whl}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false PYTHONNOUSERSITE=1
export HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 MGEN_CACHE_DIR="$WORK/cache"
# The GPU image has pytest plugins built for its own pytest; the carried pytest loads none.
export PYTEST_DISABLE_PLUGIN_AUTOLOAD=1
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
ROWS="$WORK/rows"
FAILS="$WORK/fails"
: > "$ROWS"
: > "$FAILS"
export MGEN_CHECK_REPORT="$WORK/report"
REAL_BUDGET_S=470  # under 8 minutes
DRY_BUDGET_S=300
SETUP_S=20         # installing the wheels, probing the GPU, the summary
# On the CPU stand-in a limit only keeps a hang from blocking CI: a small shared CI box may run
# the tiny steps several times slower than the limits written for them.
SLACK=$(( DRY ? 5 : 1 ))
BUDGET_S=$(( DRY ? DRY_BUDGET_S : REAL_BUDGET_S ))
COUNTING=0
PLANNED=0

fail() { echo "FAIL $*" | tee -a "$FAILS"; }

# step NAME LIMIT_S COMMAND...: run with its limit, its output into $OUT/steps.log as it comes, add a
# row to the table with the step's `FIGURE` lines, and a FAIL line for a non-zero exit (with the
# step's own FAIL lines).
step() {
  local name=$1 limit=$2 log="$WORK/$1.log" start rc result
  shift 2
  if [ "$COUNTING" = 1 ]; then PLANNED=$(( PLANNED + limit )); return; fi
  echo "=== $name: $*" | tee "$log" >> "$OUT/steps.log"
  start=$(date +%s)
  timeout $(( limit * SLACK )) "$@" 2>&1 | tee -a "$log" >> "$OUT/steps.log"
  rc=$?
  result=ok
  if [ "$rc" -ne 0 ]; then
    result=$([ "$rc" = 124 ] && echo "TIMEOUT" || echo "FAIL")
    fail "[$name] exit $rc after $(( $(date +%s) - start )) s (limit $(( limit * SLACK )) s); see steps.log"
    grep -h "^FAIL" "$log" | sed "s/^/  [$name] /" | tee -a "$FAILS"
    grep -hE "Error|error:" "$log" | tail -2 | sed "s/^/  [$name] /" | tee -a "$FAILS"
  fi
  printf '%-18s %-8s %5s s %5s s  %s\n' "$name" "$result" "$(( $(date +%s) - start ))" "$limit" \
    "$(grep -h "^FIGURE " "$log" | cut -d' ' -f2- | paste -sd';' - | sed 's/;/; /g')" >> "$ROWS"
  echo "[$name] $result"
}

dry_steps() {
  # A CPU stand-in for GPU 0 (MGEN_CUDA_STANDIN), one thread per process (the CI box is small and shared).
  step tests 110 "$PY" -m pytest -q -p no:cacheprovider -m cuda tests/test_cuda.py -rA
  # Every decoder layer "in RAM" and streamed, against the reference engine: identity asserted.
  step bench-tiny 60 "$PY" benchmarks/bench_decode.py --shape tiny --device cpu --frames 8 --check-frames 4 \
    --gpu-budget-gib 0 --threads 1 --require-identical
  step plan-tiny 40 "$PY" benchmarks/bench_gpu_plan.py --shape tiny --duration 0.3 --standin
  step suite 70 "$PY" -m musicgen_cli test-suite --quick --model-key tiny-random --device cpu \
    --out-dir "$WORK/suite" --json
}

real_steps() {
  step tests 90 "$PY" -m pytest -q -p no:cacheprovider -m cuda tests/test_cuda.py -rA
  # bfloat16 at real shapes: reference vs fast vs graphed speed; figures only (bf16 kernels differ).
  step bench-small 45 "$PY" benchmarks/bench_decode.py --shape small --dtype bfloat16 --frames 150 --check-frames 20
  step vram-small 30 "$PY" benchmarks/bench_gpu_plan.py --shape small
  step vram-medium 40 "$PY" benchmarks/bench_gpu_plan.py --shape medium --card-gib 8
  # The streamed bfloat16 plan as on an 8 GiB card, with a 30 s window's cache.
  step vram-large-8gib-30s 110 "$PY" benchmarks/bench_gpu_plan.py --shape large --card-gib 8 --duration 30
  # Layers in RAM computed on the CPU: measured steps/s against the plan's estimate.
  step cpu-mode-large 40 "$PY" benchmarks/bench_gpu_plan.py --shape large --card-gib 8 --duration 2 --mode cpu
  step shape-small 30 "$PY" benchmarks/write_shape_models.py "$WORK/models" small
  step suite-small 60 "$PY" -m musicgen_cli test-suite --quick --only small --model-key "small=$WORK/models/small" \
    --out-dir "$WORK/suite" --json
}

# Both modes' limits must fit their budgets, whichever mode runs (the dry run in CI keeps the
# real one honest).
COUNTING=1
for mode in dry real; do
  PLANNED=0
  "${mode}_steps"
  budget=$([ $mode = dry ] && echo $DRY_BUDGET_S || echo $REAL_BUDGET_S)
  if [ $(( PLANNED + SETUP_S )) -gt "$budget" ]; then
    fail "the $mode steps' limits add up to $PLANNED s + $SETUP_S s of setup, over the $budget s budget"
  fi
done
COUNTING=0
START=$(date +%s)

if ls "$WHEELS"/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --disable-pip-version-check \
    --target "$WORK/site" "$WHEELS"/*.whl || { fail "the carried wheels in $WHEELS do not install into $PY"; }
  export PYTHONPATH="$WORK/site:$PYTHONPATH"
  CARRIED="$(ls "$WHEELS"/*.whl | wc -l) carried wheels"
else
  CARRIED="no carried wheels"
fi
ENVIRONMENT="$("$PY" -c 'import sys, torch, transformers, huggingface_hub as h; print(f"python {sys.version.split()[0]}, torch {torch.__version__}, transformers {transformers.__version__}, huggingface_hub {h.__version__}")' 2>&1 | tail -1)"

if [ ! -s "$FAILS" ]; then
  if [ "$DRY" = 1 ]; then
    export MGEN_CUDA_STANDIN=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
    MACHINE="dry run on the CPU stand-in, $(uname -m)"
    dry_steps
  else
    MACHINE="$("$PY" -c "import torch; p = torch.cuda.get_device_properties(0); print(f'{p.name}, sm {p.major}.{p.minor}, {p.total_memory / 2**30:.0f} GiB')" 2>/dev/null)"
    [ -n "$MACHINE" ] || { fail "no CUDA device: use --dry-run"; }
    [ -s "$FAILS" ] || real_steps
  fi
fi

{
  echo "gpu_check $( [ "$DRY" = 1 ] && echo "--dry-run " )$(date -u +%FT%TZ): ${MACHINE:-no machine}"
  echo "$ENVIRONMENT; $CARRIED; $(( $(date +%s) - START )) s of the $BUDGET_S s budget"
  echo
  printf '%-18s %-8s %7s %7s  %s\n' step result time limit figures
  cat "$ROWS"
  if [ -s "$MGEN_CHECK_REPORT" ]; then echo; echo "reported by the tests:"; sed 's/^/  /' "$MGEN_CHECK_REPORT"; fi
  echo
  if [ -s "$FAILS" ]; then cat "$FAILS"; else echo "all steps passed"; fi
} > "$SUMMARY"
cat "$SUMMARY"
[ ! -s "$FAILS" ]
