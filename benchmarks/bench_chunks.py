"""Long documents: chunked vs truncated reranking on SciFact at the same max_length (issue 17).

    python -m benchmarks.bench_chunks                               # test split, depths 10 20 30 50
    python -m benchmarks.bench_chunks --queries 100 --depths 10 20  # a shorter run

What it does, per query of the split:

1. the DBSF top ``max(depths)`` candidates: the fused lists ``hsearch bench`` cached
   (``<runs>/run-*/dbsf.c1.jsonl`` of the same data and split; ``--fused FILE`` to name one);
2. scores them with the project's trained reranker (``harness.choose_reranker``: the
   ``hsearch train-reranker`` model in benchmarks/.cache/scifact/reranker, at its own
   ``max_length``) through two backends of the same weights that differ only in
   ``long_documents``: ``truncate`` (the first ``max_length`` tokens of each pair) and
   ``chunks`` (windows of the document, the query in each, best window's logit; overlap and
   window cap from the options). The texts are what the service reranks: title + abstract;
3. orders each depth's head as the service does (``fusion.blend.blend_head`` on the
   normalised scores): by the reranker alone (``fusion_weight`` 0) and blended with the
   fused rank (``--fusion-weight``, 1 as ``hsearch bench`` serves), the rest in fused order,
   and scores nDCG@10 (ranx, as ``beir_bench``).

A document's score does not depend on the other documents, so one scoring of the top
``max(depths)`` serves every depth (depth d reranks a prefix). The head is scored in slices
between consecutive depths (0-10, 10-20, ...), each timed (tokenising included) on its
own: the time of depth d is the sum of its slices. Per-query scores are cached under
``benchmarks/.cache/chunks/`` (an interrupted run resumes, and a deeper run scores only the
slices past the cached ones). Paired comparison of chunked
against truncated per depth: mean difference with a 95 % bootstrap interval, a sign test
(wins / losses, ties dropped) and a paired t-test. Writes ``results.md`` and
``results.json`` (per-query nDCG@10) to ``--out`` (default benchmarks/results/chunks).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import harness
from benchmarks.paired import ndcg10, paired, served_order

MODES = ("truncate", "chunks")
CACHE_DIR = harness.CACHE / "chunks"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_chunks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--data", type=Path, default=harness.DEFAULT_DATA, help="BEIR folder (default: harness.DEFAULT_DATA, SciFact)"
    )
    p.add_argument("--split", default="test")
    p.add_argument("--queries", type=int, default=0, help="first N queries of the split (0 = all)")
    p.add_argument("--depths", type=int, nargs="+", default=[10, 20, 30, 50])
    p.add_argument(
        "--fused",
        type=Path,
        help="a beir_bench pass file (JSONL: a meta line, then {qid, ids}); default: the cached DBSF pass of this data and split",
    )
    p.add_argument(
        "--runs",
        type=Path,
        default=harness.CACHE / "scifact-bench",
        help="beir_bench's run caches, where the DBSF pass is looked for",
    )
    p.add_argument(
        "--reranker",
        default="auto",
        help="auto (the trained SciFact reranker, else an untrained-head baseline), untrained, or a model directory",
    )
    p.add_argument(
        "--max-length", type=int, default=0, help="default: the trained reranker's own (training_info.json), else 192"
    )
    p.add_argument("--chunk-overlap", type=int, default=32)
    p.add_argument("--max-chunks", type=int, default=8)
    p.add_argument("--aggregate", choices=["max", "first_max"], default="max")
    p.add_argument("--first-weight", type=float, default=0.5, help="first_max: the first window's weight")
    p.add_argument(
        "--fusion-weight",
        type=float,
        default=1.0,
        help="the blended order's fusion_weight (the reranker-alone order is reported too)",
    )
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--bootstrap", type=int, default=10000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=harness.RESULTS / "chunks")
    p.add_argument("--fresh", action="store_true", help="ignore cached per-query scores")
    p.add_argument(
        "--cache-dir", type=Path, default=CACHE_DIR, help="per-query scores (resume) and the reranker's copy"
    )
    return p.parse_args(argv)


# ---------------------------------------------------------------------------- inputs
def find_fused(args, fingerprint: str) -> Path:
    """The cached DBSF pass of this data and split (the one with the most queries)."""
    if args.fused:
        return args.fused
    found = []
    for meta_path in sorted(args.runs.glob("run-*/meta.json")):
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            continue
        path = meta_path.parent / "dbsf.c1.jsonl"
        if meta.get("split") == args.split and meta.get("data") == fingerprint and path.exists():
            found.append((sum(1 for _ in path.open()), path))
    if not found:
        raise SystemExit(
            f"no cached DBSF pass of {args.data} ({args.split}, data {fingerprint}) under {args.runs}: run "
            f"`hsearch bench --fusions dbsf --no-routes --depths --clients 1` first, or pass --fused FILE"
        )
    return max(found)[1]


def load_fused(path: Path) -> dict[str, list[str]]:
    out = {}
    for i, line in enumerate(path.read_text().splitlines()):
        if i == 0 or not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if not row.get("error") and row.get("ids"):
            out[row["qid"]] = row["ids"]
    return out


# ---------------------------------------------------------------------------- scoring
def score_query(
    backend, query: str, texts: list[str], bounds: list[int], done: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Scores of the head in slices between consecutive depths, each timed on its own.

    ``done``: this query's row from a shallower run (its ``bounds`` a prefix of these): only
    the slices past it are scored, so going from depth 20 to 50 costs the last 30 only.
    """
    if done is not None:
        raw, tokens, windows = list(done["raw"]), list(done["tokens"]), list(done["windows"])
        truncated, slice_ms = list(done["truncated"]), list(done["slice_ms"])
    else:
        raw, tokens, windows, truncated, slice_ms = [], [], [], [], []
    start = len(raw)
    for stop in bounds:
        if stop <= start:  # scored already, in ``done``
            continue
        t0 = time.perf_counter()
        encoded = backend.encode(query, texts[start:stop])
        scores = backend.score_encoded(encoded)
        slice_ms.append((time.perf_counter() - t0) * 1000.0)
        raw += scores.raw.tolist()
        tokens += encoded.tokens.tolist()
        windows += encoded.chunks.tolist()
        truncated += encoded.truncated.tolist()
        start = stop
    return {"raw": raw, "tokens": tokens, "windows": windows, "truncated": truncated, "slice_ms": slice_ms}


