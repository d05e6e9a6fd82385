"""A small client for backend callers, over the generated stubs.

    client = HybridSearchClient("localhost:50051", tenant="acme")
    client.upsert("docs", [{"id": "1", "text": "...", "metadata": {"year": 2020}}])
    reply = client.search("docs", "what causes X?", top_k=10, filters=[("year", ">=", 2015)])
"""
from __future__ import annotations

from typing import Any, Iterable, Iterator, Mapping, Optional, Sequence

import grpc

from engine.validation import to_metadata_value
from hybridsearch.v1 import hybridsearch_pb2 as pb
from hybridsearch.v1 import hybridsearch_pb2_grpc as pb_grpc

OPERATORS = {
    "==": pb.FilterClause.EQ, "eq": pb.FilterClause.EQ,
    "!=": pb.FilterClause.NE, "ne": pb.FilterClause.NE,
    ">": pb.FilterClause.GT, "gt": pb.FilterClause.GT,
    ">=": pb.FilterClause.GTE, "gte": pb.FilterClause.GTE,
    "<": pb.FilterClause.LT, "lt": pb.FilterClause.LT,
    "<=": pb.FilterClause.LTE, "lte": pb.FilterClause.LTE,
    "in": pb.FilterClause.IN, "not in": pb.FilterClause.NOT_IN, "not_in": pb.FilterClause.NOT_IN,
}
FUSION = {"rrf": pb.RRF, "weighted": pb.WEIGHTED, "dbsf": pb.DBSF}
NORMALIZER = {"min_max": pb.MIN_MAX, "z_score": pb.Z_SCORE, "arctan": pb.ARCTAN, "none": pb.NONE}
RERANK = {None: pb.RERANK_MODE_UNSPECIFIED, "off": pb.OFF, "fixed": pb.FIXED, "auto": pb.AUTO}
FIELD_TYPES = {"string": pb.FIELD_TYPE_STRING, "int": pb.FIELD_TYPE_INT, "double": pb.FIELD_TYPE_DOUBLE, "bool": pb.FIELD_TYPE_BOOL}

DocumentLike = Mapping[str, Any]


def document_message(doc: DocumentLike) -> pb.Document:
    return pb.Document(
        id=str(doc["id"]),
        text=doc["text"],
        metadata={k: to_metadata_value(v) for k, v in (doc.get("metadata") or {}).items()},
    )


def filter_message(filters: Sequence[tuple[str, str, Any]]) -> pb.Filter:
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


