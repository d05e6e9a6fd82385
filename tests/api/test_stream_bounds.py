"""Issue 28: open streams cannot starve unary calls; beyond their bounds they are refused."""

from __future__ import annotations

import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from hybridsearch.engine.admission import retry_after_ms


def _wait_for(predicate, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


def _watch(channel, tenant: str | None = None):
    """An open Health.Watch stream (its first update already read), as an idle client keeps it."""
    metadata = [("x-tenant", tenant)] if tenant else None
    # The deadline only makes a starved server fail the test instead of hanging it.
    call = health_pb2_grpc.HealthStub(channel).Watch(
        health_pb2.HealthCheckRequest(service=""), metadata=metadata, timeout=30
    )
    assert next(call).status == health_pb2.HealthCheckResponse.SERVING
    return call


def _refused_watch(channel, tenant: str | None = None) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        _watch(channel, tenant)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert retry_after_ms(info.value) == 1000
    return info.value


def test_streams_without_credentials_have_a_small_bound_of_their_own(start_server):
    running = start_server(limits={"max_unauthenticated_streams": 2, "max_streams_per_peer": 10})
    channel = running.channel()
    open_ = [_watch(channel), _watch(channel)]
    error = _refused_watch(channel)
    assert "limits.max_unauthenticated_streams = 2" in error.details() and "API key" in error.details()
    # A caller with credentials still gets a stream, and searches are served.
    open_.append(_watch(channel, "acme"))
    client = running.client("acme")
    client.create_collection("streams")
    assert client.search("streams", "anything", top_k=1, timeout=10) is not None
    # A closed stream frees its place.
    open_.pop(0).cancel()
    _wait_for(lambda: running.server.streams.snapshot()["unauthenticated"] == 1)
    open_.append(_watch(channel))
    for call in open_:
        call.cancel()


def test_one_client_address_has_a_bound_and_bulk_loads_count_in_it(start_server):
    running = start_server(limits={"max_streams_per_peer": 2})
    channel = running.channel()
    open_ = [_watch(channel, "acme"), _watch(channel, "acme")]
    error = _refused_watch(running.channel(), "globex")  # another connection, same address
    assert "from ipv4:127.0.0.1" in error.details() and "limits.max_streams_per_peer = 2" in error.details()
    client = running.client("acme")
    client.create_collection("peer_bound")
    with pytest.raises(grpc.RpcError) as info:
        client.bulk_upsert("peer_bound", [[{"id": "a", "text": "蛋白质 protein"}]])
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # Unary writes are no stream: they go through.
    assert client.upsert("peer_bound", [{"id": "a", "text": "蛋白质 protein"}]).upserted == 1
    open_.pop().cancel()
    _wait_for(lambda: running.server.streams.snapshot()["open"] == 1)
    assert client.bulk_upsert("peer_bound", [[{"id": "b", "text": "mixed 中文 text"}]]).upserted == 1
    for call in open_:
        call.cancel()


def test_the_total_bound_covers_reflection_too(start_server):
    running = start_server(limits={"max_streams": 2, "max_streams_per_peer": 10})
    channel = running.channel()
    watches = [_watch(channel, "acme"), _watch(channel, "acme")]
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    )
    with pytest.raises(grpc.RpcError) as info:
        list(reflection)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "limits.max_streams = 2" in info.value.details()
    for call in watches:
        call.cancel()


def test_idle_streams_at_their_bound_leave_every_thread_for_unary_calls(start_server):
    """4 threads for calls, 8 idle streams open: before, the streams held every thread and a
    search waited until its deadline."""
    running = start_server(
        server={"host": "127.0.0.1", "port": 0, "grace_s": 2, "max_workers": 4},
        limits={"max_streams": 8, "max_streams_per_peer": 8, "max_unauthenticated_streams": 8},
    )
    channel = running.channel()
    watches = [_watch(channel) for _ in range(8)]
    _refused_watch(channel)
    client = running.client("acme")
    client.create_collection("idle_streams")
    client.upsert("idle_streams", [{"id": "a", "text": "蛋白质折叠 protein folding"}])
    for _ in range(5):
        assert client.search("idle_streams", "蛋白质", top_k=1, timeout=5).hits
    for call in watches:
        call.cancel()
