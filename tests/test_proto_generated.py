"""The committed generated code must match the .proto (regenerate with scripts/gen_proto.sh)."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GENERATED = ["hybridsearch_pb2.py", "hybridsearch_pb2.pyi", "hybridsearch_pb2_grpc.py"]


def test_generated_stubs_match_the_proto(tmp_path):
    shutil.copytree(ROOT / "proto", tmp_path / "proto")
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-Iproto", "--python_out=proto", "--pyi_out=proto", "--grpc_python_out=proto", "proto/hybridsearch/v1/hybridsearch.proto"],
        cwd=tmp_path,
        check=True,
    )
    for name in GENERATED:
        fresh = (tmp_path / "proto/hybridsearch/v1" / name).read_text()
        committed = (ROOT / "proto/hybridsearch/v1" / name).read_text()
        assert fresh == committed, f"{name} is stale: run scripts/gen_proto.sh"
