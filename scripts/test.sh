#!/usr/bin/env bash
# Set everything up (full stack: torch and tensorflow extras) and run the whole test suite.
# Extra arguments go to pytest. Exit status: pytest's, except "no tests collected" (5), reported as such.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
set +e
.venv/bin/python -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "test.sh: pytest collected no tests (exit 5); check the paths and markers given" >&2
  exit 0
fi
exit "$status"