def slice_bounds(depths: list[int], length: int) -> list[int]:
    """The distinct slice ends of a head of ``length`` candidates (a short list ends early)."""
    out: list[int] = []
    for d in depths:
        b = min(d, length)
        if not out or b > out[-1]:
            out.append(b)
    return out


def reusable(row: dict[str, Any], bounds: list[int]) -> str:
    """'all' when a cached row already has a slice ending at each of ``bounds``, 'extend' when
    its slices are a strict prefix of them (score the rest only), '' when it must be scored
    again (rows of an older format, or slices that end elsewhere)."""
    have = row.get("bounds")
    if have is None:
        return ""
    if set(bounds) <= set(have):  # a shallower run reads a prefix of a deeper one's slices
        return "all"
    if len(have) < len(bounds) and bounds[: len(have)] == have:
        return "extend"
    return ""


def ordered(fused: list[str], raw: list[float], depth: int, fusion_weight: float) -> list[str]:
    """The service's order: the head by blend_head of the normalised scores, the rest fused."""
    from hybridsearch.rerank.base import normalize

    depth = min(depth, len(raw), len(fused))
    return served_order(fused, normalize(raw[:depth]), depth, fusion_weight)


# ---------------------------------------------------------------------------- the run
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    harness.offline_env(args.threads)
    import numpy as np
    import torch

    from hybridsearch.rerank.backends import load_backend
    from hybridsearch.training.beir import load_beir

    torch.set_num_threads(args.threads)
    started = time.time()
    load_start = harness.loadavg()
    depths = sorted({d for d in args.depths if d > 0})
    deepest = depths[-1]

    beir = load_beir(args.data, (args.split,))
    queries = list(beir.split_queries(args.split).items())
    fingerprint = beir.fingerprint([args.split])
    fused_path = find_fused(args, fingerprint)
    fused = load_fused(fused_path)
    queries = [(qid, text) for qid, text in queries if qid in fused]
    if args.queries:
        queries = queries[: args.queries]
    qrels = {qid: beir.qrels[args.split][qid] for qid, _ in queries}
    harness.say(f"{len(queries)} queries, DBSF lists from {fused_path}")

    choice = harness.choose_reranker(
        args.reranker, args.cache_dir / "models", args.cache_dir / "untrained-ce", max_length=args.max_length or 192
    )
    max_length = args.max_length or choice.max_length
    if not choice.trained:
        harness.say(f"WARNING: {choice.description}")
    common = dict(max_length=max_length, batch_size=args.batch_size, threads=args.threads)
    backends = {
        "truncate": load_backend(choice.kind, "truncate", str(choice.path), **common),
        "chunks": load_backend(
            choice.kind,
            "chunks",
            str(choice.path),
            long_documents="chunks",
            chunk_overlap=args.chunk_overlap,
            max_chunks=args.max_chunks,
            chunk_aggregate=args.aggregate,
            chunk_first_weight=args.first_weight,
            **common,
        ),
    }
    identity = {
        **choice.identity(),
        "max_length": max_length,
        "overlap": args.chunk_overlap,
        "max_chunks": args.max_chunks,
        "aggregate": args.aggregate,
        "first_weight": args.first_weight,
        "data": fingerprint,
        "fused": str(fused_path),
        "batch_size": args.batch_size,
    }
    # The depth is not in the key: a deeper run extends the cached rows of a shallower one.
    key = harness.hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
    cache_path = args.cache_dir / f"scores-{key}.jsonl"
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    if args.fresh and cache_path.exists():
        cache_path.unlink()
    cached: dict[str, dict] = {}
    if cache_path.exists():
        for line in cache_path.read_text().splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            cached[row["qid"]] = row
    harness.say(
        f"reranker {choice.path} ({choice.which}, {choice.kind}, max_length {max_length}); {len(cached)} queries cached in {cache_path}"
    )

    texts_of = {d.id: d.full_text for d in beir.corpus.values()}
    # warm up both backends (first calls allocate)
    for backend in backends.values():
        backend.score(queries[0][1], [texts_of[d] for d in fused[queries[0][0]][:4]])
    with harness.LoadSampler() as load, cache_path.open("a") as sink:
        for n, (qid, text) in enumerate(queries, 1):
            head = fused[qid][:deepest]
            bounds = slice_bounds(depths, len(head))
            how = reusable(cached[qid], bounds) if qid in cached else ""
            if how == "all":
                continue
            texts = [texts_of[d] for d in head]
            row = {"qid": qid, "bounds": bounds}
            for mode in MODES if n % 2 else MODES[::-1]:  # alternate which mode goes first
                row[mode] = score_query(
                    backends[mode], text, texts, bounds, cached[qid][mode] if how == "extend" else None
                )
            sink.write(json.dumps(row) + "\n")
            sink.flush()
            cached[qid] = row
            if n % 10 == 0 or n == len(queries):
                elapsed = time.time() - started
                harness.say(f"{n}/{len(queries)} queries ({elapsed / 60:.1f} min)")
    load_summary = load.summary()

    # ------------------------------------------------------------------ evaluate
    fusion_runs = {qid: fused[qid] for qid, _ in queries}
    fusion_ndcg = ndcg10(qrels, fusion_runs)
    table = []
    per_query: dict[str, dict[str, float]] = {"fusion": fusion_ndcg}
    for depth in depths:
        entry: dict[str, Any] = {"depth": depth}
        for mode in MODES:
            rows = [cached[qid][mode] for qid, _ in queries]
            for order_name, weight in (("alone", 0.0), ("blended", args.fusion_weight)):
                runs = {qid: ordered(fused[qid], cached[qid][mode]["raw"], depth, weight) for qid, _ in queries}
                scores = ndcg10(qrels, runs)
                per_query[f"{mode}@{depth}/{order_name}"] = scores
                entry[f"{mode}_{order_name}"] = float(np.mean(list(scores.values())))
            ms = [
                sum(t for b, t in zip(cached[qid]["bounds"], cached[qid][mode]["slice_ms"], strict=True) if b <= depth)
                for qid, _ in queries
            ]
            upto = [min(depth, len(r["raw"])) for r in rows]
            entry[f"{mode}_ms"] = harness.stats(ms)
            entry[f"{mode}_tokens"] = float(np.mean([sum(r["tokens"][:u]) for r, u in zip(rows, upto, strict=True)]))
            entry[f"{mode}_pairs"] = float(np.mean([sum(r["windows"][:u]) for r, u in zip(rows, upto, strict=True)]))
            entry[f"{mode}_truncated"] = float(
                np.mean([np.mean(r["truncated"][:u]) for r, u in zip(rows, upto, strict=True)])
            )
        for order_name in ("alone", "blended"):
            entry[f"paired_{order_name}"] = paired(
                per_query[f"truncate@{depth}/{order_name}"],
                per_query[f"chunks@{depth}/{order_name}"],
                args.bootstrap,
                args.seed,
            )
        table.append(entry)
        harness.say(
            f"depth {depth}: nDCG@10 alone {entry['truncate_alone']:.4f} -> {entry['chunks_alone']:.4f}, blended {entry['truncate_blended']:.4f} -> {entry['chunks_blended']:.4f}"
        )

    windows_all = [w for qid, _ in queries for w in cached[qid]["chunks"]["windows"][:deepest]]
    result = {
        "command": harness.command_line("benchmarks.bench_chunks", argv),
        "dataset": Path(args.data).name,
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
        "minutes": (time.time() - started) / 60.0,
        "machine": harness.machine_info(),
        "load": {"start": load_start, "during": load_summary, "end": harness.loadavg()},
        "reranker": {**choice.as_dict(), "path": str(choice.path), "served_max_length": max_length},
        "config": {
            **identity,
            "split": args.split,
            "queries": len(queries),
            "depths": depths,
            "depth": deepest,
            "fusion_weight": args.fusion_weight,
            "threads": args.threads,
        },
        "fusion_ndcg10": float(np.mean(list(fusion_ndcg.values()))),
        "windows_per_document": {
            "mean": float(np.mean(windows_all)),
            "share_over_1": float(np.mean(np.array(windows_all) > 1)),
            "at_cap": float(np.mean(np.array(windows_all) >= args.max_chunks)),
        },
        "table": table,
        "per_query": per_query,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(result, indent=1))
    (args.out / "results.md").write_text(markdown(result))
    harness.say(f"wrote {args.out / 'results.md'}")
    print(markdown(result))
    return 0


