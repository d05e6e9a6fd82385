"""Tenant isolation end to end: no filter value, id or header lets one tenant see or touch another's documents.

Tenants A and B hold documents with the SAME ids, texts and filterable values in
one collection, so any leak of the tenant scope would show up as a hit owned by
the other tenant (each document carries its owner in undeclared metadata).
"""

from __future__ import annotations

import grpc
import pytest

from hybridsearch.engine.errors import ServiceError
from hybridsearch.engine.tenancy import tenant_from_metadata
from hybridsearch.v1 import hybridsearch_pb2 as pb
from hybridsearch.v1 import hybridsearch_pb2_grpc as pb_grpc
from tests.conftest import status_of
from tests.milvus_process import NATIVE_LITE

COLLECTION = "shared"
# "tenant" is a caller field: it must never be confused with the tenant scope.
FIELDS = {"label": "string", "n": "int", "x": "double", "flag": "bool", "tenant": "string"}
QUERY = "shared hostile text"

HOSTILE = [
    '"',
    '\\"',
    "'",
    '") or (tenant == "A',
    '") or (tenant == "B',
    '" or tenant != "',
    "' or tenant != '",
    "(",
    ")) or ((",
    "or",
    "a or b",
    "||",
    'x || tenant != ""',
    "ｏｒ ｔｅｎａｎｔ",  # fullwidth letters
    "tenаnt",  # a Cyrillic 'а'
    "z" * 1000,
    "\\",
    "\\\\",
    'back\\slash\\"',
    "new\nline",
    '"\n) or (tenant != "',
    "",
]
OTHER = {"A": "B", "B": "A"}


def doc(tenant: str, doc_id: str, text: str, i: int, label: str) -> dict:
    return {
        "id": doc_id,
        "text": text,
        "metadata": {"label": label, "n": i, "x": i / 2, "flag": i % 2 == 0, "tenant": OTHER[tenant], "owner": tenant},
    }


def corpus(tenant: str) -> list[dict]:
    docs = [doc(tenant, f"h{i}", f"{QUERY} number {i}", i, label) for i, label in enumerate(HOSTILE)]
    docs += [
        doc(tenant, "same-1", "exactly the same text in both tenants", 100, "same"),
        doc(tenant, "same-2", "another shared sentence", 101, "same"),
    ]
    if tenant == "A":
        docs.append(doc("A", "a-only", "only tenant A has this document", 200, "a-only"))
    else:
        docs += [
            doc("B", "b-only", "only tenant B has this one", 300, "b-only"),
            doc("B", "b-only-2", "and B has a second one", 301, "b-only"),
        ]
    return docs


@pytest.fixture(scope="module")
def clients(server):
    a, b = server.client("A"), server.client("B")
    a.create_collection(COLLECTION, metadata_fields=FIELDS)
    a.upsert(COLLECTION, corpus("A"))
    b.upsert(COLLECTION, corpus("B"))
    return {"A": a, "B": b}


def owners(reply) -> set[str]:
    return {h.metadata["owner"].string_value for h in reply.hits}


def search(client, filters, top_k=60):
    return client.search(COLLECTION, QUERY, top_k=top_k, dense_k=100, sparse_k=100, filters=filters)


# ---------------------------------------------------------------- searches


@pytest.mark.parametrize("caller", ["A", "B"])
@pytest.mark.parametrize("index", range(len(HOSTILE)), ids=[repr(h)[:24] for h in HOSTILE])
def test_no_filter_operator_with_a_hostile_value_crosses_the_tenant_scope(clients, caller, index):
    client, value = clients[caller], HOSTILE[index]
    other_value = HOSTILE[(index + 1) % len(HOSTILE)]
    for op in ("==", "!=", ">", ">=", "<", "<=", "in", "not in"):
        filters = [("label", op, [value, other_value] if "in" in op else value)]
        reply = search(client, filters)
        assert owners(reply) <= {caller}, (op, value)
        if op == "==":
            # the caller's own document with exactly this value is found, and only it
            assert [h.id for h in reply.hits] == [f"h{index}"]
        if op == "in":
            assert {h.id for h in reply.hits} == {f"h{index}", f"h{(index + 1) % len(HOSTILE)}"}
    # the same values through the caller field that is named "tenant"
    for op in ("==", "!="):
        assert owners(search(client, [("tenant", op, value)])) <= {caller}


