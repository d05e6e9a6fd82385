"""Bad input over the wire: the right status code, a message naming the field, and nothing written.

Raw stubs are used where the client class cannot express the bad input (unset or
out-of-range enums, NaN, a MetadataValue with no kind, missing or repeated x-tenant).
Limits come from conftest.make_settings: max_top_k 100, max_depth 200,
default_depth 50, max_batch_docs 100, max_query_chars 500, max_text_bytes 4000.
"""

from __future__ import annotations

import grpc
import pytest

from hybridsearch.v1 import hybridsearch_pb2 as pb
from hybridsearch.v1 import hybridsearch_pb2_grpc as pb_grpc
from tests.conftest import status_of

INVALID = grpc.StatusCode.INVALID_ARGUMENT
TENANT = "acme"
MD = [("x-tenant", TENANT)]
COLLECTION = "badin"
FIELDS = {"year": "int", "kind": "string", "score": "double", "open": "bool"}
SEED = [
    {
        "id": "keep1",
        "text": "protein expression in cancer cells",
        "metadata": {"year": 2010, "kind": "article", "score": 0.5, "open": True},
    },
    {
        "id": "keep2",
        "text": "immune response to viral infection",
        "metadata": {"year": 2020, "kind": "review", "score": 2.5, "open": False},
    },
    {
        "id": "keep3",
        "text": "brain imaging of memory and sleep",
        "metadata": {"year": 2015, "kind": "letter", "score": 1.0, "open": True},
    },
]
FRESH = pb.Document(
    id="fresh-0", text="a valid document that must not be written", metadata={"year": pb.MetadataValue(int_value=1)}
)


def S(**kwargs) -> pb.MetadataValue:
    return pb.MetadataValue(**kwargs)


@pytest.fixture(scope="module")
def client(server):
    c = server.client(TENANT)
    c.create_collection(COLLECTION, metadata_fields=FIELDS)
    c.upsert(COLLECTION, SEED)
    return c


@pytest.fixture(scope="module")
def stub(server, client) -> pb_grpc.HybridSearchStub:
    return pb_grpc.HybridSearchStub(server.channel())


def assert_rejected(call, code, *substrings):
    got, details = status_of(call)
    assert got == code, details
    for s in substrings:
        assert s in details, f"{s!r} not in {details!r}"
    return details


def assert_seed_intact(client):
    docs = client.get(COLLECTION, [d["id"] for d in SEED])
    assert [(d.id, d.text) for d in docs] == [(d["id"], d["text"]) for d in SEED]
    assert {k: v.int_value for k, v in docs[0].metadata.items() if k == "year"} == {"year": 2010}
    assert client.describe_collection(COLLECTION).tenant_document_count == len(SEED)


# ---------------------------------------------------------------- Search


def filt(*clauses: pb.FilterClause) -> pb.Filter:
    return pb.Filter(clauses=list(clauses))


EQ, IN, NOT_IN, GT = pb.FilterClause.EQ, pb.FilterClause.IN, pb.FilterClause.NOT_IN, pb.FilterClause.GT
NAN, INF = float("nan"), float("inf")

