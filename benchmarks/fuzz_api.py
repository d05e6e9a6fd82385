"""The long fuzz run: the cases of benchmarks/fuzz_cases.py (the short test's) for minutes, against a server subprocess.

    python -m benchmarks.fuzz_api --minutes 5
    python -m benchmarks.fuzz_api --minutes 5 --seed 1234 --out /tmp/fuzz.md   # also write a report (+ .json)

The server is ``python -m hybridsearch.engine.cli serve --config <run>/config.yaml`` on 127.0.0.1 with the
test suite's settings (``tests.conftest.make_settings``: tiny BGE-M3-format models and the
tiny reranker, built once by ``tests/tiny_models.py`` into ``benchmarks/.cache/fuzz/models``;
``auth_mode: dev_header``) on a fresh Milvus Lite directory. The same seed collections as
the short test are created, then Hypothesis draws calls (``benchmarks.fuzz_cases.calls``) in
batches of ``--batch`` examples, a new seed per batch, until the time is up. Nothing is
shrunk and nothing stops the run: every call that breaks the contract (a status outside
``ALLOWED`` such as INTERNAL or UNKNOWN, an empty message, a transport failure) is recorded
with its request. The server process must be alive after every batch; at the end it must
still answer a good Search, report SERVING and exit 0 on SIGTERM.

Prints the counts by RPC and status code; exit status 1 on any problem.
"""

from __future__ import annotations

from benchmarks.harness import offline_env

offline_env()

import argparse
import datetime as dt
import json
import logging
import os
import random
import re
import shutil
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import grpc
from hypothesis import HealthCheck, Phase, given, seed, settings

from benchmarks import fuzz_cases as fuzz
from benchmarks.harness import CACHE, ServerProcess, command_line, free_port, loadavg, machine_info, write_config

FUZZ_CACHE = CACHE / "fuzz"
log = logging.getLogger("fuzz_api")


def server_config(data_dir: Path, models: Path, port: int) -> dict[str, Any]:
    """The test suite's settings (tests.conftest.make_settings) as a YAML-ready mapping.

    The one place a benchmark reaches into tests/: the long run serves exactly what the
    short test serves, with the tiny models the test suite builds (no weights to download)."""
    from tests.conftest import make_settings
    from tests.tiny_models import build_tiny_bge_m3, build_tiny_reranker

    m3 = build_tiny_bge_m3(models / "tiny-bge-m3")
    reranker = build_tiny_reranker(models / "tiny-reranker")
    settings_ = make_settings(
        data_dir, m3, reranker, server={"host": "127.0.0.1", "port": port, "grace_s": 2, "max_workers": 16}
    )
    return settings_.model_dump(mode="json")


class Tally:
    def __init__(self, max_problems: int = 50):
        self.by_rpc: Counter = Counter()
        self.by_code: Counter = Counter()
        self.problems: list[dict[str, str]] = []
        self.kinds: Counter = Counter()  # problems grouped by RPC, status and message (digits masked)
        self.n_problems = 0
        self.max_problems = max_problems
        self.calls = 0
        self.slowest: tuple[float, str] = (0.0, "")

    def record(self, call: fuzz.Call, outcome: fuzz.Outcome) -> None:
        self.calls += 1
        self.by_rpc[(call.name, outcome.code.name)] += 1
        self.by_code[outcome.code.name] += 1
        if outcome.seconds > self.slowest[0]:
            self.slowest = (outcome.seconds, f"{call.name} -> {outcome.code.name}")
        why = fuzz.problem(call, outcome)
        if why is not None:
            self.n_problems += 1
            kind = re.sub(r"\d+(\.\d+)?(e[+-]?\d+)?", "N", f"{call.name} {outcome.code.name}: {outcome.details[:120]}")
            if kind not in self.kinds:
                log.error("PROBLEM: %s\n  %r", why, call)
            self.kinds[kind] += 1
            if len(self.problems) < self.max_problems and self.kinds[kind] <= 3:
                self.problems.append({"problem": why, "call": repr(call)[:3000]})


