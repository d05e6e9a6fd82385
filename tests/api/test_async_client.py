"""The asyncio client against a real server (tiny models, Milvus Lite, the tiny reranker).

No pytest-asyncio: each test runs its coroutine with asyncio.run, the client made and closed
inside it (a grpc.aio channel belongs to the loop it was made in).
"""

from __future__ import annotations

import asyncio

import grpc
import grpc.aio
import pytest

from hybridsearch.engine.aio_client import AsyncHybridSearchClient

COLLECTION = "aio_docs"
DOCS = [
    {"id": "d1", "text": "protein expression in cancer cells", "metadata": {"year": 2010, "kind": "article"}},
    {
        "id": "d2",
        "text": "gene regulation of stem cells during development",
        "metadata": {"year": 2015, "kind": "review"},
    },
    {"id": "d3", "text": "immune response to viral infection in mice", "metadata": {"year": 2020, "kind": "article"}},
    {"id": "d4", "text": "brain imaging of memory and sleep", "metadata": {"year": 2012, "kind": "letter"}},
    {"id": "d5", "text": "cancer risk and diet in a large cohort study", "metadata": {"year": 2018, "kind": "article"}},
    {"id": "d6", "text": "bacteria resistance to antibiotic treatment", "metadata": {"year": 2021, "kind": "review"}},
]
FIELDS = {"year": "int", "kind": "string"}


def run(server, body, tenant: str = "aio"):
    """body(client) with an async client of ``tenant``, in a fresh event loop."""

    async def main():
        async with AsyncHybridSearchClient(server.target, tenant=tenant) as client:
            return await body(client)

    return asyncio.run(main())


