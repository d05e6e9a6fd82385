"""OpenTelemetry tracing end to end: a real server, the SDK's in-memory exporter.

The servers here use ``tracing.exporter: global``: their spans go to the process's tracer
provider, which this module makes an SDK provider with an InMemorySpanExporter.
"""

from __future__ import annotations

import asyncio
import random

import grpc
import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry import trace  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from opentelemetry.trace import SpanKind, StatusCode  # noqa: E402

from hybridsearch.engine import tracing  # noqa: E402
from hybridsearch.v1 import hybridsearch_pb2 as pb  # noqa: E402
from hybridsearch.v1 import hybridsearch_pb2_grpc as pb_grpc  # noqa: E402
from tests.conftest import RunningServer, make_settings  # noqa: E402

COLLECTION = "traced"
TENANT = "tracer"
SEARCH_RPC = "hybridsearch.v1.HybridSearch/Search"
STAGES = {"encode", "dense", "sparse", "fusion", "fetch", "rerank"}
DOCS = [
    {"id": f"d{i}", "text": text}
    for i, text in enumerate(
        [
            "protein expression in cancer cells",
            "gene regulation of stem cells during development",
            "immune response to viral infection in mice",
            "brain imaging of memory and sleep",
            "cancer risk and diet in a large cohort study",
            "bacteria resistance to antibiotic treatment",
        ]
    )
]


@pytest.fixture(scope="module")
def exporter():
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    assert isinstance(trace.get_tracer_provider(), TracerProvider), "another test set a non-SDK tracer provider"
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    yield memory
    memory.shutdown()


def _start(tmp_path_factory, tiny_m3_dir, tiny_reranker_dir, enabled: bool) -> RunningServer:
    settings = make_settings(
        tmp_path_factory.mktemp("traced" if enabled else "untraced"),
        tiny_m3_dir,
        tiny_reranker_dir,
        tracing={"enabled": enabled, "exporter": "global"},
    )
    running = RunningServer(settings)
    client = running.client(TENANT)
    client.create_collection(COLLECTION)
    client.upsert(COLLECTION, DOCS)
    return running


@pytest.fixture(scope="module")
def traced(exporter, tmp_path_factory, tiny_m3_dir, tiny_reranker_dir):
    running = _start(tmp_path_factory, tiny_m3_dir, tiny_reranker_dir, enabled=True)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def untraced(exporter, tmp_path_factory, tiny_m3_dir, tiny_reranker_dir):
    running = _start(tmp_path_factory, tiny_m3_dir, tiny_reranker_dir, enabled=False)
    yield running
    running.stop()


def traceparent() -> tuple[int, int, str]:
    trace_id, span_id = random.getrandbits(128) | 1, random.getrandbits(64) | 1
    return trace_id, span_id, f"00-{trace_id:032x}-{span_id:016x}-01"


def spans_of(exporter, trace_id: int) -> dict[str, list]:
    by_name: dict[str, list] = {}
    for span in exporter.get_finished_spans():
        if span.context.trace_id == trace_id:
            by_name.setdefault(span.name, []).append(span)
    return by_name


def raw_search(running, header: str, **fields) -> pb.SearchResponse:
    stub = pb_grpc.HybridSearchStub(running.channel())
    request = pb.SearchRequest(collection=fields.pop("collection", COLLECTION), query="cancer cells", top_k=3, **fields)
    return stub.Search(request, metadata=[("x-tenant", TENANT), ("traceparent", header)], timeout=60)


def test_a_search_is_traced_stage_by_stage_under_the_callers_trace(traced, exporter):
    trace_id, caller_span, header = traceparent()
    reply = raw_search(traced, header, rerank_mode=pb.FIXED, rerank_depth=3, dense_k=5, sparse_k=6)
    assert reply.rerank.depth_scored == 3
    spans = spans_of(exporter, trace_id)
    assert {SEARCH_RPC, "search", *STAGES, "rerank.queue"} <= set(spans)
    assert all(len(spans[name]) == 1 for name in (SEARCH_RPC, "search", *STAGES))
    one = {name: found[0] for name, found in spans.items()}

    rpc = one[SEARCH_RPC]
    assert rpc.kind == SpanKind.SERVER
    assert rpc.parent.span_id == caller_span and rpc.parent.is_remote
    assert rpc.attributes["rpc.system"] == "grpc" and rpc.attributes["rpc.method"] == "Search"
    assert rpc.attributes["rpc.grpc.status_code"] == 0

    search = one["search"]
    assert search.parent.span_id == rpc.context.span_id
    # Every stage a child of the search, the sparse route's too though it ran on a pool thread.
    for name in STAGES:
        assert one[name].parent.span_id == search.context.span_id, name
        assert search.start_time <= one[name].start_time <= one[name].end_time <= search.end_time, name
    for queued in spans["rerank.queue"]:
        assert queued.parent.span_id == one["rerank"].context.span_id
        assert queued.attributes["hybridsearch.rerank.pairs"] >= 1
        # Timed with time.monotonic() by the batcher: inside the rerank span, give or take a ms.
        assert (
            one["rerank"].start_time - 1_000_000
            <= queued.start_time
            <= queued.end_time
            <= one["rerank"].end_time + 1_000_000
        )
    assert sum(q.attributes["hybridsearch.rerank.pairs"] for q in spans["rerank.queue"]) == 3

    a = search.attributes
    assert a["hybridsearch.tenant"] == TENANT and a["hybridsearch.collection"] == COLLECTION
    assert (a["hybridsearch.top_k"], a["hybridsearch.dense_k"], a["hybridsearch.sparse_k"]) == (3, 5, 6)
    assert a["hybridsearch.rerank.mode"] == "fixed" and a["hybridsearch.rerank.depth"] == 3
    assert a["hybridsearch.hits"] == len(reply.hits) == 3
    assert a["hybridsearch.rerank.depth_scored"] == 3 and a["hybridsearch.rerank.degraded"] is False
    assert one["dense"].attributes["hybridsearch.candidates"] == reply.dense_candidates
    assert one["sparse"].attributes["hybridsearch.candidates"] == reply.sparse_candidates
    assert one["rerank"].attributes["hybridsearch.rerank.depth_scored"] == 3
    assert one["rerank"].attributes["hybridsearch.rerank.backend"] == "tiny"
    assert "cancer" not in str(dict(a))  # the query text is not recorded


