"""Work isolation between tenants (issue 28): what tenant A's work does to tenant B's searches.

    python -m benchmarks.bench_isolation                          # every scenario, 3 runs, this checkout
    python -m benchmarks.bench_isolation --scenarios ingest-en --runs 1
    python -m benchmarks.bench_isolation --label before --server-pythonpath /tmp/before-pkg

One server (``hsearch serve`` in a child process, dev_header auth, the service's default
limits) on a fresh Milvus Lite directory, two collections: ``en`` on the built-in
``minilm-bm25`` profile (SciFact abstracts) and ``zh`` on ``e5-small`` (cmrc2018 sentences),
each with documents of tenants A and B. Per scenario and run, B sends ``--queries``
ordinary searches one after another (top_k 10, default depths, each text once: no
query-cache hits), first alone (**idle**) and then while A does the scenario's work:

* ``ingest-en`` / ``ingest-zh``: A upserts batches of 300 documents (English: SciFact
  abstracts of about 220 words; Chinese: paragraphs of 8 cmrc2018 sentences) one after
  another. Also A's documents/s alone (before B's idle pass) and during B's pass.
* ``cancel-en``: A starts BulkUpsert calls of 3 x 300 documents and cancels each after
  1 s. After B's pass: the seconds until the server's processes (Milvus Lite included) use
  under 10 % of a core, from the last cancel; and how many of A's cancelled documents were
  written (should be none).
* ``long-queries-zh``: two A clients search ``zh`` with 4,096-character Chinese queries,
  closed loop. Also the cost of one such query against a 100-character one (sequential,
  alone, server encode time and round trip).
* ``idle-streams``: A opens 200 Health.Watch streams with no credentials and leaves them
  idle (how many the server accepted and refused is reported).
* ``heavy-search``: 64 A clients search ``en`` closed loop with ``dense_k`` = ``sparse_k`` =
  1000, waiting what a RESOURCE_EXHAUSTED refusal's retry hint says (issue 15's scenario;
  ``benchmarks/bench_noisy_neighbour.py`` measures it on a 2,000-document store alone).
* ``long-doc``: no B pass: the time to upsert one 8,000-character document against one of
  about 512 tokens, English (minilm-bm25) and Chinese (e5-small), 5 each, alone.

The heavy-search scenario of issue 15 is ``benchmarks/bench_noisy_neighbour.py``.

Writes ``benchmarks/results/isolation/<label>.json`` and prints one Markdown row per run.
"""

from __future__ import annotations

from benchmarks.harness import offline_env

offline_env()

import argparse
import gzip
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import grpc
import numpy as np

from benchmarks.harness import (
    REPO,
    RESULTS,
    ServerProcess,
    descendants,
    free_port,
    loadavg,
    machine_info,
    stats,
    write_config,
)

log = logging.getLogger("isolation")
DATA = REPO.parent / "shared" / "data"
SCENARIOS = ("ingest-en", "ingest-zh", "cancel-en", "long-queries-zh", "idle-streams", "heavy-search", "long-doc")
A, B = "tenant-a", "tenant-b"


