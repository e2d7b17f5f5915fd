#!/usr/bin/env bash
# Kept for users of the original workflow: a thin wrapper over `mgen test-suite`.
# Arguments pass through, e.g. scripts/run_tests.sh --quick --only small
set -euo pipefail
exec mgen test-suite "$@"