SEARCH_CASES = [
    # query
    pytest.param(dict(query=""), INVALID, ["query:", "empty"], id="empty-query"),
    pytest.param(dict(query=" \t\n "), INVALID, ["query:", "whitespace"], id="whitespace-query"),
    pytest.param(
        dict(query="x" * 501), INVALID, ["query:", "501 characters", "at most 500"], id="query-over-max-chars"
    ),
    # top_k and depths
    pytest.param(dict(top_k=0), INVALID, ["top_k:", "between 1 and 100", "got 0"], id="top_k-zero"),
    pytest.param(dict(top_k=-3), INVALID, ["top_k:", "got -3"], id="top_k-negative"),
    pytest.param(dict(top_k=101), INVALID, ["top_k:", "between 1 and 100", "got 101"], id="top_k-over-max"),
    pytest.param(dict(top_k=10, dense_k=5), INVALID, ["dense_k:", "below top_k 10"], id="dense_k-below-top_k"),
    pytest.param(dict(top_k=10, sparse_k=9), INVALID, ["sparse_k:", "below top_k 10"], id="sparse_k-below-top_k"),
    pytest.param(dict(dense_k=-1), INVALID, ["dense_k:"], id="dense_k-negative"),
    pytest.param(dict(dense_k=201), INVALID, ["dense_k:", "at most 200", "201"], id="dense_k-over-max-depth"),
    pytest.param(dict(sparse_k=201), INVALID, ["sparse_k:", "at most 200", "201"], id="sparse_k-over-max-depth"),
    # collection
    pytest.param(
        dict(collection="no_such_collection"),
        grpc.StatusCode.NOT_FOUND,
        ["'no_such_collection'", "does not exist"],
        id="unknown-collection",
    ),
    pytest.param(dict(collection=""), INVALID, ["collection:", "empty"], id="empty-collection"),
    pytest.param(
        dict(collection="bad-name!"),
        INVALID,
        ["collection:", "not a valid collection name"],
        id="invalid-collection-name",
    ),
    pytest.param(
        dict(collection="9lives"),
        INVALID,
        ["collection:", "not a valid collection name"],
        id="collection-name-starting-with-digit",
    ),
    pytest.param(
        dict(collection=COLLECTION + "\n"),
        INVALID,
        ["collection:", "not a valid collection name"],
        id="collection-name-trailing-newline",
    ),
    # fusion
    pytest.param(
        dict(fusion=pb.FusionSpec(method=99)),
        INVALID,
        ["fusion.method:", "99", "RRF, WEIGHTED, DBSF"],
        id="unknown-fusion-method",
    ),
    pytest.param(
        dict(fusion=pb.FusionSpec(method=pb.WEIGHTED, normalizer=42)),
        INVALID,
        ["fusion.normalizer:", "42", "MIN_MAX"],
        id="unknown-normalizer",
    ),
    pytest.param(
        dict(fusion=pb.FusionSpec(dense_weight=-0.5)),
        INVALID,
        ["fusion.dense_weight:", ">= 0"],
        id="negative-dense-weight",
    ),
    pytest.param(
        dict(fusion=pb.FusionSpec(sparse_weight=-1)), INVALID, ["fusion.sparse_weight:"], id="negative-sparse-weight"
    ),
    pytest.param(
        dict(fusion=pb.FusionSpec(dense_weight=NAN)), INVALID, ["fusion.dense_weight:", "finite"], id="nan-dense-weight"
    ),
    pytest.param(
        dict(fusion=pb.FusionSpec(sparse_weight=NAN)),
        INVALID,
        ["fusion.sparse_weight:", "finite"],
        id="nan-sparse-weight",
    ),
    pytest.param(
        dict(fusion=pb.FusionSpec(dense_weight=INF)), INVALID, ["fusion.dense_weight:", "finite"], id="inf-dense-weight"
    ),
    pytest.param(
        dict(fusion=pb.FusionSpec(sparse_weight=8.3e307)),
        INVALID,
        ["fusion.sparse_weight:", "at most 1e+06"],
        id="overflowing-sparse-weight",
    ),
    pytest.param(
        dict(fusion=pb.FusionSpec(sparse_weight=-INF)), INVALID, ["fusion.sparse_weight:"], id="minus-inf-sparse-weight"
    ),
    pytest.param(
        dict(fusion=pb.FusionSpec(dense_weight=0, sparse_weight=0)),
        INVALID,
        ["fusion:", "dense_weight and sparse_weight", "both be 0"],
        id="both-weights-zero",
    ),
    pytest.param(dict(fusion=pb.FusionSpec(rrf_k=-1)), INVALID, ["fusion.rrf_k:", ">= 0"], id="negative-rrf_k"),
    pytest.param(dict(fusion=pb.FusionSpec(rrf_k=NAN)), INVALID, ["fusion.rrf_k:", "finite"], id="nan-rrf_k"),
    pytest.param(dict(fusion=pb.FusionSpec(rrf_k=INF)), INVALID, ["fusion.rrf_k:", "finite"], id="inf-rrf_k"),
    # filters
    pytest.param(
        dict(filter=filt(pb.FilterClause(field="nope", op=EQ, value=S(int_value=1)))),
        INVALID,
        ["filter.clauses[0].field:", "'nope'", "kind, open, score, year"],
        id="filter-unknown-field",
    ),
    pytest.param(
        dict(filter=filt(pb.FilterClause(field="tenant", op=EQ, value=S(string_value=TENANT)))),
        INVALID,
        ["filter.clauses[0].field:", "'tenant'"],
        id="filter-on-the-tenant-column",
    ),
    pytest.param(
        dict(
            filter=filt(
                pb.FilterClause(field="year", op=GT, value=S(int_value=1)),
                pb.FilterClause(field="m_year", op=EQ, value=S(int_value=1)),
            )
        ),
        INVALID,
        ["filter.clauses[1].field:", "'m_year'"],
        id="filter-on-a-column-name",
    ),
    pytest.param(
        dict(filter=filt(pb.FilterClause(field="year", op=EQ, value=S(string_value="2010")))),
        INVALID,
        ["filter.clauses[0].value:", "int", "str"],
        id="filter-string-for-int",
    ),
    pytest.param(
        dict(filter=filt(pb.FilterClause(field="year", op=GT, value=S(double_value=2010.5)))),
        INVALID,
        ["filter.clauses[0].value:", "int", "double"],
        id="filter-double-for-int",
    ),
    pytest.param(
        dict(filter=filt(pb.FilterClause(field="year", op=EQ, value=S(bool_value=True)))),
        INVALID,
        ["filter.clauses[0].value:", "int", "bool"],
        id="filter-bool-for-int",
    ),
    pytest.param(
        dict(filter=filt(pb.FilterClause(field="open", op=EQ, value=S(int_value=1)))),
        INVALID,
        ["filter.clauses[0].value:", "bool", "int"],
        id="filter-int-for-bool",
    ),
    pytest.param(
        dict(filter=filt(pb.FilterClause(field="kind", op=EQ, value=S(int_value=1)))),
        INVALID,
        ["filter.clauses[0].value:", "string", "int"],
        id="filter-int-for-string",
    ),
    pytest.param(
        dict(filter=filt(pb.FilterClause(field="score", op=EQ, value=S(string_value="1.5")))),
        INVALID,
        ["filter.clauses[0].value:", "double", "str"],
        id="filter-string-for-double",
    ),
    pytest.param(
        dict(filter=filt(pb.FilterClause(field="kind", op=IN, values=[S(string_value="a"), S(int_value=2)]))),
        INVALID,
        ["filter.clauses[0].values[1]:", "string"],
        id="filter-in-with-one-wrong-typed-value",
    ),
    pytest.param(
        dict(filter=filt(pb.FilterClause(field="score", op=GT, value=S(double_value=NAN)))),
        INVALID,
        ["filter.clauses[0].value:", "finite"],
        id="filter-nan-value",
    ),
    pytest.param(
        dict(filter=filt(pb.FilterClause(field="score", op=GT, value=S(double_value=INF)))),
        INVALID,
        ["filter.clauses[0].value:", "finite"],
        id="filter-inf-value",
    ),
    pytest.param(
        dict(filter=filt(pb.FilterClause(field="open", op=GT, value=S(bool_value=True)))),
        INVALID,
        ["filter.clauses[0].op:", "EQ and NE"],
        id="filter-order-operator-on-bool",
    ),
    pytest.param(
        dict(filter=filt(pb.FilterClause(field="kind", op=IN))),
        INVALID,
        ["filter.clauses[0].values:", "at least one value"],
        id="filter-in-with-no-values",
    ),
    pytest.param(
        dict(filter=filt(pb.FilterClause(field="kind", op=NOT_IN))),
        INVALID,
        ["filter.clauses[0].values:", "at least one value"],
        id="filter-not-in-with-no-values",
    ),
    pytest.param(
        dict(
            filter=filt(pb.FilterClause(field="kind", op=EQ, value=S(string_value="a"), values=[S(string_value="b")]))
        ),
        INVALID,
        ["filter.clauses[0].values:", "takes `value`"],
        id="filter-eq-with-values",
    ),
    pytest.param(
        dict(filter=filt(pb.FilterClause(field="kind", op=EQ, values=[S(string_value="b")]))),
        INVALID,
        ["filter.clauses[0].value:", "needs `value`"],
        id="filter-eq-with-only-values",
    ),
    pytest.param(
        dict(filter=filt(pb.FilterClause(field="kind", op=IN, value=S(string_value="a")))),
        INVALID,
        ["filter.clauses[0].value:", "takes `values`"],
        id="filter-in-with-value",
    ),
    pytest.param(
        dict(filter=filt(pb.FilterClause(field="kind", value=S(string_value="a")))),
        INVALID,
        ["filter.clauses[0].op:", "must be set", "EQ"],
        id="filter-unset-operator",
    ),
    pytest.param(
        dict(filter=filt(pb.FilterClause(field="kind", op=42, value=S(string_value="a")))),
        INVALID,
        ["filter.clauses[0].op:", "NOT_IN"],
        id="filter-out-of-range-operator",
    ),
    pytest.param(
        dict(filter=filt(pb.FilterClause(field="kind", op=EQ, value=pb.MetadataValue()))),
        INVALID,
        ["filter.clauses[0].value:", "no kind set"],
        id="filter-value-with-no-kind",
    ),
    pytest.param(
        dict(filter=filt(pb.FilterClause(field="kind", op=IN, values=[S(string_value="a"), pb.MetadataValue()]))),
        INVALID,
        ["filter.clauses[0].values[1]:", "no kind set"],
        id="filter-values-entry-with-no-kind",
    ),
    pytest.param(
        dict(filter=filt(pb.FilterClause(field="kind", op=EQ, value=S(string_value="art\x01icle")))),
        INVALID,
        ["filter.clauses[0].value:", "control characters"],
        id="filter-control-character",
    ),
    pytest.param(
        dict(filter=filt(pb.FilterClause(field="kind", op=EQ, value=S(string_value="a\x00")))),
        INVALID,
        ["filter.clauses[0].value:", "control characters"],
        id="filter-nul-character",
    ),
    pytest.param(
        dict(filter=filt(pb.FilterClause(field="kind", op=EQ, value=S(string_value="x" * 1025)))),
        INVALID,
        ["filter.clauses[0].value:", "1025 characters", "at most 1024"],
        id="filter-string-over-max-chars",
    ),
    pytest.param(
        dict(
            filter=filt(pb.FilterClause(field="kind", op=IN, values=[S(string_value="a"), S(string_value="x" * 1025)]))
        ),
        INVALID,
        ["filter.clauses[0].values[1]:", "at most 1024"],
        id="filter-in-string-over-max-chars",
    ),
    pytest.param(
        dict(filter=filt(*[pb.FilterClause(field="year", op=GT, value=S(int_value=i)) for i in range(33)])),
        INVALID,
        ["filter.clauses:", "33 clauses", "at most 32"],
        id="filter-too-many-clauses",
    ),
    # rerank
    pytest.param(
        dict(rerank_mode=pb.FIXED), INVALID, ["rerank_depth:", "FIXED", ">= 1"], id="rerank-fixed-with-depth-0"
    ),
    pytest.param(
        dict(rerank_mode=pb.OFF, rerank_depth=5),
        INVALID,
        ["rerank_depth:", "only used with rerank_mode FIXED"],
        id="rerank-depth-with-mode-off",
    ),
    pytest.param(
        dict(rerank_mode=pb.AUTO, rerank_depth=5),
        INVALID,
        ["rerank_depth:", "only used with rerank_mode FIXED"],
        id="rerank-depth-with-mode-auto",
    ),
    pytest.param(
        dict(rerank_depth=5),
        INVALID,
        ["rerank_depth:", "only used with rerank_mode FIXED"],
        id="rerank-depth-with-mode-unset",
    ),
    pytest.param(
        dict(rerank_mode=pb.FIXED, rerank_depth=-1), INVALID, ["rerank_depth:", "got -1"], id="rerank-depth-negative"
    ),
    pytest.param(
        dict(rerank_mode=pb.FIXED, rerank_depth=201),
        INVALID,
        ["rerank_depth:", "got 201"],
        id="rerank-depth-over-max-depth",
    ),
    pytest.param(
        dict(rerank_mode=9), INVALID, ["rerank_mode:", "9", "OFF, FIXED, AUTO"], id="rerank-mode-out-of-range"
    ),
]


