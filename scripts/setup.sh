#!/usr/bin/env bash
# Create .venv and install exactly what requirements/cpu.lock says: every package at its locked
# version and hash, torch as the CPU build. Then the project itself, editable, without its
# dependencies (the lock has them all). Re-running is quick: it does nothing while
# pyproject.toml and the lock are unchanged.
#
# HSEARCH_LOCK=requirements/cuda.lock installs the CUDA build of torch instead (GPU machines).
# HSEARCH_TORCH_SOURCE: a folder or page holding the CPU torch wheel (scripts/torch-source.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
LOCK=${HSEARCH_LOCK:-requirements/cpu.lock}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=".venv/.hsearch-installed"
want=$(cat pyproject.toml "$LOCK" | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
# uv installs the lock: 9 s from an empty cache where pip takes 104 s (benchmarks/README.md,
# "Installing"). uv itself comes at the version and hashes the lock gives it, through pip.
locked_uv=$(sed -n 's/^uv==\([^ ]*\).*/\1/p' "$LOCK")
if [ "$(.venv/bin/uv --version 2>/dev/null | cut -d' ' -f2)" != "$locked_uv" ]; then
  uv_requirement=$(mktemp)
  trap 'rm -f "$uv_requirement"' EXIT
  awk '/^uv==/ {take=1; print; next} take && /^ +--hash/ {print; next} {take=0}' "$LOCK" > "$uv_requirement"
  PIP_CONFIG_FILE=/dev/null .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps --require-hashes -r "$uv_requirement"
fi
torch_source=()
if [ "$LOCK" = requirements/cpu.lock ]; then
  mapfile -t torch_source < <(bash scripts/torch-source.sh)
fi
.venv/bin/uv pip sync --quiet --python .venv/bin/python --require-hashes "${torch_source[@]}" "$LOCK"
.venv/bin/uv pip install --quiet --python .venv/bin/python --no-deps --no-build-isolation -e .
echo "$want" > "$stamp"
