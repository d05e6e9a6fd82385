"""Noisy neighbour: one tenant's burst of heavy searches against another tenant's latency.

Issue 28's other scenarios (ingest, cancelled bulk loads, long queries, idle streams, long
documents) and this one on a fresh store are in ``benchmarks/bench_isolation.py``.

    python -m benchmarks.bench_noisy_neighbour                      # fair admission, defaults
    python -m benchmarks.bench_noisy_neighbour --label before       # same script on an older checkout

Issue 15's target: with tenant A running 64 concurrent heavy searches (``dense_k`` and
``sparse_k`` 2000), tenant B's p95 search latency stays within 2x of its idle p95, and A
gets RESOURCE_EXHAUSTED for what exceeds its share.

1. The load test's cached store (``benchmarks.load_test.prepare_store``: SciFact documents
   over two tenants, profile ``minilm-bm25``) is copied for the run and served by
   ``python -m hybridsearch.engine.cli serve`` in a subprocess (dev_header auth: the scheduling is what
   is measured). ``--limits`` are passed as the config's ``limits`` (JSON), so the same
   script measures other settings.
2. **Idle**: B sends ``--queries`` ordinary searches one after another (top_k 10, RRF,
   default depths), each query text used once (no query-cache hits).
3. **Noisy**: A starts ``--a-clients`` closed-loop clients of heavy searches. A client
   refused with RESOURCE_EXHAUSTED waits what the server's retry hint says (at least
   50 ms), as a well-behaved client does. After ``--settle-s``, B sends another
   ``--queries`` ordinary searches (other query texts) one after another.
4. Reported: B's p50/p95/max idle and under A, their ratio; A's calls sent, answered,
   refused and its answered per second; errors other than RESOURCE_EXHAUSTED.

Writes ``benchmarks/results/admission/noisy_neighbour-<label>.json`` and prints a Markdown row
(label, B idle p50 / p95, B under A p50 / p95, ratio of p95s, A answered, A refused, other errors).
"""

from __future__ import annotations

from benchmarks.harness import offline_env

offline_env()

import argparse
import json
import logging
import os
import shutil
import threading
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import grpc
import numpy as np

from benchmarks.harness import (
    DEFAULT_DATA,
    RESULTS,
    ServerProcess,
    free_port,
    loadavg,
    machine_info,
    stats,
    write_config,
)
from benchmarks.load_test import COLLECTION, base_config, load_queries, prepare_store

log = logging.getLogger("noisy_neighbour")


STAGES = ("encode", "dense_search", "sparse_search", "fusion", "fetch", "total")


def b_pass(target: str, tenant: str, queries) -> tuple[list[float], dict[str, float]]:
    """Client-side latencies (ms) of one search per query, and the server's stage medians."""
    from hybridsearch.engine.client import HybridSearchClient

    out, stages = [], {s: [] for s in STAGES}
    with HybridSearchClient(target, tenant=tenant, timeout=120) as client:
        for q in queries:
            t0 = time.perf_counter()
            reply = client.search(COLLECTION, q, top_k=10)
            out.append((time.perf_counter() - t0) * 1000)
            for s in STAGES:
                stages[s].append(getattr(reply.timings, f"{s}_ms", float("nan")))
    return out, {s: round(float(np.median(v)), 1) for s, v in stages.items()}


