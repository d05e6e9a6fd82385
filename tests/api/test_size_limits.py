"""Issue 15, finding 4: everything a caller sends has a size limit, and no search builds a
reply over the gRPC message limit."""

from __future__ import annotations

import grpc

from tests.conftest import status_of


def test_metadata_values_and_a_documents_metadata_as_a_whole_are_limited(server):
    client = server.client("acme")
    client.create_collection("sizes", metadata_fields={"kind": "string"})
    code, details = status_of(
        lambda: client.upsert("sizes", [{"id": "a", "text": "ok", "metadata": {"note": "x" * 4097}}])
    )
    assert (
        code == grpc.StatusCode.INVALID_ARGUMENT
        and "documents[0].metadata['note']" in details
        and "4097 bytes" in details
    )
    assert "limits.max_metadata_value_bytes" in details
    # UTF-8 bytes, not characters: 1,366 Chinese characters are 4,098 bytes.
    code, details = status_of(
        lambda: client.upsert("sizes", [{"id": "a", "text": "ok", "metadata": {"kind": "中" * 1366}}])
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "4098 bytes" in details
    many = {f"f{i}": "y" * 4000 for i in range(5)}  # each value allowed, 20,010 bytes in all
    code, details = status_of(lambda: client.upsert("sizes", [{"id": "b", "text": "ok", "metadata": many}]))
    assert (
        code == grpc.StatusCode.INVALID_ARGUMENT
        and "documents[0].metadata" in details
        and "limits.max_metadata_bytes" in details
    )
    assert client.get("sizes", ["a", "b"]) == []
    client.upsert("sizes", [{"id": "c", "text": "ok", "metadata": {f"f{i}": "y" * 3000 for i in range(5)}}])
    assert len(client.get("sizes", ["c"])[0].metadata) == 5


def test_a_reply_over_the_message_limit_cuts_the_last_hits_text_not_the_call(start_server, tmp_path):
    limit = 48 * 1024
    running = start_server(
        tmp_path / "data", server={"host": "127.0.0.1", "port": 0, "grace_s": 1, "max_message_bytes": limit}
    )
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


def test_per_tenant_cost_limits_lower_the_server_wide_ones_for_that_tenant_only(start_server, tmp_path):
    """Issue 15, finding 3 (in part): per-request cost limits configurable per tenant."""
    limits = {
        "max_top_k": 100,
        "max_depth": 200,
        "per_tenant": {"small": {"max_top_k": 5, "max_depth": 20}, "big": {"max_top_k": 5000}},
    }
    running = start_server(tmp_path / "data", limits=limits)
    small, other, big = running.client("small"), running.client("other"), running.client("big")
    small.create_collection("costs")
    for c in (small, other, big):
        c.upsert("costs", [{"id": str(i), "text": f"protein cells {i}"} for i in range(8)])
    code, details = status_of(lambda: small.search("costs", "protein", top_k=6))
    assert (
        code == grpc.StatusCode.INVALID_ARGUMENT
        and "top_k" in details
        and "limits.per_tenant['small'].max_top_k" in details
    )
    code, details = status_of(lambda: small.search("costs", "protein", top_k=5, dense_k=21))
    assert (
        code == grpc.StatusCode.INVALID_ARGUMENT
        and "dense_k" in details
        and "limits.per_tenant['small'].max_depth" in details
    )
    assert len(small.search("costs", "protein", top_k=5).hits) == 5  # its default depth fits its own limit
    assert len(other.search("costs", "protein", top_k=8, dense_k=200).hits) == 8  # others keep the server-wide limits
    # A tenant's own limit never raises the server-wide one.
    code, details = status_of(lambda: big.search("costs", "protein", top_k=101))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "between 1 and 100" in details


def test_per_tenant_limits_name_valid_tenants():
    import pytest
    from pydantic import ValidationError

    from hybridsearch.engine.config import Settings

    with pytest.raises(ValidationError, match="limits.per_tenant: invalid tenant name"):
        Settings(limits={"per_tenant": {"no spaces!": {"max_top_k": 5}}})


def test_a_tenants_own_concurrency_limit_refuses_its_extra_calls_only():
    import pytest

    from hybridsearch.engine.admission import Refused, scheduler_for
    from hybridsearch.engine.config import LimitsConfig

    limits = LimitsConfig(
        max_concurrent_per_tenant=3,
        max_running=8,
        per_tenant={"small": {"max_concurrent": 1}, "huge": {"max_concurrent": 10}},
    )
    scheduler = scheduler_for(limits, max_workers=64)
    first = scheduler.admit("small")
    with pytest.raises(Refused) as info:
        scheduler.admit("small")
    assert "limits.per_tenant['small'].max_concurrent" in info.value.message
    for _ in range(3):
        scheduler.admit("other")
    for _ in range(3):
        scheduler.admit("huge")  # capped at the server-wide 3
    with pytest.raises(Refused) as info:
        scheduler.admit("huge")
    assert "limits.max_concurrent_per_tenant" in info.value.message
    scheduler.done(first)
    scheduler.admit("small")
