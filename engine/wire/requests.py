"""Requests in: protobuf messages to domain values (engine.search_types, engine.collections,
rerank.budgets), or INVALID_ARGUMENT naming the field. The only module that reads request
messages; engine.wire.replies writes the replies."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from hybridsearch.engine.collections import COLLECTION_NAME, DENSE_METRICS, FIELD_NAME, CollectionSpec, FieldType
from hybridsearch.engine.config import LimitsConfig
from hybridsearch.engine.errors import invalid
from hybridsearch.engine.filters import FilterClause
from hybridsearch.engine.search_types import Document, FusionSettings, SearchQuery
from hybridsearch.engine.tenancy import check_tenant_name
from hybridsearch.engine.wire.enums import FIELD_TYPES, FUSION_METHODS, NORMALIZERS, RERANK_MODES, ROLE_NAMES
from hybridsearch.rerank.budgets import RerankBudget
from hybridsearch.v1 import hybridsearch_pb2 as pb


def enum_names(enum, values) -> str:
    return ", ".join(enum.Name(v) for v in values)


def check_collection_name(name: str, field: str = "collection") -> str:
    if not name:
        raise invalid(field, "must not be empty")
    if not COLLECTION_NAME.fullmatch(name):
        raise invalid(
            field,
            f"{name[:80]!r} is not a valid collection name (a letter or _, then letters, digits or _; at most 255)",
        )
    return name


def collection_spec(request: pb.CreateCollectionRequest, default_profile: str) -> CollectionSpec:
    name = check_collection_name(request.name, "name")
    if request.dimension < 0:
        raise invalid("dimension", f"must be >= 0 (0 takes the profile's dimension), got {request.dimension}")
    metric = request.dense_metric.upper() or "COSINE"
    if metric not in DENSE_METRICS:
        raise invalid("dense_metric", f"{request.dense_metric!r} is not supported; allowed: {', '.join(DENSE_METRICS)}")
    fields: dict[str, FieldType] = {}
    for i, f in enumerate(request.metadata_fields):
        where = f"metadata_fields[{i}]"
        if not FIELD_NAME.fullmatch(f.name):
            raise invalid(
                f"{where}.name",
                f"{f.name[:80]!r} is not a valid field name (a letter or _, then letters, digits or _; at most 63)",
            )
        if f.name in fields:
            raise invalid(f"{where}.name", f"field {f.name!r} declared twice")
        if f.type not in FIELD_TYPES:
            raise invalid(f"{where}.type", f"unknown type {f.type}; allowed: {enum_names(pb.FieldType, FIELD_TYPES)}")
        fields[f.name] = FIELD_TYPES[f.type]
    return CollectionSpec(
        name=name,
        profile=request.profile or default_profile,
        dimension=request.dimension,
        dense_metric=metric,
        metadata_fields=fields,
    )


def metadata_value(value: pb.MetadataValue, where: str) -> Any:
    kind = value.WhichOneof("kind")
    if kind is None:
        raise invalid(where, "value has no kind set (string_value, int_value, double_value or bool_value)")
    result = getattr(value, kind)
    if kind == "double_value" and not math.isfinite(result):
        raise invalid(where, "double values must be finite")
    return result


def documents(request_docs: Sequence[pb.Document], limits: LimitsConfig, where: str = "documents") -> list[Document]:
    if not request_docs:
        raise invalid(where, "must hold at least one document")
    if len(request_docs) > limits.max_batch_docs:
        raise invalid(
            where,
            f"{len(request_docs)} documents in one batch; at most {limits.max_batch_docs} allowed (split the batch or use BulkUpsert)",
        )
    seen: dict[str, int] = {}
    out = []
    for i, d in enumerate(request_docs):
        at = f"{where}[{i}]"
        check_doc_id(d.id, f"{at}.id", limits)
        if d.id in seen:
            raise invalid(
                f"{at}.id", f"duplicate id {d.id!r} (also at {where}[{seen[d.id]}]); ids must be unique within a batch"
            )
        seen[d.id] = i
        if not d.text.strip():
            raise invalid(f"{at}.text", "must not be empty or whitespace")
        size = len(d.text.encode("utf-8"))
        if size > limits.max_text_bytes:
            raise invalid(f"{at}.text", f"{size} bytes of UTF-8; at most {limits.max_text_bytes} allowed")
        if "\x00" in d.text:
            raise invalid(f"{at}.text", "must not contain NUL characters")
        if len(d.metadata) > limits.max_metadata_keys:
            raise invalid(f"{at}.metadata", f"{len(d.metadata)} keys; at most {limits.max_metadata_keys} allowed")
        metadata = {}
        total = 0
        for key in sorted(d.metadata):
            if not FIELD_NAME.fullmatch(key):
                raise invalid(
                    f"{at}.metadata",
                    f"key {key[:80]!r} is not a valid field name (a letter or _, then letters, digits or _)",
                )
            value = metadata_value(d.metadata[key], f"{at}.metadata[{key!r}]")
            size = len(value.encode("utf-8")) if isinstance(value, str) else 8
            if isinstance(value, str) and size > limits.max_metadata_value_bytes:
                raise invalid(
                    f"{at}.metadata[{key!r}]",
                    f"{size} bytes of UTF-8; at most {limits.max_metadata_value_bytes} allowed (limits.max_metadata_value_bytes)",
                )
            total += len(key) + size
            metadata[key] = value
        if total > limits.max_metadata_bytes:
            raise invalid(
                f"{at}.metadata",
                f"{total} bytes in all (keys + values); at most {limits.max_metadata_bytes} allowed (limits.max_metadata_bytes)",
            )
        out.append(Document(id=d.id, text=d.text, metadata=metadata))
    return out


def check_doc_id(doc_id: str, where: str, limits: LimitsConfig) -> str:
    if not doc_id or not doc_id.strip():
        raise invalid(where, "must not be empty")
    if len(doc_id) > limits.max_id_chars:
        raise invalid(where, f"{len(doc_id)} characters; at most {limits.max_id_chars} allowed")
    if any(ord(c) < 32 or ord(c) == 127 for c in doc_id):
        raise invalid(where, "must not contain control characters")
    return doc_id


def doc_ids(ids: Sequence[str], limits: LimitsConfig, where: str = "ids") -> list[str]:
    if not ids:
        raise invalid(where, "must hold at least one id")
    if len(ids) > limits.max_batch_docs:
        raise invalid(where, f"{len(ids)} ids; at most {limits.max_batch_docs} allowed")
    for i, doc_id in enumerate(ids):
        check_doc_id(doc_id, f"{where}[{i}]", limits)
    return list(dict.fromkeys(ids))


# Route weights are relative; past this they only push fused scores toward float
# overflow (1e307 x a score of 20 is inf, and inf - inf poisons everything after it).
MAX_FUSION_WEIGHT = 1e6


def _weight(request: pb.FusionSpec, name: str) -> float:
    if not request.HasField(name):
        return getattr(FusionSettings, name)
    value = getattr(request, name)
    if not math.isfinite(value) or value < 0:
        raise invalid(f"fusion.{name}", f"must be a finite number >= 0, got {value}")
    if value > MAX_FUSION_WEIGHT:
        raise invalid(
            f"fusion.{name}",
            f"must be at most {MAX_FUSION_WEIGHT:g} (weights are relative: scale both down), got {value:g}",
        )
    return value


def fusion_settings(request: pb.FusionSpec) -> FusionSettings:
    if request.method not in FUSION_METHODS:
        raise invalid(
            "fusion.method",
            f"unknown method {request.method}; allowed: {enum_names(pb.FusionMethod, [pb.RRF, pb.WEIGHTED, pb.DBSF])}",
        )
    if request.normalizer not in NORMALIZERS:
        raise invalid(
            "fusion.normalizer",
            f"unknown normalizer {request.normalizer}; allowed: {enum_names(pb.Normalizer, [pb.MIN_MAX, pb.Z_SCORE, pb.ARCTAN, pb.NONE])}",
        )
    k = request.rrf_k
    if not math.isfinite(k) or k < 0:
        raise invalid("fusion.rrf_k", f"must be a finite number >= 0 (0 means 60), got {k}")
    dense_w, sparse_w = _weight(request, "dense_weight"), _weight(request, "sparse_weight")
    if dense_w == 0 and sparse_w == 0:
        raise invalid("fusion", "dense_weight and sparse_weight must not both be 0")
    return FusionSettings(
        method=FUSION_METHODS[request.method],
        rrf_k=k or FusionSettings.rrf_k,
        dense_weight=dense_w,
        sparse_weight=sparse_w,
        normalizer=NORMALIZERS[request.normalizer],
    )


def filter_clauses(request: pb.Filter, limits: LimitsConfig) -> tuple[FilterClause, ...]:
    if len(request.clauses) > limits.max_filter_clauses:
        raise invalid("filter.clauses", f"{len(request.clauses)} clauses; at most {limits.max_filter_clauses} allowed")
    clauses = []
    ops = pb.FilterClause.Operator
    for i, c in enumerate(request.clauses):
        where = f"filter.clauses[{i}]"
        if c.op == pb.FilterClause.OPERATOR_UNSPECIFIED or c.op not in ops.values():
            allowed = ", ".join(n for n in ops.keys() if n != "OPERATOR_UNSPECIFIED")
            raise invalid(f"{where}.op", f"operator must be set; allowed: {allowed}")
        op = ops.Name(c.op)
        if op in ("IN", "NOT_IN"):
            if c.HasField("value"):
                raise invalid(f"{where}.value", f"operator {op} takes `values`, not `value`")
            if len(c.values) > limits.max_filter_values:
                raise invalid(f"{where}.values", f"{len(c.values)} values; at most {limits.max_filter_values} allowed")
            values = tuple(metadata_value(v, f"{where}.values[{j}]") for j, v in enumerate(c.values))
        else:
            if not c.HasField("value"):
                raise invalid(f"{where}.value", f"operator {op} needs `value`")
            if c.values:
                raise invalid(f"{where}.values", f"operator {op} takes `value`, not `values`")
            values = (metadata_value(c.value, f"{where}.value"),)
        for j, v in enumerate(values):
            if isinstance(v, str) and len(v) > limits.max_string_value_chars:
                at = f"{where}.values[{j}]" if op in ("IN", "NOT_IN") else f"{where}.value"
                raise invalid(at, f"string of {len(v)} characters; at most {limits.max_string_value_chars} allowed")
        clauses.append(FilterClause(field=c.field, op=op, values=values))
    return tuple(clauses)


def search_query(request: pb.SearchRequest, limits: LimitsConfig) -> SearchQuery:
    collection = check_collection_name(request.collection)
    text = request.query
    if not text.strip():
        raise invalid("query", "must not be empty or whitespace")
    if len(text) > limits.max_query_chars:
        raise invalid("query", f"{len(text)} characters; at most {limits.max_query_chars} allowed")
    if request.top_k <= 0 or request.top_k > limits.max_top_k:
        raise invalid(
            "top_k", f"must be between 1 and {limits.max_top_k} ({limits.label}.max_top_k), got {request.top_k}"
        )
    depths = {}
    for name in ("dense_k", "sparse_k"):
        value = getattr(request, name)
        if value == 0:
            value = max(request.top_k, min(limits.default_depth, limits.max_depth))
        if value < request.top_k:
            raise invalid(
                name,
                f"candidate depth {value} is below top_k {request.top_k}; it must be >= top_k (or 0 for the default)",
            )
        if value > limits.max_depth:
            raise invalid(name, f"must be at most {limits.max_depth} ({limits.label}.max_depth), got {value}")
        depths[name] = value
    if request.rerank_mode not in RERANK_MODES:
        raise invalid(
            "rerank_mode",
            f"unknown mode {request.rerank_mode}; allowed: {enum_names(pb.RerankMode, [pb.OFF, pb.FIXED, pb.AUTO])}",
        )
    mode = RERANK_MODES[request.rerank_mode]
    if request.rerank_depth < 0 or request.rerank_depth > limits.max_depth:
        raise invalid(
            "rerank_depth",
            f"must be between 0 and {limits.max_depth} ({limits.label}.max_depth), got {request.rerank_depth}",
        )
    if mode == "fixed" and request.rerank_depth == 0:
        raise invalid("rerank_depth", "mode FIXED needs rerank_depth >= 1")
    if mode != "fixed" and request.rerank_depth != 0:
        raise invalid("rerank_depth", "is only used with rerank_mode FIXED")
    return SearchQuery(
        collection=collection,
        text=text,
        top_k=request.top_k,
        dense_k=depths["dense_k"],
        sparse_k=depths["sparse_k"],
        fusion=fusion_settings(request.fusion),
        clauses=filter_clauses(request.filter, limits),
        explain=request.explain,
        rerank_mode=mode,
        rerank_depth=request.rerank_depth,
    )


def rerank_request(request: pb.RerankRequest, settings) -> tuple[str, list[str], int]:
    """(query, documents, top_n) of a standalone Rerank call."""
    if not request.query.strip():
        raise invalid("query", "must not be empty or whitespace")
    if len(request.query) > settings.limits.max_query_chars:
        raise invalid("query", f"{len(request.query)} characters; at most {settings.limits.max_query_chars} allowed")
    n = len(request.documents)
    if n == 0:
        raise invalid("documents", "must hold at least one document")
    if n > settings.rerank.max_documents:
        raise invalid("documents", f"{n} documents; at most {settings.rerank.max_documents} allowed")
    for i, doc in enumerate(request.documents):
        size = len(doc.encode("utf-8"))
        if size > settings.limits.max_text_bytes:
            raise invalid(f"documents[{i}]", f"{size} bytes of UTF-8; at most {settings.limits.max_text_bytes} allowed")
    if request.top_n < 0:
        raise invalid("top_n", f"must be >= 0 (0 = all documents), got {request.top_n}")
    # Documents longer than the model's token limit are truncated (or, on a backend with
    # long_documents "chunks", scored in windows up to max_chunks), not rejected:
    # usage.truncated_documents says how many were not scored whole. An empty document is
    # scored as the pair of the query and nothing (one pair), not refused.
    top_n = min(request.top_n or n, n)
    return request.query, list(request.documents), top_n


def rerank_budget(message: pb.RerankBudget, max_depth_limit: int) -> RerankBudget:
    tenant = check_tenant_name(message.tenant, "budget.tenant")
    if message.default_mode not in RERANK_MODES:
        raise invalid(
            "budget.default_mode",
            f"unknown mode {message.default_mode}; allowed: {enum_names(pb.RerankMode, [pb.OFF, pb.FIXED, pb.AUTO])}",
        )
    budget = RerankBudget(
        tenant=tenant,
        latency_target_ms=message.latency_target_ms,
        max_cost_per_query=message.max_cost_per_query,
        cost_per_minute=message.cost_per_minute,
        min_depth=message.min_depth,
        max_depth=message.max_depth,
        default_mode=RERANK_MODES[message.default_mode] or "off",
    )
    problems = budget.problems(max_depth_limit)
    if problems:
        field, message_text = problems[0]
        raise invalid(f"budget.{field}", message_text)
    return budget


def api_key_request(request: pb.CreateApiKeyRequest) -> tuple[str, str]:
    """(role, description) of a CreateApiKey call; the tenant is the caller's business."""
    if request.role not in ROLE_NAMES:
        raise invalid(
            "role",
            f"must be one of {', '.join(pb.Role.Name(r) for r in ROLE_NAMES if r != pb.ADMIN)}, got {request.role}",
        )
    if len(request.description) > 256:
        raise invalid("description", f"{len(request.description)} characters; at most 256 allowed")
    return ROLE_NAMES[request.role], request.description
