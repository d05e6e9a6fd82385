"""Pure ranking functions that fuse the ranked lists of several retrieval routes.

One module per method, each citing its source: `rrf` (Reciprocal Rank Fusion),
`weighted` (normalise + weighted sum, with the normalisers in `normalize`) and `dbsf`
(Distribution-Based Score Fusion as in Qdrant). All of them take `RouteList`s and return
a `FusionResult` with per-route ranks, raw and normalised scores, ordered
deterministically (see `fusion.candidates`). Plain numpy: no I/O, no models, no Milvus.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from hybridsearch.fusion.dbsf import dbsf, three_sigma
from hybridsearch.fusion.normalize import NORMALIZERS, arctan, min_max, none, z_score
from hybridsearch.fusion.rrf import rrf
from hybridsearch.fusion.types import FusionResult, RouteList
from hybridsearch.fusion.weighted import weighted

METHODS = ("rrf", "weighted", "dbsf")

__all__ = [
    "METHODS",
    "NORMALIZERS",
    "FusionResult",
    "RouteList",
    "arctan",
    "dbsf",
    "fuse",
    "min_max",
    "none",
    "rrf",
    "three_sigma",
    "weighted",
    "z_score",
]


def fuse(
    method: str,
    routes: Sequence[RouteList],
    *,
    k: float = 60.0,
    weights: Sequence[float] | Mapping[str, float] | None = None,
    normalizer: str = "min_max",
    metrics: Sequence[str] | Mapping[str, str] | None = None,
) -> FusionResult:
    """Fuse `routes` with the named method.

    Args:
        method: "rrf", "weighted" or "dbsf".
        routes: the routes' ranked lists, best first; route names must be unique.
        k: RRF's constant (used by "rrf" only).
        weights: one finite weight >= 0 per route, a sequence aligned with `routes` or a
            mapping by route name; default 1.0 each (used by every method).
        normalizer: "min_max", "z_score", "arctan" or "none" (used by "weighted" only,
            but always checked, so a bad configuration fails whatever the method).
        metrics: each route's Milvus metric (used by "weighted" with "arctan" only).

    Raises:
        ValueError: unknown method or normaliser, bad weights, bad `k`, bad routes.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    if normalizer not in NORMALIZERS:
        raise ValueError(f"normalizer must be one of {', '.join(NORMALIZERS)}; got {normalizer!r}")
    if method == "rrf":
        return rrf(routes, k=k, weights=weights)
    if method == "weighted":
        return weighted(routes, weights=weights, normalizer=normalizer, metrics=metrics)
    return dbsf(routes, weights=weights)