def fuzz_for(
    stubs: fuzz.Stubs, minutes: float, first_seed: int, batch: int, tally: Tally, server: ServerProcess
) -> int:
    """Batches of ``batch`` examples, seeds first_seed, first_seed + 1, ..., until time is up."""
    end = time.monotonic() + minutes * 60
    batches = 0
    while time.monotonic() < end:

        @seed(first_seed + batches)
        @settings(
            max_examples=batch,
            deadline=None,
            database=None,
            derandomize=False,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(call=fuzz.calls())
        def one(call):
            if time.monotonic() < end:
                tally.record(call, fuzz.run_call(stubs, call))

        one()
        batches += 1
        if not server.alive():
            log.error("the server process died (exit code %s) during batch %d", server.proc.returncode, batches)
            break
        log.info("batch %d done: %d calls, %s", batches, tally.calls, dict(tally.by_code))
    return batches


def render(result: dict[str, Any]) -> str:
    lines = [
        "# Fuzzing the API (issue 5)",
        "",
        f"{result['date']} · {result['machine']['cpu']}, {result['machine']['cores']} cores · commit {result['machine']['commit']}",
        "",
        "```bash",
        result["command"],
        "```",
        "",
        f"{result['calls']:,} calls in {result['minutes_run']:.1f} min ({result['batches']} batches, seeds {result['first_seed']}..{result['first_seed'] + result['batches'] - 1}); "
        f"problems: **{result['problems_total']}**; server alive {result['after']['alive']}, health {result['after']['health']}, "
        f"good Search after the run: {result['after']['good_search']}, exit code on SIGTERM {result['after']['exit_code']}; "
        f"tracebacks in the server log: {result['after']['log_tracebacks']}. RSS {result['rss']['start_mib']:.0f} MiB at start, "
        f"{result['rss']['end_mib']:.0f} MiB at the end. Slowest call {result['slowest_s']:.2f} s ({result['slowest_call']}).",
        "",
        "| status | calls |",
        "|---|---:|",
    ]
    lines += [f"| {code} | {n:,} |" for code, n in sorted(result["by_code"].items(), key=lambda kv: -kv[1])]
    codes = sorted(result["by_code"], key=lambda c: -result["by_code"][c])
    lines += ["", "| RPC | " + " | ".join(codes) + " |", "|---|" + "---:|" * len(codes)]
    for rpc in sorted({k.split(" ")[0] for k in result["by_rpc"]}):
        lines.append(f"| {rpc} | " + " | ".join(f"{result['by_rpc'].get(f'{rpc} {c}', 0):,}" for c in codes) + " |")
    if result["problems"]:
        lines += ["", "## Problems", "", "| kind (digits masked) | calls |", "|---|---:|"]
        lines += [f"| {kind} | {n:,} |" for kind, n in result["problem_kinds"].items()]
        lines += ["", "Examples (at most 3 per kind):", ""]
        lines += [f"* {p['problem']}\n  `{p['call'][:500]}`" for p in result["problems"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=5.0)
    p.add_argument("--batch", type=int, default=100, help="examples per Hypothesis run (a new seed each)")
    p.add_argument("--seed", type=int, default=None, help="first seed (default: random, printed)")
    p.add_argument("--out", type=Path, default=None, help="also write a report here (.md; the .json goes beside it)")
    p.add_argument("--keep", action="store_true", help="keep the run directory (Milvus Lite store, server log)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    first_seed = args.seed if args.seed is not None else random.SystemRandom().getrandbits(31)
    command = command_line("benchmarks.fuzz_api", argv)
    log.info("first seed %d (rerun with --seed %d)", first_seed, first_seed)

    run_dir = FUZZ_CACHE / f"run-{dt.datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}"
    port = free_port()
    config = write_config(run_dir / "config.yaml", server_config(run_dir / "data", FUZZ_CACHE / "models", port))
    for name in [k for k in os.environ if k.startswith("HSEARCH_")]:
        os.environ.pop(name)  # the server reads HSEARCH_* settings; none of ours are meant for it
    server = ServerProcess(config, run_dir / "server.log", f"127.0.0.1:{port}")
    server.start()
    rss_start = server.rss_kib()
    tally = Tally()
    started = time.monotonic()
    after: dict[str, Any] = {}
    try:
        fuzz.seed_collections(server.target)
        with grpc.insecure_channel(server.target) as channel:
            batches = fuzz_for(fuzz.Stubs(channel), args.minutes, first_seed, args.batch, tally, server)
        minutes_run = (time.monotonic() - started) / 60
        after["alive"] = server.alive()
        after["health"] = server.health() if after["alive"] else "dead"
        rss_end = server.rss_kib() if after["alive"] else {"server": 0, "children": 0}
        try:
            fuzz.check_still_serving(server.target)
            after["good_search"] = "ok"
        except (AssertionError, grpc.RpcError) as exc:
            after["good_search"] = f"FAILED: {exc}"
    finally:
        after["exit_code"] = server.stop()
    after["log_tracebacks"] = server.log_count("Traceback")
    result = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
        "machine": machine_info(),
        "loadavg_end": loadavg(),
        "first_seed": first_seed,
        "batches": batches,
        "batch": args.batch,
        "minutes_run": minutes_run,
        "calls": tally.calls,
        "by_code": dict(tally.by_code),
        "by_rpc": {f"{rpc} {code}": n for (rpc, code), n in sorted(tally.by_rpc.items())},
        "problems_total": tally.n_problems,
        "problem_kinds": dict(tally.kinds.most_common()),
        "problems": tally.problems,
        "slowest_s": tally.slowest[0],
        "slowest_call": tally.slowest[1],
        "rss": {
            "start_mib": (rss_start["server"] + rss_start["children"]) / 1024,
            "end_mib": (rss_end["server"] + rss_end["children"]) / 1024,
        },
        "after": after,
    }
    report = render(result)
    print(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report)
        args.out.with_suffix(".json").write_text(json.dumps(result, indent=1, default=str))
    if args.keep:
        log.info("kept %s", run_dir)
    else:
        shutil.rmtree(run_dir, ignore_errors=True)
    ok = (
        tally.n_problems == 0
        and after.get("alive")
        and after.get("health") == "SERVING"
        and after.get("good_search") == "ok"
        and after.get("exit_code") == 0
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
