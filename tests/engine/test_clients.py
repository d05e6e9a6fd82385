"""The blocking and the asyncio clients: the same methods, requests from the same builders.

A method added to one client and not the other, or with other arguments or defaults, fails
here; so does a client method whose request builder (engine.client_requests) takes other
arguments than it does.
"""

from __future__ import annotations

import asyncio
import inspect

import pytest

from hybridsearch.engine import client_requests as build
from hybridsearch.engine.aio_client import AsyncHybridSearchClient
from hybridsearch.engine.client import HybridSearchClient
from hybridsearch.v1 import hybridsearch_pb2 as pb

# Methods that are the call itself, not a request: no builder of their name.
NOT_REQUESTS = {"close"}
# Builders named otherwise than their client method (both streams send the same messages).
BUILDER_OF = {"bulk_upsert": "upsert_stream", "bulk_upsert_acked": "upsert_stream"}
# Arguments a client method has that are not part of the request.
CALL_ONLY = {"self", "timeout"}


def public_methods(cls) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(fn)
        for name, fn in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_")
    }


def shape(signature: inspect.Signature) -> list[tuple]:
    """Names, kinds and defaults of the parameters (annotations may differ: sync against
    async iterables)."""
    return [(p.name, p.kind, p.default) for p in signature.parameters.values()]


def test_both_clients_have_the_same_public_methods_with_the_same_arguments():
    sync, aio = public_methods(HybridSearchClient), public_methods(AsyncHybridSearchClient)
    assert sorted(sync) == sorted(aio), f"only sync: {set(sync) - set(aio)}; only async: {set(aio) - set(sync)}"
    for name in sync:
        assert shape(sync[name]) == shape(aio[name]), name
    # The constructors take the same arguments too.
    assert shape(inspect.signature(HybridSearchClient.__init__)) == shape(
        inspect.signature(AsyncHybridSearchClient.__init__)
    )


def test_every_async_method_is_awaited_except_the_acknowledged_stream():
    for name in public_methods(AsyncHybridSearchClient):
        fn = getattr(AsyncHybridSearchClient, name)
        # bulk_upsert_acked returns the call as it starts: `async for ack in ...`.
        assert inspect.iscoroutinefunction(fn) == (name != "bulk_upsert_acked"), name
    for name in public_methods(HybridSearchClient):
        assert not inspect.iscoroutinefunction(getattr(HybridSearchClient, name)), name


def test_every_client_method_builds_its_request_with_the_builder_of_its_name():
    for name, signature in public_methods(HybridSearchClient).items():
        if name in NOT_REQUESTS:
            continue
        builder = getattr(build, BUILDER_OF.get(name, name), None)
        assert builder is not None, f"engine.client_requests has no builder for {name}"
        wanted = [p for p in shape(signature) if p[0] not in CALL_ONLY]
        assert shape(inspect.signature(builder)) == wanted, name


