"""Milvus unreachable at start or mid-run: UNAVAILABLE with a clear message, recovery without a restart.

Milvus here is a real gRPC endpoint: the installed milvus-lite as a server process on a loopback port
(tests/milvus_process.py).
"""

from __future__ import annotations

import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.conftest import status_of
from tests.milvus_process import NATIVE_LITE, MilvusProcess, free_port


def wait_for_health(channel, want, timeout=20.0):
    stub = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        status = stub.Check(health_pb2.HealthCheckRequest(service="")).status
        if status == want:
            return
        time.sleep(0.2)
    raise AssertionError(f"health stayed {status}, wanted {want}")


def retry(call, timeout=20.0):
    """The first call after Milvus returns may still see the old connection fail."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                raise
            time.sleep(0.3)


@pytest.fixture
def milvus(tmp_path):
    process = MilvusProcess(tmp_path / "milvus", free_port())
    yield process
    process.kill()


def test_service_starts_without_milvus_and_recovers_when_it_comes_back_and_after_a_crash(
    start_server, tmp_path, milvus
):
    uri = f"http://127.0.0.1:{milvus.port}"
    running = start_server(
        tmp_path / "svc",
        milvus={"uri": uri, "timeout_s": 3},
        server={"host": "127.0.0.1", "port": 0, "grace_s": 1, "health_interval_s": 0.2},
    )
    client = running.client("acme", timeout=10)
    channel = running.channel()

    # down at start: the service serves, answers UNAVAILABLE naming Milvus, health says NOT_SERVING
    code, details = status_of(lambda: client.create_collection("docs"))
    assert code == grpc.StatusCode.UNAVAILABLE and "Milvus" in details and str(milvus.port) in details
    wait_for_health(channel, health_pb2.HealthCheckResponse.NOT_SERVING)

    # Milvus comes up: no restart needed
    milvus.start()
    wait_for_health(channel, health_pb2.HealthCheckResponse.SERVING)
    retry(lambda: client.create_collection("docs"))
    client.upsert("docs", [{"id": "a", "text": "cancer cells"}, {"id": "b", "text": "brain sleep"}])
    assert client.search("docs", "cancer", top_k=1).hits[0].id == "a"

    # Milvus crashes mid-run
    milvus.kill()
    code, details = status_of(lambda: client.search("docs", "cancer", top_k=1))
    assert code == grpc.StatusCode.UNAVAILABLE and "Milvus" in details
    wait_for_health(channel, health_pb2.HealthCheckResponse.NOT_SERVING)

    # and comes back with its data: searches work again, still no restart
    milvus.start()
    wait_for_health(channel, health_pb2.HealthCheckResponse.SERVING)
    reply = retry(lambda: client.search("docs", "cancer", top_k=1))
    assert reply.hits[0].id == "a"
    assert [d.id for d in client.get("docs", ["b"])] == ["b"]


@pytest.mark.skipif(not NATIVE_LITE, reason="only native milvus-lite 2.5 cannot open a 3.x store")
def test_a_milvus_lite_3_store_is_refused_with_what_to_do(start_server, tmp_path):
    # Milvus Lite 3.x keeps its store as a directory at <data_dir>/milvus.db.
    (tmp_path / "svc" / "milvus.db").mkdir(parents=True)
    running = start_server(tmp_path / "svc")
    code, details = status_of(lambda: running.client("acme").list_collections())
    assert code == grpc.StatusCode.UNAVAILABLE
    assert "is a Milvus Lite 3.x store" in details and "ingest again" in details and "milvus-lite>=3,<4" in details
