"""Distribution-Based Score Fusion (DBSF), as implemented by Qdrant.

Michelangiolo Mazzeschi, "Distribution-Based Score Fusion (DBSF), a new approach to
Vector Search Ranking", 2023 (blog post); the definition followed here is Qdrant's
(``Fusion::Dbsf``, since v1.11), ``lib/segment/src/common/score_fusion.rs``:
``distr_norm`` normalises each list with ``mean -/+ 3 * std`` as the 0 and 1 limits,
where ``std`` is the *sample* standard deviation (Welford, divided by ``n - 1``); the
results are not clamped (a score beyond 3 std lands outside [0, 1]); a list of one point
scores 0.5; when the limits coincide (all scores equal) every point scores 0.5. The
normalised scores, multiplied by per-list weights (default 1.0), are summed per point.
Qdrant computes in float32; this is float64.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from hybridsearch.fusion.candidates import assemble, check_routes, pool_candidates, resolve_weights
from hybridsearch.fusion.normalize import rescaled
from hybridsearch.fusion.types import FusionResult, RouteList


def three_sigma(scores: np.ndarray) -> np.ndarray:
    """Qdrant's ``distr_norm``: ``(s - (mean - 3 std)) / (6 std)``, sample std, unclamped.

    Empty input gives an empty array; one score, or all scores equal, gives 0.5 each.
    """
    values = np.asarray(scores, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"scores must be 1-D, got shape {values.shape}")
    if values.size == 0:
        return values.copy()
    low, high = values.min(), values.max()
    if high == low:  # one score, or all equal
        return np.full_like(values, 0.5)
    values = rescaled(values, low, high)
    mean = values.mean()
    deviations = values - mean
    std = np.sqrt(deviations.dot(deviations) / (values.size - 1))
    return (deviations + 3.0 * std) / (6.0 * std)


def dbsf(
    routes: Sequence[RouteList],
    weights: Sequence[float] | Mapping[str, float] | None = None,
) -> FusionResult:
    """Fuse routes by ``score(d) = sum_r w_r * three_sigma(s_r)(d)``.

    A document absent from a route contributes 0 from it. Equals Qdrant's
    ``Fusion::Dbsf`` (all ``w_r = 1``), ties aside.

    Args:
        routes: the routes' ranked lists, best first. Route names must be unique.
        weights: one finite weight >= 0 per route (a sequence aligned with `routes`, or a
            mapping by route name); default 1.0 each.

    Returns:
        The fused list, ordered as described in `fusion.candidates`. `route_norm` holds
        each route's 3-sigma normalised score (before weighting).
    """
    routes = check_routes(routes)
    w = resolve_weights(weights, routes)
    pool = pool_candidates(routes)
    return assemble(routes, pool, [three_sigma(route.scores) for route in routes], w)
