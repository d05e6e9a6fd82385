"""kill -9 during ingest: every acknowledged document survives, none is half-written,
and re-sending a batch is idempotent. The server is a real `hsearch serve` process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import grpc
import pytest
import yaml

from hybridsearch.engine.client import HybridSearchClient
from tests.milvus_process import NATIVE_LITE, free_port


def start_serve(config_path, port):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "hybridsearch.engine.cli", "serve", "--config", str(config_path)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"hsearch serve exited: {proc.stderr.read().decode()[-2000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("hsearch serve did not open its port")


def batch(n: int, size: int = 10) -> list[dict]:
    return [
        {"id": f"doc-{n}-{i}", "text": f"marker{n}x{i} protein cells batch {n}", "metadata": {"batch": n}}
        for i in range(size)
    ]


@pytest.fixture
def config(tmp_path, tiny_m3_dir):
    port = free_port()
    path = tmp_path / "hsearch.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "data_dir": str(tmp_path / "data"),
                "default_profile": "tiny",
                "profiles": {"tiny": {"kind": "bge-m3", "model": str(tiny_m3_dir), "max_length": 64}},
                "server": {"host": "127.0.0.1", "port": port, "grace_s": 1},
                "rerank": {"enabled": False},
                "auth_mode": "dev_header",
                "torch_threads": 1,
            }
        )
    )
    return path, port


def test_kill_9_during_ingest_keeps_every_acknowledged_document_whole(config):
    path, port = config
    proc = start_serve(path, port)
    client = HybridSearchClient(f"127.0.0.1:{port}", tenant="acme", timeout=30)
    client.create_collection("docs", metadata_fields={"batch": "int"})
    acked: list[int] = []
    stop = threading.Event()

    def ingest():
        n = 0
        while not stop.is_set():
            try:
                client.upsert("docs", batch(n))
            except grpc.RpcError:
                return  # the server died under this call: not acknowledged
            acked.append(n)
            n += 1

    writer = threading.Thread(target=ingest, daemon=True)
    writer.start()
    while len(acked) < 5:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # mid-stream, usually with a call in flight
    proc.wait(10)
    stop.set()
    writer.join(30)
    client.close()
    assert len(acked) >= 5

    proc = start_serve(path, port)
    try:
        client = HybridSearchClient(f"127.0.0.1:{port}", tenant="acme", timeout=30)
        for n in acked:
            docs = client.get("docs", [d["id"] for d in batch(n)])
            assert len(docs) == 10, f"acknowledged batch {n} lost documents"
            assert all(d.text == f"marker{n}x{d.id.rsplit('-', 1)[1]} protein cells batch {n}" for d in docs)
            # searchable through both routes' indexes, not only stored
            reply = client.search("docs", f"protein cells batch {n}", top_k=10, filters=[("batch", "==", n)])
            assert {h.id for h in reply.hits} == {d["id"] for d in batch(n)}
            assert reply.dense_candidates == 10 and reply.sparse_candidates == 10
        # the batch that was in flight is either all there or all missing: never half-written
        in_flight = max(acked) + 1
        present = client.get("docs", [d["id"] for d in batch(in_flight)])
        assert len(present) in (0, 10)
        # search never returns a document twice, even right after the crash
        reply = client.search("docs", "protein cells", top_k=50, dense_k=100, sparse_k=100)
        assert len({h.id for h in reply.hits}) == len(reply.hits)
        # re-sending batches is idempotent: same ids, same result, the second re-send changes nothing
        client.upsert("docs", batch(acked[-1]))
        client.upsert("docs", batch(in_flight))
        once = client.describe_collection("docs").tenant_document_count
        client.upsert("docs", batch(in_flight))
        assert client.describe_collection("docs").tenant_document_count == once == 10 * (in_flight + 1)
        reply = client.search("docs", "protein cells", top_k=10, filters=[("batch", "==", in_flight)])
        assert sorted(h.id for h in reply.hits) == sorted(d["id"] for d in batch(in_flight))
        client.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0


def _engine_processes(data_dir) -> list[int]:
    """Native Milvus Lite's engine: a child process named after the store file."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"/milvus") and str(data_dir / "milvus.db").encode() in argv:
                pids.append(int(entry))
    return pids


@pytest.mark.skipif(not NATIVE_LITE, reason="Milvus Lite 3.x runs inside the service's own process")
def test_the_engine_process_killed_mid_ingest_is_restarted_and_keeps_every_acknowledged_document(
    start_server, tmp_path
):
    running = start_server(tmp_path / "data")
    client = running.client("acme")
    client.create_collection("docs", metadata_fields={"batch": "int"})
    acked: list[int] = []
    stop = threading.Event()

    def ingest():
        n = 0
        while not stop.is_set() and n < 200:
            try:
                client.upsert("docs", batch(n))
                acked.append(n)
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc  # the engine died under this call
            n += 1

    writer = threading.Thread(target=ingest, daemon=True)
    writer.start()
    while len(acked) < 5:
        time.sleep(0.05)
    (engine,) = _engine_processes(tmp_path / "data")
    os.kill(engine, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while len(acked) < 10 and time.monotonic() < deadline:  # the service recovers by itself
        time.sleep(0.1)
    stop.set()
    writer.join(60)
    assert len(acked) >= 10, "ingest did not resume after the engine was killed"
    assert _engine_processes(tmp_path / "data") and engine not in _engine_processes(tmp_path / "data")
    for n in acked:
        assert len(client.get("docs", [d["id"] for d in batch(n)])) == 10, f"acknowledged batch {n} lost documents"
    reply = client.search("docs", f"protein cells batch {acked[-1]}", top_k=10, filters=[("batch", "==", acked[-1])])
    assert {h.id for h in reply.hits} == {d["id"] for d in batch(acked[-1])}
