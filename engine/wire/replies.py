"""Replies out: domain values (engine.search_types, engine.collections, rerank results and
budgets, API key records) to protobuf messages. The only module that builds reply messages."""

from __future__ import annotations

from typing import Any

from hybridsearch.engine.errors import exhausted
from hybridsearch.engine.search_types import RouteDetail, SearchOutcome, Usage
from hybridsearch.engine.wire.enums import (
    FIELD_TYPES_BACK,
    FUSION_METHODS_BACK,
    NORMALIZERS_BACK,
    RERANK_MODES_BACK,
    ROLE_VALUES,
)
from hybridsearch.rerank.budgets import RerankBudget
from hybridsearch.v1 import hybridsearch_pb2 as pb


def to_metadata_value(value: Any) -> pb.MetadataValue:
    if isinstance(value, bool):
        return pb.MetadataValue(bool_value=value)
    if isinstance(value, int):
        return pb.MetadataValue(int_value=value)
    if isinstance(value, float):
        return pb.MetadataValue(double_value=value)
    return pb.MetadataValue(string_value=str(value))


def document_message(doc) -> pb.Document:
    return pb.Document(id=doc.id, text=doc.text, metadata={k: to_metadata_value(v) for k, v in doc.metadata.items()})


def collection_message(spec, count: int = 0) -> pb.Collection:
    return pb.Collection(
        name=spec.name,
        profile=spec.profile,
        dimension=spec.dimension,
        dense_metric=spec.dense_metric,
        metadata_fields=[pb.MetadataField(name=n, type=FIELD_TYPES_BACK[t]) for n, t in spec.metadata_fields.items()],
        tenant_document_count=count,
        sparse_kind=spec.sparse_kind,
        sparse_analyzer=spec.sparse_analyzer or "",
    )


def _route(detail: RouteDetail | None) -> pb.RouteScore | None:
    if detail is None:
        return None
    return pb.RouteScore(raw_score=detail.raw_score, normalized_score=detail.normalized_score, rank=detail.rank)


def hit_message(h) -> pb.Hit:
    hit = pb.Hit(
        id=h.id,
        text=h.text,
        metadata={k: to_metadata_value(v) for k, v in h.metadata.items()},
        score=h.score,
        fused_score=h.fused_score,
        fused_rank=h.fused_rank,
        dense=_route(h.dense),
        sparse=_route(h.sparse),
        reranked=h.reranked,
        explanation=h.explanation,
    )
    if h.rerank_score is not None:
        hit.rerank_score = h.rerank_score
    return hit


def decision_message(d) -> pb.RerankDecision:
    return pb.RerankDecision(
        mode=RERANK_MODES_BACK.get(d.mode, pb.OFF),
        depth_chosen=d.depth_chosen,
        reason=d.reason,
        predicted_ms=d.predicted_ms,
        actual_ms=d.actual_ms,
        cost_units=d.cost_units,
        cost_money=d.cost_money,
        budget_left_units=d.budget_left_units,
        partial=d.partial,
        depth_scored=d.depth_scored,
        degraded=d.degraded,
        degraded_reason=d.degraded_reason,
        backend=d.backend,
        chunks_scored=d.chunks_scored,
        plan=d.plan,
    )


def usage_message(usage: Usage) -> pb.Usage:
    return pb.Usage(
        tokens=usage.tokens,
        truncated_documents=usage.truncated_documents,
        encoded_texts=usage.encoded_texts,
        queue_ms=usage.queue_ms,
        encode_ms=usage.encode_ms,
        rerank_ms=usage.rerank_ms,
        total_ms=usage.total_ms,
        chunks=usage.chunks,
        truncated_texts=usage.truncated_texts,
    )


