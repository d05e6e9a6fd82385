"""The committed generated code must come from the committed .proto (regenerate with
scripts/gen_proto.sh).

What is compared is the code, not the generator's version stamp: the stubs carry the version of
grpcio-tools and protoc that wrote them (GRPC_GENERATED_VERSION, the protobuf runtime check),
and a patch release of grpcio-tools changes that stamp while the code stays the same. The stamp
is normalised before comparing. It is not ignored: it sets the oldest grpcio and protobuf the
stubs import under, and tests/test_packaging.py holds pyproject.toml's floors to it. The
generator itself is pinned by requirements/cpu.lock, so scripts/gen_proto.sh writes the same
files on every machine set up from the lock.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GENERATED = ["hybridsearch_pb2.py", "hybridsearch_pb2.pyi", "hybridsearch_pb2_grpc.py"]

# The generator's version stamp, wherever it appears in the generated files.
VERSION_STAMPS = [
    (re.compile(r"^GRPC_GENERATED_VERSION = '[^']*'$", re.M), "GRPC_GENERATED_VERSION = '<grpcio-tools>'"),
    (re.compile(r"^# Protobuf Python Version: \S+$", re.M), "# Protobuf Python Version: <protoc>"),
    (
        re.compile(r"(ValidateProtobufRuntimeVersion\(\s*_runtime_version\.Domain\.PUBLIC,)\s*\d+,\s*\d+,\s*\d+,"),
        r"\1 <protoc>,",
    ),
]


def without_version_stamp(code: str) -> str:
    for pattern, replacement in VERSION_STAMPS:
        code = pattern.sub(replacement, code)
    return code


def test_generated_stubs_match_the_proto(tmp_path):
    shutil.copytree(ROOT / "proto", tmp_path / "proto")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-Iproto",
            "--python_out=proto",
            "--pyi_out=proto",
            "--grpc_python_out=proto",
            "proto/hybridsearch/v1/hybridsearch.proto",
        ],
        cwd=tmp_path,
        check=True,
    )
    for name in GENERATED:
        fresh = (tmp_path / "proto/hybridsearch/v1" / name).read_text()
        committed = (ROOT / "proto/hybridsearch/v1" / name).read_text()
        assert without_version_stamp(fresh) == without_version_stamp(committed), (
            f"{name} is stale: run scripts/gen_proto.sh"
        )


def test_the_comparison_ignores_the_generator_version_and_nothing_else():
    stub = "import grpc\n\nGRPC_GENERATED_VERSION = '1.85.1'\nclass HybridSearchStub:\n    pass\n"
    newer = stub.replace("1.85.1", "1.85.4")
    assert without_version_stamp(stub) == without_version_stamp(newer)
    assert without_version_stamp(stub) != without_version_stamp(newer.replace("HybridSearchStub", "OtherStub"))
    pb2 = "# Protobuf Python Version: 7.35.1\n_runtime_version.ValidateProtobufRuntimeVersion(\n    _runtime_version.Domain.PUBLIC,\n    7,\n    35,\n    1,\n    '',\n"
    assert without_version_stamp(pb2) == without_version_stamp(pb2.replace("35", "36"))
    assert without_version_stamp(pb2) != without_version_stamp(pb2.replace("''", "'-dev'"))
