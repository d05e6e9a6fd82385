"""What each training source adds: rerankers trained on different data, compared on one split.

``hsearch train-reranker ... --eval-split dev --eval-depth N`` leaves, in each model's
directory, the reranker's score of every dev query's fused top N
(``eval-<split>-top<N>.jsonl``) and the fused lists in the training cache
(``ranked-<split>-top<N>.jsonl``). This replays them without the models: for every depth n up to N,
the first n reranked (alone, and blended with the fused rank as the service does with
``fusion_weight``), the rest in fused order, nDCG@10 per query, and each model against the
baseline (``--baseline``) with a paired bootstrap interval, sign test and t-test.

    python -m benchmarks.selfsup_ablation --beir data/scifact-dev/scifact --split dev \\
        --cache data/scifact-dev/cache --depth 30 --baseline judged \\
        --model judged=data/scifact-dev/judged --model selfsup=data/scifact-dev/selfsup \\
        --model judged+selfsup=data/scifact-dev/judged+selfsup --out benchmarks/results/selfsup

``--fused`` takes another list instead, such as ``hsearch bench``'s DBSF pass on test (the best
fusion, which the reranker has to beat), and ``--score`` scores what a model has not scored
yet (kept in its directory as ``eval-<split>-<run>-<mode>-top<N>.jsonl``; an interrupted run
resumes):

    python -m benchmarks.selfsup_ablation --beir ../shared/data/scifact --split test --depth 50 \\
        --fused benchmarks/.cache/scifact-bench/run-<id>/dbsf.c1.jsonl --score \\
        --model judged=<dir> --model judged+selfsup=<dir> --out benchmarks/results/selfsup-test
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from benchmarks import harness
from benchmarks.paired import ndcg10, paired, served_order

DEPTHS = (5, 10, 20, 30, 50, 100)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--beir", type=Path, required=True, help="the BEIR folder the models were evaluated on (its qrels)")
    p.add_argument("--split", default="dev")
    lists = p.add_mutually_exclusive_group(required=True)
    lists.add_argument(
        "--cache",
        type=Path,
        help="the training cache holding ranked-<split>-top<depth>.jsonl (train-reranker's fused lists)",
    )
    lists.add_argument(
        "--fused",
        type=Path,
        help="a beir_bench pass file (JSONL: a meta line, then {qid, ids}), e.g. the DBSF pass of a run",
    )
    p.add_argument("--depth", type=int, default=30, help="the --eval-depth the models were evaluated at")
    p.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="NAME=DIR",
        help="a trained model directory and its name (repeat)",
    )
    p.add_argument("--baseline", help="the name every other model is compared with (default: the first --model)")
    p.add_argument(
        "--score",
        action="store_true",
        help="score the queries a model has no stored scores for (resumable, kept in its directory)",
    )
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument(
        "--fusion-weight",
        type=float,
        nargs="+",
        default=[0.0, 1.0],
        help="blend with the fused rank (0: reranked alone)",
    )
    p.add_argument("--bootstrap", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--out", type=Path, default=harness.RESULTS / "selfsup")
    return p.parse_args(argv)


def read_jsonl(path: Path, key: str) -> tuple[dict, dict[str, list]]:
    """(meta, qid -> row[key]) of a ranked-list or eval-scores file."""
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not lines or "meta" not in lines[0]:
        raise SystemExit(f"{path}: no meta line; is it a file hsearch train-reranker wrote?")
    # A pass row that failed (an error, no ids) is left out, as beir_bench.pass_records does.
    return lines[0]["meta"], {str(row["qid"]): row[key] for row in lines[1:] if key in row}


def fused_lists(args) -> tuple[dict, dict[str, list[str]], str]:
    """(meta, qid -> fused ids cut to --depth, the scores file's name in a model directory)."""
    if args.cache is not None:
        meta, lists = read_jsonl(args.cache / f"ranked-{args.split}-top{args.depth}.jsonl", "ids")
        return meta, lists, f"eval-{args.split}-top{args.depth}.jsonl"  # what train-reranker --eval-split writes
    meta, lists = read_jsonl(args.fused, "ids")
    if meta.get("split") not in (None, args.split):
        raise SystemExit(f"{args.fused} is a pass over {meta.get('split')!r}, not --split {args.split!r}")
    lists = {q: ids[: args.depth] for q, ids in lists.items()}
    name = f"{args.fused.parent.name}-{args.fused.name.split('.')[0]}"
    return (
        {"fused": str(args.fused.resolve()), "mode": meta.get("mode"), "depth": args.depth},
        lists,
        f"eval-{args.split}-{name}-top{args.depth}.jsonl",
    )


def model_scores(
    args, beir, folder: Path, lists_meta: dict, lists: dict[str, list[str]], file_name: str
) -> dict[str, list[float]]:
    """A model's stored scores of these lists; with --score, the missing ones scored and stored."""
    from hybridsearch.training.cross_encoder import model_hash
    from hybridsearch.training.hard_negatives import _read_scores, _score_missing

    path = folder / file_name
    if not args.score:
        if not path.is_file():
            raise SystemExit(f"{folder}: no {file_name}; evaluate it with train-reranker --eval-split, or pass --score")
        meta, scores = read_jsonl(path, "scores")
        if meta.get("ranked") != lists_meta:
            raise SystemExit(
                f"{folder}: its scores are of other fused lists than these; evaluate it again, or pass --score"
            )
        return scores
    max_length = int(model_info(folder).get("max_length") or 192)
    meta = {"model_hash": model_hash(folder), "max_length": max_length, "ranked": lists_meta}
    done = _read_scores(path, meta)
    _score_missing(
        beir,
        lists,
        done,
        path,
        meta,
        f"rerank {folder.name}",
        backend="cross-encoder",
        model_dir=folder,
        max_length=max_length,
        batch_size=args.batch_size,
        progress=True,
    )
    return done


def model_info(model_dir: Path) -> dict:
    info_path = model_dir / "training_info.json"
    return json.loads(info_path.read_text()) if info_path.is_file() else {}


def ablation(args) -> dict:
    from hybridsearch.training.beir import load_beir

    beir = load_beir(args.beir, (args.split,))
    qrels = beir.qrels[args.split]
    ranked_meta, fused, file_name = fused_lists(args)
    fused = {q: ids for q, ids in fused.items() if q in qrels}
    models = dict(spec.split("=", 1) for spec in args.model)
    baseline = args.baseline or next(iter(models))
    if baseline not in models:
        raise SystemExit(f"--baseline {baseline!r} is not one of the --model names: {', '.join(models)}")
    qids = sorted(q for q in fused if q in qrels)
    depths = [d for d in DEPTHS if d <= args.depth]
    fusion = ndcg10(qrels, {q: fused[q] for q in qids})
    result = {
        "split": args.split,
        "queries": len(qids),
        "depth": args.depth,
        "fusion_ndcg10": float(np.mean(list(fusion.values()))),
        "ranked": ranked_meta,
        "models": {},
        "rows": [],
    }
    per_query: dict[tuple[str, float, int], dict[str, float]] = {}
    for name, folder in models.items():
        scores = model_scores(args, beir, Path(folder), ranked_meta, fused, file_name)
        missing = [q for q in qids if q not in scores]
        if missing:
            raise SystemExit(
                f"{folder}: {len(missing)} {args.split} queries have no scores (an interrupted evaluation?); pass --score to finish it"
            )
        info = model_info(Path(folder))
        soup = ", ".join(Path(s["dir"]).name for s in info.get("soup_of", []))
        result["models"][name] = {
            "dir": str(folder),
            "examples": info.get("examples") or (f"soup of {soup}" if soup else None),
            "epoch_losses": info.get("epoch_losses"),
            "train_seconds": info.get("train_seconds"),
        }
        for fw in args.fusion_weight:
            for d in depths:
                per_query[(name, fw, d)] = ndcg10(qrels, {q: served_order(fused[q], scores[q], d, fw) for q in qids})
    for fw in args.fusion_weight:
        for d in depths:
            for name in models:
                values = per_query[(name, fw, d)]
                row = {
                    "model": name,
                    "fusion_weight": fw,
                    "depth": d,
                    "ndcg10": float(np.mean(list(values.values()))),
                    "vs_fusion": paired(fusion, values, args.bootstrap, args.seed),
                }
                if name != baseline:
                    row["vs_baseline"] = paired(per_query[(baseline, fw, d)], values, args.bootstrap, args.seed)
                result["rows"].append(row)
    result["baseline"] = baseline
    return result


def render(args, result: dict) -> str:
    def diff(p: dict) -> str:
        return f"{p['mean']:+.4f} [{p['ci95'][0]:+.4f}, {p['ci95'][1]:+.4f}], {p['wins']}/{p['losses']}/{p['ties']}, sign p {p['sign_p']:.3f}"

    lines = [
        f"# Reranker training sources on {Path(args.beir).name} {result['split']}",
        "",
        f"- Command: `{harness.command_line('benchmarks.selfsup_ablation', None)}`",
        f"- {result['queries']} {result['split']} queries, fused ({result['ranked'].get('fusion') or (result['ranked'].get('mode') or {}).get('label', '?')}) "
        f"top {result['depth']}; "
        f"fusion alone nDCG@10 {result['fusion_ndcg10']:.4f}. Baseline: `{result['baseline']}`.",
        "",
        "| model | training examples | epoch losses | train s |",
        "|---|---:|---|---:|",
    ]
    for name, m in result["models"].items():
        lines.append(f"| {name} | {m['examples'] or '-'} | {m['epoch_losses'] or '-'} | {m['train_seconds'] or '-'} |")
    lines += [
        "",
        "| fusion_weight | depth | model | nDCG@10 | vs fusion (mean [95 % CI], W/L/T) | vs baseline |",
        "|---:|---:|---|---:|---|---|",
    ]
    for r in result["rows"]:
        base = diff(r["vs_baseline"]) if "vs_baseline" in r else "(baseline)"
        lines.append(
            f"| {r['fusion_weight']:g} | {r['depth']} | {r['model']} | {r['ndcg10']:.4f} | {diff(r['vs_fusion'])} | {base} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    result = ablation(args)
    args.out.mkdir(parents=True, exist_ok=True)
    report = render(args, result)
    (args.out / "results.json").write_text(
        json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, **result}, indent=1)
    )
    (args.out / "results.md").write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
