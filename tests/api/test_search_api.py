"""The gRPC API end to end: tiny BGE-M3 through FlagEmbedding, real Milvus Lite, real server."""

from __future__ import annotations

import math

import grpc
import numpy as np
import pytest

from tests.conftest import TINY_BM25_PROFILE, status_of

COLLECTION = "papers"
DOCS = [
    {
        "id": "d1",
        "text": "protein expression in cancer cells",
        "metadata": {"year": 2010, "kind": "article", "score": 0.5, "open": True},
    },
    {
        "id": "d2",
        "text": "gene regulation of stem cells during development",
        "metadata": {"year": 2015, "kind": "review", "score": 1.5, "open": False},
    },
    {
        "id": "d3",
        "text": "immune response to viral infection in mice",
        "metadata": {"year": 2020, "kind": "article", "score": 2.5, "open": True},
    },
    {
        "id": "d4",
        "text": "brain imaging of memory and sleep",
        "metadata": {"year": 2012, "kind": "letter", "score": 3.5, "open": False},
    },
    {
        "id": "d5",
        "text": "cancer risk and diet in a large cohort study",
        "metadata": {"year": 2018, "kind": "article", "score": 4.5, "open": True, "note": "extra"},
    },
    {
        "id": "d6",
        "text": "bacteria resistance to antibiotic treatment",
        "metadata": {"year": 2021, "kind": "review", "score": 5.5, "open": False},
    },
]
FIELDS = {"year": "int", "kind": "string", "score": "double", "open": "bool"}


@pytest.fixture(scope="module")
def client(server):
    client = server.client("acme")
    client.create_collection(COLLECTION, metadata_fields=FIELDS)
    client.upsert(COLLECTION, DOCS)
    return client


def test_collection_is_described_with_profile_dimension_and_tenant_count(client):
    c = client.describe_collection(COLLECTION)
    assert c.profile == "tiny-m3" and c.dimension == 32 and c.dense_metric == "COSINE"
    assert {f.name for f in c.metadata_fields} == set(FIELDS)
    assert c.tenant_document_count == len(DOCS)
    assert COLLECTION in [x.name for x in client.list_collections()]


def test_search_returns_hits_with_per_route_scores_and_stage_timings(client):
    reply = client.search(COLLECTION, "cancer cells", top_k=4)
    assert 1 <= len(reply.hits) <= 4
    assert [h.fused_rank for h in reply.hits] == sorted(h.fused_rank for h in reply.hits)
    top = reply.hits[0]
    assert top.text and top.metadata["year"].int_value > 0
    # the exact-term documents are found by the sparse route
    sparse_ids = {h.id for h in reply.hits if h.HasField("sparse")}
    assert {"d1", "d5"} <= sparse_ids
    for h in reply.hits:
        assert h.HasField("dense") or h.HasField("sparse")
        if h.HasField("dense"):
            assert h.dense.rank >= 1 and math.isfinite(h.dense.raw_score)
        # RRF: the fused score is the sum of the routes' 1/(60 + rank)
        expected = sum(1 / (60 + r.rank) for r in (h.dense, h.sparse) if r.rank)
        assert h.fused_score == pytest.approx(expected)
        assert h.score == h.fused_score and not h.reranked
    t = reply.timings
    assert t.total_ms >= t.encode_ms >= 0 and t.dense_search_ms > 0 and t.sparse_search_ms > 0 and t.fetch_ms > 0
    assert reply.rerank.mode != 0 and not reply.rerank.degraded
    # Every hit comes with its whole stored text and metadata (fetched after fusion).
    by_id = {d["id"]: d for d in DOCS}
    for h in reply.hits:
        assert h.text == by_id[h.id]["text"] and set(h.metadata) == set(by_id[h.id]["metadata"])


def test_a_candidate_deleted_after_the_route_searches_gives_its_place_to_the_next(server, client):
    """The routes return ids only; a document deleted before its text is fetched is not answered."""
    from hybridsearch.engine.encoders.base import Scope
    from hybridsearch.engine.search_types import SearchQuery

    service = server.server.service
    spec = service.store.spec(COLLECTION)
    expr = service._tenant_expr(spec, "acme")
    query = SearchQuery(collection=COLLECTION, text="cancer cells", top_k=3, dense_k=6, sparse_k=6)
    dense = service.store.search_dense(
        spec, service.profile_for(spec).encode_query(Scope(COLLECTION, "acme"), "cancer cells").dense, 6, expr, False
    )
    fused = service._fuse(spec, query, dense, [])
    ghost = "acme:ghost"  # as if deleted between the route searches and the fetch
    fused = fused.__class__(
        ids=[ghost] + fused.ids,
        scores=np.concatenate([[9.0], fused.scores]),
        route_ranks={k: np.concatenate([[1], v]) for k, v in fused.route_ranks.items()},
        route_raw={k: np.concatenate([[1.0], v]) for k, v in fused.route_raw.items()},
        route_norm={k: np.concatenate([[1.0], v]) for k, v in fused.route_norm.items()},
    )
    kept, docs = service._fetch_docs(spec, fused, 3, expr)
    assert ghost not in kept.ids and kept.ids[:3] == [pk for pk in fused.ids if pk != ghost][:3]
    assert set(docs) == set(kept.ids[:3]) and all(d.text for d in docs.values())


