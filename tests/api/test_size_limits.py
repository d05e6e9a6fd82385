"""Issue 15, finding 4: everything a caller sends has a size limit, and no search builds a
reply over the gRPC message limit."""
from __future__ import annotations

import grpc

from tests.conftest import status_of


def test_metadata_values_and_a_documents_metadata_as_a_whole_are_limited(server):
    client = server.client("acme")
    client.create_collection("sizes", metadata_fields={"kind": "string"})
    code, details = status_of(lambda: client.upsert("sizes", [{"id": "a", "text": "ok", "metadata": {"note": "x" * 4097}}]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "documents[0].metadata['note']" in details and "4097 bytes" in details
    assert "limits.max_metadata_value_bytes" in details
    # UTF-8 bytes, not characters: 1,366 Chinese characters are 4,098 bytes.
    code, details = status_of(lambda: client.upsert("sizes", [{"id": "a", "text": "ok", "metadata": {"kind": "中" * 1366}}]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "4098 bytes" in details
    many = {f"f{i}": "y" * 4000 for i in range(5)}  # each value allowed, 20,010 bytes in all
    code, details = status_of(lambda: client.upsert("sizes", [{"id": "b", "text": "ok", "metadata": many}]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "documents[0].metadata" in details and "limits.max_metadata_bytes" in details
    assert client.get("sizes", ["a", "b"]) == []
    client.upsert("sizes", [{"id": "c", "text": "ok", "metadata": {f"f{i}": "y" * 3000 for i in range(5)}}])
    assert len(client.get("sizes", ["c"])[0].metadata) == 5


def test_a_reply_over_the_message_limit_cuts_the_last_hits_text_not_the_call(start_server, tmp_path):
    limit = 48 * 1024
    running = start_server(tmp_path / "data", server={"host": "127.0.0.1", "port": 0, "grace_s": 1, "max_message_bytes": limit})
    client = running.client("acme")
    client.create_collection("big")
    docs = [{"id": f"d{i}", "text": f"protein cells {i} " + "长文本 long text " * 180} for i in range(12)]  # ~4 KB each
    for i in range(0, len(docs), 4):
        client.upsert("big", docs[i : i + 4])
    reply = client.search("big", "protein cells", top_k=12)
    assert len(reply.hits) == 12 and reply.ByteSize() < limit
    whole = {d["id"]: d["text"] for d in docs}
    cut = [h for h in reply.hits if h.text_truncated]
    assert cut and not reply.hits[0].text_truncated and reply.hits[0].text == whole[reply.hits[0].id]
    assert [h.text_truncated for h in reply.hits] == sorted(h.text_truncated for h in reply.hits)  # the last ones
    for h in cut:
        assert whole[h.id].startswith(h.text) and len(h.text) < len(whole[h.id])
    assert client.get("big", [cut[-1].id])[0].text == whole[cut[-1].id]  # Get returns it whole