@pytest.mark.parametrize("changes,code,substrings", SEARCH_CASES)
def test_bad_search_is_rejected_with_a_status_naming_the_field(stub, changes, code, substrings):
    request = pb.SearchRequest(collection=COLLECTION, query="cancer cells", top_k=5)
    for name, value in changes.items():
        if isinstance(value, (pb.FusionSpec, pb.Filter)):
            getattr(request, name).CopyFrom(value)
        else:
            setattr(request, name, value)
    assert_rejected(lambda: stub.Search(request, metadata=MD, timeout=10), code, *substrings)


def test_the_first_bad_clause_is_the_one_named(stub):
    request = pb.SearchRequest(
        collection=COLLECTION,
        query="cancer",
        top_k=3,
        filter=filt(
            pb.FilterClause(field="year", op=GT, value=S(int_value=2000)),
            pb.FilterClause(field="kind", op=IN, values=[S(string_value="article")]),
            pb.FilterClause(field="open", op=EQ, value=S(string_value="yes")),
        ),
    )
    assert_rejected(lambda: stub.Search(request, metadata=MD), INVALID, "filter.clauses[2].value:", "bool")


# ---------------------------------------------------------------- Upsert


def docs_with(bad: pb.Document) -> list[pb.Document]:
    """A valid document first, then the bad one: the whole batch must be refused."""
    return [FRESH, bad]


