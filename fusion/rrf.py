"""Reciprocal Rank Fusion.

Gordon V. Cormack, Charles L. A. Clarke and Stefan Büttcher. "Reciprocal Rank Fusion
Outperforms Condorcet and Individual Rank Learning Methods". SIGIR 2009, pp. 758-759.
https://doi.org/10.1145/1571941.1572114
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from hybridsearch.fusion.candidates import assemble, check_routes, pool_candidates, resolve_weights
from hybridsearch.fusion.types import FusionResult, RouteList


def rrf(
    routes: Sequence[RouteList],
    k: float = 60.0,
    weights: Sequence[float] | Mapping[str, float] | None = None,
) -> FusionResult:
    """Fuse routes by ``score(d) = sum_r w_r / (k + rank_r(d))``, rank 1-based.

    A document absent from a route gets nothing from it. Only ranks matter; the routes'
    scores are carried into `route_raw` but not used.

    This equals Milvus's ``RRFRanker(k)`` (which has no weights: all ``w_r = 1``; its
    rank is the 1-based position in each route's result list, ``1 / (k + idx + 1)``)
    and ranx's ``fuse(..., method="rrf")``.

    Args:
        routes: the routes' ranked lists, best first. Route names must be unique.
        k: the paper's smoothing constant (60 there); finite and >= 0. Larger `k`
            flattens the gap between top and lower ranks.
        weights: one finite weight >= 0 per route (a sequence aligned with `routes`, or
            a mapping by route name); default 1.0 each.

    Returns:
        The fused list, ordered as described in `fusion.candidates` (score descending,
        then best rank, then route order). `route_norm` holds each route's weighted
        contribution ``w_r / (k + rank)``.
    """
    routes = check_routes(routes)
    if isinstance(k, bool) or not isinstance(k, (int, float, np.integer, np.floating)):
        raise ValueError(f"k must be a number, got {k!r}")
    if not np.isfinite(k) or k < 0:
        raise ValueError(f"k must be finite and >= 0, got {k!r}")
    w = resolve_weights(weights, routes)
    pool = pool_candidates(routes)
    reciprocal = [1.0 / (float(k) + np.arange(1, len(route) + 1, dtype=np.float64)) for route in routes]
    return assemble(routes, pool, reciprocal, w, report_weighted=True)
