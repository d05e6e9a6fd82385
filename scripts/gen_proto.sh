#!/usr/bin/env bash
# Regenerate the Python stubs from proto/ (the generated files are committed) with the locked
# grpcio-tools. The stubs then require grpcio and protobuf at least as new as that generator:
# tests/test_packaging.py says so if pyproject.toml's floors for them are lower.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m grpc_tools.protoc -Iproto --python_out=proto --pyi_out=proto --grpc_python_out=proto proto/hybridsearch/v1/hybridsearch.proto
