"""What a benchmark ran on: CPU, cores, memory, package versions, git commit, load average.

Every result file records this so figures from different machines or commits are never
compared by accident.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PACKAGES = (
    "pymilvus", "milvus-lite", "torch", "onnxruntime", "transformers", "sentence-transformers",
    "FlagEmbedding", "grpcio", "protobuf", "numpy", "ranx",
)


def loadavg() -> tuple[float, float, float]:
    """The 1, 5 and 15 minute load averages (NaN where /proc/loadavg is missing)."""
    try:
        one, five, fifteen = Path("/proc/loadavg").read_text().split()[:3]
    except OSError:
        return float("nan"), float("nan"), float("nan")
    return float(one), float(five), float(fifteen)


def _proc_field(path: str, prefix: str) -> str | None:
    with contextlib.suppress(OSError):
        for line in Path(path).read_text().splitlines():
            if line.startswith(prefix):
                return line.split(":", 1)[1].strip()
    return None


def vm_rss_kib(pid: int) -> int:
    """Resident memory of a process (VmRSS), 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (native Milvus Lite's engine is a child of the
    process that opened the store)."""
    out: list[int] = []
    stack = [pid]
    while stack:
        parent = stack.pop()
        try:
            tasks = list(Path(f"/proc/{parent}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            with contextlib.suppress(OSError, ValueError):
                for child in (task / "children").read_text().split():
                    out.append(int(child))
                    stack.append(int(child))
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a live process has used, 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def git_commit() -> str:
    """The short commit, marked when tracked files have uncommitted changes."""
    commit = "?"
    with contextlib.suppress(Exception):
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip() or "?"
        if subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip():
            commit += " (with uncommitted changes)"
    return commit


def machine_info() -> dict[str, Any]:
    memtotal = _proc_field("/proc/meminfo", "MemTotal")
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count()
    versions = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "not installed"
    commit = git_commit()
    return {
        "cpu": _proc_field("/proc/cpuinfo", "model name") or platform.processor() or platform.machine(),
        "cores": cores,
        "ram_gib": round(int(memtotal.split()[0]) / 1024**2, 1) if memtotal else None,
        "os": f"{platform.system()} {platform.release()}",
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "versions": versions,
        "git": commit,
        "commit": commit,
    }
