"""The asyncio client (grpc.aio): the methods of ``engine.client.HybridSearchClient``, awaited.

    async with AsyncHybridSearchClient("localhost:50051", tenant="acme") as client:
        await client.upsert("docs", [{"id": "1", "text": "..."}])
        reply = await client.search("docs", "what causes X?", top_k=10)
        async for ack in client.bulk_upsert_acked("docs", batches):
            ...

Same names, arguments and defaults as the blocking client (tests/engine/test_clients.py
holds them equal); the requests come from the same builders (``engine.client_requests``).
Errors are ``grpc.aio.AioRpcError`` (a ``grpc.RpcError``) with the call's status code.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable, Mapping, Sequence
from typing import Any

import grpc
import grpc.aio

from hybridsearch.engine import client_requests as build
from hybridsearch.engine.client_requests import DocumentLike
from hybridsearch.v1 import hybridsearch_pb2 as pb
from hybridsearch.v1 import hybridsearch_pb2_grpc as pb_grpc

Batches = Iterable[Sequence[DocumentLike]] | AsyncIterable[Sequence[DocumentLike]]


class AsyncHybridSearchClient:
    """asyncio client; every call carries the tenant header (and an API key when given).
    Create it inside the event loop that uses it."""

    def __init__(
        self,
        target: str,
        tenant: str | None = None,
        *,
        api_key: str | None = None,
        channel: grpc.aio.Channel | None = None,
        root_certificates: bytes | None = None,
        timeout: float | None = 30.0,
    ):
        if channel is None:
            if root_certificates is not None:
                channel = grpc.aio.secure_channel(target, grpc.ssl_channel_credentials(root_certificates))
            else:
                channel = grpc.aio.insecure_channel(target)
        self.channel = channel
        self.stub = pb_grpc.HybridSearchStub(channel)
        self.admin = pb_grpc.TenantAdminStub(channel)
        self.timeout = timeout
        self.metadata: list[tuple[str, str]] = build.auth_metadata(tenant, api_key)

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self) -> AsyncHybridSearchClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    def _kw(self, timeout: float | None) -> dict:
        return build.call_options(self.metadata, timeout if timeout is not None else self.timeout)

    # ------------------------------------------------------------ collections
    async def create_collection(
        self,
        name: str,
        profile: str = "",
        *,
        dimension: int = 0,
        dense_metric: str = "",
        metadata_fields: Mapping[str, str] | None = None,
    ) -> pb.Collection:
        request = build.create_collection(
            name, profile, dimension=dimension, dense_metric=dense_metric, metadata_fields=metadata_fields
        )
        return await self.stub.CreateCollection(request, **self._kw(build.CREATE_COLLECTION_TIMEOUT_S))

    async def describe_collection(self, name: str) -> pb.Collection:
        return await self.stub.DescribeCollection(build.describe_collection(name), **self._kw(None))

    async def list_collections(self) -> list[pb.Collection]:
        return list((await self.stub.ListCollections(build.list_collections(), **self._kw(None))).collections)

    async def drop_collection(self, name: str) -> bool:
        return (await self.stub.DropCollection(build.drop_collection(name), **self._kw(None))).dropped

    # ------------------------------------------------------------ documents
    async def upsert(
        self, collection: str, documents: Iterable[DocumentLike], timeout: float | None = build.UPSERT_TIMEOUT_S
    ) -> pb.UpsertResponse:
        return await self.stub.Upsert(build.upsert(collection, documents), **self._kw(timeout))

    async def bulk_upsert(self, collection: str, batches: Batches, timeout: float | None = None) -> pb.UpsertResponse:
        """One BulkUpsert stream, a message per batch (an iterable or an async iterable of
        batches). ``timeout`` None: no deadline."""
        return await self.stub.BulkUpsert(
            build.upsert_messages(collection, batches), **build.call_options(self.metadata, timeout)
        )

    def bulk_upsert_acked(
        self, collection: str, batches: Batches, timeout: float | None = None
    ) -> grpc.aio.StreamStreamCall:
        """The acknowledged stream: ``async for ack in client.bulk_upsert_acked(...)`` gives one
        UpsertAck per batch once it is durable. Not awaited: the call is returned as it
        starts; ``.cancel()`` stops it (see README, "Bulk loads")."""
        return self.stub.BulkUpsertAcked(
            build.upsert_messages(collection, batches), **build.call_options(self.metadata, timeout)
        )

    async def delete(self, collection: str, ids: Sequence[str]) -> int:
        return (await self.stub.Delete(build.delete(collection, ids), **self._kw(None))).deleted

    async def get(self, collection: str, ids: Sequence[str]) -> list[pb.Document]:
        return list((await self.stub.Get(build.get(collection, ids), **self._kw(None))).documents)

    # ------------------------------------------------------------ search
    async def search(
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
        dense_weight: float | None = None,
        sparse_weight: float | None = None,
        normalizer: str = "min_max",
        rerank: str | None = None,
        rerank_depth: int = 0,
        explain: bool = False,
        timeout: float | None = None,
    ) -> pb.SearchResponse:
        request = build.search(
            collection,
            query,
            top_k,
            filters=filters,
            dense_k=dense_k,
            sparse_k=sparse_k,
            fusion=fusion,
            rrf_k=rrf_k,
            dense_weight=dense_weight,
            sparse_weight=sparse_weight,
            normalizer=normalizer,
            rerank=rerank,
            rerank_depth=rerank_depth,
            explain=explain,
        )
        return await self.stub.Search(request, **self._kw(timeout))

    async def rerank(
        self, query: str, documents: Sequence[str], top_n: int = 0, *, return_documents: bool = False, model: str = ""
    ) -> pb.RerankResponse:
        request = build.rerank(query, documents, top_n, return_documents=return_documents, model=model)
        return await self.stub.Rerank(request, **self._kw(None))

    async def get_info(self) -> pb.ServiceInfo:
        """What the server offers and its defaults: versions, profiles, rerank backends, the
        caller's limits and budget, health names (README, "The API in brief")."""
        return await self.stub.GetInfo(build.get_info(), **self._kw(None))

    # ------------------------------------------------------------ tenant budgets
    async def set_budget(
        self,
        tenant: str,
        *,
        latency_target_ms: float = 0.0,
        max_cost_per_query: int = 0,
        cost_per_minute: float = 0.0,
        min_depth: int = 0,
        max_depth: int = 50,
        default_mode: str | None = "off",
    ) -> pb.RerankBudget:
        request = build.set_budget(
            tenant,
            latency_target_ms=latency_target_ms,
            max_cost_per_query=max_cost_per_query,
            cost_per_minute=cost_per_minute,
            min_depth=min_depth,
            max_depth=max_depth,
            default_mode=default_mode,
        )
        return await self.admin.SetBudget(request, **self._kw(None))

    async def get_budget(self, tenant: str) -> pb.RerankBudget:
        return await self.admin.GetBudget(build.get_budget(tenant), **self._kw(None))

    async def list_budgets(self) -> pb.ListBudgetsResponse:
        return await self.admin.ListBudgets(build.list_budgets(), **self._kw(None))

    async def delete_budget(self, tenant: str) -> bool:
        return (await self.admin.DeleteBudget(build.delete_budget(tenant), **self._kw(None))).deleted
