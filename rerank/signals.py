"""Cheap query signals from the fused list: does the fused head need the reranker?"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class QuerySignals:
    # The dense and sparse routes put the same document first. Two independent
    # retrievers agreeing on the top hit is the strongest cheap sign that fusion's top
    # hit is right: on a held-out part of SciFact train it was relevant for 86 % of
    # such queries against 49 % of the others (benchmarks/README.md, "AUTO's signal").
    top_agree: bool
    # Overlap of the dense and sparse top-k (|A & B| / k): shown in the decision's reason.
    route_agreement: float


def query_signals(route_ranks: dict[str, np.ndarray], k: int = 10) -> QuerySignals:
    """Signals from a FusionResult's per-route ranks (1-based, 0 = not retrieved by that
    route; positions in fused order). One route alone gives no agreement signal."""
    ranks = list(route_ranks.values())
    if len(ranks) < 2:
        return QuerySignals(top_agree=False, route_agreement=0.0)
    a, b = np.asarray(ranks[0]), np.asarray(ranks[1])
    top_agree = bool(np.any((a == 1) & (b == 1)))
    in_a, in_b = (a > 0) & (a <= k), (b > 0) & (b <= k)
    denominator = min(k, max(int(in_a.sum()), int(in_b.sum()))) or 1
    return QuerySignals(top_agree=top_agree, route_agreement=float((in_a & in_b).sum()) / denominator)
