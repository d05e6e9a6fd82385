"""Installs are reproducible and the package installs cleanly beside other software.

- requirements/cpu.lock (what scripts/setup.sh, so the README's two commands and CI, install)
  satisfies pyproject.toml, and this environment is that lock;
- requirements/cuda.lock pins the same versions with the CUDA build of torch;
- pyproject.toml's floors for grpcio and protobuf are the ones the committed stubs need;
- the wheel adds one top-level name, `hybridsearch`, and works from a clean virtualenv holding
  only the locked dependencies: `hsearch --help`, every subpackage imports, `hsearch info`
  against a server that virtualenv started.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
import tomllib
import yaml
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from benchmarks.harness import ServerProcess, free_port, torch_source, venv_tool

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
LOCKED_EXTRAS = ("test", "bench", "tracing")  # scripts/lock.sh
LOCK = ROOT / os.environ.get("HSEARCH_LOCK", "requirements/cpu.lock")
# The folders the wheel maps under hybridsearch (pyproject's package-dir).
PACKAGE_DIRS = PYPROJECT["tool"]["setuptools"]["package-dir"]


def read_lock(path: Path) -> dict[str, str]:
    """name -> exact version of every package a lock file pins."""
    pins = {}
    for line in path.read_text().splitlines():
        found = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line)
        if found:
            pins[canonicalize_name(found[1])] = found[2]
    return pins


def requirements_of_pyproject() -> list[Requirement]:
    project = PYPROJECT["project"]
    listed = list(project["dependencies"])
    for extra in LOCKED_EXTRAS:
        listed += project["optional-dependencies"][extra]
    return [Requirement(r) for r in listed]


# ---------------------------------------------------------------- the lock


def test_the_lock_satisfies_every_requirement_of_pyproject():
    """A requirement added or narrowed in pyproject.toml without `bash scripts/lock.sh` fails here."""
    pins = read_lock(ROOT / "requirements/cpu.lock")
    environment = default_environment()
    for requirement in requirements_of_pyproject():
        if requirement.marker is not None and not requirement.marker.evaluate(environment):
            continue
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is in pyproject.toml but not in the lock: run bash scripts/lock.sh"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"the lock pins {name}=={pins[name]}, outside pyproject.toml's {requirement}: run bash scripts/lock.sh"
        )


def test_every_locked_package_has_a_hash():
    text = (ROOT / "requirements/cpu.lock").read_text()
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2])
    assert blocks and all("--hash=sha256:" in block for block in blocks if "==" in block)


def test_the_lock_takes_the_cpu_build_of_torch_and_no_cuda_wheels():
    pins = read_lock(ROOT / "requirements/cpu.lock")
    assert pins["torch"].endswith("+cpu")
    assert not [name for name in pins if name.startswith(("nvidia-", "triton"))]


def test_the_cuda_lock_pins_the_same_versions_with_the_cuda_build_of_torch():
    cpu, cuda = read_lock(ROOT / "requirements/cpu.lock"), read_lock(ROOT / "requirements/cuda.lock")
    assert cuda["torch"] == cpu["torch"].removesuffix("+cpu")
    differing = {name for name in cpu.keys() & cuda.keys() if cpu[name] != cuda[name]}
    assert differing == {"torch"}
    assert cpu.keys() <= cuda.keys()
    # what the CUDA build adds is CUDA's own runtime
    added = cuda.keys() - cpu.keys()
    assert added and all(name.startswith(("nvidia-", "cuda-", "triton")) for name in added), sorted(added)


def test_this_environment_is_the_lock():
    """What the suite runs on is exactly what a new user's `bash scripts/test.sh` installs."""
    pins = read_lock(LOCK)
    # Only the environment's own site-packages: pkg_resources (imported by milvus-lite) puts
    # setuptools' vendored copies of packaging and platformdirs on sys.path as well.
    site = list(dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]))
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions(path=site)}
    wrong = {name: (version, installed.get(name)) for name, version in pins.items() if installed.get(name) != version}
    assert not wrong, (
        f"installed versions differ from {LOCK.name} (locked, installed): {wrong}; run bash scripts/setup.sh"
    )


# ---------------------------------------------------------------- honest ranges


def _floor(name: str) -> Version:
    for requirement in requirements_of_pyproject():
        if canonicalize_name(requirement.name) == name:
            floors = [Version(s.version) for s in requirement.specifier if s.operator in (">=", "==", "~=")]
            assert floors, f"pyproject.toml gives {name} no lower bound"
            return max(floors)
    raise AssertionError(f"{name} is not in pyproject.toml")


def test_pyproject_floors_for_grpcio_and_protobuf_are_what_the_committed_stubs_import_under():
    stubs = ROOT / "proto/hybridsearch/v1"
    grpc_generated = re.search(
        r"^GRPC_GENERATED_VERSION = '([^']+)'", (stubs / "hybridsearch_pb2_grpc.py").read_text(), re.M
    )[1]
    protoc = re.search(r"^# Protobuf Python Version: (\S+)", (stubs / "hybridsearch_pb2.py").read_text(), re.M)[1]
    assert _floor("grpcio") >= Version(grpc_generated), "the stubs raise RuntimeError under an older grpcio"
    assert _floor("protobuf") >= Version(protoc), "the stubs refuse an older protobuf runtime"
    protobuf = next(r for r in requirements_of_pyproject() if r.name == "protobuf")
    assert not protobuf.specifier.contains(f"{Version(protoc).major + 1}.0.0"), (
        "a new protobuf major refuses these stubs"
    )