LONG_UTF8 = "é" * 2001  # 2001 characters, 4002 bytes: the limit counts bytes
UPSERT_CASES = [
    pytest.param(docs_with(pb.Document(id="", text="no id")), ["documents[1].id:", "empty"], id="empty-id"),
    pytest.param(docs_with(pb.Document(id="   ", text="blank id")), ["documents[1].id:", "empty"], id="whitespace-id"),
    pytest.param(
        docs_with(pb.Document(id="a\x01b", text="control id")),
        ["documents[1].id:", "control characters"],
        id="control-character-in-id",
    ),
    pytest.param(
        docs_with(pb.Document(id="x" * 257, text="long id")),
        ["documents[1].id:", "257 characters", "at most 256"],
        id="id-over-max-chars",
    ),
    pytest.param(
        [FRESH, pb.Document(id="fresh-1", text="one"), pb.Document(id="fresh-1", text="two")],
        ["documents[2].id:", "duplicate id 'fresh-1'", "documents[1]"],
        id="duplicate-ids-in-one-batch",
    ),
    pytest.param(docs_with(pb.Document(id="fresh-1", text="")), ["documents[1].text:", "empty"], id="empty-text"),
    pytest.param(
        docs_with(pb.Document(id="fresh-1", text=" \n\t ")), ["documents[1].text:", "whitespace"], id="whitespace-text"
    ),
    pytest.param(
        docs_with(pb.Document(id="fresh-1", text=LONG_UTF8)),
        ["documents[1].text:", "4002 bytes", "at most 4000"],
        id="text-over-byte-limit",
    ),
    pytest.param(
        docs_with(pb.Document(id="fresh-1", text="nul\x00inside")), ["documents[1].text:", "NUL"], id="nul-in-text"
    ),
    pytest.param(
        docs_with(pb.Document(id="fresh-1", text="t", metadata={"year": S(string_value="2010")})),
        ["documents[1].metadata['year']:", "int", "str"],
        id="string-for-declared-int",
    ),
    pytest.param(
        docs_with(pb.Document(id="fresh-1", text="t", metadata={"year": S(double_value=2010.0)})),
        ["documents[1].metadata['year']:", "int", "float"],
        id="double-for-declared-int",
    ),
    pytest.param(
        docs_with(pb.Document(id="fresh-1", text="t", metadata={"year": S(bool_value=True)})),
        ["documents[1].metadata['year']:", "int", "bool"],
        id="bool-for-declared-int",
    ),
    pytest.param(
        docs_with(pb.Document(id="fresh-1", text="t", metadata={"open": S(int_value=1)})),
        ["documents[1].metadata['open']:", "bool", "int"],
        id="int-for-declared-bool",
    ),
    pytest.param(
        docs_with(pb.Document(id="fresh-1", text="t", metadata={"kind": S(int_value=1)})),
        ["documents[1].metadata['kind']:", "string", "int"],
        id="int-for-declared-string",
    ),
    pytest.param(
        docs_with(pb.Document(id="fresh-1", text="t", metadata={"score": S(string_value="1")})),
        ["documents[1].metadata['score']:", "double", "str"],
        id="string-for-declared-double",
    ),
    pytest.param(
        docs_with(pb.Document(id="fresh-1", text="t", metadata={"kind": S(string_value="k" * 4097)})),
        ["documents[1].metadata['kind']:", "4096"],
        id="declared-string-over-4096-chars",
    ),
    pytest.param(
        docs_with(pb.Document(id="fresh-1", text="t", metadata={"note": pb.MetadataValue()})),
        ["documents[1].metadata['note']:", "no kind set"],
        id="metadata-value-with-no-kind",
    ),
    pytest.param(
        docs_with(pb.Document(id="fresh-1", text="t", metadata={"score": S(double_value=NAN)})),
        ["documents[1].metadata['score']:", "finite"],
        id="nan-metadata",
    ),
    pytest.param(
        docs_with(pb.Document(id="fresh-1", text="t", metadata={"bad key": S(int_value=1)})),
        ["documents[1].metadata:", "'bad key'", "not a valid field name"],
        id="invalid-metadata-key",
    ),
    pytest.param(
        docs_with(pb.Document(id="fresh-1", text="t", metadata={"note\n": S(int_value=1)})),
        ["documents[1].metadata:", "not a valid field name"],
        id="metadata-key-with-trailing-newline",
    ),
    pytest.param(
        [pb.Document(id=f"fresh-{i}", text="bulk") for i in range(101)],
        ["documents:", "101 documents", "at most 100"],
        id="too-many-docs-in-a-batch",
    ),
    pytest.param([], ["documents:", "at least one document"], id="no-documents"),
]


