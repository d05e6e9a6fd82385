"""Query encoding one at a time against 8 concurrent callers, through a profile's real
``encode_query`` (cache off, so every query is a miss and goes through the QueryBatcher).

    python -m benchmarks.bench_query_encode [--profile minilm-bm25] [--queries 96] [--clients 8]

Modes: one at a time; N clients with the batcher capped at one query per pass (how the
service encoded before the batcher: single passes queued behind the model lock); N clients
batched. Reports, per mode, wall time per query and CPU time per query (process CPU seconds / queries:
what a query costs the machine), median of ``--runs`` runs with min-max, and the batches the
batcher formed. SciFact's test questions are the queries.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.harness import DEFAULT_DATA, command_line, loadavg, machine_info


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="minilm-bm25")
    ap.add_argument("--queries", type=int, default=96)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--max-wait-ms", type=float, help="the batcher's wait for company (default: the service's)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)

    from hybridsearch.engine.config import Settings
    from hybridsearch.engine.encoders.base import Scope
    from hybridsearch.engine.encoders.registry import ProfileRegistry

    queries = [
        json.loads(line)["text"] for line in (args.data / "queries.jsonl").read_text().splitlines() if line.strip()
    ]
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=tmp, query_cache_size=0)
        registry = ProfileRegistry(settings)
        profile = registry.get(args.profile)
        scope = Scope("bench", "t")
        if args.max_wait_ms is not None:
            profile._query_batcher.max_wait_s = args.max_wait_ms / 1000
        profile.encode_query(scope, "warm up")
        load_start = loadavg()
        # "unbatched": the batcher capped at one query per pass, which is what the model lock
        # alone gave before the batcher (every query its own forward pass, one at a time).
        modes = {
            "one at a time": None,
            f"{args.clients} clients, unbatched": 1,
            f"{args.clients} clients": profile._query_batcher.max_batch,
        }
        results: dict[str, list[dict]] = {m: [] for m in modes}
        for run in range(args.runs):
            texts = queries[run * args.queries : (run + 1) * args.queries]
            for mode in results:
                batcher = profile._query_batcher
                batcher.max_batch = modes[mode] or batcher.max_batch
                b0, e0 = batcher.batches, batcher.encoded
                wall, cpu = time.perf_counter(), time.process_time()
                if mode == "one at a time":
                    for t in texts:
                        profile.encode_query(scope, t + f" #{mode}")
                else:
                    with ThreadPoolExecutor(args.clients) as pool:
                        list(pool.map(lambda t, mode=mode: profile.encode_query(scope, t + f" #{mode}"), texts))
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                results[mode].append(
                    {
                        "wall_ms_per_query": 1000 * wall / len(texts),
                        "cpu_ms_per_query": 1000 * cpu / len(texts),
                        "batches": batcher.batches - b0,
                        "encoded": batcher.encoded - e0,
                    }
                )
        registry.close()
    summary = {}
    for mode, rows in results.items():
        summary[mode] = {
            k: {
                "median": statistics.median(r[k] for r in rows),
                "min": min(r[k] for r in rows),
                "max": max(r[k] for r in rows),
            }
            for k in ("wall_ms_per_query", "cpu_ms_per_query")
        }
        summary[mode]["mean_batch"] = sum(r["encoded"] for r in rows) / max(1, sum(r["batches"] for r in rows))
    report = {
        "command": command_line("benchmarks.bench_query_encode", argv),
        "machine": machine_info(),
        "loadavg": [load_start, loadavg()],
        "profile": args.profile,
        "queries": args.queries,
        "runs": results,
        "summary": summary,
    }
    for mode, s in summary.items():
        print(
            f"{mode:14s} wall {s['wall_ms_per_query']['median']:.2f} ms/query ({s['wall_ms_per_query']['min']:.2f}-{s['wall_ms_per_query']['max']:.2f}), "
            f"CPU {s['cpu_ms_per_query']['median']:.2f} ms/query ({s['cpu_ms_per_query']['min']:.2f}-{s['cpu_ms_per_query']['max']:.2f}), mean batch {s['mean_batch']:.1f}"
        )
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
