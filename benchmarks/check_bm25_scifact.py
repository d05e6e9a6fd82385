"""Quality check of the service's own BM25 (engine.bm25) on SciFact (BEIR layout), test split.

Documents are ingested through ``Bm25Encoder.document_vectors`` (statistics in a temporary
SQLite file, one tenant), queries through ``Bm25Encoder.query_vector``; scoring is the sparse
dot product, exactly what Milvus computes with metric IP over these vectors. Top 100 per query;
nDCG@10 and Recall@100 with ranx.

The reference is computed live on the same documents, queries and qrels with
``benchmarks.reference_bm25`` (bm25s, method "lucene", same k1 and b): bm25s with its own
tokenizer (English stop words, no stemmer: the figure quoted for SciFact, 0.662 on this
copy), and bm25s over our analyzer's terms (same tokens, so it should match ours).

    python -m benchmarks.check_bm25_scifact [--data DIR] [--k1 1.2] [--b 0.75]
        [--stopwords lucene|sklearn|none] [--no-stem] [--min-token-len 1]
        [--no-title] [--batch 0] [--grid]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from benchmarks.corpus import load_qrels
from benchmarks.harness import DEFAULT_DATA
from hybridsearch.engine.bm25 import Analyzer, Bm25Encoder, Bm25Params, Bm25Stats


def load_scifact(data: Path):
    corpus: dict[str, tuple[str, str]] = {}
    with gzip.open(data / "corpus.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            corpus[str(d["_id"])] = (d.get("title") or "", d.get("text") or "")
    queries: dict[str, str] = {}
    with open(data / "queries.jsonl", encoding="utf-8") as f:
        for line in f:
            q = json.loads(line)
            queries[str(q["_id"])] = q["text"]
    return corpus, queries, load_qrels(data, "test")


def doc_texts(corpus, title: bool) -> tuple[list[str], list[str]]:
    """Document ids and the texts indexed: "title text", or the text alone."""
    doc_ids = list(corpus)
    return doc_ids, [f"{t} {x}" if title else x for t, x in (corpus[d] for d in doc_ids)]


def reference(corpus, queries, qrels, *, k1, b, title, analyzer: Analyzer) -> dict[str, float]:
    """nDCG@10 of bm25s on the same documents and queries: with bm25s's own tokenizer (the
    reference BM25, "bm25s"), and over our analyzer's terms (the same tokens as ours, "ours")."""
    from benchmarks.reference_bm25 import evaluate_tokenization

    doc_ids, texts = doc_texts(corpus, title)
    qids = [q for q in qrels if q in queries]
    query_texts = [queries[q] for q in qids]
    own = evaluate_tokenization("bm25s-tokenizer", doc_ids, texts, qids, query_texts, qrels, k1, b)
    ours = evaluate_tokenization(
        "our analyzer",
        doc_ids,
        texts,
        qids,
        query_texts,
        qrels,
        k1,
        b,
        tokenize=lambda batch: [analyzer.terms(t) for t in batch],
    )
    return {"bm25s": own["ndcg@10"], "ours": ours["ndcg@10"]}


def make_analyzer(stopwords: str, stem: bool, min_token_len: int) -> Analyzer:
    return Analyzer(
        "english", stopwords=(False if stopwords == "none" else stopwords), stem=stem, min_token_len=min_token_len
    )


