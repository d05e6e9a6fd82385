"""Order a reranked head by the reranker's ranking blended with the fused ranking.

A cross-encoder sees one (query, document) pair at a time; the fused list carries what
the two retrieval routes agreed on. When the reranker is weak (a small model trained on
a few hundred queries), ordering the head by its scores alone can lose what fusion got
right, and scoring a deeper head then hurts more. Blending the two rankings with RRF
keeps both signals without calibrating one score scale against the other:

    score(d) = fused_weight / (k + fused_rank(d)) + 1 / (k + rerank_rank(d))

ranks 1-based within the head, ``k`` the RRF constant (60, Cormack et al. 2009; see
`fusion.rrf`). ``fused_weight`` 0 is the reranker's order alone. This is the rank
fusion of first-stage and reranker lists that e.g. Vespa's global-phase ranking and
Elasticsearch's RRF retriever express as configuration.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

BLEND_K = 60.0


def blend_head(
    rerank_scores: Sequence[float] | np.ndarray, fused_weight: float, k: float = BLEND_K
) -> tuple[np.ndarray, np.ndarray]:
    """Order a head, given in fused order, by its blended ranking.

    Args:
        rerank_scores: the reranker's score of each head document, the head in fused
            order (index 0 is fused rank 1). Higher is better.
        fused_weight: weight of the fused rank, finite and >= 0; the reranker's rank
            weighs 1. 0 orders by `rerank_scores` alone.
        k: the RRF constant, finite and >= 0.

    Returns:
        (order, score): head indices best first, and each index's ordering score (the
        blend, or `rerank_scores` itself when `fused_weight` is 0). Ties keep fused
        order (a stable sort), so the result is deterministic.
    """
    scores = np.asarray(rerank_scores, dtype=np.float64)
    if scores.ndim != 1:
        raise ValueError(f"rerank_scores must be one-dimensional, got shape {scores.shape}")
    if not np.all(np.isfinite(scores)):
        raise ValueError("rerank_scores must be finite")
    for name, value in (("fused_weight", fused_weight), ("k", k)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise ValueError(f"{name} must be a number, got {value!r}")
        if not np.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
    if fused_weight == 0:
        return np.argsort(-scores, kind="stable"), scores
    n = len(scores)
    rerank_rank = np.empty(n, dtype=np.float64)
    rerank_rank[np.argsort(-scores, kind="stable")] = np.arange(1, n + 1)
    fused_rank = np.arange(1, n + 1, dtype=np.float64)
    blended = fused_weight / (k + fused_rank) + 1.0 / (k + rerank_rank)
    return np.argsort(-blended, kind="stable"), blended