class NoisyTenant:
    """``clients`` closed-loop threads of heavy searches, honouring the retry hint."""

    def __init__(self, target: str, tenant: str, queries, clients: int, depth: int):
        self.target, self.tenant, self.queries, self.clients, self.depth = target, tenant, queries, clients, depth
        self.stop = threading.Event()
        self.counts: Counter = Counter()
        self.latencies: list[float] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(clients)]

    def _run(self, i: int) -> None:
        from hybridsearch.engine.client import HybridSearchClient

        try:
            from hybridsearch.engine.admission import retry_after_ms
        except ImportError:  # a checkout from before fair admission (--label before)

            def retry_after_ms(_exc):
                return None

        with HybridSearchClient(self.target, tenant=self.tenant, timeout=120) as client:
            n = i
            while not self.stop.is_set():
                q = self.queries[n % len(self.queries)] + f" {n}"  # a new text each time: encoded, not cached
                n += self.clients
                t0 = time.perf_counter()
                try:
                    client.search(COLLECTION, q, top_k=10, dense_k=self.depth, sparse_k=self.depth)
                    with self.lock:
                        self.counts["ok"] += 1
                        self.latencies.append((time.perf_counter() - t0) * 1000)
                except grpc.RpcError as exc:
                    with self.lock:
                        self.counts[exc.code().name] += 1
                    if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                        self.stop.wait(max(50, retry_after_ms(exc) or 0) / 1000)
                    else:
                        self.stop.wait(0.05)

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(130)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--label", default="fair")
    p.add_argument(
        "--limits", default="{}", help="the config's limits section as JSON, e.g. '{\"max_running_per_tenant\": 4}'"
    )
    p.add_argument("--max-workers", type=int, default=0, help="server.max_workers (0: the service's default)")
    p.add_argument("--docs", type=int, default=2000)
    p.add_argument("--queries", type=int, default=100, help="B's searches per pass")
    p.add_argument("--a-clients", type=int, default=64)
    p.add_argument("--depth", type=int, default=2000, help="A's dense_k and sparse_k")
    p.add_argument("--settle-s", type=float, default=5.0)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--out-dir", type=Path, default=RESULTS / "admission")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    store, info = prepare_store(SimpleNamespace(docs=args.docs, tenants=2, data=args.data))
    noisy, quiet = info["tenants_list"]
    run = store.parent / f"noisy-{args.label}-{os.getpid()}"
    shutil.rmtree(run, ignore_errors=True)
    shutil.copytree(store / "data", run / "data")
    port = free_port()
    config = base_config(run / "data", port, "dev_header", {"enabled": False})
    if args.max_workers:
        config["server"]["max_workers"] = args.max_workers
    limits = json.loads(args.limits)
    if limits:
        config["limits"] = limits
    server = ServerProcess(write_config(run / "config.yaml", config), run / "server.log", f"127.0.0.1:{port}")
    queries = load_queries(args.data)
    b_idle_q, b_noisy_q, a_q = (
        queries[: args.queries],
        queries[args.queries : 2 * args.queries],
        queries[2 * args.queries :],
    )
    server.start()
    try:
        b_pass(server.target, quiet, queries[-20:])  # warm the models' first calls
        idle, idle_stages = b_pass(server.target, quiet, b_idle_q)
        a = NoisyTenant(server.target, noisy, a_q, args.a_clients, args.depth)
        a.start()
        time.sleep(args.settle_s)
        t0 = time.perf_counter()
        busy, busy_stages = b_pass(server.target, quiet, b_noisy_q)
        a_window_s = time.perf_counter() - t0 + args.settle_s
        a.finish()
        alive = server.alive()
    finally:
        server.stop()
        shutil.rmtree(run, ignore_errors=True)
    b_idle, b_busy = stats(idle), stats(busy)
    result = {
        "label": args.label,
        "limits": limits,
        "max_workers": args.max_workers or "default",
        "docs": args.docs,
        "a_clients": args.a_clients,
        "a_depth": args.depth,
        "b_idle_ms": b_idle,
        "b_under_a_ms": b_busy,
        "b_stage_medians_ms": {"idle": idle_stages, "under_a": busy_stages},
        "p95_ratio": round(b_busy["p95"] / b_idle["p95"], 2),
        "a_counts": dict(a.counts),
        "a_answered_per_s": round(a.counts["ok"] / a_window_s, 1),
        "a_latency_ms": stats(a.latencies) if a.latencies else None,
        "server_alive_after": alive,
        "machine": machine_info(),
        "loadavg_after": loadavg(),
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    out = args.out_dir / f"noisy_neighbour-{args.label}.json"
    out.write_text(json.dumps(result, indent=2))
    refused = a.counts.get("RESOURCE_EXHAUSTED", 0)
    other = {k: v for k, v in a.counts.items() if k not in ("ok", "RESOURCE_EXHAUSTED")}
    print(
        f"| {args.label} | {b_idle['p50']:.1f} / {b_idle['p95']:.1f} | {b_busy['p50']:.1f} / {b_busy['p95']:.1f} | "
        f"{result['p95_ratio']}x | {a.counts['ok']} ({result['a_answered_per_s']}/s) | {refused} | {other or 0} |"
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
