"""How long a new machine takes to install the project: unpinned pip (how scripts/setup.sh
installed before the lock), the lock through pip, the lock through uv (what setup.sh does now),
and setup.sh itself in a fresh clone. Each from an empty package cache and again warm.

    python -m benchmarks.bench_install --rounds 3

Every install goes into a new virtualenv under a temporary folder, with its own cache folder
(``cold``: emptied first; ``warm``: the one the cold run just filled), so nothing this machine
installed before is reused. The network is PyPI's; the CPU torch wheel comes from /opt/wheels
(this project's machines) as setup.sh takes it. Writes benchmarks/results/install.json and
prints the table for benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import REPO, RESULTS, command_line, loadavg, machine_info, say, stats, torch_source, venv_tool

LOCK = REPO / "requirements" / "cpu.lock"
EXTRAS = "test,bench,tracing"  # what the lock holds (scripts/lock.sh)


def _source_copy(into: Path) -> Path:
    """A fresh clone of the checkout's last commit, as a new user has it."""
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(REPO), str(into)], check=True)
    return into


def _timed(command: list[str], env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return seconds


def _uv() -> str:
    found = venv_tool("uv")
    if not found:
        raise SystemExit("uv not found: run bash scripts/setup.sh (the lock installs it)")
    return found


def one_round(work: Path) -> dict[str, dict[str, float]]:
    """Every way once cold and once warm: seconds per (way, cache)."""
    source = _source_copy(work / "src")
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHONPATH", "UV_", "PIP_"))}
    out: dict[str, dict[str, float]] = {}
    lock = source / "requirements" / "cpu.lock"
    for cache in ("cold", "warm"):
        if cache == "cold":
            for folder in ("pip-cache", "uv-cache", "setup-uv-cache"):
                shutil.rmtree(work / folder, ignore_errors=True)
        pip_env = {**base_env, "PIP_CACHE_DIR": str(work / "pip-cache"), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        uv_env = {**base_env, "UV_CACHE_DIR": str(work / "uv-cache")}

        venv = work / f"unpinned-{cache}"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        torch_pin = work / "torch-constraint.txt"
        torch_pin.write_text("torch==2.13.0\n")
        out.setdefault("unpinned pip (before the lock)", {})[cache] = _timed(
            [str(venv / "bin/python"), "-m", "pip", "install", "--quiet", "-c", str(torch_pin), "torch==2.13.0"],
            pip_env,
            source,
        ) + _timed(
            [str(venv / "bin/python"), "-m", "pip", "install", "--quiet", "-c", str(torch_pin), "-e", f".[{EXTRAS}]"],
            pip_env,
            source,
        )
        shutil.rmtree(venv)

        venv = work / f"pip-lock-{cache}"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        out.setdefault("lock, pip --require-hashes", {})[cache] = _timed(
            [
                str(venv / "bin/python"),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                "--require-hashes",
                "-r",
                str(lock),
            ],
            pip_env,
            source,
        )
        shutil.rmtree(venv)

        venv = work / f"uv-lock-{cache}"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        out.setdefault("lock, uv pip sync --require-hashes", {})[cache] = _timed(
            [
                _uv(),
                "pip",
                "sync",
                "--quiet",
                "--python",
                str(venv / "bin/python"),
                "--require-hashes",
                *torch_source(),
                str(lock),
            ],
            uv_env,
            source,
        )
        shutil.rmtree(venv)

        shutil.rmtree(source / ".venv", ignore_errors=True)
        # Its own uv cache: empty for the cold run, as on a new machine.
        setup_env = {**base_env, "UV_CACHE_DIR": str(work / "setup-uv-cache")}
        out.setdefault("bash scripts/setup.sh in a fresh clone (uv, the project too)", {})[cache] = _timed(
            ["bash", "scripts/setup.sh"], setup_env, source
        )
    shutil.rmtree(source / ".venv", ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_install",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", type=Path, default=RESULTS / "install.json")
    args = p.parse_args(argv)
    load_start = loadavg()
    rounds = []
    for i in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="bench-install-") as tmp:
            say(f"round {i + 1} of {args.rounds}")
            rounds.append(one_round(Path(tmp)))
            say(json.dumps(rounds[-1]))
    ways = list(rounds[0])
    summary = {
        way: {cache: stats([r[way][cache] for r in rounds], percentiles=()) for cache in ("cold", "warm")}
        for way in ways
    }
    result = {
        "command": command_line("benchmarks.bench_install", argv),
        "machine": machine_info(),
        "load": {"before": load_start, "after": loadavg()},
        "packages_in_lock": sum(
            1 for line in LOCK.read_text().splitlines() if "==" in line and not line.startswith((" ", "#"))
        ),
        "rounds": rounds,
        "summary": summary,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print("| install | empty cache: median (min-max) s | warm cache: median (min-max) s |")
    print("|---|---:|---:|")
    for way in ways:
        cells = [
            f"{summary[way][c]['p50']:.1f} ({summary[way][c]['min']:.1f}-{summary[way][c]['max']:.1f})"
            for c in ("cold", "warm")
        ]
        print(f"| {way} | {cells[0]} | {cells[1]} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