# ---------------------------------------------------------------- data
def _jsonl_gz(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _queries(name: str) -> list[str]:
    with open(DATA / name / "queries.jsonl", encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f if line.strip()]


class Texts:
    """Documents and queries of both languages."""

    def __init__(self) -> None:
        scifact = _jsonl_gz(DATA / "scifact" / "corpus.jsonl.gz")
        self.en_docs = [f"{d.get('title', '')} {d['text']}".strip() for d in scifact]
        cmrc = _jsonl_gz(DATA / "cmrc2018" / "corpus.jsonl.gz")
        self.zh_sentences = [d["text"] for d in cmrc]
        # Paragraph-sized Chinese documents: 8 consecutive sentences (~300 characters).
        self.zh_docs = ["".join(self.zh_sentences[i : i + 8]) for i in range(0, len(self.zh_sentences) - 8, 8)]
        self.en_queries, self.zh_queries = _queries("scifact"), _queries("cmrc2018")

    def batch(self, lang: str, start: int, n: int = 300) -> list[dict]:
        docs = self.en_docs if lang == "en" else self.zh_docs
        if lang == "en":  # about 220 words each
            pick = [
                " ".join((docs[(start + i) % len(docs)] + " " + docs[(start + i + 1) % len(docs)]).split()[:220])
                for i in range(n)
            ]
        else:
            pick = [docs[(start + i) % len(docs)] for i in range(n)]
        return [{"id": f"a-{lang}-{start + i}", "text": t} for i, t in enumerate(pick)]


# ---------------------------------------------------------------- server CPU
def _tree_cpu_s(root: int) -> float:
    """User + system CPU seconds of ``root`` and every process below it (Milvus Lite's own)."""
    tick, total = os.sysconf("SC_CLK_TCK"), 0.0
    for pid in [root, *descendants(root)]:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def seconds_to_idle(
    pid: int, since: float, below: float = 0.10, window_s: float = 0.1, limit_s: float = 120.0
) -> float:
    """Seconds from ``since`` (time.monotonic()) until a ``window_s`` window in which the
    process tree used under ``below`` of a core."""
    while time.monotonic() - since < limit_s:
        before, t0 = _tree_cpu_s(pid), time.monotonic()
        time.sleep(window_s)
        used = (_tree_cpu_s(pid) - before) / (time.monotonic() - t0)
        if used < below:
            return round(t0 - since, 2)
    return float("inf")


# ---------------------------------------------------------------- B
STAGES = ("encode", "dense_search", "sparse_search", "fusion", "fetch", "total")


def b_pass(target: str, collection: str, queries: list[str], stages: dict | None = None) -> list[float]:
    """B's round trips (ms), one search after another; the server's stage timings into ``stages``."""
    from hybridsearch.engine.client import HybridSearchClient

    out = []
    with HybridSearchClient(target, tenant=B, timeout=120) as client:
        for q in queries:
            t0 = time.perf_counter()
            reply = client.search(collection, q, top_k=10)
            out.append((time.perf_counter() - t0) * 1000)
            for s in STAGES if stages is not None else ():
                stages.setdefault(s, []).append(getattr(reply.timings, f"{s}_ms", float("nan")))
    return out


class Loop:
    """Background work of A: ``step(client, i)`` repeated by ``clients`` threads until stopped."""

    def __init__(self, target: str, step, clients: int = 1):
        self.target, self.step = target, step
        self.stop = threading.Event()
        self.counts: Counter = Counter()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(clients)]

    def _run(self, i: int) -> None:
        from hybridsearch.engine.client import HybridSearchClient

        with HybridSearchClient(self.target, tenant=A, timeout=600) as client:
            n = i
            while not self.stop.is_set():
                try:
                    what = self.step(client, n) or "ok"
                except grpc.RpcError as exc:
                    what = exc.code().name
                    self.stop.wait(0.05)
                with self.lock:
                    self.counts[what] += 1
                n += len(self.threads)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(600)


