"""The candidate pool shared by every fusion method, and the fused ordering.

Every method here has the same shape: each route gives each of its documents a
contribution (RRF: ``w / (k + rank)``; weighted and DBSF: ``w * normalised score``), a
document absent from a route gets 0 from it, and the fused score is the sum. This module
builds the union of the routes' ids, lays per-route ranks, raw scores and contributions
out as ``(routes, candidates)`` matrices, and sorts.

Fused order (deterministic, documented once here for all methods):

1. fused score, descending;
2. best (smallest) rank the document has in any route;
3. the route that gives that best rank, in the order the routes were passed (first wins);
4. id ascending.

Key 4 is never reached: a (route, rank) pair names exactly one document, so keys 2 and 3
already make the order total. Contributions are summed in ascending order of value, so
two documents with the same multiset of contributions (rank 1 in dense and 3 in sparse
versus rank 3 in dense and 1 in sparse) get bitwise-equal fused scores however many
routes there are, and their tie is settled by keys 2-3 rather than by rounding noise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from hybridsearch.fusion.types import FusionResult, RouteList

_ABSENT_KEY = np.iinfo(np.int64).max


@dataclass(frozen=True)
class CandidatePool:
    """The union of the routes' ids, with each route's view of every candidate.

    Attributes:
        ids: candidate ids in order of first appearance (route order, then rank).
        positions: per route, the pool index of each of the route's ids, in rank order.
        ranks: ``(n_routes, n_candidates)`` int32, 1-based rank, 0 where absent.
        raw: ``(n_routes, n_candidates)`` float64 raw score, NaN where absent.
    """

    ids: list[str]
    positions: list[np.ndarray]
    ranks: np.ndarray
    raw: np.ndarray


def check_routes(routes: Sequence[RouteList]) -> list[RouteList]:
    """The routes as a list, after checking their types and that names are unique."""
    routes = list(routes)
    seen: set[str] = set()
    for index, route in enumerate(routes):
        if not isinstance(route, RouteList):
            raise ValueError(f"routes[{index}] must be a RouteList, got {type(route).__name__}")
        if route.name in seen:
            raise ValueError(f"route name {route.name!r} is used twice; route names must be unique")
        seen.add(route.name)
    return routes


def resolve_weights(weights: Sequence[float] | Mapping[str, float] | None, routes: Sequence[RouteList]) -> np.ndarray:
    """One finite weight >= 0 per route, as float64; ``None`` means 1.0 for every route.

    `weights` is either a sequence aligned with `routes` or a mapping from route name
    to weight that names every route and nothing else.
    """
    names = [route.name for route in routes]
    if weights is None:
        return np.ones(len(routes), dtype=np.float64)
    if isinstance(weights, Mapping):
        missing = [name for name in names if name not in weights]
        unknown = [name for name in weights if name not in names]
        if missing or unknown:
            raise ValueError(f"weights must name exactly the routes {names}; missing {missing}, unknown {unknown}")
        values = [weights[name] for name in names]
    elif isinstance(weights, (str, bytes)):
        raise ValueError(f"weights must be a sequence of numbers or a mapping, got {weights!r}")
    else:
        values = list(weights)
        if len(values) != len(routes):
            raise ValueError(
                f"weights has {len(values)} values for {len(routes)} routes {names}; give one weight per route"
            )
    try:
        array = np.array(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"weights must be numbers, got {values!r}") from None
    if array.ndim != 1 or array.shape[0] != len(routes):
        raise ValueError(f"weights must be one number per route, got {values!r}")
    bad = ~np.isfinite(array) | (array < 0)
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        raise ValueError(f"weight for route {names[index]!r} is {values[index]!r}; weights must be finite and >= 0")
    return array


def resolve_metrics(metrics: Sequence[str] | Mapping[str, str] | None, routes: Sequence[RouteList]) -> list[str]:
    """One metric name per route; ``None`` means "IP" for every route."""
    names = [route.name for route in routes]
    if metrics is None:
        return ["IP"] * len(routes)
    if isinstance(metrics, str):
        raise ValueError(f"metrics must be one metric per route (a sequence or a mapping), got {metrics!r}")
    if isinstance(metrics, Mapping):
        missing = [name for name in names if name not in metrics]
        unknown = [name for name in metrics if name not in names]
        if missing or unknown:
            raise ValueError(f"metrics must name exactly the routes {names}; missing {missing}, unknown {unknown}")
        return [metrics[name] for name in names]
    values = list(metrics)
    if len(values) != len(routes):
        raise ValueError(
            f"metrics has {len(values)} values for {len(routes)} routes {names}; give one metric per route"
        )
    return values


def pool_candidates(routes: Sequence[RouteList]) -> CandidatePool:
    """Union the routes' ids and lay out ranks and raw scores per (route, candidate)."""
    index: dict[str, int] = {}
    positions = []
    for route in routes:
        positions.append(
            np.fromiter(
                (index.setdefault(doc_id, len(index)) for doc_id in route.ids),
                dtype=np.intp,
                count=len(route.ids),
            )
        )
    n_candidates = len(index)
    ranks = np.zeros((len(routes), n_candidates), dtype=np.int32)
    raw = np.full((len(routes), n_candidates), np.nan)
    for row, (route, where) in enumerate(zip(routes, positions, strict=True)):
        ranks[row, where] = np.arange(1, where.shape[0] + 1, dtype=np.int32)
        raw[row, where] = route.scores
    return CandidatePool(ids=list(index), positions=positions, ranks=ranks, raw=raw)


