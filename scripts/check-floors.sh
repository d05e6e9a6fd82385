#!/usr/bin/env bash
# Check pyproject.toml's lower bounds: install the lowest versions its ranges allow
# (uv's lowest-direct resolution: our direct dependencies at their floors, the rest as the
# resolver picks) into a separate virtualenv and run the default suite there. Run it after
# changing a range, and before a release; a failure means a floor is too low (raise it, with a
# comment saying why). Needs bash scripts/setup.sh first (for the locked uv). About 15 min.
set -euo pipefail
cd "$(dirname "$0")/.."
UV=${UV:-.venv/bin/uv}
VENV=${FLOORS_VENV:-.venv-floors}
lowest=$(mktemp)
trap 'rm -f "$lowest"' EXIT
mapfile -t torch_links < <(bash scripts/torch-source.sh)
"$UV" pip compile pyproject.toml --extra test --extra tracing --resolution lowest-direct --python-version 3.11 \
  --python-platform x86_64-manylinux_2_28 "${torch_links[@]}" -c requirements/torch-cpu.txt --no-annotate --quiet -o "$lowest"
[ -x "$VENV/bin/python" ] || python3 -m venv --without-pip "$VENV"
"$UV" pip sync --quiet --python "$VENV/bin/python" "${torch_links[@]}" "$lowest"
"$UV" pip install --quiet --python "$VENV/bin/python" --no-deps --no-build-isolation -e .
echo "floors installed in $VENV:" >&2
grep -iE '^(numpy|scipy|pydantic|grpcio|protobuf|pymilvus|flagembedding|transformers|sentence-transformers|onnxruntime|torch)==' "$lowest" >&2
# The lint and the lock checks are about the locked environment, not about the floors.
OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} exec "$VENV/bin/python" -m pytest -q -m "not slow" -p no:cacheprovider \
  --basetemp "$(mktemp -d)" --deselect tests/test_packaging.py --deselect tests/test_lint.py "$@"
