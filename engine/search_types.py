"""Dataclasses that carry a search between stages (the .proto defines the wire types)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from hybridsearch.engine.filters import FilterClause

FUSION_METHODS = ("rrf", "weighted", "dbsf")
NORMALIZERS = ("min_max", "z_score", "arctan", "none")
RERANK_MODES = ("off", "fixed", "auto")


@dataclass(frozen=True)
class FusionSettings:
    method: str = "rrf"
    rrf_k: float = 60.0
    dense_weight: float = 1.0
    sparse_weight: float = 1.0
    normalizer: str = "min_max"


@dataclass(frozen=True)
class SearchQuery:
    collection: str
    text: str
    top_k: int
    dense_k: int
    sparse_k: int
    fusion: FusionSettings = FusionSettings()
    clauses: tuple[FilterClause, ...] = ()
    explain: bool = False
    # None: the tenant's default mode.
    rerank_mode: str | None = None
    rerank_depth: int = 0


@dataclass(frozen=True)
class Document:
    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RouteDetail:
    raw_score: float
    normalized_score: float
    rank: int


@dataclass
class SearchHit:
    id: str
    text: str
    metadata: dict[str, Any]
    score: float
    fused_score: float
    fused_rank: int
    dense: RouteDetail | None
    sparse: RouteDetail | None
    reranked: bool = False
    rerank_score: float | None = None
    explanation: str = ""


@dataclass
class StageTimings:
    encode_ms: float = 0.0
    dense_search_ms: float = 0.0
    sparse_search_ms: float = 0.0
    fusion_ms: float = 0.0
    fetch_ms: float = 0.0  # text + metadata of the answered (and rerank head) candidates
    rerank_ms: float = 0.0
    total_ms: float = 0.0
    query_cache_hit: bool = False
    hits_ms: float = 0.0  # building the reply's hits from the final order


class HeadScore(NamedTuple):
    """A reranked hit's reranker score (normalised to [0, 1]) and the score it is ordered by
    (the same, or its blend with the fused rank: see fusion.blend)."""

    rerank: float
    order: float


@dataclass
class RerankDecision:
    mode: str = "off"
    depth_chosen: int = 0
    reason: str = ""
    predicted_ms: float = 0.0
    actual_ms: float = 0.0
    cost_units: int = 0
    cost_money: float = 0.0
    budget_left_units: float = 0.0
    partial: bool = False
    depth_scored: int = 0
    degraded: bool = False
    degraded_reason: str = ""
    backend: str = ""
    # Pairs the model scored for the depth_scored documents: one each, or every window of a
    # long document in chunks mode (the backend's long_documents).
    chunks_scored: int = 0
    # AUTO with an early-exit model: the plan, e.g. "score 40 to layer 2, keep 10, finish them
    # to layer 6" (rerank/cascade.py); "score 12 to layer 6" for a full-depth plan.
    plan: str = ""


@dataclass
class SearchOutcome:
    hits: list[SearchHit]
    timings: StageTimings
    decision: RerankDecision
    dense_candidates: int
    sparse_candidates: int
    query_truncated: bool = False  # the embedding model read only part of the query (Usage)


@dataclass(frozen=True)
class WriteOutcome:
    """One written batch: how many documents, the time spent encoding them, and how many
    the embedding model did not read whole."""

    written: int
    encode_ms: float = 0.0
    truncated: int = 0


@dataclass(frozen=True)
class Usage:
    """What one call spent (the wire's Usage): reranker tokens, texts encoded, and where
    its time went. Built by the servicer from the outcome and the admission wait."""

    tokens: int = 0
    truncated_documents: int = 0
    encoded_texts: int = 0
    queue_ms: float = 0.0
    encode_ms: float = 0.0
    rerank_ms: float = 0.0
    total_ms: float = 0.0
    chunks: int = 0  # (query, document window) pairs the reranker scored
    truncated_texts: int = 0  # texts the embedding model did not read whole


class RerankOutcome(NamedTuple):
    """What the rerank stage did for one search: the final order of the candidates' primary
    keys, the reranked ones' scores, and the decision (mode, depth, cost, reason)."""

    order: list[str]
    scores: dict[str, HeadScore]
    decision: RerankDecision