def test_repeated_query_hits_the_query_cache(client):
    client.search(COLLECTION, "memory and sleep", top_k=2)
    assert client.search(COLLECTION, "memory and sleep", top_k=2).timings.query_cache_hit


@pytest.mark.parametrize("profile", ["tiny-m3", TINY_BM25_PROFILE])
def test_no_tenant_hits_a_query_cache_entry_another_tenant_made(server, profile):
    """Issue 15, finding 2: a hit would tell tenant A what tenant B searched."""
    a, b = server.client("tenant-a"), server.client("tenant-b")
    name = f"cache_tenants_{profile.replace('-', '_')}"
    for c in (a, b):
        if name not in {x.name for x in c.list_collections()}:
            c.create_collection(name, profile)
        c.upsert(name, [{"id": "x", "text": "what tenant b searched for"}])
    text = f"a secret question of tenant b ({profile})"
    assert not b.search(name, text, top_k=1).timings.query_cache_hit
    assert b.search(name, text, top_k=1).timings.query_cache_hit  # b's own entry
    assert not a.search(name, text, top_k=1).timings.query_cache_hit
    assert a.search(name, text, top_k=1).timings.query_cache_hit


@pytest.mark.parametrize(
    "fusion,normalizer",
    [
        ("rrf", "min_max"),
        ("weighted", "min_max"),
        ("weighted", "z_score"),
        ("weighted", "arctan"),
        ("weighted", "none"),
        ("dbsf", "min_max"),
    ],
)
def test_every_fusion_method_orders_hits_by_fused_score(client, fusion, normalizer):
    reply = client.search(COLLECTION, "cancer study", top_k=6, fusion=fusion, normalizer=normalizer, explain=True)
    scores = [h.fused_score for h in reply.hits]
    assert scores == sorted(scores, reverse=True) and len(reply.hits) >= 2
    assert all(h.explanation for h in reply.hits)


def test_weighted_fusion_with_zero_sparse_weight_follows_the_dense_route(client):
    reply = client.search(COLLECTION, "cancer study", top_k=6, fusion="weighted", normalizer="none", sparse_weight=0.0)
    dense_ranks = [h.dense.rank for h in reply.hits if h.HasField("dense")]
    assert dense_ranks == sorted(dense_ranks)


@pytest.mark.parametrize(
    "filters,expected",
    [
        ([("year", ">=", 2018)], {"d3", "d5", "d6"}),
        ([("kind", "==", "article")], {"d1", "d3", "d5"}),
        ([("kind", "in", ["review", "letter"])], {"d2", "d4", "d6"}),
        ([("kind", "not in", ["article"])], {"d2", "d4", "d6"}),
        ([("open", "==", True), ("score", "<", 3.0)], {"d1", "d3"}),
        ([("score", ">", 4)], {"d5", "d6"}),
        ([("year", "!=", 2010), ("year", "<=", 2015)], {"d2", "d4"}),
    ],
)
def test_structured_filters_restrict_both_routes(client, filters, expected):
    reply = client.search(COLLECTION, "cells cancer brain", top_k=6, filters=filters)
    assert {h.id for h in reply.hits} <= expected
    assert reply.dense_candidates == len(expected)


def test_undeclared_metadata_is_stored_and_returned(client):
    (doc,) = client.get(COLLECTION, ["d5"])
    assert doc.metadata["note"].string_value == "extra" and doc.metadata["year"].int_value == 2018


def test_upsert_replaces_a_document_and_delete_removes_it(client):
    client.upsert(COLLECTION, [{"id": "tmp", "text": "volcano eruption lava", "metadata": {"year": 1999}}])
    client.upsert(COLLECTION, [{"id": "tmp", "text": "ocean tide and moon", "metadata": {"year": 2000}}])
    (doc,) = client.get(COLLECTION, ["tmp"])
    assert doc.text == "ocean tide and moon" and doc.metadata["year"].int_value == 2000
    assert client.delete(COLLECTION, ["tmp", "never-existed"]) == 1
    assert client.get(COLLECTION, ["tmp"]) == []
    assert "tmp" not in {h.id for h in client.search(COLLECTION, "ocean tide moon", top_k=10).hits}