# ---------------------------------------------------------------- scenarios
class Bench:
    def __init__(self, args, server: ServerProcess, texts: Texts):
        self.args, self.server, self.texts = args, server, texts
        self.target = server.target
        self.q = {"en": iter(texts.en_queries * 10), "zh": iter(texts.zh_queries * 10)}

    def queries(self, lang: str) -> list[str]:
        return [next(self.q[lang]) for _ in range(self.args.queries)]

    def client(self, tenant: str = A):
        from hybridsearch.engine.client import HybridSearchClient

        return HybridSearchClient(self.target, tenant=tenant, timeout=600)

    def compare(self, lang: str, work) -> dict:
        """B idle, then B while ``work`` (a context manager) runs."""
        idle_stages: dict = {}
        busy_stages: dict = {}
        idle = b_pass(self.target, lang, self.queries(lang), idle_stages)
        with work as running:
            time.sleep(self.args.settle_s)
            busy = b_pass(self.target, lang, self.queries(lang), busy_stages)
        out = {"b_idle_ms": stats(idle), "b_busy_ms": stats(busy)}
        out["b_stage_p50_ms"] = {
            "idle": {k: round(float(np.median(v)), 1) for k, v in idle_stages.items()},
            "busy": {k: round(float(np.median(v)), 1) for k, v in busy_stages.items()},
        }
        out["p95_ratio"] = round(out["b_busy_ms"]["p95"] / out["b_idle_ms"]["p95"], 2)
        return out | {"a_counts": dict(getattr(running, "counts", {}))}

    def scenario(self, name: str, run: int) -> dict:
        if name.startswith("ingest-"):
            return self.ingest(name.removeprefix("ingest-"), run)
        if name == "cancel-en":
            return self.cancel(run)
        if name == "long-queries-zh":
            return self.long_queries()
        if name == "heavy-search":
            return self.heavy_search()
        return self.idle_streams() if name == "idle-streams" else self.long_doc()

    def heavy_search(self) -> dict:
        from hybridsearch.engine.admission import retry_after_ms

        queries = self.texts.en_queries

        def step(client, i):
            try:
                client.search("en", f"{queries[i % len(queries)]} {i}", top_k=10, dense_k=1000, sparse_k=1000)
            except grpc.RpcError as exc:
                if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                    time.sleep(max(50, retry_after_ms(exc) or 0) / 1000)
                raise

        return self.compare("en", Loop(self.target, step, clients=64))

    def ingest(self, lang: str, run: int) -> dict:
        base = 100_000 * (run + 1)
        with self.client() as a:
            t0, n = time.perf_counter(), 0
            for k in range(2):  # A alone
                n += a.upsert(lang, self.texts.batch(lang, base + 300 * k), timeout=600).upserted
            solo = n / (time.perf_counter() - t0)
        written = [0]

        def step(client, i):
            written[0] += client.upsert(lang, self.texts.batch(lang, base + 1000 + 300 * i), timeout=600).upserted

        loop = Loop(self.target, step)
        t0 = time.perf_counter()
        out = self.compare(lang, loop)
        during = written[0] / (time.perf_counter() - t0)
        return out | {
            "a_solo_docs_per_s": round(solo, 1),
            "a_docs_per_s_with_b": round(during, 1),
            "a_rate_ratio": round(during / solo, 2),
        }

    def cancel(self, run: int) -> dict:
        from hybridsearch.engine import client_requests as build

        base = 10_000_000 * (run + 1)
        started: list[list[str]] = []
        last_cancel = [time.monotonic()]

        def step(client, i):
            batches = [self.texts.batch("en", base + 900 * i + 300 * k) for k in range(3)]
            started.append([d["id"] for b in batches for d in b])
            call = client.stub.BulkUpsert.future(build.upsert_stream("en", batches), metadata=client.metadata)
            time.sleep(1.0)
            call.cancel()
            last_cancel[0] = time.monotonic()
            return "cancelled" if call.cancelled() else "finished"

        out = self.compare("en", Loop(self.target, step))
        idle_s = seconds_to_idle(self.server.proc.pid, last_cancel[0])
        with self.client() as a:
            written = sum(len(a.get("en", ids[i : i + 1000])) for ids in started for i in range(0, len(ids), 1000))
        return out | {
            "cancelled_calls": len(started),
            "seconds_to_idle_after_last_cancel": idle_s,
            "cancelled_documents_written": written,
        }

    def long_queries(self) -> dict:
        long = "".join(self.texts.zh_sentences[:400])[:4096]

        def step(client, i):
            client.search("zh", f"{i} {long}"[:4096], top_k=10)

        cost = self.query_cost(long)
        return self.compare("zh", Loop(self.target, step, clients=2)) | cost

    def query_cost(self, long: str) -> dict:
        out = {}
        with self.client() as a:
            for name, text in (("short", "".join(self.texts.zh_sentences[500:520])[:100]), ("long", long)):
                rtt, enc = [], []
                for i in range(10):
                    t0 = time.perf_counter()
                    reply = a.search("zh", f"{i}{text}"[: len(text)], top_k=10)
                    rtt.append((time.perf_counter() - t0) * 1000)
                    enc.append(reply.usage.encode_ms)
                out[name] = {"round_trip_ms": stats(rtt), "encode_ms": stats(enc)}
        out["long_over_short"] = round(out["long"]["round_trip_ms"]["p50"] / out["short"]["round_trip_ms"]["p50"], 2)
        return {"query_cost": out}

    def idle_streams(self) -> dict:
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        class Streams:
            """200 idle Health.Watch streams without credentials. Their first replies are read on
            a thread of their own: a server with no thread to spare would never answer them,
            and the streams end after 90 s whatever happens."""

            counts: Counter = Counter()

            def __enter__(s):
                s.channels = [grpc.insecure_channel(self.target) for _ in range(20)]
                request = health_pb2.HealthCheckRequest()
                s.calls = [
                    health_pb2_grpc.HealthStub(s.channels[i % 20]).Watch(request, timeout=90) for i in range(200)
                ]
                s.reader = threading.Thread(target=s.read, daemon=True)
                s.reader.start()
                time.sleep(1.0)  # the streams are open (or refused) before B starts
                return s

            def read(s):
                for call in s.calls:
                    try:
                        next(call)
                        s.counts["open"] += 1
                    except grpc.RpcError as exc:
                        s.counts[exc.code().name] += 1

            def __exit__(s, *exc):
                for call in s.calls:
                    call.cancel()
                s.reader.join(100)
                for ch in s.channels:
                    ch.close()

        return self.compare("en", Streams())

    def long_doc(self) -> dict:
        out = {}
        with self.client() as a:
            for lang in ("en", "zh"):
                pool = self.texts.en_docs if lang == "en" else self.texts.zh_docs
                joined = " ".join(pool[:200]) if lang == "en" else "".join(pool[:200])
                # About 512 tokens: ~2,300 English characters, ~700 Chinese ones.
                sizes = {"512_tokens": 2300 if lang == "en" else 700, "8000_chars": 8000}
                for name, size in sizes.items():
                    times = []
                    for i in range(5):
                        t0 = time.perf_counter()
                        reply = a.upsert(lang, [{"id": f"long-{name}-{i}", "text": joined[i * 50 : i * 50 + size]}])
                        times.append((time.perf_counter() - t0) * 1000)
                    out[f"{lang}_{name}"] = {"upsert_ms": stats(times), "truncated": reply.usage.truncated_texts}
                out[f"{lang}_ratio"] = round(
                    out[f"{lang}_8000_chars"]["upsert_ms"]["p50"] / out[f"{lang}_512_tokens"]["upsert_ms"]["p50"], 2
                )
        return out