@pytest.mark.parametrize("documents,substrings", UPSERT_CASES)
def test_a_batch_with_one_bad_document_is_rejected_and_writes_none_of_the_batch(client, stub, documents, substrings):
    request = pb.UpsertRequest(collection=COLLECTION, documents=documents)
    assert_rejected(lambda: stub.Upsert(request, metadata=MD, timeout=30), INVALID, *substrings)
    ids = sorted(
        {d.id for d in documents if d.id.strip() and "\x01" not in d.id and len(d.id) <= 256} | {"fresh-0", "fresh-1"}
    )
    for start in range(0, len(ids), 100):
        assert client.get(COLLECTION, ids[start : start + 100]) == []


def test_a_rejected_batch_does_not_replace_an_existing_document(client, stub):
    replacement = pb.Document(id="keep1", text="this text must never be stored")
    bad = pb.Document(id="fresh-1", text="t", metadata={"year": S(string_value="x")})
    assert_rejected(
        lambda: stub.Upsert(pb.UpsertRequest(collection=COLLECTION, documents=[replacement, bad]), metadata=MD),
        INVALID,
        "documents[1]",
    )
    assert_seed_intact(client)


def test_upsert_to_an_unknown_or_invalid_collection(stub):
    docs = [pb.Document(id="x", text="t")]
    assert_rejected(
        lambda: stub.Upsert(pb.UpsertRequest(collection="nowhere", documents=docs), metadata=MD),
        grpc.StatusCode.NOT_FOUND,
        "'nowhere'",
    )
    assert_rejected(
        lambda: stub.Upsert(pb.UpsertRequest(collection="no where", documents=docs), metadata=MD),
        INVALID,
        "collection:",
    )
    assert_rejected(lambda: stub.Upsert(pb.UpsertRequest(documents=docs), metadata=MD), INVALID, "collection:", "empty")


def test_bulk_upsert_refuses_a_later_batch_naming_it_and_writes_none_of_that_batch(client, stub):
    def stream():
        yield pb.UpsertRequest(collection=COLLECTION, documents=[pb.Document(id="bulk-0", text="first batch")])
        yield pb.UpsertRequest(
            documents=[pb.Document(id="bulk-1", text="second batch"), pb.Document(id="bulk-2", text="")]
        )

    assert_rejected(
        lambda: stub.BulkUpsert(stream(), metadata=MD), INVALID, "batch 1", "1 documents written", "documents[1].text"
    )
    assert [d.id for d in client.get(COLLECTION, ["bulk-0", "bulk-1", "bulk-2"])] == ["bulk-0"]
    assert client.delete(COLLECTION, ["bulk-0"]) == 1