def search_response(outcome: SearchOutcome, usage: Usage | None = None) -> pb.SearchResponse:
    usage = usage if usage is not None else Usage()
    t = outcome.timings
    return pb.SearchResponse(
        usage=usage_message(usage),
        hits=[hit_message(h) for h in outcome.hits],
        timings=pb.StageTimings(
            encode_ms=t.encode_ms,
            dense_search_ms=t.dense_search_ms,
            sparse_search_ms=t.sparse_search_ms,
            fusion_ms=t.fusion_ms,
            rerank_ms=t.rerank_ms,
            total_ms=t.total_ms,
            query_cache_hit=t.query_cache_hit,
            fetch_ms=t.fetch_ms,
            hits_ms=t.hits_ms,
        ),
        rerank=decision_message(outcome.decision),
        dense_candidates=outcome.dense_candidates,
        sparse_candidates=outcome.sparse_candidates,
    )


# Room left under the message limit for the reply's framing and the fields after the hits.
REPLY_HEADROOM_BYTES = 16 * 1024


def fit_reply(reply: pb.SearchResponse, max_bytes: int) -> pb.SearchResponse:
    """Keep a search reply under the gRPC message limit: cut the stored text of the last
    hits first (``text_truncated``), so the best hits stay whole. With the write limits
    (text 64 KiB, metadata 16 KiB per document) only a large top_k can get there."""
    budget = max_bytes - REPLY_HEADROOM_BYTES
    size = reply.ByteSize()
    for _ in range(3):  # each pass estimates the saving; the next measures it again
        if size <= budget:
            return reply
        over = size - budget
        for hit in reversed(reply.hits):
            if over <= 0:
                break
            raw = hit.text.encode("utf-8")
            if not raw:
                continue
            keep = max(0, len(raw) - over - 8)  # 8: the flag and shorter length prefixes
            hit.text = raw[:keep].decode("utf-8", "ignore")
            hit.text_truncated = True
            over -= len(raw) - keep - 2
        size = reply.ByteSize()
    if size > budget:
        raise exhausted(
            f"the reply would be {size} bytes even without hit texts; server.max_message_bytes is {max_bytes}: ask for a smaller top_k"
        )
    return reply


def rerank_response(
    result, documents: list[str], top_n: int, return_documents: bool, usage: Usage
) -> pb.RerankResponse:
    results = []
    for i in result.order[:top_n]:
        item = pb.RerankResult(
            index=i, relevance_score=float(result.scores.normalized[i]), raw_score=float(result.scores.raw[i])
        )
        if return_documents:
            item.document = documents[i]
        results.append(item)
    return pb.RerankResponse(
        results=results,
        usage=usage_message(usage),
        model=result.model,
        elapsed_ms=result.elapsed_ms,
    )


def budget_message(budget: RerankBudget) -> pb.RerankBudget:
    return pb.RerankBudget(
        tenant=budget.tenant,
        latency_target_ms=budget.latency_target_ms,
        max_cost_per_query=budget.max_cost_per_query,
        cost_per_minute=budget.cost_per_minute,
        min_depth=budget.min_depth,
        max_depth=budget.max_depth,
        default_mode=RERANK_MODES_BACK[budget.default_mode],
    )


def api_key_message(record) -> pb.ApiKey:
    return pb.ApiKey(
        key_id=record.key_id,
        tenant=record.tenant,
        role=ROLE_VALUES[record.role],
        description=record.description,
        created_unix=record.created_unix,
        revoked=record.revoked,
    )


def info_message(info: dict) -> pb.ServiceInfo:
    """GetInfo's reply from engine.info.service_info's plain values."""
    defaults = dict(info["defaults"])
    defaults["fusion_method"] = FUSION_METHODS_BACK[defaults["fusion_method"]]
    defaults["normalizer"] = NORMALIZERS_BACK[defaults["normalizer"]]
    defaults["rerank_mode"] = RERANK_MODES_BACK[defaults["rerank_mode"]]
    fields = {k: v for k, v in info.items() if k not in ("defaults", "role", "budget")}
    reply = pb.ServiceInfo(**fields, defaults=pb.SearchDefaults(**defaults), role=ROLE_VALUES[info["role"]])
    if info["budget"] is not None:
        reply.budget.CopyFrom(budget_message(info["budget"]))
    return reply
