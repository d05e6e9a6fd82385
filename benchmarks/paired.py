"""Per-query nDCG@10, the served order of a reranked head, and the paired comparison every
quality benchmark reports.

Two modes scored on the same queries are compared per query: the mean difference, a
bootstrap 95 % interval of it, wins / losses / ties, an exact sign test and a paired t-test.
One implementation, so a "+0.01 [CI]" means the same thing in every results table."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np


def ndcg10(qrels: Mapping[str, Mapping[str, int]], runs: Mapping[str, list[str]]) -> dict[str, float]:
    """nDCG@10 per query (ranx) of ranked id lists, for the queries in ``runs``."""
    from ranx import Qrels, Run, evaluate

    run = Run({qid: {d: float(len(ids) - i) for i, d in enumerate(ids)} for qid, ids in runs.items()})
    evaluate(Qrels({qid: dict(qrels[qid]) for qid in runs}), run, "ndcg@10", make_comparable=True)
    return {qid: float(run.scores["ndcg@10"].get(qid, 0.0)) for qid in runs}


def served_order(fused: list[str], scores, depth: int, fusion_weight: float) -> list[str]:
    """The order the service serves: the first ``depth`` fused documents ordered by their
    reranker ``scores`` (blended with their fused rank, :func:`fusion.blend.blend_head`), the
    rest in fused order. ``depth`` is cut to the scores and the list there are."""
    from hybridsearch.fusion.blend import blend_head

    depth = max(0, min(depth, len(scores), len(fused)))
    order, _ = blend_head(np.asarray(scores[:depth], dtype=np.float64), fusion_weight)
    return [fused[i] for i in order] + fused[depth:]


def paired(a: Mapping[Any, float], b: Mapping[Any, float], rounds: int = 10_000, seed: int = 0) -> dict[str, Any]:
    """b - a over the queries both score: mean, 95 % bootstrap interval, sign test, paired t-test."""
    from scipy import stats

    keys = sorted(set(a) & set(b))
    d = np.array([b[k] - a[k] for k in keys], dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), size=(rounds, len(d)))].mean(axis=1) if len(d) else np.zeros(1)
    wins, losses = int((d > 1e-12).sum()), int((d < -1e-12).sum())
    sign_p = float(stats.binomtest(wins, wins + losses).pvalue) if wins + losses else 1.0
    t_p = (
        float(stats.ttest_rel([b[k] for k in keys], [a[k] for k in keys]).pvalue)
        if len(keys) > 2 and np.any(np.abs(d) > 1e-12)
        else 1.0
    )
    return {
        "n": len(keys),
        "mean": float(d.mean()) if len(d) else 0.0,
        "ci95": [float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))],
        "wins": wins,
        "losses": losses,
        "ties": len(keys) - wins - losses,
        "sign_p": sign_p,
        "t_p": t_p if math.isfinite(t_p) else None,
    }