def markdown(r: dict[str, Any]) -> str:
    c = r["config"]
    rr = r["reranker"]
    w = r["windows_per_document"]
    lines = [
        f"# Long documents: chunked vs truncated reranking ({r['dataset']}, {c['split']} split)",
        "",
        f"`{r['command']}`, {r['started']}, {r['minutes']:.1f} min; {harness.machine_line(r['machine'])}; load (1 min) "
        f"{r['load']['start'][0]:.2f} at the start, {r['load']['end'][0]:.2f} at the end, during: {json.dumps(r['load']['during'])}.",
        "",
        f"Reranker: {rr['description']} ({rr['kind']}), max_length {rr['served_max_length']} in both modes. Chunks: overlap "
        f"{c['overlap']} tokens, at most {c['max_chunks']} windows, aggregate {c['aggregate']}"
        + (f" (first weight {c['first_weight']})" if c["aggregate"] == "first_max" else "")
        + f". {c['queries']} queries, DBSF candidates (`{Path(c['fused']).parent.name}`), fusion only nDCG@10 {r['fusion_ndcg10']:.4f}. "
        f"Windows per document in the top {c['depth']}: mean {w['mean']:.2f}, more than one {100 * w['share_over_1']:.0f} %, at the cap {100 * w['at_cap']:.1f} %.",
        "",
        f"| depth | nDCG@10 alone, truncated | alone, chunked | blended (w={c['fusion_weight']:g}), truncated | blended, chunked | ms / query p50 (mean), truncated | chunked | tokens / query, truncated | chunked | pairs / query, chunked | docs cut, truncated / chunked |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for e in r["table"]:
        lines.append(
            f"| {e['depth']} | {e['truncate_alone']:.4f} | {e['chunks_alone']:.4f} | {e['truncate_blended']:.4f} | {e['chunks_blended']:.4f} | "
            f"{e['truncate_ms']['p50']:.0f} ({e['truncate_ms']['mean']:.0f}) | {e['chunks_ms']['p50']:.0f} ({e['chunks_ms']['mean']:.0f}) | "
            f"{e['truncate_tokens']:,.0f} | {e['chunks_tokens']:,.0f} | {e['chunks_pairs']:.1f} | "
            f"{100 * e['truncate_truncated']:.0f} % / {100 * e['chunks_truncated']:.1f} % |"
        )
    lines += [
        "",
        "Paired, chunked minus truncated, per query nDCG@10 (bootstrap 95 % interval of the mean; sign test over wins/losses, ties dropped; paired t-test):",
        "",
        "| depth | order | mean diff | 95 % CI | wins / losses / ties | sign p | t p |",
        "|---:|---|---:|---|---:|---:|---:|",
    ]
    for e in r["table"]:
        for name in ("alone", "blended"):
            p = e[f"paired_{name}"]
            t_p = "" if p["t_p"] is None else f"{p['t_p']:.3f}"
            lines.append(
                f"| {e['depth']} | {name} | {p['mean']:+.4f} | [{p['ci95'][0]:+.4f}, {p['ci95'][1]:+.4f}] | {p['wins']} / {p['losses']} / {p['ties']} | "
                f"{p['sign_p']:.3f} | {t_p} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
