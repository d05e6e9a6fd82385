"""Reference BM25 figures on a BEIR folder, computed with bm25s, one row per tokenisation.

Every row is bm25s (``method="lucene"``, k1 1.2, b 0.75: the service's BM25 formula up to a
constant factor, see tests/comparison/test_bm25_parity.py) fed pre-tokenised documents and
queries, so the rows differ only in the tokens:

* the service's analyzers (``engine.analysis.build_analyzer``): ``standard``, ``cjk``
  (bigrams + unigrams), ``cjk-bigrams``, ``jieba`` (words + every character, the default) and
  ``jieba-words`` (``unigrams`` off);
* tokenisations written here, independently of engine.analysis, as references:
  ``chars-uni+bi`` (Chinese: plain character unigrams + bigrams of each Han run, lowercased
  non-Han words kept whole; no normalisation, no stop words), and for English ``bm25s-tokenizer`` / ``bm25s-tokenizer+stem`` (bm25s's own tokenizer,
  English stop words, without / with the Snowball stemmer).

Top 100 per query, metrics with ranx: nDCG@10, MRR@10, Recall@100. Also the speed of each
analyzer's ``.terms()``, ``.term_counts()`` (one text, as a query) and ``.term_counts_many()``
(batches of 64, as ingest) on that corpus (chars/s, terms/s, median of ``--runs`` runs with
min-max), and of the standard analyzer on an English corpus (SciFact), for the check
"Chinese analyzers no more than 2x slower than standard per character" against both.

    python -m benchmarks.reference_bm25 --data ../shared/data/cmrc2018 [--title] [--split test]
        [--tokenizations cjk,jieba,...] [--k1 1.2 --b 0.75] [--runs 3] [--english ../shared/data/scifact]
        [--no-speed] [--out DIR]

Writes ``benchmarks/results/<dataset>/reference[-title][-<split>].md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import numpy as np

from benchmarks.harness import DEFAULT_DATA as DEFAULT_ENGLISH
from benchmarks.harness import RESULTS, loadavg, machine_info
from hybridsearch.engine.analysis import build_analyzer

K1, B, METHOD, TOP_K = 1.2, 0.75, "lucene", 100
METRICS = ("ndcg@10", "mrr@10", "recall@100")
# Figures given elsewhere for the same data, printed beside the live rows (nothing asserts
# them): the target for cmrc2018. SciFact's reference (bm25s with its own tokenizer)
# is the live "bm25s-tokenizer" row itself.
KNOWN = {
    "cmrc2018": {"chars-uni+bi": ("issue's reference, text only", 0.744)},
}

# Han ideographs (URO, ext. A, compatibility): written out here, not taken from engine.analysis.
_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_RUNS = re.compile(rf"(?P<han>[{_HAN}]+)|(?P<word>[^\W{_HAN}]+)")
_HAN_CHAR = re.compile(rf"[{_HAN}]")

ANALYZERS = {
    "standard": dict(type="standard"),
    "cjk": dict(type="cjk", unigrams=True),
    "cjk-bigrams": dict(type="cjk", unigrams=False),
    "jieba": dict(type="jieba", unigrams=True),
    "jieba-words": dict(type="jieba", unigrams=False),
    "jieba-bigrams": dict(type="jieba", bigrams=True),
}
SCRIPT_TOKENIZATIONS = ("chars-uni+bi", "bm25s-tokenizer", "bm25s-tokenizer+stem")
CHINESE_DEFAULT = (*ANALYZERS, "chars-uni+bi")
ENGLISH_DEFAULT = ("standard", "bm25s-tokenizer", "bm25s-tokenizer+stem")
DESCRIPTIONS = {
    "standard": "analyzer standard (english: Lucene stop words, Snowball)",
    "cjk": "analyzer cjk, unigrams on (bigrams + unigrams)",
    "cjk-bigrams": "analyzer cjk, unigrams off (bigrams only)",
    "jieba": "analyzer jieba (search mode), unigrams on (the default: words + every character)",
    "jieba-words": "analyzer jieba (search mode), unigrams off (words only)",
    "jieba-bigrams": "analyzer jieba (search mode), bigrams on (words + every character + character bigrams)",
    "chars-uni+bi": "script: Han char unigrams + bigrams, other words whole, nothing else",
    "bm25s-tokenizer": "script: bm25s.tokenize, English stop words, no stemmer",
    "bm25s-tokenizer+stem": "script: bm25s.tokenize, English stop words, Snowball english",
}


# --------------------------------------------------------------------------- tokenisations


def char_unigrams_bigrams(text: str) -> list[str]:
    """Plain character unigrams + bigrams of each Han run; other words lowercased, whole."""
    out: list[str] = []
    for m in _RUNS.finditer(text.lower()):
        run = m.group("han")
        if run is None:
            out.append(m.group("word"))
        else:
            out.extend(run)
            out.extend(run[i : i + 2] for i in range(len(run) - 1))
    return out


def make_tokenizer(name: str) -> Callable[[list[str]], list[list[str]]]:
    """name -> function(list of texts) -> list of token lists."""
    if name in ANALYZERS:
        cfg = dict(ANALYZERS[name])
        analyzer = build_analyzer(cfg.pop("type"), **cfg)
        return lambda texts: [analyzer.terms(t) for t in texts]
    if name == "chars-uni+bi":
        return lambda texts: [char_unigrams_bigrams(t) for t in texts]
    if name.startswith("bm25s-tokenizer"):
        import bm25s

        stemmer = None
        if name.endswith("+stem"):
            import Stemmer

            stemmer = Stemmer.Stemmer("english").stemWords
        return lambda texts: bm25s.tokenize(
            texts, stopwords="en", stemmer=stemmer, return_ids=False, show_progress=False
        )
    raise SystemExit(f"unknown tokenization {name!r}; known: {', '.join([*ANALYZERS, *SCRIPT_TOKENIZATIONS])}")


# --------------------------------------------------------------------------- retrieval


def evaluate_tokenization(
    name,
    doc_ids,
    doc_texts,
    qids,
    query_texts,
    qrels,
    k1: float = K1,
    b: float = B,
    tokenize: Callable[[list[str]], list[list[str]]] | None = None,
) -> dict:
    """bm25s over one tokenisation (``name``, or ``tokenize`` under that name) on a corpus and its queries."""
    import bm25s
    from ranx import Qrels, Run, evaluate

    tokenize = tokenize or make_tokenizer(name)
    t0 = time.perf_counter()
    doc_tokens = tokenize(doc_texts)
    query_tokens = tokenize(query_texts)
    t_tok = time.perf_counter() - t0

    t0 = time.perf_counter()
    retriever = bm25s.BM25(k1=k1, b=b, method=METHOD)
    retriever.index(doc_tokens, show_progress=False)
    t_index = time.perf_counter() - t0

    t0 = time.perf_counter()
    k = min(TOP_K, len(doc_ids))
    run: dict[str, dict[str, float]] = {}
    empty_queries = 0
    for qid, tokens in zip(qids, query_tokens, strict=True):
        scores = retriever.get_scores(list(tokens)) if tokens else np.zeros(len(doc_ids))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        hits = {doc_ids[i]: float(scores[i]) for i in top if scores[i] > 0}
        if not hits:  # ranx wants an entry per query; this id is never relevant
            hits = {"__no_hit__": 0.0}
            empty_queries += 1
        run[qid] = hits
    t_retrieve = time.perf_counter() - t0

    metrics = evaluate(Qrels(qrels), Run(run), list(METRICS))
    return {
        "tokenization": name,
        "description": DESCRIPTIONS.get(name, name),
        **{m: float(metrics[m]) for m in METRICS},
        "queries_without_hit": empty_queries,
        "vocab": len(retriever.vocab_dict) - 1,  # less bm25s's "" token
        "mean_doc_terms": float(np.mean([len(t) for t in doc_tokens])),
        "mean_query_terms": float(np.mean([len(t) for t in query_tokens])),
        "tokenize_s": t_tok,
        "index_s": t_index,
        "retrieve_s": t_retrieve,
    }


# --------------------------------------------------------------------------- speed


#: terms() (strings), term_counts() (one text: what a query calls) and term_counts_many()
#: over batches of SPEED_BATCH texts (what ingest calls; the CJK analyzers count a batch at once).
SPEED_METHODS = ("terms", "term_counts", "term_counts_many")
SPEED_BATCH = 64


def _median_spread(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def analyzer_speed(jobs: list[tuple[str, str, list[str]]], runs: int) -> list[dict]:
    """jobs: (analyzer name, corpus label, texts). The runs are interleaved (run 1 of every
    job, then run 2 ...), so that a load change on a shared machine hits every job alike."""
    prepared = []
    for name, corpus, texts in jobs:
        cfg = dict(ANALYZERS[name])
        analyzer = build_analyzer(cfg.pop("type"), **cfg)
        n_terms = sum(len(analyzer.terms(t)) for t in texts)  # also the warm-up
        prepared.append((name, corpus, texts, analyzer, sum(len(t) for t in texts), n_terms))
    times = {(i, m): [] for i in range(len(prepared)) for m in SPEED_METHODS}
    for _ in range(runs):
        for i, (_, _, texts, analyzer, _, _) in enumerate(prepared):
            batches = [texts[j : j + SPEED_BATCH] for j in range(0, len(texts), SPEED_BATCH)]
            for method in SPEED_METHODS:
                fn = getattr(analyzer, method)
                t0 = time.perf_counter()
                if method == "term_counts_many":
                    for batch in batches:
                        fn(batch)
                else:
                    for t in texts:
                        fn(t)
                times[i, method].append(time.perf_counter() - t0)
    out = []
    for i, (name, corpus, texts, _, n_chars, n_terms) in enumerate(prepared):
        row = {"analyzer": name, "corpus": corpus, "texts": len(texts), "n_chars": n_chars, "n_terms": n_terms}
        for method in SPEED_METHODS:
            med, lo, hi = _median_spread(times[i, method])
            row[method] = {
                "seconds": times[i, method],
                "chars_per_s": n_chars / med,
                "chars_per_s_min": n_chars / hi,
                "chars_per_s_max": n_chars / lo,
                "terms_per_s": n_terms / med,
                "terms_per_s_min": n_terms / hi,
                "terms_per_s_max": n_terms / lo,
            }
        out.append(row)
    return out


# --------------------------------------------------------------------------- data


def load(root: Path, split: str | None):
    """The BEIR folder through training.beir (the same reader the service's tools use: it
    checks every file and leaves out queries with empty text, as cmrc2018's train split has
    two); the corpus alone when ``split`` is None."""
    from hybridsearch.training.beir import load_beir

    return load_beir(root, (split,) if split else ())


# --------------------------------------------------------------------------- helpers


def is_chinese(texts: list[str]) -> bool:
    sample = "".join(texts[:2000])
    letters = sum(1 for c in sample if c.isalnum())
    return letters > 0 and len(_HAN_CHAR.findall(sample)) / letters > 0.3


def corpus_texts(coll, title: bool) -> tuple[list[str], list[str]]:
    if not title:
        coll = coll.without_titles()
    doc_ids = list(coll.corpus)
    # training.beir.BeirDoc.full_text: "title text", as the bench and check_bm25_scifact.py index it.
    return doc_ids, [coll.corpus[d].full_text for d in doc_ids]


def fmt_rate(r: dict, key: str) -> str:
    med, lo, hi = r[key], r[f"{key}_min"], r[f"{key}_max"]
    return f"{med / 1e3:,.0f}k ({lo / 1e3:,.0f}-{hi / 1e3:,.0f}k)"


def write_markdown(path: Path, report: dict) -> None:
    ds = report["dataset"]
    lines = [
        f"# Reference BM25 on {ds['name']} ({ds['split']} split, {'title + text' if ds['title'] else 'text only'})",
        "",
        f"`{report['command']}`  ",
        f"{report['machine']['date']}, git {report['machine']['git']}, {report['machine']['cpu']}, "
        f"{report['machine']['cores']} cores, loadavg {report['loadavg_start']} -> {report['loadavg_end']}  ",
        f"bm25s {report['versions']['bm25s']} (method {METHOD}, k1 {report['bm25']['k1']}, b {report['bm25']['b']}), ranx "
        f"{report['versions']['ranx']}; top {TOP_K}; {ds['n_docs']:,} documents, "
        f"{ds['n_queries']:,} queries; corpus fingerprint {ds['fingerprint']}",
        "",
        "| tokenisation | nDCG@10 | MRR@10 | R@100 | vocab | terms/doc | terms/query | no hit | what |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    best = max(report["rows"], key=lambda r: r["ndcg@10"])["tokenization"]
    for r in report["rows"]:
        name = f"**{r['tokenization']}**" if r["tokenization"] == best else r["tokenization"]
        lines.append(
            f"| {name} | {r['ndcg@10']:.4f} | {r['mrr@10']:.4f} | {r['recall@100']:.4f} | "
            f"{r['vocab']:,} | {r['mean_doc_terms']:.1f} | {r['mean_query_terms']:.1f} | "
            f"{r['queries_without_hit']} | {r['description']} |"
        )
    known = KNOWN.get(ds["name"], {})
    notes = [f"- {k}: {what}: nDCG@10 {v}" for k, (what, v) in known.items()]
    if notes:
        lines += ["", "Figures measured before (not by this run):", *notes]
    if report.get("speed"):
        lines += [
            "",
            f"## Analyzer speed (median of {report['speed_runs']} runs, min-max in brackets; 1 thread)",
            "",
            "| analyzer | corpus | chars | terms | terms(): chars/s | term_counts() (query): chars/s | "
            f"term_counts_many() (ingest, batches of {SPEED_BATCH}): chars/s | terms/s |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for s in report["speed"]:
            lines.append(
                f"| {s['analyzer']} | {s['corpus']} | {s['n_chars']:,} | {s['n_terms']:,} | "
                f"{fmt_rate(s['terms'], 'chars_per_s')} | {fmt_rate(s['term_counts'], 'chars_per_s')} | "
                f"{fmt_rate(s['term_counts_many'], 'chars_per_s')} | "
                f"{fmt_rate(s['term_counts_many'], 'terms_per_s')} |"
            )
        cmp = report.get("speed_vs_standard")
        if cmp and cmp["rows"]:
            lines += [
                "",
                "Time per character relative to the standard analyzer (medians; target <= 2.0x), "
                f"on {cmp['baseline_corpus']} and on the same text:",
                "",
                "| analyzer | corpus | ingest vs English | ingest vs same text | query vs English | query vs same text |",
                "|---|---|---:|---:|---:|---:|",
            ]
            for c in cmp["rows"]:
                lines.append(
                    f"| {c['analyzer']} | {c['corpus']} | {c['ratio']:.2f}x | {c['ratio_same_text']:.2f}x | "
                    f"{c['ratio_query']:.2f}x | {c['ratio_query_same_text']:.2f}x |"
                )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------- main


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="BEIR folder")
    ap.add_argument("--split", default="test")
    ap.add_argument("--title", action="store_true", help="index 'title text' (default: text only)")
    ap.add_argument(
        "--tokenizations",
        default=None,
        help="comma list; default: all but bm25s-tokenizer* for a Chinese corpus, "
        "standard and bm25s-tokenizer* otherwise",
    )
    ap.add_argument("--k1", type=float, default=K1, help=f"BM25 k1 (default {K1})")
    ap.add_argument("--b", type=float, default=B, help=f"BM25 b (default {B})")
    ap.add_argument("--runs", type=int, default=3, help="speed: runs per measurement")
    ap.add_argument("--no-speed", action="store_true")
    ap.add_argument(
        "--english",
        type=Path,
        default=DEFAULT_ENGLISH,
        help="English BEIR folder for the standard-analyzer speed baseline",
    )
    ap.add_argument("--out", type=Path, default=None, help="output folder (default benchmarks/results/<dataset>)")
    return ap.parse_args(argv)


def speed_section(args, names: list[str], name: str, texts: list[str], chinese: bool) -> tuple[list[dict], dict | None]:
    """Each analyzer's speed on this corpus (and, for a Chinese one, the standard analyzer's
    on the English baseline), and every analyzer's time per character against the standard one."""
    jobs = [(t, name, texts) for t in names if t in ANALYZERS]
    eng_label = None
    if chinese and args.english and args.english.is_dir():
        eng = load(args.english, None)
        _, eng_texts = corpus_texts(eng, True)  # SciFact is indexed as "title text"
        eng_label = f"{eng.root.resolve().name} (title + text)"
        jobs.append(("standard", eng_label, eng_texts))
    speed = analyzer_speed(jobs, args.runs)
    for r in speed:
        print(
            f"  speed {r['analyzer']:16s} {r['corpus']:26s} term_counts "
            f"{r['term_counts']['chars_per_s'] / 1e3:,.0f}k chars/s",
            flush=True,
        )
    baseline = next(
        (r for r in speed if r["analyzer"] == "standard" and (r["corpus"] == eng_label if chinese else True)), None
    )
    if baseline is None:
        return speed, None

    def rate(row, method="term_counts_many"):
        return row[method]["chars_per_s"]

    same = {r["corpus"]: r for r in speed if r["analyzer"] == "standard"}
    return speed, {
        "baseline_corpus": baseline["corpus"],
        "baseline_chars_per_s": rate(baseline),
        # ingest: term_counts_many (each analyzer's batch path); query: term_counts.
        "rows": [
            {
                "analyzer": s["analyzer"],
                "corpus": s["corpus"],
                "ratio": rate(baseline) / rate(s),
                "ratio_same_text": rate(same[s["corpus"]]) / rate(s),
                "ratio_query": rate(baseline, "term_counts") / rate(s, "term_counts"),
                "ratio_query_same_text": rate(same[s["corpus"]], "term_counts") / rate(s, "term_counts"),
                "ratio_terms_method": rate(baseline, "terms") / rate(s, "terms"),
            }
            for s in speed
            if s is not baseline
        ],
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    import bm25s

    load_start = loadavg()
    t_start = time.perf_counter()
    coll = load(args.data, args.split)
    name = coll.root.resolve().name
    doc_ids, texts = corpus_texts(coll, args.title)
    qrels = {q: {d: s for d, s in judged.items() if s > 0} for q, judged in coll.qrels[args.split].items()}
    qrels = {q: judged for q, judged in qrels.items() if judged}
    qids = list(qrels)
    query_texts = [coll.queries[q] for q in qids]
    chinese = is_chinese(texts)
    if args.tokenizations:
        names = [t.strip() for t in args.tokenizations.split(",") if t.strip()]
    else:
        names = list(CHINESE_DEFAULT if chinese else ENGLISH_DEFAULT)
    print(
        f"{name}: {len(doc_ids):,} documents, {len(qids):,} {args.split} queries, "
        f"{'Chinese' if chinese else 'not Chinese'}, title={args.title}",
        flush=True,
    )

    rows = []
    for t in names:
        r = evaluate_tokenization(t, doc_ids, texts, qids, query_texts, qrels, args.k1, args.b)
        rows.append(r)
        print(
            f"  {t:22s} nDCG@10 {r['ndcg@10']:.4f}  MRR@10 {r['mrr@10']:.4f}  "
            f"R@100 {r['recall@100']:.4f}  (tokenize {r['tokenize_s']:.1f}s, index "
            f"{r['index_s']:.1f}s, retrieve {r['retrieve_s']:.1f}s)",
            flush=True,
        )

    speed, speed_cmp = ([], None) if args.no_speed else speed_section(args, names, name, texts, chinese)
    report = {
        "command": "python -m benchmarks.reference_bm25 " + shlex.join(sys.argv[1:] if argv is None else argv),
        "machine": machine_info(),
        "loadavg_start": list(load_start),
        "loadavg_end": list(loadavg()),
        "wall_s": time.perf_counter() - t_start,
        "versions": {"bm25s": bm25s.__version__, "ranx": metadata.version("ranx")},
        "bm25": {"library": "bm25s", "method": METHOD, "k1": args.k1, "b": args.b, "top_k": TOP_K},
        "dataset": {
            "name": name,
            "path": str(args.data),
            "split": args.split,
            "title": args.title,
            "chinese": chinese,
            "n_docs": len(doc_ids),
            "n_queries": len(qids),
            "fingerprint": coll.fingerprint([args.split]),
        },
        "known": {k: {"what": w, "ndcg@10": v} for k, (w, v) in KNOWN.get(name, {}).items()},
        "rows": rows,
        "speed_runs": args.runs,
        "speed": speed,
        "speed_vs_standard": speed_cmp,
    }
    out_dir = args.out or RESULTS / name
    out_dir.mkdir(parents=True, exist_ok=True)
    tuned = "" if (args.k1, args.b) == (K1, B) else f"-k{args.k1:g}-b{args.b:g}"
    stem = "reference" + ("-title" if args.title else "") + ("" if args.split == "test" else f"-{args.split}") + tuned
    (out_dir / f"{stem}.json").write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    write_markdown(out_dir / f"{stem}.md", report)
    print(f"wrote {out_dir / stem}.md and .json ({report['wall_s']:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