@pytest.mark.parametrize("caller", ["A", "B"])
def test_a_filter_on_the_caller_field_named_tenant_never_selects_the_other_tenant(clients, caller):
    other = OTHER[caller]
    # every one of the caller's documents has metadata tenant == <other tenant>
    reply = search(clients[caller], [("tenant", "==", other)])
    assert owners(reply) == {caller} and len(reply.hits) == len(corpus(caller))
    assert search(clients[caller], [("tenant", "==", caller)]).hits == []
    assert search(clients[caller], [("tenant", "in", ["A", "B"])]).hits  # still only the caller's own
    assert owners(search(clients[caller], [("tenant", "in", ["A", "B"])])) == {caller}


@pytest.mark.parametrize("caller", ["A", "B"])
def test_numeric_and_bool_filters_at_their_extremes_stay_in_scope(clients, caller):
    for filters in (
        [("n", ">=", -(2**63))],
        [("n", "<=", 2**63 - 1)],
        [("n", "not in", [-1])],
        [("x", ">", -1e308)],
        [("x", "<", 1e308)],
        [("flag", "==", True)],
        [("flag", "!=", True)],
        [("n", ">=", 0), ("label", "!=", '") or (tenant != "')],
    ):
        reply = search(clients[caller], filters)
        assert reply.hits and owners(reply) == {caller}, filters


@pytest.mark.parametrize("caller", ["A", "B"])
@pytest.mark.parametrize(
    "query", ['") or (tenant == "A', "' OR 1=1 --", 'tenant != "" || true', "exactly the same text in both tenants"]
)
def test_hostile_query_text_only_finds_the_callers_documents(clients, caller, query):
    reply = clients[caller].search(COLLECTION, query, top_k=60, dense_k=100, sparse_k=100)
    assert reply.hits and owners(reply) == {caller}


def test_unfiltered_search_returns_every_own_document_and_none_of_the_others(clients):
    for caller in ("A", "B"):
        reply = search(clients[caller], [], top_k=100)
        assert owners(reply) == {caller}
        assert {h.id for h in reply.hits} == {d["id"] for d in corpus(caller)}


# ---------------------------------------------------------------- Get, Delete, Upsert


def test_get_of_the_other_tenants_ids_returns_nothing(clients):
    assert clients["B"].get(COLLECTION, ["a-only"]) == []
    assert clients["A"].get(COLLECTION, ["b-only", "b-only-2"]) == []
    # a shared id answers with the caller's own document
    (b_doc,) = clients["B"].get(COLLECTION, ["same-1"])
    assert b_doc.metadata["owner"].string_value == "B"


@pytest.mark.parametrize(
    "hostile_id",
    [
        'a-only" or tenant == "A',
        'a-only") or (pk != "',
        "A:a-only",
        "a-only' or '1'='1",
        "a-only\\",
        '"] or pk in ["A:a-only',
    ],
)
def test_hostile_ids_in_get_and_delete_reach_nothing_of_the_other_tenant(clients, hostile_id):
    a, b = clients["A"], clients["B"]
    assert b.get(COLLECTION, [hostile_id, "a-only"]) == []
    assert b.delete(COLLECTION, [hostile_id, "a-only"]) == 0
    assert [d.id for d in a.get(COLLECTION, ["a-only"])] == ["a-only"]


