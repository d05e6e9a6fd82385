"""Embedded engine speed and compatibility: the service's Milvus workload on whichever
milvus-lite the interpreter imports, with random vectors (no models).

Workload (issue 14): 384-d dense + sparse vectors of ~120 terms per row, a tenant field,
1,000-row inserts, flush, then ``--queries`` searches per route (dense, sparse, and
``hybrid_search`` with RRF), each filtered to one tenant, top 100. Also checks, one by one,
what the service's schema and calls rely on (partition key, nullable scalar fields, IN /
NOT IN filters, upsert, delete), so an engine that cannot run the service is named with
the reason rather than timed.

    python -m benchmarks.bench_engine --rows 5000 [--index FLAT|HNSW|IVF_FLAT|AUTOINDEX]
    PYTHONPATH=/path/to/milvus-lite-2.5.1 python -m benchmarks.bench_engine --rows 5000 --index FLAT

Prints one JSON object (and writes it with ``--out``): engine version, per-call p50/p95/min/max
ms per route, insert rows/s, and the compatibility checks.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import numpy as np

DIM, TERMS, VOCAB, TENANTS = 384, 120, 200_000, 8


def _ms(values: list[float]) -> dict[str, float]:
    v = sorted(x * 1000 for x in values)
    return {"p50": statistics.median(v), "p95": v[int(0.95 * (len(v) - 1))], "min": v[0], "max": v[-1], "n": len(v)}


def _sparse(rng: np.random.Generator) -> dict[int, float]:
    terms = rng.choice(VOCAB, size=TERMS, replace=False)
    return {int(t): float(w) for t, w in zip(terms, rng.random(TERMS) + 0.1, strict=True)}


def rss_mib() -> dict[str, float]:
    """Resident memory of this process and of the processes below it (native Milvus Lite's
    engine process is one)."""
    import os

    from benchmarks.harness import descendants, vm_rss_kib

    me = os.getpid()
    return {
        "this_process": round(vm_rss_kib(me) / 1024, 1),
        "children": round(sum(vm_rss_kib(c) for c in descendants(me)) / 1024, 1),
    }


def compatibility(client, DataType) -> dict[str, str]:
    """What the service's store needs, tried one feature at a time on a tiny collection."""
    out: dict[str, str] = {}

    def attempt(name, fn):
        try:
            fn()
            out[name] = "ok"
        except Exception as exc:  # the engine's own error text is the finding
            out[name] = f"fails: {str(exc)[:160]}"

    def collection(name, partition_key, nullable):
        schema = client.create_schema(auto_id=False)
        schema.add_field("pk", DataType.VARCHAR, is_primary=True, max_length=64)
        schema.add_field("tenant", DataType.VARCHAR, max_length=64, is_partition_key=partition_key)
        schema.add_field("x", DataType.INT64, nullable=nullable)
        schema.add_field("dense", DataType.FLOAT_VECTOR, dim=8)
        index = client.prepare_index_params()
        index.add_index("dense", index_type="FLAT", metric_type="IP")
        client.create_collection(name, schema=schema, index_params=index)
        rows = [
            {
                "pk": f"p{i}",
                "tenant": "a" if i % 2 else "b",
                "x": None if nullable and i % 3 == 0 else i,
                "dense": [float(i % 7 + 1)] * 8,
            }
            for i in range(20)
        ]
        client.insert(name, rows)
        client.flush(name)

    attempt("nullable scalar field", lambda: collection("c_nullable", False, True))
    attempt("partition key", lambda: collection("c_pkey", True, False))
    if out["partition key"] == "ok":
        attempt(
            "filter on a partition-key collection",
            lambda: client.query("c_pkey", filter='tenant == "a" and x in [1, 3]', output_fields=["x"]),
        )
    collection("c_plain", False, False)
    attempt(
        "IN / NOT IN filter",
        lambda: client.query(
            "c_plain", filter='tenant == "a" and x in [1, 3] and pk not in ["p1"]', output_fields=["x"]
        ),
    )
    attempt("upsert", lambda: client.upsert("c_plain", [{"pk": "p1", "tenant": "a", "x": 99, "dense": [1.0] * 8}]))
    attempt("delete by pk", lambda: client.delete("c_plain", filter='pk in ["p2"]'))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=5000)
    ap.add_argument("--queries", type=int, default=60)
    ap.add_argument("--index", default="FLAT", help="dense index type (FLAT, IVF_FLAT, HNSW, AUTOINDEX)")
    ap.add_argument("--partition-key", action="store_true", help="tenant as a partition key (the service's schema)")
    ap.add_argument("--no-hybrid", action="store_true")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)

    from pymilvus import AnnSearchRequest, DataType, MilvusClient, RRFRanker

    versions = {p: metadata.version(p) for p in ("pymilvus", "milvus-lite")}
    with tempfile.TemporaryDirectory() as tmp:
        client = MilvusClient(str(Path(tmp) / "bench.db"))
        compat = compatibility(client, DataType)
        schema = client.create_schema(auto_id=False)
        schema.add_field("pk", DataType.VARCHAR, is_primary=True, max_length=64)
        schema.add_field("tenant", DataType.VARCHAR, max_length=64, is_partition_key=args.partition_key)
        schema.add_field("dense", DataType.FLOAT_VECTOR, dim=DIM)
        schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        index = client.prepare_index_params()
        params = {"HNSW": {"M": 16, "efConstruction": 200}, "IVF_FLAT": {"nlist": 128}}.get(args.index, {})
        index.add_index(
            "dense", index_type=args.index, metric_type="COSINE", params={"params": params} if params else {}
        )
        index.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
        client.create_collection("bench", schema=schema, index_params=index)
        rng = np.random.default_rng(7)
        insert_s = 0.0
        for start in range(0, args.rows, 1000):
            if start and start % 100_000 == 0:
                print(f"inserted {start} rows", file=sys.stderr)
            n = min(1000, args.rows - start)
            dense = rng.standard_normal((n, DIM)).astype(np.float32)
            rows = [
                {
                    "pk": f"d{start + i}",
                    "tenant": f"t{(start + i) % TENANTS}",
                    "dense": dense[i].tolist(),
                    "sparse": _sparse(rng),
                }
                for i in range(n)
            ]
            t0 = time.perf_counter()
            client.insert("bench", rows)
            insert_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        client.flush("bench")
        flush_s = time.perf_counter() - t0
        client.load_collection("bench")
        search_params = {
            "metric_type": "COSINE",
            "params": {"ef": 128} if args.index == "HNSW" else ({"nprobe": 16} if args.index == "IVF_FLAT" else {}),
        }
        times: dict[str, list[float]] = {"dense": [], "sparse": [], "hybrid_rrf": []}
        for q in range(args.queries + 3):  # the first 3 warm up
            tenant = f"t{q % TENANTS}"
            expr = f'tenant == "{tenant}"'
            dq = rng.standard_normal(DIM).astype(np.float32).tolist()
            sq = _sparse(rng)
            calls = {
                "dense": lambda dq=dq, expr=expr: client.search(
                    "bench", [dq], anns_field="dense", limit=100, filter=expr, search_params=search_params
                ),
                "sparse": lambda sq=sq, expr=expr: client.search(
                    "bench",
                    [sq],
                    anns_field="sparse",
                    limit=100,
                    filter=expr,
                    search_params={"metric_type": "IP", "params": {}},
                ),
            }
            if not args.no_hybrid:
                calls["hybrid_rrf"] = lambda dq=dq, expr=expr, sq=sq: client.hybrid_search(
                    "bench",
                    [
                        AnnSearchRequest([dq], "dense", search_params, 100, expr=expr),
                        AnnSearchRequest([sq], "sparse", {"metric_type": "IP", "params": {}}, 100, expr=expr),
                    ],
                    RRFRanker(60),
                    limit=100,
                )
            for name, call in calls.items():
                t0 = time.perf_counter()
                hits = call()
                elapsed = time.perf_counter() - t0
                if q >= 3:
                    times[name].append(elapsed)
                assert len(hits[0]) > 0, name
        memory = rss_mib()
        client.close()
    report = {
        "versions": versions,
        "rows": args.rows,
        "queries": args.queries,
        "index": args.index,
        "partition_key": args.partition_key,
        "insert_rows_per_s": args.rows / insert_s,
        "flush_s": flush_s,
        "ms": {k: _ms(v) for k, v in times.items() if v},
        "compatibility": compat,
        "rss_mib": memory,
    }
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
