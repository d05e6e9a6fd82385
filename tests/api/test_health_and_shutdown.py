"""Standard gRPC health and reflection, and graceful shutdown (in process and of an `hsearch serve` process)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from hybridsearch.v1 import hybridsearch_pb2 as pb
from hybridsearch.v1 import hybridsearch_pb2_grpc as pb_grpc
from tests.conftest import TINY_PROFILE, status_of

REPO = Path(__file__).resolve().parents[2]
SERVICE = "hybridsearch.v1.HybridSearch"
ADMIN = "hybridsearch.v1.TenantAdmin"
HEALTH = "grpc.health.v1.Health"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def health_stub(channel: grpc.Channel) -> health_pb2_grpc.HealthStub:
    return health_pb2_grpc.HealthStub(channel)


# ---------------------------------------------------------------- health and reflection


@pytest.mark.parametrize("service", ["", SERVICE, ADMIN])
def test_health_check_answers_serving(server, service):
    reply = health_stub(server.channel()).Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    assert reply.status == SERVING


def test_health_list_names_every_service_with_its_status(server):
    """Issue 15, finding 7: List was advertised (reflection) but UNIMPLEMENTED."""
    reply = health_stub(server.channel()).List(health_pb2.HealthListRequest(), timeout=5)
    statuses = {name: r.status for name, r in reply.statuses.items()}
    assert statuses[""] == statuses[SERVICE] == statuses[ADMIN] == SERVING
    assert "hybridsearch.v1.Rerank" in statuses  # discoverable, whatever the reranker's state


def test_health_check_of_an_unknown_service_is_not_found(server):
    code, _ = status_of(
        lambda: health_stub(server.channel()).Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=5)
    )
    assert code == grpc.StatusCode.NOT_FOUND


def reflect(server, *requests: reflection_pb2.ServerReflectionRequest) -> list[reflection_pb2.ServerReflectionResponse]:
    stub = reflection_pb2_grpc.ServerReflectionStub(server.channel())
    return list(stub.ServerReflectionInfo(iter(requests), timeout=5))


def test_reflection_lists_the_search_admin_and_health_services(server):
    (reply,) = reflect(server, reflection_pb2.ServerReflectionRequest(list_services=""))
    names = {s.name for s in reply.list_services_response.service}
    assert {SERVICE, ADMIN, HEALTH} <= names


def test_reflection_returns_the_file_descriptor_for_the_search_service(server):
    (reply,) = reflect(server, reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE))
    assert reply.WhichOneof("message_response") == "file_descriptor_response"
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in reply.file_descriptor_response.file_descriptor_proto
    ]
    (proto,) = [f for f in files if f.name == pb.DESCRIPTOR.name]
    assert proto.package == "hybridsearch.v1"
    services = {s.name: {m.name for m in s.method} for s in proto.service}
    assert {"Search", "Upsert", "BulkUpsert", "Get", "Delete", "CreateCollection", "Rerank"} <= services["HybridSearch"]
    assert "TenantAdmin" in services


def test_reflection_reports_an_unknown_symbol_as_an_error_response(server):
    (reply,) = reflect(server, reflection_pb2.ServerReflectionRequest(file_containing_symbol="no.such.Symbol"))
    assert reply.WhichOneof("message_response") == "error_response"
    assert reply.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]


# ---------------------------------------------------------------- graceful stop in process


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def refused(stub_call) -> grpc.StatusCode | None:
    try:
        stub_call()
    except grpc.RpcError as exc:
        return exc.code()
    return None


def test_graceful_stop_turns_health_not_serving_finishes_in_flight_calls_and_refuses_new_ones(start_server, tmp_path):
    data_dir = tmp_path / "drain"
    running = start_server(data_dir, rerank={"enabled": False})
    client = running.client("acme")
    client.create_collection("drain")

    watch = health_stub(running.channel()).Watch(health_pb2.HealthCheckRequest(service=SERVICE))
    updates = iter(watch)
    assert next(updates).status == SERVING

    # An in-flight client stream: the first batch is written, the second waits for us.
    release = threading.Event()

    def batches():
        yield [{"id": "slow-0", "text": "written before the stop"}]
        release.wait(30)
        yield [{"id": "slow-1", "text": "sent while the server drains"}]

    outcome: dict = {}

    def bulk():
        try:
            outcome["reply"] = client.bulk_upsert("drain", batches(), timeout=60)
        except grpc.RpcError as exc:  # pragma: no cover - reported by the assertion below
            outcome["error"] = exc

    loader = threading.Thread(target=bulk)
    loader.start()
    wait_for(lambda: client.get("drain", ["slow-0"]), 20, "the first batch to be written")

    grace = 20.0
    stopper = threading.Thread(target=running.server.stop, kwargs={"grace": grace})
    started = time.monotonic()
    stopper.start()

    # health turns NOT_SERVING as the drain begins
    assert next(updates).status == NOT_SERVING
    watch.cancel()  # a Watch stream is itself an in-flight call

    # new calls are refused, on a fresh channel and on the channel of the in-flight call
    fresh = running.channel()
    search = pb.SearchRequest(collection="drain", query="written", top_k=1)
    new_call = lambda: pb_grpc.HybridSearchStub(fresh).Search(search, metadata=[("x-tenant", "acme")], timeout=2)  # noqa: E731
    assert wait_for(lambda: refused(new_call) == grpc.StatusCode.UNAVAILABLE, 10, "UNAVAILABLE on a new channel")
    assert wait_for(
        lambda: refused(lambda: client.search("drain", "written", top_k=1, timeout=2)) == grpc.StatusCode.UNAVAILABLE,
        10,
        "UNAVAILABLE on the open channel",
    )
    assert loader.is_alive() and stopper.is_alive()

    # the in-flight stream still completes, and the stop then returns well inside the grace period
    release.set()
    loader.join(20)
    assert "error" not in outcome, outcome.get("error")
    assert outcome["reply"].upserted == 2 and outcome["reply"].batches == 2
    stopper.join(grace)
    assert not stopper.is_alive() and time.monotonic() - started < grace / 2
    assert (
        refused(lambda: health_stub(fresh).Check(health_pb2.HealthCheckRequest(service=""), timeout=2))
        == grpc.StatusCode.UNAVAILABLE
    )

    # both batches are durable: a new server on the same data directory has them
    again = start_server(data_dir, rerank={"enabled": False})
    assert [d.id for d in again.client("acme").get("drain", ["slow-0", "slow-1"])] == ["slow-0", "slow-1"]


def test_graceful_stop_cancels_a_call_that_outlives_the_grace_period(start_server):
    running = start_server(rerank={"enabled": False})
    client = running.client("acme")
    client.create_collection("stuck")
    never = threading.Event()

    def batches():
        yield [{"id": "stuck-0", "text": "first"}]
        never.wait(30)  # the client never finishes its stream
        yield [{"id": "stuck-1", "text": "too late"}]

    outcome: dict = {}

    def bulk():
        try:
            outcome["reply"] = client.bulk_upsert("stuck", batches(), timeout=60)
        except grpc.RpcError as exc:
            outcome["code"] = exc.code()

    loader = threading.Thread(target=bulk, daemon=True)
    loader.start()
    wait_for(lambda: client.get("stuck", ["stuck-0"]), 20, "the first batch to be written")
    started = time.monotonic()
    running.server.stop(grace=0.5)
    assert time.monotonic() - started < 5  # stop() does not wait for the stuck call
    loader.join(10)
    never.set()
    assert "reply" not in outcome and outcome["code"] in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE)


# ---------------------------------------------------------------- `hsearch serve` as a process


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_hsearch_serve_exits_cleanly_within_the_grace_period_on_sigterm(tmp_path, tiny_m3_dir):
    port, grace = free_port(), 5.0
    config = tmp_path / "hsearch.yaml"
    config.write_text(
        f"""