# ---------------------------------------------------------------- main
def load_corpora(target: str, texts: Texts, n: int) -> None:
    from hybridsearch.engine.client import HybridSearchClient

    for lang, profile in (("en", "minilm-bm25"), ("zh", "e5-small")):
        with HybridSearchClient(target, tenant=A, timeout=600) as a:
            a.create_collection(lang, profile)
        for tenant in (A, B):
            with HybridSearchClient(target, tenant=tenant, timeout=600) as c:
                docs = texts.en_docs if lang == "en" else texts.zh_sentences
                for s in range(0, n, 100):
                    c.upsert(lang, [{"id": f"{tenant}-{i}", "text": docs[i]} for i in range(s, min(n, s + 100))])


def row(label: str, scenario: str, run: int, r: dict) -> str:
    if scenario == "long-doc":
        return (
            f"| {label} | {scenario} | {run} | en 8,000 chars / 512 tokens: {r['en_ratio']}x; "
            f"zh: {r['zh_ratio']}x | | |"
        )
    extra = ""
    if "a_rate_ratio" in r:
        extra = (
            f"A {r['a_solo_docs_per_s']} docs/s alone, {r['a_docs_per_s_with_b']} beside B ({r['a_rate_ratio']:.0%})"
        )
    elif "seconds_to_idle_after_last_cancel" in r:
        extra = (
            f"{r['cancelled_calls']} cancelled calls; idle {r['seconds_to_idle_after_last_cancel']} s after the "
            f"last; {r['cancelled_documents_written']} of their documents written"
        )
    elif "query_cost" in r:
        extra = f"4,096-char query {r['query_cost']['long_over_short']}x a 100-char one"
    else:
        extra = f"A: {r['a_counts']}"
    i, b = r["b_idle_ms"], r["b_busy_ms"]
    return f"| {label} | {scenario} | {run} | {i['p50']:.0f} / {i['p95']:.0f} | {b['p50']:.0f} / {b['p95']:.0f} | {r['p95_ratio']}x | {extra} |"