def fused_order(ranks: np.ndarray, contributions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The fused scores and the candidate indices in fused order (see the module doc)."""
    n_routes, n_candidates = contributions.shape
    if n_candidates == 0:
        return np.zeros(0, dtype=np.float64), np.zeros(0, dtype=np.intp)
    # Two terms add the same either way round; from three on, sort so order cannot matter.
    if n_routes > 2:
        contributions = np.sort(contributions, axis=0)
    fused = contributions.sum(axis=0)
    # rank * n_routes + route is smallest for the best rank, then the first route.
    route_index = np.arange(n_routes, dtype=np.int64)[:, None]
    rank_key = np.where(ranks > 0, ranks * np.int64(n_routes) + route_index, _ABSENT_KEY).min(axis=0)
    order = np.lexsort((rank_key, -fused))
    return fused, order


def assemble(
    routes: Sequence[RouteList],
    pool: CandidatePool,
    route_values: Sequence[np.ndarray],
    weights: np.ndarray,
    *,
    report_weighted: bool = False,
) -> FusionResult:
    """Sum ``weights[r] * route_values[r]`` per candidate, order, and build the result.

    `route_values[r]` holds one value per document of route `r`, in rank order (RRF: the
    reciprocal rank; weighted and DBSF: the normalised score). `route_norm` in the result
    reports those values as given, or multiplied by the weight when `report_weighted`.
    """
    n_candidates = len(pool.ids)
    contributions = np.zeros((len(routes), n_candidates), dtype=np.float64)
    norm = np.full((len(routes), n_candidates), np.nan)
    for row, (where, values) in enumerate(zip(pool.positions, route_values, strict=True)):
        weighted_values = weights[row] * values
        contributions[row, where] = weighted_values
        norm[row, where] = weighted_values if report_weighted else values
    fused, order = fused_order(pool.ranks, contributions)
    ranks = pool.ranks[:, order]
    raw = pool.raw[:, order]
    norm = norm[:, order]
    names = [route.name for route in routes]
    ids = pool.ids
    return FusionResult(
        ids=[ids[i] for i in order.tolist()],
        scores=fused[order],
        route_ranks={name: ranks[row] for row, name in enumerate(names)},
        route_raw={name: raw[row] for row, name in enumerate(names)},
        route_norm={name: norm[row] for row, name in enumerate(names)},
    )
