#!/usr/bin/env bash
# Set up, then run the default test suite (tiny models built at test time, Milvus Lite).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
exec .venv/bin/python -m pytest -q -m "not slow" "$@"