def aio_status(server, body, tenant: str = "aio") -> tuple[grpc.StatusCode, str]:
    """Run a body that must fail with an AioRpcError; its status code and details."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        run(server, body, tenant)
    return info.value.code(), info.value.details()


@pytest.fixture(scope="module")
def loaded(server):
    """COLLECTION created and loaded for tenant aio, through the async client."""

    async def body(client):
        await client.create_collection(COLLECTION, metadata_fields=FIELDS)
        reply = await client.upsert(COLLECTION, DOCS)
        assert reply.upserted == len(DOCS)
        return await client.describe_collection(COLLECTION)

    described = run(server, body)
    assert described.tenant_document_count == len(DOCS) and described.profile == "tiny-m3"
    return server


def test_search_answers_as_the_blocking_client_does(loaded):
    async def body(client):
        return await client.search(COLLECTION, "cancer cells", top_k=4, filters=[("year", ">=", 2011)], explain=True)

    reply = run(loaded, body)
    blocking = loaded.client("aio").search(
        COLLECTION, "cancer cells", top_k=4, filters=[("year", ">=", 2011)], explain=True
    )
    assert [h.id for h in reply.hits] == [h.id for h in blocking.hits]
    assert [h.fused_score for h in reply.hits] == pytest.approx([h.fused_score for h in blocking.hits])
    assert reply.hits and all(h.metadata["year"].int_value >= 2011 for h in reply.hits)
    assert all(h.explanation for h in reply.hits) and reply.timings.total_ms > 0
    assert "d1" not in {h.id for h in reply.hits}  # 2010: filtered out


def test_concurrent_searches_on_one_channel(loaded):
    queries = ["cancer", "stem cells", "viral infection", "memory and sleep", "antibiotic"]

    async def body(client):
        return await asyncio.gather(*(client.search(COLLECTION, q, top_k=2) for q in queries))

    replies = run(loaded, body)
    blocking = loaded.client("aio")
    for q, reply in zip(queries, replies, strict=True):
        assert [h.id for h in reply.hits] == [h.id for h in blocking.search(COLLECTION, q, top_k=2).hits]


def test_list_get_delete_and_tenant_isolation(loaded):
    async def body(client):
        names = [c.name for c in await client.list_collections()]
        got = await client.get(COLLECTION, ["d2", "missing"])
        return names, got

    names, got = run(loaded, body)
    assert COLLECTION in names
    assert [d.id for d in got] == ["d2"] and got[0].metadata["kind"].string_value == "review"

    async def other(client):  # another tenant sees none of aio's documents
        return await client.get(COLLECTION, ["d2"]), await client.search(COLLECTION, "cells", top_k=3)

    got_other, searched = run(loaded, other, tenant="someone-else")
    assert got_other == [] and len(searched.hits) == 0


def test_bulk_upsert_from_a_list_and_from_an_async_generator(loaded):
    batches = [[{"id": f"b{i}{j}", "text": f"bulk document {i} {j} about cells"} for j in range(3)] for i in range(2)]

    async def later_batches():
        for i in range(2, 4):
            await asyncio.sleep(0)
            yield [{"id": f"b{i}{j}", "text": f"bulk document {i} {j} about genes"} for j in range(2)]

    async def body(client):
        first = await client.bulk_upsert("aio_bulk_target", batches)
        second = await client.bulk_upsert("aio_bulk_target", later_batches())
        found = await client.get("aio_bulk_target", ["b00", "b12", "b21", "b31"])
        return first, second, found

    run(loaded, lambda c: c.create_collection("aio_bulk_target"))
    first, second, found = run(loaded, body)
    assert (first.upserted, first.batches) == (6, 2)
    assert (second.upserted, second.batches) == (4, 2)
    assert sorted(d.id for d in found) == ["b00", "b12", "b21", "b31"]


def test_acknowledged_bulk_upsert_is_an_async_stream_of_acks(loaded):
    batches = [[{"id": f"a{i}{j}", "text": f"acked document {i} {j}"} for j in range(2)] for i in range(3)]

    async def body(client):
        call = client.bulk_upsert_acked(COLLECTION, batches, timeout=120)
        return [ack async for ack in call]

    acks = run(loaded, body)
    assert [a.batch for a in acks] == [0, 1, 2]
    assert [a.total for a in acks] == [2, 4, 6] and all(a.upserted == 2 for a in acks)

    async def cleanup(client):
        return await client.delete(COLLECTION, [f"a{i}{j}" for i in range(3) for j in range(2)])

    assert run(loaded, cleanup) == 6


def test_rerank_standalone_and_in_a_search(loaded):
    documents = [d["text"] for d in DOCS]

    async def body(client):
        alone = await client.rerank("cancer cells", documents, top_n=3, return_documents=True)
        searched = await client.search(COLLECTION, "cancer cells", top_k=4, rerank="fixed", rerank_depth=3)
        return alone, searched

    alone, searched = run(loaded, body)
    blocking = loaded.client("aio").rerank("cancer cells", documents, top_n=3, return_documents=True)
    assert [r.index for r in alone.results] == [r.index for r in blocking.results]
    assert [r.relevance_score for r in alone.results] == pytest.approx([r.relevance_score for r in blocking.results])
    assert [r.document for r in alone.results] == [documents[r.index] for r in alone.results]
    assert alone.model == "tiny" and alone.usage.tokens > 0
    assert searched.rerank.depth_scored == 3 and not searched.rerank.degraded
    assert [h.reranked for h in searched.hits] == [True, True, True, False]


def test_get_info_answers_as_the_blocking_client_does(loaded):
    async def body(client):
        return await client.get_info()

    assert run(loaded, body) == loaded.client("aio").get_info()


def test_budgets_set_get_list_delete(loaded):
    async def body(client):
        made = await client.set_budget("aio-budgeted", max_depth=7, latency_target_ms=80.0, default_mode="auto")
        got = await client.get_budget("aio-budgeted")
        listed = await client.list_budgets()
        deleted = await client.delete_budget("aio-budgeted")
        after = await client.get_budget("aio-budgeted")
        return made, got, listed, deleted, after

    made, got, listed, deleted, after = run(loaded, body)
    assert made.max_depth == got.max_depth == 7 and got.latency_target_ms == 80.0
    assert "aio-budgeted" in [b.tenant for b in listed.budgets]
    assert deleted is True
    assert after.max_depth == listed.default_budget.max_depth  # back to the default


def test_errors_are_aio_rpc_errors_with_the_status_code(loaded):
    code, details = aio_status(loaded, lambda c: c.search("no_such_collection", "cells"))
    assert code == grpc.StatusCode.NOT_FOUND and "no_such_collection" in details

    code, details = aio_status(loaded, lambda c: c.search(COLLECTION, "cells", top_k=100_000))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "top_k" in details

    code, _ = aio_status(loaded, lambda c: c.create_collection(COLLECTION))
    assert code == grpc.StatusCode.ALREADY_EXISTS

    code, _ = aio_status(loaded, lambda c: c.rerank("q", ["a"], model="no-such-model"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT

    # An AioRpcError is a grpc.RpcError: code written for the blocking client catches it.
    with pytest.raises(grpc.RpcError):
        run(loaded, lambda c: c.describe_collection("nope"))


def test_a_stream_rejected_midway_keeps_the_batches_before_it(loaded):
    batches = [[{"id": "ok1", "text": "fine"}], [{"id": "", "text": "no id"}]]

    async def body(client):
        return await client.bulk_upsert(COLLECTION, batches)

    code, details = aio_status(loaded, body)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "batch 1" in details
    assert [d.id for d in run(loaded, lambda c: c.get(COLLECTION, ["ok1"]))] == ["ok1"]
    run(loaded, lambda c: c.delete(COLLECTION, ["ok1"]))


def test_the_deadline_is_the_clients_timeout(loaded):
    async def main():
        async with AsyncHybridSearchClient(loaded.target, tenant="aio", timeout=1e-4) as client:
            await client.search(COLLECTION, "cancer cells")

    with pytest.raises(grpc.aio.AioRpcError) as info:
        asyncio.run(main())
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
