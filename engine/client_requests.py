"""The request messages and call options of the clients, built once for both.

``engine.client.HybridSearchClient`` (blocking) and ``engine.aio_client.AsyncHybridSearchClient``
(asyncio) take the same arguments; each method hands them to the builder of the same name
here and only makes the call. A change to what a call sends is made here, for both.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping, Sequence
from typing import Any

from hybridsearch.engine import tracing
from hybridsearch.engine.wire.replies import to_metadata_value
from hybridsearch.v1 import hybridsearch_pb2 as pb

OPERATORS = {
    "==": pb.FilterClause.EQ,
    "eq": pb.FilterClause.EQ,
    "!=": pb.FilterClause.NE,
    "ne": pb.FilterClause.NE,
    ">": pb.FilterClause.GT,
    "gt": pb.FilterClause.GT,
    ">=": pb.FilterClause.GTE,
    "gte": pb.FilterClause.GTE,
    "<": pb.FilterClause.LT,
    "lt": pb.FilterClause.LT,
    "<=": pb.FilterClause.LTE,
    "lte": pb.FilterClause.LTE,
    "in": pb.FilterClause.IN,
    "not in": pb.FilterClause.NOT_IN,
    "not_in": pb.FilterClause.NOT_IN,
}
FUSION = {"rrf": pb.RRF, "weighted": pb.WEIGHTED, "dbsf": pb.DBSF}
NORMALIZER = {"min_max": pb.MIN_MAX, "z_score": pb.Z_SCORE, "arctan": pb.ARCTAN, "none": pb.NONE}
RERANK = {None: pb.RERANK_MODE_UNSPECIFIED, "off": pb.OFF, "fixed": pb.FIXED, "auto": pb.AUTO}
FIELD_TYPES = {
    "string": pb.FIELD_TYPE_STRING,
    "int": pb.FIELD_TYPE_INT,
    "double": pb.FIELD_TYPE_DOUBLE,
    "bool": pb.FIELD_TYPE_BOOL,
}

# Per-call deadlines where a method has its own default (the others use the client's).
CREATE_COLLECTION_TIMEOUT_S = 120.0  # loads the profile's models on first use
UPSERT_TIMEOUT_S = 300.0

DocumentLike = Mapping[str, Any]
FilterLike = tuple[str, str, Any]


# ---------------------------------------------------------------- call options
def auth_metadata(tenant: str | None, api_key: str | None) -> list[tuple[str, str]]:
    """The headers every call of a client carries: the tenant (development mode) and the API key."""
    metadata: list[tuple[str, str]] = []
    if tenant:
        metadata.append(("x-tenant", tenant))
    if api_key:
        metadata.append(("authorization", f"Bearer {api_key}"))
    return metadata


def call_options(metadata: Sequence[tuple[str, str]], timeout: float | None) -> dict:
    """Keyword arguments of one stub call: the client's headers plus the caller's trace
    context (W3C ``traceparent``, when OpenTelemetry is installed and a span is current),
    and the deadline in seconds (None: none)."""
    return {"metadata": tracing.inject(metadata), "timeout": timeout}


# ---------------------------------------------------------------- messages
def document_message(doc: DocumentLike) -> pb.Document:
    return pb.Document(
        id=str(doc["id"]),
        text=doc["text"],
        metadata={k: to_metadata_value(v) for k, v in (doc.get("metadata") or {}).items()},
    )


def filter_message(filters: Sequence[FilterLike]) -> pb.Filter:
    clauses = []
    for field, op, value in filters:
        code = OPERATORS.get(op.lower())
        if code is None:
            raise ValueError(f"unknown filter operator {op!r}; use one of {sorted(OPERATORS)}")
        if code in (pb.FilterClause.IN, pb.FilterClause.NOT_IN):
            clauses.append(pb.FilterClause(field=field, op=code, values=[to_metadata_value(v) for v in value]))
        else:
            clauses.append(pb.FilterClause(field=field, op=code, value=to_metadata_value(value)))
    return pb.Filter(clauses=clauses)


# ---------------------------------------------------------------- one builder per client method
def create_collection(
    name: str,
    profile: str = "",
    *,
    dimension: int = 0,
    dense_metric: str = "",
    metadata_fields: Mapping[str, str] | None = None,
) -> pb.CreateCollectionRequest:
    fields = [pb.MetadataField(name=n, type=FIELD_TYPES[t]) for n, t in (metadata_fields or {}).items()]
    return pb.CreateCollectionRequest(
        name=name, profile=profile, dimension=dimension, dense_metric=dense_metric, metadata_fields=fields
    )


def describe_collection(name: str) -> pb.DescribeCollectionRequest:
    return pb.DescribeCollectionRequest(name=name)


def list_collections() -> pb.ListCollectionsRequest:
    return pb.ListCollectionsRequest()


def drop_collection(name: str) -> pb.DropCollectionRequest:
    return pb.DropCollectionRequest(name=name)


def upsert(collection: str, documents: Iterable[DocumentLike]) -> pb.UpsertRequest:
    return pb.UpsertRequest(collection=collection, documents=[document_message(d) for d in documents])


def upsert_stream(collection: str, batches: Iterable[Sequence[DocumentLike]]) -> Iterator[pb.UpsertRequest]:
    """The messages of BulkUpsert / BulkUpsertAcked: one per batch, the first naming the collection."""
    for i, batch in enumerate(batches):
        yield pb.UpsertRequest(collection=collection if i == 0 else "", documents=[document_message(d) for d in batch])


async def upsert_stream_async(
    collection: str, batches: AsyncIterable[Sequence[DocumentLike]]
) -> AsyncIterator[pb.UpsertRequest]:
    """upsert_stream over batches that arrive asynchronously (the asyncio client)."""
    i = 0
    async for batch in batches:
        for message in upsert_stream(collection if i == 0 else "", [batch]):
            yield message
        i += 1


def upsert_messages(collection: str, batches: Iterable[Sequence[DocumentLike]] | AsyncIterable[Sequence[DocumentLike]]):
    """The stream's messages, for batches given as an iterable or an async iterable."""
    if hasattr(batches, "__aiter__"):
        return upsert_stream_async(collection, batches)
    return upsert_stream(collection, batches)


