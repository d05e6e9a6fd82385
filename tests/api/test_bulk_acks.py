"""Issue 15, finding 6: what a bulk-loading client can rely on when it is cut off."""

from __future__ import annotations

import time

import grpc
import pytest


def docs(batch: int, n: int = 4, size: int = 1) -> list[dict]:
    return [
        {"id": f"b{batch}-{i}", "text": f"protein cells batch {batch} item {i} " + "filler words " * size}
        for i in range(n)
    ]


def test_each_batch_is_acknowledged_once_durable_and_a_cut_client_knows_what_was_written(server):
    client = server.client("acme")
    client.create_collection("acked")
    acks = []
    call = client.bulk_upsert_acked("acked", (docs(b) for b in range(5)))
    for ack in call:
        acks.append(ack)
        # Durable when acknowledged: readable right away.
        assert len(client.get("acked", [d["id"] for d in docs(ack.batch)])) == 4
        if ack.batch == 2:
            call.cancel()  # the client is cut off after its third acknowledgement
            break
    assert [(a.batch, a.upserted, a.total) for a in acks] == [(0, 4, 4), (1, 4, 8), (2, 4, 12)]
    time.sleep(1.0)
    # Every acknowledged batch is there. Batches the server had read when the cut came
    # were written whole or not at all (the README's promise); never in part.
    for b in range(3):
        assert len(client.get("acked", [d["id"] for d in docs(b)])) == 4
    for b in (3, 4):
        assert len(client.get("acked", [d["id"] for d in docs(b)])) in (0, 4)


def test_a_bad_batch_ends_the_stream_naming_it_after_the_good_ones_were_acknowledged(server):
    client = server.client("acme")
    client.create_collection("acked_bad")
    batches = [docs(0), [{"id": "x", "text": " "}], docs(2)]
    acks = []
    with pytest.raises(grpc.RpcError) as info:
        for ack in client.bulk_upsert_acked("acked_bad", batches):
            acks.append(ack.batch)
    assert acks == [0]
    assert (
        info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        and "batch 1 (after 4 documents written)" in info.value.details()
    )
    assert client.get("acked_bad", ["b2-0"]) == []


@pytest.mark.parametrize("rpc", ["upsert", "bulk_upsert", "bulk_upsert_acked"])
def test_a_batch_whose_call_is_cancelled_before_its_write_is_not_written(server, rpc):
    """A 1,000-document batch cancelled after 1.5 s used to be written in full 12 s later."""
    from hybridsearch.engine.client import document_message
    from hybridsearch.v1 import hybridsearch_pb2 as pb

    client = server.client("acme")
    name = f"cancel_{rpc}"
    client.create_collection(name)
    batch = docs(9, n=20)
    request = pb.UpsertRequest(collection=name, documents=[document_message(d) for d in batch])
    # Another write to the collection holds it: this batch waits, as behind a long batch.
    busy = server.server.service._write_lock(name)
    busy.acquire()
    try:
        if rpc == "upsert":
            call = client.stub.Upsert.future(request, metadata=client.metadata)
        elif rpc == "bulk_upsert":
            call = client.stub.BulkUpsert.future(iter([request]), metadata=client.metadata)
        else:
            call = client.bulk_upsert_acked(name, [batch])
        time.sleep(0.5)
        call.cancel()
        with pytest.raises(grpc.FutureCancelledError if rpc != "bulk_upsert_acked" else grpc.RpcError):
            call.result() if rpc != "bulk_upsert_acked" else list(call)
    finally:
        busy.release()
    time.sleep(2.0)  # the server has now encoded the batch, found its call ended, and stopped
    assert client.get(name, [d["id"] for d in batch]) == []
    assert client.describe_collection(name).tenant_document_count == 0
