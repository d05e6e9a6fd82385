"""Weighted score fusion: normalise each route's scores, then take a weighted sum.

With weights 1 and a normaliser this is CombSUM (Edward A. Fox and Joseph A. Shaw,
"Combination of Multiple Searches", TREC-2, NIST SP 500-215, 1994, pp. 243-252). With
weights summing to 1 it is the convex combination studied for hybrid lexical + semantic
retrieval by Sebastian Bruch, Siyu Gai and Amir Ingber, "An Analysis of Fusion Functions
for Hybrid Retrieval", ACM TOIS 42(1), 2023, https://doi.org/10.1145/3596512 , who find it
more robust and sample-efficient than RRF once the scores are normalised (min-max or a
theoretical min-max).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from hybridsearch.fusion.candidates import (
    assemble,
    check_routes,
    pool_candidates,
    resolve_metrics,
    resolve_weights,
)
from hybridsearch.fusion.normalize import ARCTAN_METRICS, NORMALIZERS, arctan
from hybridsearch.fusion.types import FusionResult, RouteList


def weighted(
    routes: Sequence[RouteList],
    weights: Sequence[float] | Mapping[str, float] | None = None,
    normalizer: str = "min_max",
    metrics: Sequence[str] | Mapping[str, str] | None = None,
) -> FusionResult:
    """Fuse routes by ``score(d) = sum_r w_r * norm_r(s_r(d))``.

    Each route is normalised on its own (over the documents it returned); a document
    absent from a route contributes 0 from that route.

    Parity: ``normalizer="arctan"`` (with each route's metric) equals Milvus's
    ``WeightedRanker(*weights, norm_score=True)``, and ``normalizer="none"`` equals
    ``WeightedRanker(*weights, norm_score=False)`` when all routes use similarity metrics
    (IP/COSINE/BM25). ``"min_max"`` and ``"z_score"`` equal ranx's ``wsum`` after its
    ``min-max`` and ``zmuv`` normalisation (except that a constant route normalises to
    1.0 here under min-max, 0.0 in ranx).

    Args:
        routes: the routes' ranked lists, best first. Route names must be unique.
        weights: one finite weight >= 0 per route (a sequence aligned with `routes`, or a
            mapping by route name); default 1.0 each (CombSUM). Milvus requires [0, 1].
        normalizer: a key of `fusion.normalize.NORMALIZERS`: "min_max", "z_score",
            "arctan" or "none".
        metrics: the Milvus metric that produced each route's raw scores ("IP",
            "COSINE", "BM25", "L2"), a sequence aligned with `routes` or a mapping by
            name; default "IP" for every route. Only "arctan" uses it.

    Returns:
        The fused list, ordered as described in `fusion.candidates`. `route_norm` holds
        each route's normalised score (before weighting).
    """
    routes = check_routes(routes)
    if normalizer not in NORMALIZERS:
        raise ValueError(f"normalizer must be one of {', '.join(NORMALIZERS)}; got {normalizer!r}")
    w = resolve_weights(weights, routes)
    metric_names = resolve_metrics(metrics, routes)
    for route, metric in zip(routes, metric_names, strict=True):
        if not isinstance(metric, str) or metric.upper() not in ARCTAN_METRICS:
            raise ValueError(
                f"metric for route {route.name!r} must be one of {', '.join(ARCTAN_METRICS)}; got {metric!r}"
            )
    pool = pool_candidates(routes)
    if normalizer == "arctan":
        normalised = [arctan(route.scores, metric=m) for route, m in zip(routes, metric_names, strict=True)]
    else:
        normalise = NORMALIZERS[normalizer]
        normalised = [normalise(route.scores) for route in routes]
    return assemble(routes, pool, normalised, w)