def test_bulk_upsert_names_the_batch_of_a_metadata_type_error(client, stub):
    def stream():
        yield pb.UpsertRequest(collection=COLLECTION, documents=[pb.Document(id="bulkt-0", text="first batch")])
        yield pb.UpsertRequest(
            documents=[
                pb.Document(id="bulkt-1", text="ok"),
                pb.Document(id="bulkt-2", text="t", metadata={"year": S(string_value="x")}),
            ]
        )

    assert_rejected(
        lambda: stub.BulkUpsert(stream(), metadata=MD),
        INVALID,
        "batch 1",
        "1 documents written",
        "documents[1].metadata['year']",
        "int",
    )
    assert [d.id for d in client.get(COLLECTION, ["bulkt-0", "bulkt-1", "bulkt-2"])] == ["bulkt-0"]
    assert client.delete(COLLECTION, ["bulkt-0"]) == 1


def test_bulk_upsert_refuses_a_stream_that_switches_collection_or_names_none(stub):
    def switching():
        yield pb.UpsertRequest(collection=COLLECTION, documents=[pb.Document(id="sw-0", text="first")])
        yield pb.UpsertRequest(collection="other", documents=[pb.Document(id="sw-1", text="second")])

    assert_rejected(
        lambda: stub.BulkUpsert(switching(), metadata=MD), INVALID, "batch 1", "collection", "'other'", repr(COLLECTION)
    )
    unnamed = iter([pb.UpsertRequest(documents=[pb.Document(id="sw-2", text="x")])])
    assert_rejected(
        lambda: stub.BulkUpsert(unnamed, metadata=MD), INVALID, "batch 0", "collection", "must name the collection"
    )
    stub.Delete(pb.DeleteRequest(collection=COLLECTION, ids=["sw-0"]), metadata=MD)


# ---------------------------------------------------------------- Get and Delete


@pytest.mark.parametrize("method", ["Get", "Delete"])
def test_get_and_delete_need_valid_ids(client, stub, method):
    call = getattr(stub, method)
    request = pb.GetRequest if method == "Get" else pb.DeleteRequest
    assert_rejected(lambda: call(request(collection=COLLECTION), metadata=MD), INVALID, "ids:", "at least one id")
    assert_rejected(
        lambda: call(request(collection=COLLECTION, ids=["keep1", ""]), metadata=MD), INVALID, "ids[1]:", "empty"
    )
    assert_rejected(
        lambda: call(request(collection=COLLECTION, ids=["keep1", "a\nb"]), metadata=MD),
        INVALID,
        "ids[1]:",
        "control characters",
    )
    assert_rejected(
        lambda: call(request(collection=COLLECTION, ids=[f"k{i}" for i in range(101)]), metadata=MD),
        INVALID,
        "ids:",
        "101 ids",
        "at most 100",
    )
    assert_rejected(
        lambda: call(request(collection="nowhere", ids=["keep1"]), metadata=MD), grpc.StatusCode.NOT_FOUND, "'nowhere'"
    )
    assert_rejected(lambda: call(request(collection="bad name", ids=["keep1"]), metadata=MD), INVALID, "collection:")
    # a rejected Delete that named a real id deleted nothing
    assert_seed_intact(client)


# ---------------------------------------------------------------- tenant header


def test_missing_x_tenant_is_unauthenticated_on_every_call(stub):
    calls = {
        "Search": lambda: stub.Search(pb.SearchRequest(collection=COLLECTION, query="cancer", top_k=1)),
        "Upsert": lambda: stub.Upsert(pb.UpsertRequest(collection=COLLECTION, documents=[FRESH])),
        "BulkUpsert": lambda: stub.BulkUpsert(iter([pb.UpsertRequest(collection=COLLECTION, documents=[FRESH])])),
        "Get": lambda: stub.Get(pb.GetRequest(collection=COLLECTION, ids=["keep1"])),
        "Delete": lambda: stub.Delete(pb.DeleteRequest(collection=COLLECTION, ids=["keep1"])),
        "CreateCollection": lambda: stub.CreateCollection(pb.CreateCollectionRequest(name="anon")),
        "DescribeCollection": lambda: stub.DescribeCollection(pb.DescribeCollectionRequest(name=COLLECTION)),
        "ListCollections": lambda: stub.ListCollections(pb.ListCollectionsRequest()),
        "DropCollection": lambda: stub.DropCollection(pb.DropCollectionRequest(name=COLLECTION)),
    }
    for name, call in calls.items():
        details = assert_rejected(call, grpc.StatusCode.UNAUTHENTICATED, "x-tenant")
        assert "missing" in details, name


