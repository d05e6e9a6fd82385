"""Fair admission through the server: counted on arrival, refused with a retry hint, and a
tenant's saturated share never holds up another tenant's call (issue 15, finding 3)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from hybridsearch.engine.admission import retry_after_ms
from hybridsearch.v1 import hybridsearch_pb2 as pb


@pytest.fixture
def tight(start_server, tmp_path):
    """Two running slots, one per tenant, two calls per tenant running or waiting."""
    running = start_server(
        tmp_path / "data",
        limits={
            "max_top_k": 100,
            "max_depth": 200,
            "max_running": 2,
            "max_running_per_tenant": 1,
            "max_concurrent_per_tenant": 2,
        },
    )
    a = running.client("A")
    a.create_collection("docs")
    a.upsert("docs", [{"id": str(i), "text": f"water sample {i}"} for i in range(10)])
    running.client("B").upsert("docs", [{"id": "b1", "text": "water for tenant b"}])
    return running


def hold_a_slot(client):
    """A BulkUpsert stream that stays open (and holds its running slot) until the gate opens."""
    gate = threading.Event()

    def batches():
        yield [{"id": "held", "text": "a stream held open"}]
        gate.wait(20)

    thread = threading.Thread(target=lambda: client.bulk_upsert("docs", batches()), daemon=True)
    thread.start()
    return gate, thread


def wait_until(predicate, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_a_saturated_tenant_waits_then_is_refused_while_another_tenant_runs_at_once(tight):
    a, b = tight.client("A"), tight.client("B")
    scheduler = tight.server.scheduler
    gate, holder = hold_a_slot(a)
    pool = ThreadPoolExecutor(2)
    try:
        assert wait_until(lambda: scheduler.snapshot().get("A") == (1, 0))
        queued = pool.submit(a.search, "docs", "water", top_k=1)  # A's second call: waits its turn
        assert wait_until(lambda: scheduler.snapshot().get("A") == (1, 1))
        # A's third call exceeds A's queue: refused on arrival, with when to come back.
        with pytest.raises(grpc.RpcError) as info:
            a.search("docs", "water", top_k=1)
        err = info.value
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "'A'" in err.details() and "limits.max_concurrent_per_tenant" in err.details()
        assert 50 <= retry_after_ms(err) <= 10_000
        from google.rpc import error_details_pb2
        from grpc_status import rpc_status

        status = rpc_status.from_call(err)
        infos = [d for d in status.details if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR)]
        assert len(infos) == 1
        # B is not held up by A: its search runs in the slot A may not take.
        t0 = time.monotonic()
        assert b.search("docs", "water", top_k=1).hits[0].id == "b1"
        assert time.monotonic() - t0 < 5
        assert not queued.done()
        # Health checks and reflection are never scheduled.
        health = health_pb2_grpc.HealthStub(tight.channel())
        assert (
            health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status
            == health_pb2.HealthCheckResponse.SERVING
        )
    finally:
        gate.set()
        holder.join(20)
    # The slot passes to A's waiting call once the stream ends.
    assert queued.result(20).hits
    assert wait_until(lambda: scheduler.snapshot() == {})
    pool.shutdown()


def test_a_call_whose_deadline_passes_in_the_queue_is_deadline_exceeded_and_frees_its_place(tight):
    a = tight.client("A")
    scheduler = tight.server.scheduler
    gate, holder = hold_a_slot(a)
    try:
        assert wait_until(lambda: scheduler.snapshot().get("A") == (1, 0))
        with pytest.raises(grpc.RpcError) as info:
            a.stub.Search(pb.SearchRequest(collection="docs", query="water", top_k=1), metadata=a.metadata, timeout=0.5)
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert wait_until(lambda: scheduler.snapshot().get("A") == (1, 0))
    finally:
        gate.set()
        holder.join(20)
    assert wait_until(lambda: scheduler.snapshot() == {})
    assert a.search("docs", "water", top_k=1).hits


def test_unidentified_callers_share_one_lane_and_get_their_own_error(start_server, tmp_path):
    running = start_server(tmp_path / "data", auth_mode="api_key")
    c = running.client(tenant=None, api_key="hsk_nope_nope")
    with pytest.raises(grpc.RpcError) as info:
        c.list_collections()
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert running.server.scheduler.snapshot() == {}


def test_refusals_are_counted_in_metrics(tight):
    a = tight.client("A")
    gate, holder = hold_a_slot(a)
    pool = ThreadPoolExecutor(1)
    try:
        assert wait_until(lambda: tight.server.scheduler.snapshot().get("A") == (1, 0))
        pool.submit(a.search, "docs", "water", top_k=1)
        assert wait_until(lambda: tight.server.scheduler.snapshot().get("A") == (1, 1))
        for _ in range(3):
            with pytest.raises(grpc.RpcError):
                a.search("docs", "water", top_k=1)
    finally:
        gate.set()
        holder.join(20)
        pool.shutdown()
    metrics = tight.server.service.metrics
    assert metrics.registry.get_sample_value("hsearch_admission_refused_total", {"tenant": "A"}) == 3
    assert metrics.registry.get_sample_value("hsearch_admission_wait_ms_count", {"tenant": "A"}) >= 2
