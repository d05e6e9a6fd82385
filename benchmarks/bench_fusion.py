"""Latency of our fusion step, and of Milvus's `hybrid_search` against two plain searches.

    python -m benchmarks.bench_fusion --docs 5000 --repeats 200

Builds a random collection in a throwaway Milvus Lite store (a dense FLOAT_VECTOR with
IP and a SPARSE_FLOAT_VECTOR with SPARSE_INVERTED_INDEX/IP), then measures:

(a) the fusion step alone (rrf, weighted min_max, dbsf) on the real top-100 lists of
    each route, and the cost of turning Milvus hits into `RouteList`s, in microseconds;
(b) `hybrid_search` with `RRFRanker(60)` and limit 100 per route, against the two searches
    issued one after the other, alone and followed by our RRF (what the service does when
    it fuses itself; it issues the two concurrently), in milliseconds.

Prints a markdown table and writes it to benchmarks/results/fusion.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.harness import RESULTS as RESULTS_DIR
from benchmarks.harness import stats
from hybridsearch.fusion import RouteList, dbsf, rrf, weighted

RESULTS = RESULTS_DIR / "fusion.md"
COLLECTION = "bench"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=5000, help="documents in the collection")
    parser.add_argument("--repeats", type=int, default=200, help="timed runs per measurement")
    parser.add_argument("--queries", type=int, default=20, help="distinct random queries, cycled")
    parser.add_argument("--dim", type=int, default=1024, help="dense dimension (BGE-M3: 1024)")
    parser.add_argument("--vocab", type=int, default=5000, help="sparse dimensions")
    parser.add_argument("--doc-terms", type=int, default=60, help="non-zero sparse terms per document")
    parser.add_argument("--query-terms", type=int, default=8, help="non-zero sparse terms per query")
    parser.add_argument("--topk", type=int, default=100, help="candidates per route")
    parser.add_argument("--index", choices=("FLAT", "HNSW"), default="HNSW", help="dense index type")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS, help="markdown report path")
    return parser.parse_args(argv)


def random_sparse(rng: np.random.Generator, vocab: int, terms: int) -> dict[int, float]:
    dims = rng.choice(vocab, terms, replace=False)
    return {int(d): float(v) for d, v in zip(dims, rng.random(terms) + 0.01, strict=True)}


def random_dense(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def build_collection(client, args: argparse.Namespace, rng: np.random.Generator) -> None:
    from pymilvus import DataType

    schema = client.create_schema(auto_id=False)
    schema.add_field("pk", DataType.VARCHAR, is_primary=True, max_length=32)
    schema.add_field("dense", DataType.FLOAT_VECTOR, dim=args.dim)
    schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    index = client.prepare_index_params()
    if args.index == "HNSW":
        index.add_index("dense", index_type="HNSW", metric_type="IP", params={"M": 16, "efConstruction": 200})
    else:
        index.add_index("dense", index_type="FLAT", metric_type="IP")
    index.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
    client.create_collection(COLLECTION, schema=schema, index_params=index)
    batch = 1000
    for start in range(0, args.docs, batch):
        n = min(batch, args.docs - start)
        dense = random_dense(rng, n, args.dim)
        rows = [
            {
                "pk": f"doc-{start + i:07d}",
                "dense": dense[i].tolist(),
                "sparse": random_sparse(rng, args.vocab, args.doc_terms),
            }
            for i in range(n)
        ]
        client.insert(COLLECTION, rows)
    client.flush(COLLECTION)


def summarise(samples_ns: list[int], unit_ns: float) -> tuple[float, float]:
    """Median and p95 of the samples, in units of ``unit_ns``."""
    st = stats(np.asarray(samples_ns, dtype=np.float64) / unit_ns)
    return st["p50"], st["p95"]


def time_calls(fn: Callable[[int], object], repeats: int, warmup: int) -> list[int]:
    for i in range(warmup):
        fn(i)
    samples = []
    for i in range(repeats):
        start = time.perf_counter_ns()
        fn(i)
        samples.append(time.perf_counter_ns() - start)
    return samples


def to_routes(hits_pair) -> list[RouteList]:
    """Milvus hits of the two routes as `RouteList`s. `Hits.ids` / `.distances` are plain
    lists; going through each `Hit` costs about 1 us per hit."""
    return [
        RouteList(name, hits.ids, np.asarray(hits.distances, dtype=np.float64))
        for name, hits in zip(("dense", "sparse"), hits_pair, strict=True)
    ]


class Queries:
    """The random queries and the three ways of answering one against the collection."""

    def __init__(self, client, args: argparse.Namespace, rng: np.random.Generator):
        self.client, self.args = client, args
        self.dense = random_dense(rng, args.queries, args.dim).tolist()
        self.sparse = [random_sparse(rng, args.vocab, args.query_terms) for _ in range(args.queries)]
        self.dense_params = (
            {"metric_type": "IP", "params": {"ef": max(args.topk, 128)}}
            if args.index == "HNSW"
            else {"metric_type": "IP"}
        )
        self.sparse_params = {"metric_type": "IP"}

    def search(self, field: str, data, params):
        return self.client.search(
            COLLECTION,
            data=[data],
            anns_field=field,
            limit=self.args.topk,
            search_params=params,
            output_fields=["pk"],
        )[0]

    def two_searches(self, i: int):
        q = i % self.args.queries
        return self.search("dense", self.dense[q], self.dense_params), self.search(
            "sparse", self.sparse[q], self.sparse_params
        )

    def hybrid(self, i: int):
        from pymilvus import AnnSearchRequest, RRFRanker

        q = i % self.args.queries
        requests = [
            AnnSearchRequest([self.dense[q]], "dense", self.dense_params, self.args.topk),
            AnnSearchRequest([self.sparse[q]], "sparse", self.sparse_params, self.args.topk),
        ]
        return self.client.hybrid_search(
            COLLECTION, requests, RRFRanker(60), limit=self.args.topk, output_fields=["pk"]
        )[0]

    def two_searches_then_rrf(self, i: int):
        return rrf(to_routes(self.two_searches(i)), k=60.0)


def fusion_rows(
    queries: Queries, args: argparse.Namespace
) -> tuple[list[tuple[str, float, float]], list[list[RouteList]]]:
    """(a) The fusion step alone, on the real candidate lists of each query (us), and those lists."""
    hits = [queries.two_searches(q) for q in range(args.queries)]
    routes = [to_routes(pair) for pair in hits]
    rows = []
    for label, fn in (
        ("rrf (k=60)", lambda i: rrf(routes[i % args.queries], k=60.0)),
        ("weighted, min_max", lambda i: weighted(routes[i % args.queries], weights=[0.5, 0.5])),
        ("dbsf", lambda i: dbsf(routes[i % args.queries])),
        ("Milvus hits -> 2 RouteLists", lambda i: to_routes(hits[i % args.queries])),
    ):
        reps = max(args.repeats, 1000)
        rows.append((label, *summarise(time_calls(fn, reps, warmup=100), 1e3)))
    return rows, routes


def milvus_rows(queries: Queries, args: argparse.Namespace) -> list[tuple[str, float, float]]:
    """(b) Push-down hybrid_search against two searches (ms), interleaved, rotating which goes
    first, so that load on the machine falls on all three alike."""
    calls = (
        ("hybrid_search, RRFRanker(60)", queries.hybrid),
        ("2 searches, sequential", queries.two_searches),
        ("2 searches, sequential + our rrf", queries.two_searches_then_rrf),
    )
    for i in range(10):
        for _, fn in calls:
            fn(i)
    samples: list[list[int]] = [[] for _ in calls]
    for i in range(args.repeats):
        for j in range(len(calls)):
            which = (i + j) % len(calls)
            start = time.perf_counter_ns()
            calls[which][1](i)
            samples[which].append(time.perf_counter_ns() - start)
    return [(label, *summarise(samples[j], 1e6)) for j, (label, _) in enumerate(calls)]


def render(args: argparse.Namespace, build_s: float, routes: list[list[RouteList]], fusion: list, milvus: list) -> str:
    import milvus_lite
    import pymilvus

    lengths = [(len(r[0]), len(r[1])) for r in routes]
    mean_union = np.mean([len(rrf(r)) for r in routes])
    lines = [
        "# Fusion latency",
        "",
        f"Milvus Lite {milvus_lite.__version__}, pymilvus {pymilvus.__version__}, numpy {np.__version__}, "
        f"Python {platform.python_version()}, {os.cpu_count()} CPU cores ({platform.machine()}).",
        f"Collection: {args.docs} docs, dense dim {args.dim} ({args.index}, IP), sparse vocab {args.vocab} "
        f"with {args.doc_terms} terms/doc (SPARSE_INVERTED_INDEX, IP); built and flushed in {build_s:.1f} s.",
        f"{args.queries} random queries ({args.query_terms} sparse terms), top-{args.topk} per route "
        f"(route lengths {min(map(min, lengths))}-{max(map(max, lengths))}, mean union {mean_union:.0f} candidates).",
        "",
        f"## (a) Fusion step alone, top-{args.topk} per route (>= 1000 runs each)",
        "",
        "| step | median (us) | p95 (us) |",
        "|---|---:|---:|",
        *(f"| {label} | {median:.1f} | {p95:.1f} |" for label, median, p95 in fusion),
        "",
        f"## (b) Milvus Lite, limit {args.topk} per route ({args.repeats} runs each)",
        "",
        "| call | median (ms) | p95 (ms) |",
        "|---|---:|---:|",
        *(f"| {label} | {median:.2f} | {p95:.2f} |" for label, median, p95 in milvus),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    args = parse_args(argv)
    from pymilvus import MilvusClient

    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory(prefix="bench_fusion_") as tmp:
        client = MilvusClient(str(Path(tmp) / "bench.db"))
        started = time.perf_counter()
        build_collection(client, args, rng)
        build_s = time.perf_counter() - started
        queries = Queries(client, args, rng)
        fusion, routes = fusion_rows(queries, args)
        milvus = milvus_rows(queries, args)
        client.close()

    report = render(args, build_s, routes, fusion, milvus)
    print(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    return report


if __name__ == "__main__":
    main()