def run_once(corpus, queries, qrels, *, k1, b, stopwords, stem, min_token_len, title, batch, top_k=100, verbose=True):
    from ranx import Qrels, Run, evaluate

    doc_ids, texts = doc_texts(corpus, title)
    analyzer = make_analyzer(stopwords, stem, min_token_len)
    with tempfile.TemporaryDirectory() as tmp:
        stats = Bm25Stats(os.path.join(tmp, "bm25.sqlite"))
        enc = Bm25Encoder(analyzer, Bm25Params(k1=k1, b=b), stats)

        t0 = time.perf_counter()
        vectors: list[dict[int, float]] = []
        step = batch if batch > 0 else len(texts)
        for i in range(0, len(texts), step):
            vectors.extend(enc.document_vectors("scifact", "t0", texts[i : i + step]))
        t_docs = time.perf_counter() - t0

        # scipy doc matrix: map the 31-bit term hashes to compact columns
        t0 = time.perf_counter()
        sizes = np.fromiter((len(v) for v in vectors), dtype=np.int64, count=len(vectors))
        keys = np.fromiter((k for v in vectors for k in v), dtype=np.int64, count=int(sizes.sum()))
        vals = np.fromiter((w for v in vectors for w in v.values()), dtype=np.float32, count=int(sizes.sum()))
        vocab, cols = np.unique(keys, return_inverse=True)
        indptr = np.concatenate(([0], np.cumsum(sizes)))
        X = sp.csr_matrix((vals, cols, indptr), shape=(len(vectors), len(vocab)))
        t_matrix = time.perf_counter() - t0

        t0 = time.perf_counter()
        qids = [q for q in qrels if q in queries]
        qvecs = enc.query_vectors("scifact", "t0", [queries[q] for q in qids])
        rows, qcols, qvals = [], [], []
        for r, qv in enumerate(qvecs):
            for k, w in qv.items():
                j = np.searchsorted(vocab, k)
                if j < len(vocab) and vocab[j] == k:
                    rows.append(r), qcols.append(j), qvals.append(w)
        Q = sp.csr_matrix((np.asarray(qvals, np.float32), (rows, qcols)), shape=(len(qids), len(vocab)))
        S = (Q @ X.T).toarray()  # 300 x 5183, dense is fine here
        run: dict[str, dict[str, float]] = {}
        for r, qid in enumerate(qids):
            s = S[r]
            k = min(top_k, len(s))
            top = np.argpartition(-s, k - 1)[:k]
            top = top[np.argsort(-s[top], kind="stable")]
            run[qid] = {doc_ids[i]: float(s[i]) for i in top if s[i] > 0}
            if not run[qid]:  # ranx wants at least one entry per query
                run[qid] = {doc_ids[0]: 0.0}
        t_query = time.perf_counter() - t0
        stats.close()

    scores = evaluate(Qrels(qrels), Run(run), ["ndcg@10", "recall@100"])
    res = {
        "ndcg@10": scores["ndcg@10"],
        "recall@100": scores["recall@100"],
        "t_docs_s": t_docs,
        "t_matrix_s": t_matrix,
        "t_queries_s": t_query,
        "n_docs": len(doc_ids),
        "n_queries": len(qids),
        "vocab": len(vocab),
    }
    if verbose:
        cfg = f"k1={k1} b={b} stop={stopwords} stem={stem} min_len={min_token_len} title={title} batch={batch or 'all'}"
        print(
            f"{cfg}: nDCG@10={res['ndcg@10']:.4f} Recall@100={res['recall@100']:.4f} "
            f"| docs {t_docs:.2f}s ({len(doc_ids)} docs, vocab {len(vocab)}), "
            f"matrix {t_matrix:.2f}s, {len(qids)} queries {t_query:.2f}s",
            flush=True,
        )
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--k1", type=float, default=1.2)
    ap.add_argument("--b", type=float, default=0.75)
    ap.add_argument("--stopwords", default="lucene", choices=["lucene", "sklearn", "none"])
    ap.add_argument("--no-stem", action="store_true")
    ap.add_argument("--min-token-len", type=int, default=1)
    ap.add_argument("--no-title", action="store_true")
    ap.add_argument(
        "--batch", type=int, default=0, help="ingest in batches of this many docs (avgdl drifts); 0 = one batch"
    )
    ap.add_argument("--grid", action="store_true", help="also try the usual knobs")
    ap.add_argument("--min-ndcg", type=float, default=0.65)
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    corpus, queries, qrels = load_scifact(args.data)
    print(
        f"loaded {len(corpus)} docs, {len(queries)} queries, {len(qrels)} test queries "
        f"in {time.perf_counter() - t0:.2f}s"
    )
    base = dict(
        k1=args.k1,
        b=args.b,
        stopwords=args.stopwords,
        stem=not args.no_stem,
        min_token_len=args.min_token_len,
        title=not args.no_title,
        batch=args.batch,
    )
    res = run_once(corpus, queries, qrels, **base)
    if args.grid:
        variants = [
            dict(batch=100),
            dict(stopwords="sklearn"),
            dict(stopwords="none"),
            dict(stem=False),
            dict(min_token_len=2),
            dict(title=False),
            dict(k1=0.9, b=0.4),
            dict(k1=1.5, b=0.75),
            dict(k1=1.2, b=0.9),
        ]
        for v in variants:
            run_once(corpus, queries, qrels, **{**base, **v})
    ref = reference(
        corpus,
        queries,
        qrels,
        k1=args.k1,
        b=args.b,
        title=not args.no_title,
        analyzer=make_analyzer(args.stopwords, not args.no_stem, args.min_token_len),
    )
    print(
        f"reference BM25 (bm25s, its own tokenizer) nDCG@10 {ref['bm25s']:.4f}; bm25s over our analyzer's terms "
        f"{ref['ours']:.4f}; measured {res['ndcg@10']:.4f}; total {time.perf_counter() - t0:.1f}s"
    )
    return 0 if res["ndcg@10"] >= args.min_ndcg else 1


if __name__ == "__main__":
    sys.exit(main())