def delete(collection: str, ids: Sequence[str]) -> pb.DeleteRequest:
    return pb.DeleteRequest(collection=collection, ids=list(ids))


def get(collection: str, ids: Sequence[str]) -> pb.GetRequest:
    return pb.GetRequest(collection=collection, ids=list(ids))


def search(
    collection: str,
    query: str,
    top_k: int = 10,
    *,
    filters: Sequence[FilterLike] = (),
    dense_k: int = 0,
    sparse_k: int = 0,
    fusion: str = "rrf",
    rrf_k: float = 0.0,
    dense_weight: float | None = None,
    sparse_weight: float | None = None,
    normalizer: str = "min_max",
    rerank: str | None = None,
    rerank_depth: int = 0,
    explain: bool = False,
) -> pb.SearchRequest:
    spec = pb.FusionSpec(method=FUSION[fusion], rrf_k=rrf_k, normalizer=NORMALIZER[normalizer])
    if dense_weight is not None:
        spec.dense_weight = dense_weight
    if sparse_weight is not None:
        spec.sparse_weight = sparse_weight
    return pb.SearchRequest(
        collection=collection,
        query=query,
        top_k=top_k,
        filter=filter_message(filters),
        dense_k=dense_k,
        sparse_k=sparse_k,
        fusion=spec,
        explain=explain,
        rerank_mode=RERANK[rerank],
        rerank_depth=rerank_depth,
    )


def get_info() -> pb.GetInfoRequest:
    return pb.GetInfoRequest()


def rerank(
    query: str, documents: Sequence[str], top_n: int = 0, *, return_documents: bool = False, model: str = ""
) -> pb.RerankRequest:
    return pb.RerankRequest(
        query=query, documents=list(documents), top_n=top_n, return_documents=return_documents, model=model
    )


def set_budget(
    tenant: str,
    *,
    latency_target_ms: float = 0.0,
    max_cost_per_query: int = 0,
    cost_per_minute: float = 0.0,
    min_depth: int = 0,
    max_depth: int = 50,
    default_mode: str | None = "off",
) -> pb.SetBudgetRequest:
    budget = pb.RerankBudget(
        tenant=tenant,
        latency_target_ms=latency_target_ms,
        max_cost_per_query=max_cost_per_query,
        cost_per_minute=cost_per_minute,
        min_depth=min_depth,
        max_depth=max_depth,
        default_mode=RERANK[default_mode],
    )
    return pb.SetBudgetRequest(budget=budget)


def get_budget(tenant: str) -> pb.GetBudgetRequest:
    return pb.GetBudgetRequest(tenant=tenant)


def list_budgets() -> pb.ListBudgetsRequest:
    return pb.ListBudgetsRequest()


def delete_budget(tenant: str) -> pb.DeleteBudgetRequest:
    return pb.DeleteBudgetRequest(tenant=tenant)