def report(paths: list[Path]) -> str:
    """The Markdown table of runs already written (one row per run), as benchmarks/README.md shows it."""
    lines = [
        "| label | scenario | run | B idle p50 / p95 ms | B beside A p50 / p95 ms | p95 ratio | A, and what else was measured |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for path in paths:
        data = json.loads(path.read_text())
        lines += [row(data["label"], r["scenario"], r["run"], r) for r in data["results"]]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--report", nargs="+", type=Path, help="print the table of these result files and stop")
    p.add_argument("--label", default="after")
    p.add_argument("--scenarios", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--queries", type=int, default=60, help="B's searches per pass")
    p.add_argument("--docs", type=int, default=500, help="documents per tenant and collection at the start")
    p.add_argument("--settle-s", type=float, default=2.0)
    p.add_argument(
        "--slice-ms", type=float, help="profiles' document_slice_ms (default: the service's; not for --label before)"
    )
    p.add_argument("--server-pythonpath", help="PYTHONPATH for the server (another checkout's hybridsearch)")
    p.add_argument("--out-dir", type=Path, default=RESULTS / "isolation")
    args = p.parse_args(argv)
    if args.report:
        print(report(args.report))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    texts = Texts()
    work = Path(tempfile.mkdtemp(prefix="isolation-"))
    port = free_port()
    config = {
        "data_dir": str(work / "data"),
        "server": {"host": "127.0.0.1", "port": port, "grace_s": 2},
        "default_profile": "minilm-bm25",
        "torch_threads": 2,
        "rerank": {"enabled": False},
        "auth_mode": "dev_header",
        "query_cache_size": 0,
    }
    if args.slice_ms is not None:
        config["profiles"] = {name: {"document_slice_ms": args.slice_ms} for name in ("minilm-bm25", "e5-small")}
    env = dict(os.environ)
    if args.server_pythonpath:
        env["PYTHONPATH"] = args.server_pythonpath
    server = ServerProcess(
        write_config(work / "config.yaml", config), work / "server.log", f"127.0.0.1:{port}", env=env
    )
    results: list[dict] = []
    server.start()
    try:
        t0 = time.perf_counter()
        load_corpora(server.target, texts, args.docs)
        log.info("corpora loaded in %.0f s", time.perf_counter() - t0)
        bench = Bench(args, server, texts)
        b_pass(server.target, "en", texts.en_queries[-10:])  # warm
        b_pass(server.target, "zh", texts.zh_queries[-10:])
        for run in range(args.runs):
            for scenario in args.scenarios:
                log.info("run %d: %s", run, scenario)
                r = bench.scenario(scenario, run)
                r |= {"scenario": scenario, "run": run, "server_alive": server.alive(), "loadavg": loadavg()}
                results.append(r)
                print(row(args.label, scenario, run, r), flush=True)
    finally:
        server.stop()
        server_errors, _ = server.log_errors()  # an INTERNAL status is logged as an error with its traceback
        shutil.rmtree(work, ignore_errors=True)
    out = {"label": args.label, "results": results, "server_log_errors": server_errors, "machine": machine_info()}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    path = args.out_dir / f"{args.label}.json"
    path.write_text(json.dumps(out, indent=2, default=float))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
