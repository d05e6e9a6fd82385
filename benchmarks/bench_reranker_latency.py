"""What one search's rerank costs: CE@depth (one query, its top ``depth`` candidates) per backend,
for the rerankers given, on English (SciFact) and Chinese (cmrc2018) candidates.

    python -m benchmarks.bench_reranker_latency --model e5=/path/to/reranker
    python -m benchmarks.bench_reranker_latency --model e5=DIR --model minilm=DIR2 --depth 10 --max-length 192

Candidates: for each of ``--queries`` random test questions of a collection, ``depth`` documents
of its corpus: its relevant ones, then random ones (a search's head mixes both; only the
lengths matter here). Each request is ``encode`` + ``score_encoded`` of the backend, as the rerank
stage runs it (batch_size 16, ``max_length`` tokens a pair, length-sorted). Backends:
``cross-encoder`` (torch fp32), ``onnx`` (ONNX Runtime fp32) and ``onnx-int8`` (per-channel int8
weights); 2 threads each. Requests interleave the backends (each round runs every backend
once, in rotating order) so load from elsewhere falls on all alike. p50 and p95 per backend,
with the load average before and after. Writes benchmarks/results/reranker-latency.json.
"""

from __future__ import annotations

from benchmarks.harness import offline_env

offline_env()

import argparse
import gzip
import json
import random
import statistics
import sys
import time
from pathlib import Path

from benchmarks.harness import RESULTS, command_line, dataset, loadavg, machine_info, percentile, say

KINDS = {"cross-encoder": ("cross-encoder", {}), "onnx": ("onnx", {}), "onnx-int8": ("onnx", {"quantize": True})}


def requests(name: str, n: int, depth: int, seed: int) -> list[tuple[str, list[str]]]:
    rng = random.Random(seed)
    docs = {}
    with gzip.open(dataset(name) / "corpus.jsonl.gz", "rt", encoding="utf-8") as f:
        for row in map(json.loads, f):
            title, text = (row.get("title") or "").strip(), (row.get("text") or "").strip()
            # As the service holds them: SciFact with its title, cmrc2018 sentences alone.
            docs[str(row["_id"])] = f"{title}. {text}" if name == "scifact" and title else text
    relevant: dict[str, list[str]] = {}
    for line in (dataset(name) / "qrels" / "test.tsv").read_text().splitlines()[1:]:
        qid, did, score = line.split("\t")[:3]
        if int(score) > 0:
            relevant.setdefault(qid, []).append(did)
    queries = {q["_id"]: q["text"] for q in map(json.loads, (dataset(name) / "queries.jsonl").open(encoding="utf-8"))}
    ids = list(docs)
    out = []
    for qid in rng.sample(sorted(relevant), n):
        head = [docs[d] for d in relevant[qid]][:depth]
        head += [docs[d] for d in rng.sample(ids, depth - len(head))]
        out.append((queries[qid], head))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_reranker_latency",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", action="append", required=True, metavar="LABEL=DIR", help="a reranker directory")
    p.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated, of {', '.join(KINDS)}")
    p.add_argument("--depth", type=int, default=10)
    p.add_argument("--max-length", type=int, default=192)
    p.add_argument("--queries", type=int, default=30, help="requests per collection and backend")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=RESULTS / "reranker-latency.json")
    args = p.parse_args(argv)
    from hybridsearch.rerank.backends import load_backend

    models = dict(m.split("=", 1) for m in args.model)
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    if set(kinds) - set(KINDS):
        p.error(f"--kinds: unknown {', '.join(sorted(set(kinds) - set(KINDS)))}")
    load_before = loadavg()
    work = {name: requests(name, args.queries, args.depth, args.seed) for name in ("scifact", "cmrc2018")}
    results = {}
    for label, path in models.items():
        backends = {}
        for kind in kinds:
            backend_kind, options = KINDS[kind]
            say(f"loading {label} on {kind}")
            backends[kind] = load_backend(
                backend_kind, f"{label}-{kind}", path, max_length=args.max_length, batch_size=16, **options
            )
        for name, reqs in work.items():
            times = {kind: [] for kind in kinds}
            tokens = []
            for i, (query, head) in enumerate([reqs[0], *reqs]):  # the first round warms up
                order = kinds[i % len(kinds) :] + kinds[: i % len(kinds)]
                for kind in order:
                    t = time.perf_counter()
                    encoded = backends[kind].encode(query, head)
                    backends[kind].score_encoded(encoded)
                    if i:
                        times[kind].append(1000 * (time.perf_counter() - t))
                if i:
                    tokens.append(int(encoded.tokens.sum()))
            for kind in kinds:
                row = {
                    "p50_ms": statistics.median(times[kind]),
                    "p95_ms": percentile(times[kind], 95),
                    "min_ms": min(times[kind]),
                    "max_ms": max(times[kind]),
                    "requests": len(times[kind]),
                    "mean_tokens_per_request": statistics.mean(tokens),
                }
                results.setdefault(label, {}).setdefault(name, {})[kind] = row
                say(f"{label} {name} {kind}: {row}")
        for backend in backends.values():
            backend.close()
    out = {
        "command": command_line("benchmarks.bench_reranker_latency", argv),
        "machine": machine_info(),
        "load": {"before": load_before, "after": loadavg()},
        "depth": args.depth,
        "max_length": args.max_length,
        "models": models,
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"| reranker | collection | {' | '.join(f'{k} p50 (p95) ms' for k in kinds)} | tokens/request |")
    print(f"|---|---|{'---:|' * (len(kinds) + 1)}")
    for label, per in results.items():
        for name, rows in per.items():
            cells = " | ".join(f"{rows[k]['p50_ms']:.0f} ({rows[k]['p95_ms']:.0f})" for k in kinds)
            print(f"| {label} | {name} | {cells} | {next(iter(rows.values()))['mean_tokens_per_request']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
