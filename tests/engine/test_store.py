"""MilvusStore on its own, on a real Milvus Lite file: no server, no service, no models.

Rows are built here the way SearchService._row builds them (tenant-prefixed primary keys,
declared metadata in the layout's place), with seeded random dense vectors and hand-made
sparse vectors, so every expected score is computed by hand.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import grpc
import numpy as np
import pytest

from hybridsearch.engine.collections import CollectionSpec, FieldType, column_of
from hybridsearch.engine.config import MilvusConfig
from hybridsearch.engine.errors import ServiceError
from hybridsearch.engine.filters import FilterClause, compile_filter
from hybridsearch.engine.store import EMPTY_SPARSE, MilvusStore, StoredDoc
from hybridsearch.engine.tenancy import primary_key

# milvus-lite 2.5.1 imports pkg_resources (see engine/store.py): noise, not a finding.
pytestmark = pytest.mark.filterwarnings("ignore:pkg_resources is deprecated:UserWarning")

DIM = 8
FIELDS = {"lang": FieldType.STRING, "year": FieldType.INT, "rating": FieldType.DOUBLE, "public": FieldType.BOOL}
RNG = np.random.default_rng(20240516)

# (doc id, text, metadata, sparse) of tenant acme; undeclared keys ride along in metadata.
ACME = [
    (
        "zh",
        "向量数据库支持混合检索与重排序。",
        {"lang": "zh", "year": 2024, "rating": 4.5, "public": True, "来源": "维基百科"},
        {1: 0.5, 2: 0.25},
    ),
    (
        "mixed",
        "Milvus 混合搜索 hybrid search 🚀✨ works!",
        {
            "lang": "mixed",
            "year": 2023,
            "rating": 3.25,
            "public": False,
            "tags": ["向量", "search"],
            "nested": {"a": 1, "emoji": "😀"},
        },
        {2: 1.0, 3: 0.5},
    ),
    (
        "emoji",
        "👩‍💻 emoji only 🎉 — «quotes» \"double\" and 'single'",
        {"lang": "en", "year": 2020, "rating": 1.5, "public": True},
        {1: 0.1, 4: 2.0},
    ),
    (
        "plain",
        "plain English text about retrieval",
        {"lang": "en", "year": 2019, "rating": 2.0, "public": False},
        {5: 1.0},
    ),
    ("undeclared-only", "只有未声明的元数据", {"note": "没有声明的字段", "n": 7, "flag": False}, {6: 0.75}),
    ("no-sparse", "the the the", {"lang": "en", "year": 2021}, {}),
]
# Tenant globex reuses acme's doc ids with other texts and a sparse term that would win
# every acme query if the tenant clause were ignored.
GLOBEX = [
    (
        doc_id,
        f"globex {doc_id}",
        {"lang": "en", "year": 2030, "rating": 9.0, "public": True},
        {1: 10.0, 2: 10.0, 4: 10.0},
    )
    for doc_id, *_ in ACME
]

DENSE = {("acme", d[0]): RNG.standard_normal(DIM).astype(np.float32) for d in ACME}
DENSE.update({("globex", d[0]): RNG.standard_normal(DIM).astype(np.float32) for d in GLOBEX})


def tenant_expr(spec: CollectionSpec, tenant: str) -> str:
    """What SearchService._tenant_expr gives."""
    return compile_filter(spec, tenant, (), max_clauses=0, max_values=1)


def make_row(
    spec: CollectionSpec, tenant: str, doc_id: str, text: str, metadata: dict[str, Any], dense, sparse: dict
) -> dict[str, Any]:
    """A row as SearchService._row writes it."""
    pk = primary_key(tenant, doc_id)
    row: dict[str, Any] = {
        "pk": pk,
        "tenant": tenant,
        "text": text,
        "metadata": {k: v for k, v in metadata.items() if spec.json_metadata or k not in spec.metadata_fields},
        "dense": np.asarray(dense, dtype=np.float32).tolist(),
        "sparse": dict(sparse),
    }
    for name, kind in spec.metadata_fields.items():
        value = metadata.get(name)
        if value is not None and kind is FieldType.DOUBLE:
            value = float(value)
        if spec.json_metadata:
            if value is not None:
                row["metadata"][name] = value
        else:
            row[column_of(name)] = value
    return row


def new_spec(store: MilvusStore, name: str, **kwargs) -> CollectionSpec:
    values = dict(
        name=name,
        profile="test-profile",
        dimension=DIM,
        metadata_fields=dict(FIELDS),
        dense_index=store.dense_index,
        layout=store.layout,
    )
    values.update(kwargs)
    return CollectionSpec(**values)


def error_of(call) -> ServiceError:
    with pytest.raises(ServiceError) as info:
        call()
    return info.value


def cosine(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def dot(a: dict, b: dict) -> float:
    return sum(w * b[t] for t, w in a.items() if t in b)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    store = MilvusStore(str(tmp_path_factory.mktemp("store") / "milvus.db"), MilvusConfig())
    yield store
    store.close()


@pytest.fixture(scope="module")
def docs(store) -> CollectionSpec:
    """A read-only collection holding ACME and GLOBEX (tests must not write to it)."""
    spec = new_spec(store, "docs")
    store.create_collection(spec)
    spec = store.spec("docs")
    rows = [make_row(spec, "acme", d, t, m, DENSE[("acme", d)], s) for d, t, m, s in ACME]
    rows += [make_row(spec, "globex", d, t, m, DENSE[("globex", d)], s) for d, t, m, s in GLOBEX]
    store.upsert(spec, rows)
    store.flush(spec)
    return spec


@pytest.fixture(scope="module")
def scratch(store) -> CollectionSpec:
    """A collection for tests that write; each test uses tenants of its own."""
    spec = new_spec(store, "scratch")
    store.create_collection(spec)
    return store.spec("scratch")


def write(store: MilvusStore, spec: CollectionSpec, tenant: str, docs: list[tuple[str, str, dict]]) -> None:
    rows = [make_row(spec, tenant, d, t, m, RNG.standard_normal(DIM), {1: 1.0}) for d, t, m in docs]
    store.upsert(spec, rows)
    store.flush(spec)


# ---------------------------------------------------------------- connection


def test_ping_is_true_on_a_live_store_and_false_on_a_dead_uri(store):
    assert store.ping() is True
    dead = MilvusStore("http://127.0.0.1:9", MilvusConfig(timeout_s=0.5))
    assert dead.ping() is False


def test_lite_picks_what_it_can_serve(store):
    # milvus-lite 2.5 (native) is pinned: JSON layout, FLAT index, its own literal dialect.
    assert store.is_lite
    if store.engine == "lite-native":
        assert (store.layout, store.dense_index, store.literal_dialect) == ("json", "FLAT", "native-lite")
    else:
        assert store.layout == "typed"


def test_opening_native_lite_logs_no_error_for_the_version_it_cannot_say(tmp_path, caplog):
    import logging

    fresh = MilvusStore(str(tmp_path / "quiet.db"), MilvusConfig())
    with caplog.at_level(logging.ERROR, logger="pymilvus"):
        engine = fresh.engine
        assert fresh.ping() is True
    fresh.close()
    if engine != "lite-native":
        pytest.skip("only native Milvus Lite leaves GetVersion unimplemented")
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    # Other pymilvus errors still reach the log.
    logging.getLogger("pymilvus.decorators").error("RPC error: [search], <_InactiveRpcError: StatusCode.UNAVAILABLE>")
    assert any("[search]" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------- collections


def test_create_then_spec_round_trips_every_field(store):
    spec = new_spec(
        store,
        "round_trip",
        dimension=16,
        dense_metric="IP",
        metadata_fields={"title": FieldType.STRING, "n": FieldType.INT, "x": FieldType.DOUBLE, "ok": FieldType.BOOL},
        sparse_analyzer="service-bm25;k1=1.2;b=0.75;lang=english",
    )
    assert not store.has_collection("round_trip")
    store.create_collection(spec)
    try:
        assert store.has_collection("round_trip")
        got = store.spec("round_trip")
        assert got == spec
        assert got.metadata_fields == {
            "title": FieldType.STRING,
            "n": FieldType.INT,
            "x": FieldType.DOUBLE,
            "ok": FieldType.BOOL,
        }
        assert (got.dimension, got.dense_metric, got.sparse_kind, got.layout, got.dense_index) == (
            16,
            "IP",
            "vector",
            store.layout,
            store.dense_index,
        )
        # Read from Milvus, not from this store's cache: a second store on the same file agrees.
        other = MilvusStore(store.uri, MilvusConfig())
        assert other.spec("round_trip") == spec
        assert "round_trip" in [s.name for s in store.list_specs()]
        assert [s for s in store.list_specs() if s.name == "round_trip"] == [spec]
    finally:
        store.drop_collection("round_trip")
    assert not store.has_collection("round_trip")
    assert "round_trip" not in [s.name for s in store.list_specs()]
    # Dropped means gone, cache included.
    err = error_of(lambda: store.spec("round_trip"))
    assert err.code == grpc.StatusCode.NOT_FOUND and "'round_trip' does not exist" in err.message


def test_missing_collection_is_not_found(store):
    err = error_of(lambda: store.spec("never_made"))
    assert err.code == grpc.StatusCode.NOT_FOUND
    assert err.message == "collection 'never_made' does not exist"
    err = error_of(lambda: store.drop_collection("never_made"))
    assert err.code == grpc.StatusCode.NOT_FOUND
    assert store.has_collection("never_made") is False


def test_a_collection_not_made_by_the_service_is_not_found_and_not_listed(store):
    store.connect().create_collection("foreign", dimension=4)
    try:
        assert store.has_collection("foreign")
        err = error_of(lambda: store.spec("foreign"))
        assert err.code == grpc.StatusCode.NOT_FOUND and "not created by this service" in err.message
        assert "foreign" not in [s.name for s in store.list_specs()]
        # drop_collection only drops the service's own collections.
        assert error_of(lambda: store.drop_collection("foreign")).code == grpc.StatusCode.NOT_FOUND
        assert store.has_collection("foreign")
    finally:
        store.connect().drop_collection("foreign")


def test_list_specs_is_sorted_by_name(store, docs, scratch):
    names = [s.name for s in store.list_specs()]
    assert names == sorted(names)
    assert {"docs", "scratch"} <= set(names)
    assert [s for s in store.list_specs() if s.name == "docs"] == [docs]


def test_native_lite_refusals_leave_no_half_made_collection(store):
    if store.engine != "lite-native":
        pytest.skip("native Milvus Lite 2.5 refusals")
    typed = new_spec(store, "typed_layout", layout="typed")
    err = error_of(lambda: store.create_collection(typed))
    assert err.code == grpc.StatusCode.FAILED_PRECONDITION and "milvus.schema_layout 'typed'" in err.message
    assert not store.has_collection("typed_layout")
    hnsw = new_spec(store, "hnsw_index", dense_index="HNSW")
    err = error_of(lambda: store.create_collection(hnsw))
    assert err.code == grpc.StatusCode.FAILED_PRECONDITION and "milvus.dense_index 'HNSW'" in err.message
    assert not store.has_collection("hnsw_index")


# ---------------------------------------------------------------- documents


def test_get_returns_exactly_what_was_stored(store, docs):
    pks = [primary_key("acme", d[0]) for d in ACME]
    got = store.get(docs, pks, tenant_expr(docs, "acme"))
    expected = {primary_key("acme", d): StoredDoc(pk=primary_key("acme", d), text=t, metadata=m) for d, t, m, _ in ACME}
    assert got == expected
    # Types survive, not only values (1 == 1.0 == True in Python).
    zh = got[primary_key("acme", "zh")].metadata
    assert [type(zh[k]) for k in ("lang", "year", "rating", "public", "来源")] == [str, int, float, bool, str]
    # A whole-number double stays a double.
    assert type(got[primary_key("acme", "plain")].metadata["rating"]) is float
    mixed = got[primary_key("acme", "mixed")]
    assert mixed.text == "Milvus 混合搜索 hybrid search 🚀✨ works!"
    assert mixed.metadata["nested"] == {"a": 1, "emoji": "😀"} and mixed.metadata["tags"] == ["向量", "search"]


def test_get_is_scoped_to_the_tenant_expression(store, docs):
    acme_pks = [primary_key("acme", d[0]) for d in ACME]
    assert store.get(docs, acme_pks, tenant_expr(docs, "globex")) == {}
    assert store.get(docs, acme_pks, tenant_expr(docs, "nobody")) == {}
    # The same doc id under the other tenant is another document.
    globex = store.get(docs, [primary_key("globex", "zh")], tenant_expr(docs, "globex"))
    assert globex == {"globex:zh": StoredDoc(pk="globex:zh", text="globex zh", metadata=GLOBEX[0][2])}
    # Only the named pks, unknown ones simply absent.
    got = store.get(
        docs,
        [primary_key("acme", "zh"), primary_key("acme", "missing"), primary_key("globex", "mixed")],
        tenant_expr(docs, "acme"),
    )
    assert list(got) == ["acme:zh"]
    assert store.get(docs, [], tenant_expr(docs, "acme")) == {}


def test_count_per_tenant(store, docs):
    assert store.count("docs", tenant_expr(docs, "acme")) == len(ACME)
    assert store.count("docs", tenant_expr(docs, "globex")) == len(GLOBEX)
    assert store.count("docs", tenant_expr(docs, "nobody")) == 0
    assert store.count("docs", "") == len(ACME) + len(GLOBEX)


def test_upsert_of_an_existing_pk_replaces_it(store, scratch):
    expr = tenant_expr(scratch, "t-replace")
    write(
        store,
        scratch,
        "t-replace",
        [("d1", "旧的文本 old", {"lang": "zh", "year": 1, "gone": "yes"}), ("d2", "untouched", {"year": 5})],
    )
    write(store, scratch, "t-replace", [("d1", "新的文本 new 🎉", {"lang": "en", "rating": 2.5, "added": [1, 2]})])
    got = store.get(scratch, ["t-replace:d1", "t-replace:d2"], expr)
    assert got == {
        "t-replace:d1": StoredDoc("t-replace:d1", "新的文本 new 🎉", {"lang": "en", "rating": 2.5, "added": [1, 2]}),
        "t-replace:d2": StoredDoc("t-replace:d2", "untouched", {"year": 5}),
    }
    assert store.count("scratch", expr) == 2


def test_delete_removes_only_the_named_pks_of_that_tenant(store, scratch):
    a, b = tenant_expr(scratch, "t-del-a"), tenant_expr(scratch, "t-del-b")
    for tenant in ("t-del-a", "t-del-b"):
        write(store, scratch, tenant, [(x, f"{tenant} {x}", {"year": i}) for i, x in enumerate(("x1", "x2", "x3"))])
    store.delete(scratch, ["t-del-a:x1", "t-del-a:x3", "t-del-a:never"], a)
    # b's pk under a's tenant expression: nothing happens.
    store.delete(scratch, ["t-del-b:x1"], a)
    store.delete(scratch, [], a)
    store.flush(scratch)
    assert list(store.get(scratch, ["t-del-a:x1", "t-del-a:x2", "t-del-a:x3"], a)) == ["t-del-a:x2"]
    assert sorted(store.get(scratch, ["t-del-b:x1", "t-del-b:x2", "t-del-b:x3"], b)) == [
        "t-del-b:x1",
        "t-del-b:x2",
        "t-del-b:x3",
    ]
    assert store.count("scratch", a) == 1
    assert store.count("scratch", b) == 3


def test_awkward_ids_round_trip_through_get_and_delete(store, scratch):
    """pk lists are spliced into expressions as escaped literals (engine.filters.string_literal)."""
    expr = tenant_expr(scratch, "t-ids")
    ids = ['say "hi"', "back\\slash", "中文文档", "emoji 🎉 id", "tab\there", "new\nline", "trailing\\"]
    write(store, scratch, "t-ids", [(i, f"text of {i}", {"year": n}) for n, i in enumerate(ids)])
    pks = [primary_key("t-ids", i) for i in ids]
    got = store.get(scratch, pks, expr)
    assert sorted(got) == sorted(pks)
    assert all(got[primary_key("t-ids", i)].text == f"text of {i}" for i in ids)
    store.delete(scratch, pks[::2], expr)
    store.flush(scratch)
    assert sorted(store.get(scratch, pks, expr)) == sorted(pks[1::2])
    assert store.count("scratch", expr) == len(pks[1::2])


def test_check_writable_ids_refuses_single_quotes_on_native_lite(store, scratch):
    ok = ["doc-1", "中文文档", "emoji🎉", 'say "hi"', "back\\slash", "a:b/c d"]
    assert store.check_writable_ids(ok) is None
    assert store.check_writable_ids([]) is None
    if store.engine != "lite-native":
        assert store.check_writable_ids(["it's"]) is None
        return
    err = error_of(lambda: store.check_writable_ids(["fine", "it's", "also'bad"]))
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert err.message.startswith('documents[1].id: "it\'s" contains a single quote')
    err = error_of(lambda: store.check_writable_ids(["l'arbre"], field="ids"))
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT and err.message.startswith("ids[0].id: ")
    # Why: the engine itself fails such an upsert, and writes nothing.
    expr = tenant_expr(scratch, "t-quote")
    row = make_row(scratch, "t-quote", "it's", "x", {}, np.ones(DIM), {1: 1.0})
    err = error_of(lambda: store.upsert(scratch, [row]))
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT and err.message.startswith(
        "documents: Milvus rejected the batch"
    )
    store.flush(scratch)
    assert store.count("scratch", expr) == 0


def test_an_empty_sparse_vector_is_stored_as_the_placeholder(store, docs, scratch):
    expr = tenant_expr(scratch, "t-empty")
    row = make_row(scratch, "t-empty", "stop-words", "the of and", {}, np.ones(DIM), {})
    store.upsert(scratch, [row])
    store.flush(scratch)
    # Milvus refuses empty sparse vectors: upsert fills in (in the caller's row) a placeholder
    # dimension that no query holds.
    assert row["sparse"] == EMPTY_SPARSE
    assert store.get(scratch, ["t-empty:stop-words"], expr) == {
        "t-empty:stop-words": StoredDoc("t-empty:stop-words", "the of and", {})
    }
    assert store.search_sparse(scratch, dict.fromkeys(range(10), 1.0), 10, expr) == []
    # Same for docs' no-sparse document, among others that do match.
    hits = store.search_sparse(docs, dict.fromkeys(range(10), 1.0), 50, tenant_expr(docs, "acme"))
    assert sorted(h.pk for h in hits) == sorted(primary_key("acme", d) for d, _, _, s in ACME if s)


# ---------------------------------------------------------------- dense search


def expected_dense(query, tenant: str, keep=lambda meta: True) -> list[tuple[str, float]]:
    rows = ACME if tenant == "acme" else GLOBEX
    scored = [(primary_key(tenant, d), cosine(query, DENSE[(tenant, d)])) for d, _, m, _ in rows if keep(m)]
    return sorted(scored, key=lambda x: -x[1])


def test_search_dense_ranks_by_cosine_nearest_first(store, docs):
    target = DENSE[("acme", "emoji")]
    query = target + 0.01 * np.random.default_rng(1).standard_normal(DIM).astype(np.float32)
    hits = store.search_dense(docs, query, 50, tenant_expr(docs, "acme"))
    expected = expected_dense(query, "acme")
    assert hits[0].pk == "acme:emoji" and hits[0].score > 0.99
    assert [h.pk for h in hits] == [pk for pk, _ in expected]
    assert [h.score for h in hits] == pytest.approx([s for _, s in expected], abs=1e-4)
    assert all(a.score >= b.score for a, b in pairwise(hits))
    # Full docs come with the hits.
    assert hits[0].doc == StoredDoc("acme:emoji", ACME[2][1], ACME[2][2])


def test_search_dense_respects_limit_and_tenant(store, docs):
    query = DENSE[("globex", "zh")]  # globex's vector: must not surface for acme
    hits = store.search_dense(docs, query, 3, tenant_expr(docs, "acme"))
    assert [h.pk for h in hits] == [pk for pk, _ in expected_dense(query, "acme")[:3]]
    assert all(h.pk.startswith("acme:") for h in hits)
    globex = store.search_dense(docs, query, 1, tenant_expr(docs, "globex"))
    assert [h.pk for h in globex] == ["globex:zh"] and globex[0].score == pytest.approx(1.0, abs=1e-4)
    assert store.search_dense(docs, query, 5, tenant_expr(docs, "nobody")) == []


@pytest.mark.parametrize(
    "clauses, keep",
    [
        ([FilterClause("year", "GTE", (2021,))], lambda m: m.get("year", -1) >= 2021),
        ([FilterClause("lang", "IN", ("zh", "mixed"))], lambda m: m.get("lang") in ("zh", "mixed")),
        (
            [FilterClause("lang", "EQ", ("zh",)), FilterClause("public", "EQ", (True,))],
            lambda m: m.get("lang") == "zh" and m.get("public") is True,
        ),
        # NE never matches a document without the field (undeclared-only has no rating).
        ([FilterClause("rating", "NE", (3.25,))], lambda m: "rating" in m and m["rating"] != 3.25),
        ([FilterClause("public", "EQ", (False,))], lambda m: m.get("public") is False),
    ],
    ids=["year-gte", "lang-in-chinese", "lang-and-bool", "rating-ne", "bool-false"],
)
def test_search_dense_applies_a_compiled_filter(store, docs, clauses, keep):
    expr = compile_filter(docs, "acme", clauses, max_clauses=4, max_values=4, dialect=store.literal_dialect)
    query = np.ones(DIM, dtype=np.float32)
    hits = store.search_dense(docs, query, 50, expr)
    expected = expected_dense(query, "acme", keep)
    assert expected, "the case must match something"
    assert [h.pk for h in hits] == [pk for pk, _ in expected]
    assert all(keep(h.doc.metadata) for h in hits)


def test_search_dense_without_docs_gives_ids_and_scores_only(store, docs):
    query = DENSE[("acme", "zh")]
    with_docs = store.search_dense(docs, query, 4, tenant_expr(docs, "acme"))
    bare = store.search_dense(docs, query, 4, tenant_expr(docs, "acme"), with_docs=False)
    assert [h.doc for h in bare] == [None] * 4
    assert [(h.pk, round(h.score, 5)) for h in bare] == [(h.pk, round(h.score, 5)) for h in with_docs]


# ---------------------------------------------------------------- sparse search


def test_search_sparse_ranks_by_the_dot_product(store, docs):
    query = {1: 1.0, 2: 2.0, 4: 0.5}
    hits = store.search_sparse(docs, query, 50, tenant_expr(docs, "acme"))
    # By hand: mixed 2*1.0 = 2.0; emoji 1*0.1 + 0.5*2.0 = 1.1; zh 1*0.5 + 2*0.25 = 1.0;
    # plain, undeclared-only and no-sparse share no term and are not hits.
    assert [h.pk for h in hits] == ["acme:mixed", "acme:emoji", "acme:zh"]
    sparse = {primary_key("acme", d): s for d, _, _, s in ACME}
    assert [h.score for h in hits] == pytest.approx([2.0, 1.1, 1.0], abs=1e-4)
    assert [h.score for h in hits] == pytest.approx([dot(query, sparse[h.pk]) for h in hits], abs=1e-4)
    assert hits[0].doc == StoredDoc("acme:mixed", ACME[1][1], ACME[1][2])


def test_search_sparse_respects_limit_tenant_filter_and_with_docs(store, docs):
    query = {1: 1.0, 2: 2.0, 4: 0.5}
    acme = tenant_expr(docs, "acme")
    assert [h.pk for h in store.search_sparse(docs, query, 2, acme)] == ["acme:mixed", "acme:emoji"]
    bare = store.search_sparse(docs, query, 2, acme, with_docs=False)
    assert [(h.pk, h.doc) for h in bare] == [("acme:mixed", None), ("acme:emoji", None)]
    assert [h.score for h in bare] == pytest.approx([2.0, 1.1], abs=1e-4)
    globex = store.search_sparse(docs, query, 50, tenant_expr(docs, "globex"))
    assert len(globex) == len(GLOBEX) and all(h.pk.startswith("globex:") for h in globex)
    assert all(h.score == pytest.approx(35.0, abs=1e-3) for h in globex)  # 10 + 20 + 5
    expr = compile_filter(
        docs,
        "acme",
        [FilterClause("public", "EQ", (True,))],
        max_clauses=1,
        max_values=1,
        dialect=store.literal_dialect,
    )
    assert [h.pk for h in store.search_sparse(docs, query, 50, expr)] == ["acme:emoji", "acme:zh"]


def test_search_sparse_with_an_empty_query_is_no_hits(store, docs):
    assert store.search_sparse(docs, {}, 10, tenant_expr(docs, "acme")) == []
    assert store.search_sparse(docs, {99: 1.0}, 10, tenant_expr(docs, "acme")) == []