data_dir: {tmp_path / "data"}
default_profile: {TINY_PROFILE}
profiles:
  {TINY_PROFILE}:
    kind: bge-m3
    model: {tiny_m3_dir}
    max_length: 128
server:
  host: 127.0.0.1
  port: {port}
  grace_s: {grace}
rerank:
  enabled: false
"""
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("HSEARCH_")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="2")
    process = subprocess.Popen(
        [sys.executable, "-m", "hybridsearch.engine.cli", "serve", "--config", str(config)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        health = health_stub(channel)

        def serving():
            if process.poll() is not None:
                raise AssertionError(f"hsearch serve exited with {process.returncode}:\n{process.stdout.read()}")
            try:
                return health.Check(health_pb2.HealthCheckRequest(service=""), timeout=1).status == SERVING
            except grpc.RpcError:
                return False

        wait_for(serving, 90, "hsearch serve to answer SERVING")
        watch = health.Watch(health_pb2.HealthCheckRequest(service=SERVICE))
        updates = iter(watch)
        assert next(updates).status == SERVING

        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert next(updates).status == NOT_SERVING
        watch.cancel()
        returncode = process.wait(timeout=grace + 10)
        elapsed = time.monotonic() - started
        output = process.stdout.read()
        assert returncode == 0, output
        assert elapsed < grace, f"took {elapsed:.1f}s with a {grace}s grace period"
        assert "draining" in output and "stopped" in output
        assert not port_open(port)
        channel.close()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
