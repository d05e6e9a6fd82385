"""Values passed into and out of the fusion functions.

A `RouteList` is what one retrieval route (dense, sparse, ...) returned for a query; a
`FusionResult` is the fused list plus, for every fused position, what each route said
about that document, so that later stages (rerank policy, explain trace, API response)
can show per-route rank, raw score and normalised score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RouteList:
    """One retrieval route's ranked output, best first.

    `ids[i]` has rank `i + 1` in this route; the rank is the list position, whatever
    the scores say. Scores are "higher is better" and sorted descending for similarity
    metrics (IP, COSINE, BM25). The one exception is a Milvus L2 route whose raw scores
    are distances (ascending); only the "arctan" normaliser with `metric="L2"` is
    meant for those.

    Construction validates the route and raises `ValueError` naming the route and the
    offending position: ids must be unique `str` values, `scores` a 1-D array of finite
    numbers of the same length. `ids` is stored as a tuple and `scores` as a read-only
    float64 copy, so a `RouteList` cannot change after it is built.
    """

    name: str
    ids: Sequence[str]
    scores: np.ndarray

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"route name must be a non-empty str, got {self.name!r}")
        ids = tuple(self.ids)
        try:
            scores = np.array(self.scores, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"route {self.name!r}: scores must be numbers ({exc})") from None
        if scores.ndim != 1:
            raise ValueError(f"route {self.name!r}: scores must be 1-D, got shape {scores.shape}")
        if len(ids) != scores.shape[0]:
            raise ValueError(
                f"route {self.name!r}: ids and scores differ in length ({len(ids)} ids, {scores.shape[0]} scores)"
            )
        if len(set(ids)) != len(ids):
            first_seen: dict[object, int] = {}
            for position, doc_id in enumerate(ids):
                if doc_id in first_seen:
                    raise ValueError(
                        f"route {self.name!r}: id {doc_id!r} appears at positions "
                        f"{first_seen[doc_id]} and {position}; ids must be unique within a route"
                    )
                first_seen[doc_id] = position
        for position, doc_id in enumerate(ids):
            if not isinstance(doc_id, str):
                raise ValueError(
                    f"route {self.name!r}: id at position {position} is "
                    f"{type(doc_id).__name__} {doc_id!r}; ids must be str"
                )
        finite = np.isfinite(scores)
        if not finite.all():
            position = int(np.flatnonzero(~finite)[0])
            raise ValueError(
                f"route {self.name!r}: score at position {position} is {scores[position]}; scores must be finite"
            )
        scores.flags.writeable = False
        object.__setattr__(self, "ids", ids)
        object.__setattr__(self, "scores", scores)

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class FusionResult:
    """A fused ranking, best first, with each route's view of every fused position.

    Attributes:
        ids: fused order, best first.
        scores: fused score per position (float64).
        route_ranks: per route name, the 1-based rank of `ids[i]` in that route, 0 where
            the route did not return it (int32).
        route_raw: per route name, the route's raw score for `ids[i]`, NaN where absent.
        route_norm: per route name, the normalised score the method used for that route
            (for RRF: the weighted `w / (k + rank)` contribution), NaN where absent.

    The dicts keep the order of the routes given to the fusion function.
    """

    ids: list[str]
    scores: np.ndarray
    route_ranks: dict[str, np.ndarray]
    route_raw: dict[str, np.ndarray]
    route_norm: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.ids)

    def head(self, n: int) -> FusionResult:
        """The first `n` fused positions (all of them when `n >= len(self)`)."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"head(n): n must be an int >= 0, got {n!r}")
        n = int(n)
        return FusionResult(
            ids=self.ids[:n],
            scores=self.scores[:n],
            route_ranks={name: ranks[:n] for name, ranks in self.route_ranks.items()},
            route_raw={name: raw[:n] for name, raw in self.route_raw.items()},
            route_norm={name: norm[:n] for name, norm in self.route_norm.items()},
        )

    def without(self, drop: set[str]) -> FusionResult:
        """The same ranking with the ids in `drop` removed (the others keep their order,
        scores and route views; positions close up)."""
        keep = np.fromiter((pk not in drop for pk in self.ids), dtype=bool, count=len(self.ids))
        return FusionResult(
            ids=[pk for pk, k in zip(self.ids, keep, strict=True) if k],
            scores=self.scores[keep],
            route_ranks={name: ranks[keep] for name, ranks in self.route_ranks.items()},
            route_raw={name: raw[keep] for name, raw in self.route_raw.items()},
            route_norm={name: norm[keep] for name, norm in self.route_norm.items()},
        )