# ---------------------------------------------------------------- one namespace


def python_packages_in_the_tree() -> set[str]:
    """Every folder with an __init__.py under the mapped folders, as its installed name."""
    found = set()
    for name, folder in PACKAGE_DIRS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((name, *relative)))
    return found


def test_every_package_folder_is_listed_in_pyproject():
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    missing = python_packages_in_the_tree() - listed
    assert not missing, f"add these to [tool.setuptools] packages in pyproject.toml: {sorted(missing)}"
    assert all(name == "hybridsearch" or name.startswith("hybridsearch.") for name in listed)


def test_the_source_tree_never_imports_the_folders_by_their_bare_names():
    """Installed, engine/ is hybridsearch.engine: a bare `import engine` works in a checkout only."""
    bare = re.compile(r"^\s*(from|import)\s+(engine|fusion|rerank|training)(\.|\s|$)", re.M)
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("engine", "fusion", "rerank", "training", "proto", "benchmarks", "tests")
        for path in (ROOT / folder).rglob("*.py")
        if bare.search(path.read_text(encoding="utf-8"))
    ]
    assert not offenders


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built from a copy of the package's folders (no stale build/ of the checkout)."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    for folder in {Path(f).parts[0] for f in PACKAGE_DIRS.values()}:
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(out),
            str(source),
        ],
        check=True,
        env={**os.environ, "PIP_CONFIG_FILE": os.devnull},
        timeout=300,
    )
    (built,) = out.glob("hybridsearch-*.whl")
    return built


def test_the_wheel_adds_one_top_level_name(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        top_level = {name.split("/")[0] for name in names if not name.split("/")[0].endswith((".dist-info", ".data"))}
        dist_info = next(n for n in names if n.endswith(".dist-info/RECORD")).rsplit("/", 1)[0]
        entry_points = archive.read(f"{dist_info}/entry_points.txt").decode()
    assert top_level == {"hybridsearch"}
    assert "hsearch = hybridsearch.engine.cli:main" in entry_points
    # the product, its stubs and its sample corpus; none of the source tree's tests or benchmarks
    assert "hybridsearch/v1/hybridsearch.proto" in names and "hybridsearch/samples/scifact-300.jsonl" in names
    assert not [
        n for n in names if n.startswith(("hybridsearch/tests", "hybridsearch/benchmarks", "tests/", "benchmarks/"))
    ]


def test_the_wheel_works_from_a_clean_virtualenv_with_the_locked_dependencies(wheel, tmp_path, tiny_m3_dir):
    uv = venv_tool("uv")
    assert uv, "uv is in the lock (test extra); run bash scripts/setup.sh"
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    install = {**os.environ, "PIP_CONFIG_FILE": os.devnull}
    subprocess.run(
        [
            uv,
            "pip",
            "sync",
            "--quiet",
            "--python",
            str(python),
            "--require-hashes",
            *torch_source(),
            str(ROOT / "requirements/cpu.lock"),
        ],
        check=True,
        env=install,
        timeout=600,
    )
    subprocess.run(
        [uv, "pip", "install", "--quiet", "--python", str(python), "--no-deps", str(wheel)],
        check=True,
        env=install,
        timeout=300,
    )

    # Run from a folder outside the checkout, with nothing of it on the path.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "HSEARCH_", "VIRTUAL_ENV"))}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="2")
    run = dict(cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    hsearch = str(venv / "bin" / "hsearch")

    shown = subprocess.run([hsearch, "--help"], **run)
    assert shown.returncode == 0 and "serve" in shown.stdout, shown.stderr

    packages = sorted(set(PYPROJECT["tool"]["setuptools"]["packages"]) - {"hybridsearch.samples"})
    code = "import importlib, json, hybridsearch; [importlib.import_module(p) for p in json.loads(input())]; print(hybridsearch.__file__)"
    imported = subprocess.run([str(python), "-c", code], input=json.dumps(packages), **run)
    assert imported.returncode == 0, imported.stderr
    assert Path(imported.stdout.strip()).is_relative_to(venv), imported.stdout

    port = free_port()
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data_dir": str(tmp_path / "data"),
                "profiles": {"tiny": {"kind": "bge-m3", "model": str(tiny_m3_dir), "max_length": 64}},
                "default_profile": "tiny",
                "server": {"host": "127.0.0.1", "port": port, "grace_s": 1},
                "rerank": {"enabled": False},
                "auth_mode": "dev_header",
            }
        )
    )
    server = ServerProcess(
        config,
        tmp_path / "server.log",
        f"127.0.0.1:{port}",
        command=[hsearch, "serve", "--config", str(config)],
        env=env,
        cwd=tmp_path,
    )
    try:
        server.start(timeout_s=120)
        info = subprocess.run([hsearch, "info", "--target", server.target, "--tenant", "wheel-test"], **run)
        assert info.returncode == 0, info.stderr
        reply = json.loads(info.stdout)
        assert reply["defaultProfile"] == "tiny"
        assert {p["name"] for p in reply["profiles"]} >= {"tiny", "e5-small"}
    finally:
        assert server.stop() == 0, server.log_text()[-3000:]