def test_delete_of_the_other_tenants_ids_deletes_nothing(clients):
    a, b = clients["A"], clients["B"]
    a.upsert(COLLECTION, [{"id": "mut-del", "text": "A's document to keep", "metadata": {"owner": "A"}}])
    try:
        assert b.delete(COLLECTION, ["mut-del"]) == 0
        (kept,) = a.get(COLLECTION, ["mut-del"])
        assert kept.text == "A's document to keep"
        # with the same id in both tenants, a delete removes the caller's copy only
        b.upsert(COLLECTION, [{"id": "mut-del", "text": "B's copy", "metadata": {"owner": "B"}}])
        assert b.delete(COLLECTION, ["mut-del"]) == 1
        assert b.get(COLLECTION, ["mut-del"]) == []
        assert [d.text for d in a.get(COLLECTION, ["mut-del"])] == ["A's document to keep"]
    finally:
        a.delete(COLLECTION, ["mut-del"])
        b.delete(COLLECTION, ["mut-del"])


def test_upsert_by_another_tenant_of_an_existing_id_does_not_change_the_original(clients):
    a, b = clients["A"], clients["B"]
    a.upsert(
        COLLECTION, [{"id": "mut-up", "text": "original text from A", "metadata": {"label": "orig", "owner": "A"}}]
    )
    try:
        b.upsert(
            COLLECTION,
            [{"id": "mut-up", "text": "overwrite attempt by B", "metadata": {"label": "forged", "owner": "B"}}],
        )
        (a_doc,) = a.get(COLLECTION, ["mut-up"])
        assert a_doc.text == "original text from A" and a_doc.metadata["label"].string_value == "orig"
        (b_doc,) = b.get(COLLECTION, ["mut-up"])
        assert b_doc.text == "overwrite attempt by B"
        assert search(a, [("label", "==", "forged")]).hits == []
        assert [h.id for h in search(a, [("label", "==", "orig")]).hits] == ["mut-up"]
        assert b.delete(COLLECTION, ["mut-up"]) == 1
    finally:
        a.delete(COLLECTION, ["mut-up"])
        b.delete(COLLECTION, ["mut-up"])
    assert a.get(COLLECTION, ["mut-up"]) == []


def test_describe_counts_only_the_callers_documents(clients):
    assert clients["A"].describe_collection(COLLECTION).tenant_document_count == len(corpus("A"))
    assert clients["B"].describe_collection(COLLECTION).tenant_document_count == len(corpus("B"))
    assert len(corpus("A")) != len(corpus("B"))


def test_a_tenant_with_no_documents_sees_an_empty_collection(server, clients):
    c = server.client("C")
    assert c.describe_collection(COLLECTION).tenant_document_count == 0
    assert search(c, []).hits == [] and c.get(COLLECTION, ["a-only", "b-only", "same-1"]) == []


# ---------------------------------------------------------------- forged tenants


@pytest.mark.parametrize(
    "value",
    [
        'A" or "1"=="1',
        'A"',
        "A'",
        '"A"',
        "A) or (1",
        " A",
        "A ",
        " ",
        "",
        "A B",
        "A,B",
        "A:B",
        "A\\",
        "*",
        ".A",
        "-A",
        "a" * 65,
    ],
)
def test_a_forged_tenant_header_is_unauthenticated(server, clients, value):
    stub = pb_grpc.HybridSearchStub(server.channel())
    request = pb.SearchRequest(collection=COLLECTION, query=QUERY, top_k=5)
    code, details = status_of(lambda: stub.Search(request, metadata=[("x-tenant", value)]))
    assert code == grpc.StatusCode.UNAUTHENTICATED and "x-tenant" in details
    code, _ = status_of(
        lambda: stub.Get(pb.GetRequest(collection=COLLECTION, ids=["a-only"]), metadata=[("x-tenant", value)])
    )
    assert code == grpc.StatusCode.UNAUTHENTICATED


def test_a_binary_tenant_header_does_not_name_a_tenant(server, clients):
    stub = pb_grpc.HybridSearchStub(server.channel())
    request = pb.GetRequest(collection=COLLECTION, ids=["a-only"])
    code, details = status_of(lambda: stub.Get(request, metadata=[("x-tenant-bin", b"A")]))
    assert code == grpc.StatusCode.UNAUTHENTICATED and "missing x-tenant" in details


