#!/usr/bin/env bash
# Where the CPU torch wheel of requirements/cpu.lock comes from, as installer arguments, one per
# line: HSEARCH_TORCH_SOURCE (a folder or page) when set, else /opt/wheels where it exists (this
# project's machines keep the wheel there), else PyTorch's own torch page, so that no other
# package can come from that index. setup.sh, lock.sh, check-floors.sh, the packaging test and
# benchmarks/bench_install.py all ask this script.
set -euo pipefail
if [ -n "${HSEARCH_TORCH_SOURCE:-}" ]; then
  printf '%s\n' --find-links "$HSEARCH_TORCH_SOURCE"
elif [ -d /opt/wheels ]; then
  printf '%s\n' --find-links /opt/wheels
else
  printf '%s\n' --find-links https://download.pytorch.org/whl/torch/
fi