@pytest.mark.parametrize(
    "metadata,substrings",
    [
        pytest.param([("x-tenant", "")], ["x-tenant", "not a valid tenant name"], id="empty"),
        pytest.param([("x-tenant", "ac me")], ["x-tenant", "'ac me'", "not a valid tenant name"], id="space-inside"),
        pytest.param([("x-tenant", "-acme")], ["not a valid tenant name"], id="leading-dash"),
        pytest.param([("x-tenant", "a" * 65)], ["not a valid tenant name"], id="too-long"),
        pytest.param([("x-tenant", "acme:x")], ["not a valid tenant name"], id="colon"),
        pytest.param(
            [("x-tenant", TENANT), ("x-tenant", TENANT)], ["x-tenant", "2 times", "once"], id="given-twice-same"
        ),
        pytest.param(
            [("x-tenant", TENANT), ("x-tenant", "other")], ["x-tenant", "2 times"], id="given-twice-different"
        ),
    ],
)
def test_an_invalid_or_repeated_tenant_is_unauthenticated(stub, metadata, substrings):
    request = pb.SearchRequest(collection=COLLECTION, query="cancer", top_k=1)
    assert_rejected(lambda: stub.Search(request, metadata=metadata), grpc.StatusCode.UNAUTHENTICATED, *substrings)


# ---------------------------------------------------------------- collections


def create(stub, **kwargs):
    return lambda: stub.CreateCollection(pb.CreateCollectionRequest(**kwargs), metadata=MD, timeout=60)


CREATE_CASES = [
    pytest.param(dict(name=""), INVALID, ["name:", "empty"], id="empty-name"),
    pytest.param(
        dict(name="1st"), INVALID, ["name:", "'1st'", "not a valid collection name"], id="name-starting-with-digit"
    ),
    pytest.param(dict(name="has-dash"), INVALID, ["name:", "not a valid collection name"], id="name-with-dash"),
    pytest.param(
        dict(name="trailing_newline\n"),
        INVALID,
        ["name:", "not a valid collection name"],
        id="name-with-trailing-newline",
    ),
    pytest.param(dict(name="n" * 256), INVALID, ["name:", "not a valid collection name"], id="name-over-255-chars"),
    pytest.param(
        dict(name="c_metric", dense_metric="L2"), INVALID, ["dense_metric:", "'L2'", "COSINE, IP"], id="bad-metric"
    ),
    pytest.param(
        dict(name="c_dim", dimension=64), INVALID, ["dimension:", "64", "'tiny-m3'", "32"], id="dimension-mismatch"
    ),
    pytest.param(dict(name="c_negdim", dimension=-1), INVALID, ["dimension:", ">= 0"], id="negative-dimension"),
    pytest.param(
        dict(name="c_prof", profile="no-such-profile"),
        INVALID,
        ["profile:", "'no-such-profile'", "tiny-m3"],
        id="unknown-profile",
    ),
    pytest.param(
        dict(
            name="c_dup",
            metadata_fields=[
                pb.MetadataField(name="year", type=pb.FIELD_TYPE_INT),
                pb.MetadataField(name="year", type=pb.FIELD_TYPE_STRING),
            ],
        ),
        INVALID,
        ["metadata_fields[1].name:", "'year'", "twice"],
        id="duplicate-field",
    ),
    pytest.param(
        dict(name="c_fname", metadata_fields=[pb.MetadataField(name="a-b", type=pb.FIELD_TYPE_INT)]),
        INVALID,
        ["metadata_fields[0].name:", "'a-b'"],
        id="invalid-field-name",
    ),
    pytest.param(
        dict(name="c_fnl", metadata_fields=[pb.MetadataField(name="f\n", type=pb.FIELD_TYPE_INT)]),
        INVALID,
        ["metadata_fields[0].name:"],
        id="field-name-with-trailing-newline",
    ),
    pytest.param(
        dict(name="c_ftype", metadata_fields=[pb.MetadataField(name="f")]),
        INVALID,
        ["metadata_fields[0].type:", "FIELD_TYPE_STRING"],
        id="unset-field-type",
    ),
    pytest.param(
        dict(name="c_ftype2", metadata_fields=[pb.MetadataField(name="f", type=99)]),
        INVALID,
        ["metadata_fields[0].type:", "99"],
        id="out-of-range-field-type",
    ),
    pytest.param(
        dict(name=COLLECTION), grpc.StatusCode.ALREADY_EXISTS, [repr(COLLECTION), "already exists"], id="existing-name"
    ),
]


@pytest.mark.parametrize("kwargs,code,substrings", CREATE_CASES)
def test_bad_create_collection_is_rejected_naming_the_field(client, stub, kwargs, code, substrings):
    assert_rejected(create(stub, **kwargs), code, *substrings)


def test_describe_and_drop_check_the_collection_name(stub):
    for call, request in (
        (stub.DescribeCollection, pb.DescribeCollectionRequest),
        (stub.DropCollection, pb.DropCollectionRequest),
    ):
        assert_rejected(
            lambda call=call, request=request: call(request(name="bad name"), metadata=MD),
            INVALID,
            "name:",
            "not a valid collection name",
        )
        assert_rejected(
            lambda call=call, request=request: call(request(name=""), metadata=MD), INVALID, "name:", "empty"
        )
        assert_rejected(
            lambda call=call, request=request: call(request(name="nowhere"), metadata=MD),
            grpc.StatusCode.NOT_FOUND,
            "'nowhere'",
        )