def test_bulk_upsert_streams_batches_and_counts_them(client):
    batches = [[{"id": f"bulk{b}-{i}", "text": f"water sample {b} {i}"} for i in range(5)] for b in range(3)]
    reply = client.bulk_upsert(COLLECTION, batches)
    assert reply.upserted == 15 and reply.batches == 3
    assert len(client.get(COLLECTION, [f"bulk2-{i}" for i in range(5)])) == 5
    assert client.delete(COLLECTION, [f"bulk{b}-{i}" for b in range(3) for i in range(5)]) == 15


def test_bulk_upsert_rejects_a_bad_batch_and_keeps_the_acknowledged_ones(client):
    batches = [[{"id": "ok-1", "text": "good batch"}], [{"id": "", "text": "bad"}]]
    code, details = status_of(lambda: client.bulk_upsert(COLLECTION, batches))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "batch 1" in details and "id" in details
    assert [d.id for d in client.get(COLLECTION, ["ok-1"])] == ["ok-1"]
    client.delete(COLLECTION, ["ok-1"])


def test_documents_survive_a_restart(start_server, tmp_path):
    first = start_server(tmp_path / "store")
    c = first.client("t1")
    c.create_collection("durable", metadata_fields={"year": "int"})
    c.upsert("durable", [{"id": "a", "text": "cancer cells", "metadata": {"year": 1}}])
    first.stop()
    second = start_server(tmp_path / "store")
    c2 = second.client("t1")
    assert [d.id for d in c2.get("durable", ["a"])] == ["a"]
    assert c2.search("durable", "cancer", top_k=1).hits[0].id == "a"


def test_dense_bm25_profile_scores_exact_terms_with_bm25(server):
    c = server.client("acme")
    c.create_collection("bm25docs", TINY_BM25_PROFILE)
    c.upsert(
        "bm25docs",
        [
            {"id": "x", "text": "zebrafish notochord cells"},
            {"id": "y", "text": "mouse brain cells"},
            {"id": "z", "text": "the of and"},  # stop words only: stored, no sparse terms
        ],
    )
    reply = c.search("bm25docs", "zebrafish", top_k=3)
    sparse = [h for h in reply.hits if h.HasField("sparse")]
    assert [h.id for h in sparse] == ["x"] and sparse[0].sparse.raw_score > 0
    # a rarer term weighs more than a common one (idf from this tenant's statistics)
    both = {
        h.id: h.sparse.raw_score for h in c.search("bm25docs", "cells zebrafish", top_k=3).hits if h.HasField("sparse")
    }
    assert both["x"] > both["y"] > 0
    assert c.describe_collection("bm25docs").tenant_document_count == 3


def test_drop_collection_then_it_is_not_found(server):
    c = server.client("acme")
    c.create_collection("to_drop")
    assert c.drop_collection("to_drop")
    code, details = status_of(lambda: c.search("to_drop", "x", top_k=1))
    assert code == grpc.StatusCode.NOT_FOUND and "to_drop" in details


def test_two_profiles_on_one_model_directory_do_not_share_query_cache_entries(server):
    # tiny-m3 and tiny-bm25 load the same directory; the same query text goes through both.
    c = server.client("acme")
    if "cache_m3" not in {x.name for x in c.list_collections()}:
        c.create_collection("cache_m3")
        c.create_collection("cache_bm25", TINY_BM25_PROFILE)
        for name in ("cache_m3", "cache_bm25"):
            c.upsert(name, [{"id": "a", "text": "protein cells"}, {"id": "b", "text": "brain sleep"}])
    for name in ("cache_m3", "cache_bm25", "cache_m3", "cache_bm25"):
        assert c.search(name, "shared query text", top_k=2).hits


def test_queries_encoded_together_get_the_vectors_each_would_get_alone(server, client):
    """Concurrent cache-missing queries go through the profile's QueryBatcher in shared
    forward passes; padding to the longest query must not change anyone's vectors."""
    from concurrent.futures import ThreadPoolExecutor

    from hybridsearch.engine.encoders.base import Scope
    from tests.conftest import TINY_PROFILE

    profile = server.server.service.profiles.get(TINY_PROFILE)
    texts = [f"batched query {i} " + "word " * (i % 5) for i in range(12)]
    before = profile._query_batcher.encoded
    with ThreadPoolExecutor(6) as pool:
        together = list(pool.map(lambda t: profile.encode_query(Scope(COLLECTION, "acme"), t), texts))
    assert profile._query_batcher.encoded - before == len(texts) and not any(v.cache_hit for v in together)
    for text, vectors in zip(texts, together, strict=True):
        dense, sparse = profile._encode([text])
        assert float(np.dot(dense[0], vectors.dense)) == pytest.approx(1.0, abs=1e-4)
        assert set(sparse[0]) == set(vectors.sparse)
        assert [round(sparse[0][k], 4) for k in sorted(sparse[0])] == [
            round(vectors.sparse[k], 4) for k in sorted(vectors.sparse)
        ]