def test_each_method_calls_its_rpc_with_the_built_request_in_both_clients():
    """Both clients, on recording stubs: the same RPC and request per method, the headers."""

    class Recorder:
        def __init__(self, returns_awaitable: bool):
            self.calls = []
            self.awaitable = returns_awaitable

        def __getattr__(self, rpc):
            def call(request, **kwargs):
                if inspect.isgenerator(request):
                    request = list(request)
                self.calls.append((rpc, request, kwargs["metadata"], kwargs["timeout"]))
                reply = _Reply()
                if self.awaitable:

                    async def done():
                        return reply

                    return done()
                return reply

            return call

    class _Reply:
        collections = documents = ()
        dropped = True
        deleted = 0

    arguments = {
        "create_collection": (("docs",), {"metadata_fields": {"year": "int"}}),
        "describe_collection": (("docs",), {}),
        "list_collections": ((), {}),
        "drop_collection": (("docs",), {}),
        "upsert": (("docs", [{"id": "1", "text": "a", "metadata": {"year": 2020}}]), {}),
        "bulk_upsert": (("docs", [[{"id": "1", "text": "a"}], [{"id": "2", "text": "b"}]]), {}),
        "bulk_upsert_acked": (("docs", [[{"id": "1", "text": "a"}]]), {"timeout": 5}),
        "delete": (("docs", ["1"]), {}),
        "get": (("docs", ["1"]), {}),
        "search": (
            ("docs", "cells", 3),
            {"filters": [("year", ">=", 2015)], "rerank": "fixed", "rerank_depth": 5, "dense_weight": 0.5},
        ),
        "rerank": (("q", ["a", "b"], 1), {"return_documents": True}),
        "get_info": ((), {}),
        "set_budget": (("t1",), {"max_depth": 7, "default_mode": "auto"}),
        "get_budget": (("t1",), {}),
        "list_budgets": ((), {}),
        "delete_budget": (("t1",), {}),
    }
    assert set(arguments) == set(public_methods(HybridSearchClient)) - NOT_REQUESTS

    sync = HybridSearchClient.__new__(HybridSearchClient)
    aio = AsyncHybridSearchClient.__new__(AsyncHybridSearchClient)
    for client, awaitable in ((sync, False), (aio, True)):
        client.stub = client.admin = Recorder(awaitable)
        client.metadata = build.auth_metadata("acme", "k1")
        client.timeout = 30.0

    async def run_async():
        for name, (args, kwargs) in arguments.items():
            out = getattr(aio, name)(*args, **kwargs)
            if inspect.isawaitable(out):
                await out

    for name, (args, kwargs) in arguments.items():
        getattr(sync, name)(*args, **kwargs)
    asyncio.run(run_async())

    assert len(sync.stub.calls) == len(aio.stub.calls) == len(arguments)
    for s, a in zip(sync.stub.calls, aio.stub.calls, strict=True):
        assert s[0] == a[0] and s[1] == a[1] and s[2] == a[2] and s[3] == a[3], s[0]
        assert ("x-tenant", "acme") in s[2] and ("authorization", "Bearer k1") in s[2]
    by_rpc = {c[0]: c for c in sync.stub.calls}
    assert by_rpc["CreateCollection"][3] == build.CREATE_COLLECTION_TIMEOUT_S
    assert by_rpc["Upsert"][3] == build.UPSERT_TIMEOUT_S
    assert by_rpc["Search"][3] == 30.0 and by_rpc["BulkUpsert"][3] is None and by_rpc["BulkUpsertAcked"][3] == 5
    search = by_rpc["Search"][1]
    assert search.rerank_mode == pb.FIXED and search.rerank_depth == 5 and search.top_k == 3
    assert search.fusion.HasField("dense_weight") and not search.fusion.HasField("sparse_weight")
    assert search.filter.clauses[0].op == pb.FilterClause.GTE and search.filter.clauses[0].value.int_value == 2015
    stream = by_rpc["BulkUpsert"][1]
    assert [m.collection for m in stream] == ["docs", ""] and [m.documents[0].id for m in stream] == ["1", "2"]
    assert by_rpc["SetBudget"][1].budget.default_mode == pb.AUTO and by_rpc["SetBudget"][1].budget.max_depth == 7


def test_the_stream_builder_takes_async_batches_too():
    async def batches():
        for i in range(3):
            yield [{"id": str(i), "text": f"doc {i}"}]

    async def collect():
        return [m async for m in build.upsert_messages("docs", batches())]

    messages = asyncio.run(collect())
    assert [m.collection for m in messages] == ["docs", "", ""]
    assert [m.documents[0].id for m in messages] == ["0", "1", "2"]
    assert [m.collection for m in build.upsert_messages("docs", [[{"id": "a", "text": "x"}]] * 2)] == ["docs", ""]


def test_an_unknown_filter_operator_is_refused_before_any_call():
    with pytest.raises(ValueError, match="unknown filter operator"):
        build.search("docs", "q", filters=[("year", "~", 1)])
