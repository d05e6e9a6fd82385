#!/usr/bin/env bash
# Refresh the lock files from pyproject.toml: a deliberate step, never part of setup.
#
#   bash scripts/lock.sh                          # re-resolve after editing pyproject.toml; keeps every other pin
#   bash scripts/lock.sh --upgrade                # move every package to its newest allowed release
#   bash scripts/lock.sh --upgrade-package grpcio # move one
#
# Then check the result as a new user would: `bash scripts/test.sh` and `bash scripts/demo.sh`
# (setup.sh reinstalls from the new lock), and commit the lock files with the change.
#
# requirements/cpu.lock   what the README's two commands and CI install: exact versions and
#                         hashes for Linux x86_64, CPython 3.11, torch as the CPU build.
# requirements/cuda.lock  the same pins with PyPI's CUDA build of torch and its nvidia-* wheels,
#                         for GPU machines (README, "Installing").
set -euo pipefail
cd "$(dirname "$0")/.."
UV=${UV:-.venv/bin/uv}
if [ ! -x "$UV" ]; then
  echo "scripts/lock.sh: $UV not found; run bash scripts/setup.sh first (it installs the locked uv), or set UV" >&2
  exit 2
fi
common=(pyproject.toml --extra test --extra bench --extra tracing --generate-hashes
        --python-version 3.11 --python-platform x86_64-manylinux_2_28 --quiet
        --custom-compile-command "bash scripts/lock.sh")
mapfile -t torch_links < <(bash scripts/torch-source.sh)
"$UV" pip compile "${common[@]}" "${torch_links[@]}" -c requirements/torch-cpu.txt -o requirements/cpu.lock "$@"
# The CUDA lock takes every pin of the CPU lock but torch's, so the two differ only by the build
# of torch and what it brings (tests/test_packaging.py checks this).
same_pins=$(mktemp)
trap 'rm -f "$same_pins"' EXIT
sed -n 's/^\([A-Za-z0-9][A-Za-z0-9._-]*==[^ ]*\).*/\1/p' requirements/cpu.lock | grep -v '^torch==' > "$same_pins"
"$UV" pip compile "${common[@]}" --no-annotate -c requirements/torch-cuda.txt -c "$same_pins" -o requirements/cuda.lock

echo "wrote requirements/cpu.lock and requirements/cuda.lock; now run bash scripts/test.sh and bash scripts/demo.sh" >&2