@pytest.mark.parametrize("value", ["A\n", "A\t", "\tA", "А", "Ａ", "A\x7f", "A\x00"])
def test_tenant_values_grpc_cannot_carry_are_still_rejected_by_the_header_check(value):
    # gRPC refuses these header values on the client side; the server-side check must hold on its own.
    with pytest.raises(ServiceError) as info:
        tenant_from_metadata([("x-tenant", value)])
    assert info.value.code == grpc.StatusCode.UNAUTHENTICATED


def test_a_valid_tenant_header_names_exactly_that_tenant():
    assert tenant_from_metadata([("user-agent", "x"), ("x-tenant", "A-1.b_c")]) == "A-1.b_c"


# ---------------------------------------------------------------- hostile string round trip

ROUND_TRIP = {"rt-1": "a\"b\\c'd\n(e)", "rt-2": "a\"b\\\\c'd\n(e)"}
NEAR_MISSES = [
    "a\"b\\c'd\\n(e)",  # a literal backslash-n instead of the newline
    "a\"bc'd\n(e)",  # the backslash dropped
    "a\\\"b\\c'd\n(e)",  # the quote escaped by hand
    "a'b\\c\"d\n(e)",  # quotes swapped
    "a\"b\\c'd\n(e) ",  # trailing space
    "a\"b\\c'd\r\n(e)",
    "a\"b\\c'd\n(e",
    "A\"b\\c'd\n(e)",
    "a\"b\\\\\\c'd\n(e)",  # three backslashes
    'a"b',  # a prefix: the literal ends at the quote in a naive splice
]


@pytest.fixture(scope="module")
def round_trip(clients):
    clients["A"].upsert(
        COLLECTION,
        [
            {"id": k, "text": "round trip document", "metadata": {"label": v, "owner": "A"}}
            for k, v in ROUND_TRIP.items()
        ],
    )
    # B holds the same values: they must still never show up for A
    clients["B"].upsert(
        COLLECTION,
        [
            {"id": k, "text": "round trip document", "metadata": {"label": v, "owner": "B"}}
            for k, v in ROUND_TRIP.items()
        ],
    )
    yield clients["A"]
    clients["A"].delete(COLLECTION, list(ROUND_TRIP))
    clients["B"].delete(COLLECTION, list(ROUND_TRIP))


def test_a_hostile_string_is_stored_returned_and_found_by_eq_on_exactly_that_value(round_trip):
    for doc_id, value in ROUND_TRIP.items():
        (stored,) = round_trip.get(COLLECTION, [doc_id])
        assert stored.metadata["label"].string_value == value
        reply = search(round_trip, [("label", "==", value)])
        assert [(h.id, h.metadata["owner"].string_value) for h in reply.hits] == [(doc_id, "A")]
        assert [h.id for h in search(round_trip, [("label", "in", [value])]).hits] == [doc_id]
        assert doc_id not in {h.id for h in search(round_trip, [("label", "!=", value)], top_k=100).hits}


@pytest.mark.parametrize("near_miss", NEAR_MISSES, ids=[repr(v) for v in NEAR_MISSES])
def test_near_misses_of_a_hostile_string_find_nothing(round_trip, near_miss):
    if NATIVE_LITE and "\r" in near_miss:
        # Native Milvus Lite cannot express a carriage return in a filter: refused by name.
        code, details = status_of(lambda: search(round_trip, [("label", "==", near_miss)]))
        assert (
            code == grpc.StatusCode.INVALID_ARGUMENT
            and "filter.clauses[0].value" in details
            and "carriage return" in details
        )
        return
    assert search(round_trip, [("label", "==", near_miss)]).hits == []
    assert search(round_trip, [("label", "in", [near_miss])]).hits == []