def test_a_search_without_reranking_has_no_rerank_queue_span(traced, exporter):
    trace_id, _, header = traceparent()
    raw_search(traced, header, rerank_mode=pb.OFF)
    names = set(spans_of(exporter, trace_id))
    assert {SEARCH_RPC, "search", "encode", "dense", "sparse", "fusion"} <= names
    assert "rerank.queue" not in names


def test_both_clients_carry_the_current_trace_context(traced, exporter):
    from hybridsearch.engine.aio_client import AsyncHybridSearchClient

    tracer = trace.get_tracer("test-caller")
    client = traced.client(TENANT)
    with tracer.start_as_current_span("caller") as caller:
        client.search(COLLECTION, "stem cells", top_k=2)
    rpc = spans_of(exporter, caller.get_span_context().trace_id)[SEARCH_RPC][0]
    assert rpc.parent.span_id == caller.get_span_context().span_id

    async def main():
        async with AsyncHybridSearchClient(traced.target, tenant=TENANT) as aio:
            with tracer.start_as_current_span("async caller") as span:
                await aio.search(COLLECTION, "viral infection", top_k=2)
            return span.get_span_context()

    context = asyncio.run(main())
    rpc = spans_of(exporter, context.trace_id)[SEARCH_RPC][0]
    assert rpc.parent.span_id == context.span_id


def test_a_failed_search_records_its_status(traced, exporter):
    trace_id, _, header = traceparent()
    with pytest.raises(grpc.RpcError) as info:
        raw_search(traced, header, collection="missing")
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    spans = spans_of(exporter, trace_id)
    rpc, search = spans[SEARCH_RPC][0], spans["search"][0]
    assert rpc.attributes["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]
    assert rpc.status.status_code == StatusCode.UNSET  # the caller's mistake, not a server error
    assert search.status.status_code == StatusCode.ERROR and search.events[0].name == "exception"
    assert "encode" not in spans  # it failed before encoding


def test_other_rpcs_and_streams_get_their_server_span(traced, exporter):
    tracer = trace.get_tracer("test-caller")
    client = traced.client(TENANT)
    with tracer.start_as_current_span("loader") as loader:
        client.upsert(COLLECTION, [{"id": "x1", "text": "extra document"}])
        acks = list(
            client.bulk_upsert_acked(
                COLLECTION, [[{"id": "x2", "text": "more"}], [{"id": "x3", "text": "text"}]], timeout=60
            )
        )
        client.delete(COLLECTION, ["x1", "x2", "x3"])
    assert len(acks) == 2
    spans = spans_of(exporter, loader.get_span_context().trace_id)
    for method in ("Upsert", "BulkUpsertAcked", "Delete"):
        span = spans[f"hybridsearch.v1.HybridSearch/{method}"][0]
        assert span.parent.span_id == loader.get_span_context().span_id
        assert span.attributes["rpc.grpc.status_code"] == 0 and span.kind == SpanKind.SERVER


def test_the_rerank_rpc_records_its_queue_wait(traced, exporter):
    tracer = trace.get_tracer("test-caller")
    with tracer.start_as_current_span("caller") as caller:
        reply = traced.client(TENANT).rerank("cancer cells", [d["text"] for d in DOCS], top_n=2)
    assert len(reply.results) == 2
    spans = spans_of(exporter, caller.get_span_context().trace_id)
    rpc = spans["hybridsearch.v1.HybridSearch/Rerank"][0]
    (queued,) = spans["rerank.queue"]
    assert queued.parent.span_id == rpc.context.span_id
    assert queued.attributes["hybridsearch.rerank.pairs"] == len(DOCS)


def test_with_tracing_off_the_server_records_no_spans(untraced, exporter):
    assert untraced.server.service.tracer is tracing.NOOP
    trace_id, _, header = traceparent()
    reply = raw_search(untraced, header, rerank_mode=pb.FIXED, rerank_depth=2)
    assert reply.rerank.depth_scored == 2
    assert spans_of(exporter, trace_id) == {}
    assert untraced.server.service.rerank_stage.tracer is tracing.NOOP
