"""Replay rerank depths offline from a benchmark run: which queries does the reranker help?

    python -m benchmarks.replay_depths --run-dir RUN_DIR [--data DIR --split SPLIT]
    python -m benchmarks.replay_depths --make-dev-split DIR   # a held-out part of train

`hsearch bench` caches every pass as JSON lines (``benchmarks/.cache/scifact-bench/run-*``).
A CE@100 pass holds the reranker's score of each of the best fusion's top 100 documents,
so any depth n can be replayed without the model: rerank the first n, order them as the
service does (:func:`fusion.blend.blend_head` with the backend's ``fusion_weight``), keep
the rest in fused order, score with ranx. The route passes (dense only, sparse only) give
the query signal AUTO uses (:func:`rerank.signals.query_signals`: do the routes agree on
the top hit?), so the replay shows what reranking does to the queries where they agree
and to the others, and what AUTO's ``skip_when_routes_agree`` would give at each depth.

Choosing such a rule on the test split would fit it to the test queries. ``--make-dev-split``
writes a BEIR folder that shares the corpus and queries but splits the train qrels into
``train-fit`` (80 %) and ``dev`` (20 %, seeded): train a reranker on ``train-fit``, run the
bench with ``--split dev``, and replay that run (benchmarks/README.md shows the commands).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks import paired
from benchmarks.beir_bench import BenchError, pass_records
from benchmarks.harness import DEFAULT_DATA
from benchmarks.paired import ndcg10

DEPTHS = (1, 3, 5, 10, 15, 20, 30, 50, 100)


@dataclass
class ReplayQuery:
    fused: list[str]  # the best fusion's answer, in fused order
    scores: np.ndarray  # the reranker's score of its first ``depth`` (the replayed pass's)
    top_agree: bool  # the dense and sparse routes put the same document first


def _records(run_dir: Path, key: str) -> dict[str, dict]:
    path = run_dir / f"{key}.c1.jsonl"
    if not path.exists():
        raise BenchError(
            f"{path}: missing; run `hsearch bench` with this mode first (the CE@100 pass and the dense/sparse passes)"
        )
    return {row["qid"]: row for row in pass_records(run_dir, key)}


def load_replay(run_dir: Path, base: str, depth: int = 100) -> dict[str, ReplayQuery]:
    """The queries whose CE@depth pass scored all of the fused top ``depth``."""
    from hybridsearch.rerank.signals import query_signals

    fused, ce = _records(run_dir, base), _records(run_dir, f"ce{depth}@{base}")
    dense, sparse = _records(run_dir, "dense"), _records(run_dir, "sparse")
    out = {}
    for qid, f in fused.items():
        c = ce.get(qid)
        if c is None or qid not in dense or qid not in sparse:
            continue
        ids = f["ids"]
        scored = {d: s for d, s in zip(c["ids"], c.get("rerank_scores") or [], strict=False) if s is not None}
        if len(ids) < depth or any(d not in scored for d in ids[:depth]):
            continue  # a partial rerank: not replayable
        rank_of = {
            route: {d: i + 1 for i, d in enumerate(r["ids"])}
            for route, r in (("dense", dense[qid]), ("sparse", sparse[qid]))
        }
        # The route passes are single-route fusions: their order is the route's own.
        route_ranks = {
            route: np.array([ranks.get(d, 0) if ranks.get(d, 0) <= 100 else 0 for d in ids])
            for route, ranks in rank_of.items()
        }
        out[qid] = ReplayQuery(ids, np.array([scored[d] for d in ids[:depth]]), query_signals(route_ranks).top_agree)
    return out


def served_order(q: ReplayQuery, depth: int, fusion_weight: float) -> list[str]:
    return paired.served_order(q.fused, q.scores, depth, fusion_weight)


def replay(
    queries: dict[str, ReplayQuery], qrels: dict[str, dict[str, int]], fusion_weight: float, depths=DEPTHS
) -> dict:
    """nDCG@10 of fusion and of each fixed depth (served order), the gain per query group,
    what AUTO would give with ``skip_when_routes_agree`` and ``auto_max_depth`` = each depth,
    and the settings this data recommends. Depths past the replayed pass are left out."""
    scored = min(len(q.scores) for q in queries.values())
    depths = [d for d in depths if d <= scored] or [scored]
    fused = ndcg10(qrels, {qid: q.fused for qid, q in queries.items()})
    per_depth = {
        d: ndcg10(qrels, {qid: served_order(q, d, fusion_weight) for qid, q in queries.items()}) for d in depths
    }
    groups = {
        "routes agree on the top hit": [qid for qid, q in queries.items() if q.top_agree],
        "routes disagree": [qid for qid, q in queries.items() if not q.top_agree],
    }

    def mean(values):
        return float(np.mean(list(values))) if len(values) else float("nan")

    rows = []
    for name, qids in groups.items():
        rows.append(
            {
                "group": name,
                "queries": len(qids),
                "fused_top1_relevant": mean([qrels[qid].get(queries[qid].fused[0], 0) > 0 for qid in qids]),
                "gain": {d: mean([per_depth[d][qid] - fused[qid] for qid in qids]) for d in depths},
            }
        )
    skip = {d: mean([fused[qid] if q.top_agree else per_depth[d][qid] for qid, q in queries.items()]) for d in depths}
    fixed = {d: mean(per_depth[d].values()) for d in depths}
    # The settings this data recommends: skip when reranking the agreeing queries does not
    # pay at the depth that is best for the others; then the depth that is best for AUTO.
    best_other = max(depths, key=lambda d: rows[1]["gain"][d])
    skips = bool(rows[0]["queries"]) and rows[0]["gain"][best_other] <= 0
    auto = skip if skips else fixed
    cap = max(depths, key=lambda d: auto[d])
    return {
        "queries": len(queries),
        "fusion": mean(fused.values()),
        "fixed": fixed,
        "groups": rows,
        "skip": skip,
        "skip_mean_depth": {d: d * len(groups["routes disagree"]) / len(queries) for d in depths},
        "recommended": {"skip_when_routes_agree": skips, "auto_max_depth": cap, "ndcg10": auto[cap]},
    }


def markdown(r: dict, title: str) -> str:
    depths = list(r["fixed"])

    def row(name, values):
        return f"| {name} | " + " | ".join(values) + " |"

    lines = [
        f"### {title}",
        "",
        f"{r['queries']} queries; fusion only nDCG@10 {r['fusion']:.4f}.",
        "",
        row("", [f"n={d}" for d in depths]),
        "|---|" + "---:|" * len(depths),
        row("nDCG@10, FIXED n", [f"{r['fixed'][d]:.4f}" for d in depths]),
    ]
    for g in r["groups"]:
        lines.append(
            row(
                f"gain vs fusion, {g['group']} ({g['queries']} q, fused top hit relevant {100 * g['fused_top1_relevant']:.0f} %)",
                [f"{g['gain'][d]:+.4f}" for d in depths],
            )
        )
    lines.append(
        row("nDCG@10, AUTO skipping agreeing routes, auto_max_depth n", [f"{r['skip'][d]:.4f}" for d in depths])
    )
    lines.append(row("its mean depth", [f"{r['skip_mean_depth'][d]:.1f}" for d in depths]))
    rec = r["recommended"]
    lines += [
        "",
        f"Recommended for this model (when time and cost allow): `skip_when_routes_agree: {str(rec['skip_when_routes_agree']).lower()}`, "
        f"`auto_max_depth: {rec['auto_max_depth']}` (nDCG@10 {rec['ndcg10']:.4f} on these queries).",
    ]
    return "\n".join(lines)


def make_dev_split(out: Path, data: Path, share: float, seed: int) -> None:
    """A BEIR folder beside ``data``'s corpus and queries with train split into train-fit and dev."""
    from hybridsearch.training.beir import load_beir

    beir = load_beir(data, ("train",))  # validates the source
    out.mkdir(parents=True, exist_ok=True)
    (out / "qrels").mkdir(exist_ok=True)
    for key in ("corpus", "queries"):
        source = Path(beir.files[key])
        link = out / source.name
        if not link.exists():
            link.symlink_to(source.resolve())
    test = Path(data) / "qrels" / "test.tsv"
    if test.exists() and not (out / "qrels" / "test.tsv").exists():
        (out / "qrels" / "test.tsv").symlink_to(test.resolve())
    lines = Path(beir.files["qrels/train"]).read_text().splitlines()
    header, rows = lines[0], [line for line in lines[1:] if line.strip()]
    qids = sorted({row.split("\t")[0] for row in rows}, key=lambda q: (0, int(q), "") if q.isdigit() else (1, 0, q))
    dev = set(random.Random(seed).sample(qids, max(1, int(len(qids) * share))))
    for name, keep in (("train-fit", lambda q: q not in dev), ("dev", lambda q: q in dev)):
        (out / "qrels" / f"{name}.tsv").write_text(
            "\n".join([header] + [r for r in rows if keep(r.split("\t")[0])]) + "\n"
        )
    print(
        f"{out}: qrels/train-fit.tsv ({len(qids) - len(dev)} queries), qrels/dev.tsv ({len(dev)} queries, seed {seed})"
    )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.replay_depths",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--run-dir", type=Path, help="an `hsearch bench` run cache (benchmarks/.cache/scifact-bench/run-*)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the BEIR folder the run used")
    p.add_argument("--split", help="the split the run evaluated (default: from the run's meta.json)")
    p.add_argument("--base", default="dbsf", help="the fusion the CE passes reranked (default dbsf)")
    p.add_argument(
        "--depth",
        type=int,
        default=100,
        help="replay the CE pass of this depth (default 100: it scored every depth up to 100)",
    )
    p.add_argument(
        "--fusion-weight",
        type=float,
        default=1.0,
        help="the backend's fusion_weight to replay (default 1, as the bench serves)",
    )
    p.add_argument(
        "--out", type=Path, help="also write the table (markdown) and the figures (JSON) here, as <out>.md / <out>.json"
    )
    p.add_argument(
        "--make-dev-split",
        type=Path,
        metavar="DIR",
        help="write a BEIR folder with train split into train-fit / dev, and exit",
    )
    p.add_argument("--dev-share", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    try:
        if args.make_dev_split:
            make_dev_split(args.make_dev_split, args.data, args.dev_share, args.seed)
            return 0
        if not args.run_dir:
            p.error("--run-dir is required (or --make-dev-split)")
        from hybridsearch.training.beir import load_beir

        split = args.split or json.loads((args.run_dir / "meta.json").read_text())["split"]
        qrels = load_beir(args.data, (split,)).qrels[split]
        queries = load_replay(args.run_dir, args.base, args.depth)
        if not queries:
            raise BenchError(f"{args.run_dir}: no query with a complete CE@{args.depth} pass and both route passes")
        result = replay(queries, qrels, args.fusion_weight)
        text = markdown(result, f"Replay of {args.run_dir.name} ({split}, fusion_weight {args.fusion_weight:g})")
        print(text)
        if args.out:
            args.out.with_suffix(".md").write_text(text + "\n")
            args.out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    except (BenchError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
