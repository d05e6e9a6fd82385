"""Choose fusion weights on one split, report them on another: the routes are searched
once per query through the service's own code (profile encoding, Milvus Lite, tenant
filter), then every fusion method x route weight is replayed with :func:`fusion.fuse`.

    python -m benchmarks.tune_fusion --data ../shared/data/cmrc2018 --no-title --dense e5 --analyzer jieba

Uses the collection ``hsearch bench`` built for the same variant (run that first; the store
must not be open in another process). The weights are chosen by nDCG@10 on ``--tune-split``
(default train) only; ``--split`` (default test) is evaluated once with the choice, and
the whole grid on it is written for reference, never used to choose. Writes
``benchmarks/results/<dataset>/<variant>/fusion-weights.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from hybridsearch.engine.cli import add_title_option

SPARSE_WEIGHTS = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0)
METHODS = (("rrf", "min_max"), ("weighted", "min_max"), ("weighted", "z_score"), ("dbsf", "min_max"))


def route_lists(index, profile_name: str, queries: dict[str, str], k: int) -> dict[str, tuple[list, list]]:
    """Per query: (dense hits, sparse hits) as (pk, score) lists, searched as the service does."""
    from hybridsearch.engine.encoders.base import Scope
    from hybridsearch.engine.filters import compile_filter

    service = index.service
    spec = service.store.spec(index.collection)
    profile = service.profile_for(spec)
    expr = compile_filter(spec, index.tenant, (), max_clauses=0, max_values=1)
    out = {}
    for qid, text in queries.items():
        vectors = profile.encode_query(Scope(index.collection, index.tenant), text)
        dense = service.store.search_dense(spec, vectors.dense, k, expr)
        sparse = service.store.search_sparse(spec, vectors.sparse, k, expr)
        out[qid] = ([(h.pk, h.score) for h in dense], [(h.pk, h.score) for h in sparse])
    return out


def replay(
    lists,
    method: str,
    normalizer: str,
    weights: tuple[float, float],
    dense_metric: str,
    tenant: str = "default",
    top_k: int = 100,
) -> dict[str, dict[str, float]]:
    from hybridsearch import fusion
    from hybridsearch.engine.tenancy import doc_id_of

    run = {}
    for qid, (dense, sparse) in lists.items():
        routes = [
            fusion.RouteList("dense", [pk for pk, _ in dense], np.array([s for _, s in dense], dtype=np.float64)),
            fusion.RouteList("sparse", [pk for pk, _ in sparse], np.array([s for _, s in sparse], dtype=np.float64)),
        ]
        fused = fusion.fuse(
            method,
            routes,
            k=60.0,
            weights=list(weights),
            normalizer=normalizer,
            metrics={"dense": dense_metric, "sparse": "IP"},
        )
        n = min(top_k, len(fused.ids))
        # ranx wants distinct positive scores in rank order: rank-derived, like the bench's runs.
        run[qid] = {doc_id_of(tenant, pk): float(top_k - i) for i, pk in enumerate(fused.ids[:n])} or {"__none__": 0.0}
    return run


def ndcg10(qrels: dict, run: dict) -> float:
    from ranx import Qrels, Run, evaluate

    return float(evaluate(Qrels(qrels), Run(run), "ndcg@10"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--tune-split", default="train")
    add_title_option(p)
    p.add_argument("--dense", default="minilm")
    p.add_argument("--analyzer", default="standard")
    p.add_argument("--sparse", default="service-bm25")
    p.add_argument("--bm25-k1", type=float)
    p.add_argument("--bm25-b", type=float)
    p.add_argument("--candidates", type=int, default=100)
    p.add_argument("--cache", type=Path)
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from benchmarks import beir_bench
    from benchmarks.harness import command_line, loadavg, machine_info
    from hybridsearch.engine.config import ProfileConfig, Settings
    from hybridsearch.training.beir import load_beir
    from hybridsearch.training.hard_negatives import open_index

    bench_args = beir_bench.parse_args(
        [
            "--data",
            str(args.data),
            "--dense",
            args.dense,
            "--analyzer",
            args.analyzer,
            "--sparse",
            args.sparse,
            "--depths",
        ]
        + ([] if args.title else ["--no-title"])
        + [f"--bm25-{k}={v}" for k, v in (("k1", args.bm25_k1), ("b", args.bm25_b)) if v is not None]
    )
    beir_bench.finish_args(bench_args)
    profile_name, profile = beir_bench.choose_profile(bench_args)
    beir = load_beir(args.data, (args.tune_split, args.split))
    if not args.title:
        beir = beir.without_titles()
    cache = args.cache or beir_bench.CACHE_ROOT / beir.name
    collection = beir_bench.collection_for(beir, profile_name, args.title)
    settings = Settings(
        profiles={profile_name: ProfileConfig(**profile)}, default_profile=profile_name, rerank={"enabled": False}
    )
    started = time.perf_counter()
    load_before = loadavg()
    index = open_index(beir, cache, settings=settings, profile=profile_name, collection=collection, progress=False)
    try:
        if index.ingested:
            print(
                f"note: ingested {index.ingested} documents first (no cached collection from hsearch bench)",
                file=sys.stderr,
            )
        dense_metric = index.service.store.spec(collection).dense_metric
        lists = {
            split: route_lists(index, profile_name, beir.split_queries(split), args.candidates)
            for split in (args.tune_split, args.split)
        }
    finally:
        index.close()
    qrels = {split: {q: dict(judged.items()) for q, judged in beir.qrels[split].items()} for split in lists}
    grid = []
    for method, normalizer in METHODS:
        for w in SPARSE_WEIGHTS:
            row = {"method": method, "normalizer": normalizer, "dense_weight": 1.0, "sparse_weight": w}
            for split in lists:
                row[split] = ndcg10(qrels[split], replay(lists[split], method, normalizer, (1.0, w), dense_metric))
            grid.append(row)
    routes = {
        split: {
            "dense": ndcg10(qrels[split], replay(lists[split], "weighted", "none", (1.0, 0.0), dense_metric)),
            "sparse": ndcg10(qrels[split], replay(lists[split], "weighted", "none", (0.0, 1.0), dense_metric)),
        }
        for split in lists
    }
    best = max(grid, key=lambda r: r[args.tune_split])
    equal = {(r["method"], r["normalizer"]): r for r in grid if r["sparse_weight"] == 1.0}
    out_dir = beir_bench.RESULTS_ROOT / beir.name / beir_bench.variant_name(bench_args)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = {
        "format": "hsearch-fusion-weights/1",
        "machine": machine_info(),
        "load": [load_before, loadavg()],
        "seconds": round(time.perf_counter() - started, 1),
        "command": command_line("benchmarks.tune_fusion", argv),
        "profile": {"name": profile_name, **profile},
        "tune_split": args.tune_split,
        "split": args.split,
        "queries": {s: len(lists[s]) for s in lists},
        "routes": routes,
        "grid": grid,
        "chosen": best,
    }
    (out_dir / "fusion-weights.json").write_text(json.dumps(result, indent=1))
    lines = [
        f"# Fusion weights for {profile_name} on {beir.name}, chosen on `{args.tune_split}`, reported on `{args.split}`",
        "",
        f"`{result['command']}`; {result['machine']['cpu']}, {result['machine']['cores']} cores; {result['seconds']} s; dense weight 1, sparse weight varied; nDCG@10 (ranx).",
        "",
        f"Routes alone: dense {routes[args.split]['dense']:.4f}, sparse {routes[args.split]['sparse']:.4f} on {args.split} "
        f"({routes[args.tune_split]['dense']:.4f} / {routes[args.tune_split]['sparse']:.4f} on {args.tune_split}).",
        "",
        f"**Chosen on {args.tune_split}: {best['method']}{'[' + best['normalizer'] + ']' if best['method'] == 'weighted' else ''}, sparse weight {best['sparse_weight']:g}: "
        f"{args.tune_split} {best[args.tune_split]:.4f}, {args.split} {best[args.split]:.4f}.**",
        "",
        "| method | sparse weight | " + f"{args.tune_split} nDCG@10 | {args.split} nDCG@10 (not used to choose) |",
        "|---|---:|---:|---:|",
    ]
    for r in grid:
        name = r["method"] + (f"[{r['normalizer']}]" if r["method"] == "weighted" else "")
        lines.append(f"| {name} | {r['sparse_weight']:g} | {r[args.tune_split]:.4f} | {r[args.split]:.4f} |")
    lines += [
        "",
        "Equal weights (1/1), for comparison with the bench table: "
        + ", ".join(f"{m}[{n}] {r[args.split]:.4f}" for (m, n), r in equal.items()),
    ]
    (out_dir / "fusion-weights.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