# ---------------------------------------------------------------- afterwards


def test_after_all_the_bad_input_the_server_still_answers_and_lost_nothing(client, stub):
    # no rejected CreateCollection left a collection behind
    assert {c.name for c in client.list_collections()} == {COLLECTION}
    assert_seed_intact(client)
    reply = client.search(COLLECTION, "cancer cells", top_k=3, filters=[("year", ">=", 2010)])
    assert 1 <= len(reply.hits) <= 3 and {h.id for h in reply.hits} <= {d["id"] for d in SEED}
    assert reply.hits[0].fused_rank == 1


# ---------------------------------------------------------------- the wire


def _with_invalid_utf8(message) -> bytes:
    """``message`` serialised with its marker text replaced by bytes that are not UTF-8."""
    raw = message.SerializeToString()
    assert raw.count(b"MARKER") == 1
    return raw.replace(b"MARKER", b"\xff\xfe\xfd\xfc\xfb\xfa")


def test_invalid_utf8_or_garbage_bytes_answer_invalid_argument_not_internal(server, client, stub):
    """Issue 15, finding 5: grpcio answered INTERNAL ("Exception deserializing request!")."""
    channel = server.channel()
    upsert = channel.unary_unary(
        "/hybridsearch.v1.HybridSearch/Upsert",
        request_serializer=None,
        response_deserializer=pb.UpsertResponse.FromString,
    )
    bad_doc = pb.UpsertRequest(collection=COLLECTION, documents=[pb.Document(id="utf8-bad", text="MARKER")])
    assert_rejected(
        lambda: upsert(_with_invalid_utf8(bad_doc), metadata=MD), INVALID, "not a valid Upsert message", "UTF-8"
    )
    search = channel.unary_unary(
        "/hybridsearch.v1.HybridSearch/Search",
        request_serializer=None,
        response_deserializer=pb.SearchResponse.FromString,
    )
    assert_rejected(
        lambda: search(
            _with_invalid_utf8(pb.SearchRequest(collection=COLLECTION, query="MARKER", top_k=3)), metadata=MD
        ),
        INVALID,
        "not a valid Search message",
    )
    assert_rejected(lambda: search(b"\x0a\xff\xff\xff\xff\x0f", metadata=MD), INVALID, "not a valid Search message")
    # A stream: the batch before the malformed one is applied, the malformed one is not.
    bulk = channel.stream_unary(
        "/hybridsearch.v1.HybridSearch/BulkUpsert",
        request_serializer=None,
        response_deserializer=pb.UpsertResponse.FromString,
    )
    first = pb.UpsertRequest(
        collection=COLLECTION, documents=[pb.Document(id="utf8-ok", text="a fine batch")]
    ).SerializeToString()
    second = _with_invalid_utf8(pb.UpsertRequest(documents=[pb.Document(id="utf8-bad2", text="MARKER")]))
    assert_rejected(
        lambda: bulk(iter([first, second]), metadata=MD),
        INVALID,
        "message 1 of the stream",
        "the 1 before it were handled",
    )
    assert [d.id for d in client.get(COLLECTION, ["utf8-bad", "utf8-ok", "utf8-bad2"])] == ["utf8-ok"]
    assert client.delete(COLLECTION, ["utf8-ok"]) == 1
    assert stub.Search(pb.SearchRequest(collection=COLLECTION, query="still serving", top_k=1), metadata=MD) is not None


def test_an_id_with_a_single_quote_is_refused_by_name_on_native_lite_and_written_elsewhere(client, stub):
    """Native Milvus Lite 2.5 builds SQL from primary keys on upsert and delete; one with ' made
    it answer "internal error" (the long fuzz run, issue 15). Refused naming the document; on
    any other engine such an id is an ordinary id."""
    from tests.milvus_process import NATIVE_LITE

    docs = [pb.Document(id="plain-quote-neighbour", text="first"), pb.Document(id="O'Brien-2020", text="second")]
    request = pb.UpsertRequest(collection=COLLECTION, documents=docs)
    if NATIVE_LITE:
        assert_rejected(
            lambda: stub.Upsert(request, metadata=MD, timeout=30),
            INVALID,
            "documents[1].id",
            "single quote",
            "milvus.uri",
        )
        assert client.get(COLLECTION, ["plain-quote-neighbour", "O'Brien-2020"]) == []
        assert client.delete(COLLECTION, ["O'Brien-2020"]) == 0  # cannot exist: nothing to break on
    else:
        stub.Upsert(request, metadata=MD, timeout=30)
        assert len(client.get(COLLECTION, ["O'Brien-2020"])) == 1
        assert client.delete(COLLECTION, ["O'Brien-2020", "plain-quote-neighbour"]) == 2
    assert_seed_intact(client)