class HybridSearchClient:
    """Blocking client; every call carries the tenant header (and an API key when given)."""

    def __init__(
        self,
        target: str,
        tenant: Optional[str] = None,
        *,
        api_key: Optional[str] = None,
        channel: Optional[grpc.Channel] = None,
        root_certificates: Optional[bytes] = None,
        timeout: Optional[float] = 30.0,
    ):
        if channel is None:
            if root_certificates is not None:
                channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(root_certificates))
            else:
                channel = grpc.insecure_channel(target)
        self.channel = channel
        self.stub = pb_grpc.HybridSearchStub(channel)
        self.admin = pb_grpc.TenantAdminStub(channel)
        self.timeout = timeout
        self.metadata: list[tuple[str, str]] = []
        if tenant:
            self.metadata.append(("x-tenant", tenant))
        if api_key:
            self.metadata.append(("authorization", f"Bearer {api_key}"))

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> "HybridSearchClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _kw(self, timeout: Optional[float]) -> dict:
        return {"metadata": self.metadata, "timeout": timeout if timeout is not None else self.timeout}

    # ------------------------------------------------------------ collections
    def create_collection(self, name: str, profile: str = "", *, dimension: int = 0, dense_metric: str = "", metadata_fields: Mapping[str, str] | None = None) -> pb.Collection:
        fields = [pb.MetadataField(name=n, type=FIELD_TYPES[t]) for n, t in (metadata_fields or {}).items()]
        request = pb.CreateCollectionRequest(name=name, profile=profile, dimension=dimension, dense_metric=dense_metric, metadata_fields=fields)
        return self.stub.CreateCollection(request, **self._kw(120))

    def describe_collection(self, name: str) -> pb.Collection:
        return self.stub.DescribeCollection(pb.DescribeCollectionRequest(name=name), **self._kw(None))

    def list_collections(self) -> list[pb.Collection]:
        return list(self.stub.ListCollections(pb.ListCollectionsRequest(), **self._kw(None)).collections)

    def drop_collection(self, name: str) -> bool:
        return self.stub.DropCollection(pb.DropCollectionRequest(name=name), **self._kw(None)).dropped

    # ------------------------------------------------------------ documents
    def upsert(self, collection: str, documents: Iterable[DocumentLike], timeout: Optional[float] = 300) -> pb.UpsertResponse:
        request = pb.UpsertRequest(collection=collection, documents=[document_message(d) for d in documents])
        return self.stub.Upsert(request, **self._kw(timeout))

    def bulk_upsert(self, collection: str, batches: Iterable[Sequence[DocumentLike]], timeout: Optional[float] = None) -> pb.UpsertResponse:
        def stream() -> Iterator[pb.UpsertRequest]:
            for i, batch in enumerate(batches):
                yield pb.UpsertRequest(collection=collection if i == 0 else "", documents=[document_message(d) for d in batch])

        return self.stub.BulkUpsert(stream(), metadata=self.metadata, timeout=timeout)

    def bulk_upsert_acked(self, collection: str, batches: Iterable[Sequence[DocumentLike]], timeout: Optional[float] = None):
        """The acknowledged stream: yields one UpsertAck per batch once it is durable. The
        returned iterator is also the call: ``.cancel()`` stops it (see README, "Bulk loads")."""

        def stream() -> Iterator[pb.UpsertRequest]:
            for i, batch in enumerate(batches):
                yield pb.UpsertRequest(collection=collection if i == 0 else "", documents=[document_message(d) for d in batch])

        return self.stub.BulkUpsertAcked(stream(), metadata=self.metadata, timeout=timeout)

    def delete(self, collection: str, ids: Sequence[str]) -> int:
        return self.stub.Delete(pb.DeleteRequest(collection=collection, ids=list(ids)), **self._kw(None)).deleted

    def get(self, collection: str, ids: Sequence[str]) -> list[pb.Document]:
        return list(self.stub.Get(pb.GetRequest(collection=collection, ids=list(ids)), **self._kw(None)).documents)

    # ------------------------------------------------------------ search
    def search(
        self,
        collection: str,
        query: str,
        top_k: int = 10,
        *,
        filters: Sequence[tuple[str, str, Any]] = (),
        dense_k: int = 0,
        sparse_k: int = 0,
        fusion: str = "rrf",
        rrf_k: float = 0.0,
        dense_weight: Optional[float] = None,
        sparse_weight: Optional[float] = None,
        normalizer: str = "min_max",
        rerank: Optional[str] = None,
        rerank_depth: int = 0,
        explain: bool = False,
        timeout: Optional[float] = None,
    ) -> pb.SearchResponse:
        spec = pb.FusionSpec(method=FUSION[fusion], rrf_k=rrf_k, normalizer=NORMALIZER[normalizer])
        if dense_weight is not None:
            spec.dense_weight = dense_weight
        if sparse_weight is not None:
            spec.sparse_weight = sparse_weight
        request = pb.SearchRequest(
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
        return self.stub.Search(request, **self._kw(timeout))

    def rerank(self, query: str, documents: Sequence[str], top_n: int = 0, *, return_documents: bool = False, model: str = "") -> pb.RerankResponse:
        request = pb.RerankRequest(query=query, documents=list(documents), top_n=top_n, return_documents=return_documents, model=model)
        return self.stub.Rerank(request, **self._kw(None))

    # ------------------------------------------------------------ tenant budgets
    def set_budget(
        self,
        tenant: str,
        *,
        latency_target_ms: float = 0.0,
        max_cost_per_query: int = 0,
        cost_per_minute: float = 0.0,
        min_depth: int = 0,
        max_depth: int = 50,
        default_mode: Optional[str] = "off",
    ) -> pb.RerankBudget:
        budget = pb.RerankBudget(
            tenant=tenant,
            latency_target_ms=latency_target_ms,
            max_cost_per_query=max_cost_per_query,
            cost_per_minute=cost_per_minute,
            min_depth=min_depth,
            max_depth=max_depth,
            default_mode=RERANK[default_mode],
        )
        return self.admin.SetBudget(pb.SetBudgetRequest(budget=budget), **self._kw(None))

    def get_budget(self, tenant: str) -> pb.RerankBudget:
        return self.admin.GetBudget(pb.GetBudgetRequest(tenant=tenant), **self._kw(None))

    def list_budgets(self) -> pb.ListBudgetsResponse:
        return self.admin.ListBudgets(pb.ListBudgetsRequest(), **self._kw(None))

    def delete_budget(self, tenant: str) -> bool:
        return self.admin.DeleteBudget(pb.DeleteBudgetRequest(tenant=tenant), **self._kw(None)).deleted
