"""GetInfo (what the server offers, what an unset field means) and the Usage on every reply
that does work, through a real server with the tiny models."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from hybridsearch.engine.api_keys import ApiKeyStore
from hybridsearch.engine.config import BUILTIN_PROFILES
from hybridsearch.engine.rpc import QUEUE_WAIT_S, CallClock
from hybridsearch.v1 import hybridsearch_pb2 as pb
from tests.conftest import TINY_BM25_PROFILE, TINY_PROFILE, status_of

COLLECTION = "info_docs"
DOCS = [
    {"id": "en1", "text": "protein expression in cancer cells"},
    {"id": "en2", "text": "immune response to viral infection in mice"},
    {"id": "zh1", "text": "癌细胞中的蛋白质表达"},
    {"id": "mix1", "text": "BGE-M3 模型 encodes 中文 and English text"},
]


def info_of(client) -> pb.ServiceInfo:
    return client.stub.GetInfo(pb.GetInfoRequest(), metadata=client.metadata)


@pytest.fixture(scope="module")
def filled(server):
    client = server.client("acme")
    client.create_collection(COLLECTION)
    client.upsert(COLLECTION, DOCS)
    return server, client


def test_info_names_versions_profiles_backends_and_health_names(filled, tiny_m3_dir, tiny_reranker_dir):
    running, client = filled
    info = info_of(client)
    assert info.api == "hybridsearch.v1" and info.version
    assert {"grpcio", "pymilvus", "protobuf"} <= set(info.components)
    assert info.store == "milvus-lite"
    assert info.tenant == "acme" and info.role == pb.OPERATOR  # dev_header mode: every caller is an operator
    profiles = {p.name: p for p in info.profiles}
    # the configured profiles and the built-in ones, which stay unless a config removes them
    assert (
        set(profiles) == {TINY_PROFILE, TINY_BM25_PROFILE, *BUILTIN_PROFILES} and info.default_profile == TINY_PROFILE
    )
    assert not any(profiles[name].loaded for name in BUILTIN_PROFILES)  # listed, never loaded unless used
    used = profiles[TINY_PROFILE]
    # Loaded by the upsert: its dimension is known; the model is named, the server's directories are not.
    assert used.loaded and used.dimension > 0 and used.kind == "bge-m3" and used.max_length == 128
    assert used.model == tiny_m3_dir.name and str(tiny_m3_dir.parent) not in str(info)
    assert profiles[TINY_BM25_PROFILE].analyzer == "standard"
    (backend,) = info.rerank_backends
    assert (backend.name, backend.kind, backend.max_length, backend.serving) == ("tiny", "flag", 128, True)
    assert backend.model == tiny_reranker_dir.name and info.default_rerank_backend == "tiny"
    assert backend.price_per_million_tokens == pytest.approx(0.05)
    # How it treats long documents (the defaults here); a one-depth backend has no exits to stop at.
    assert (backend.long_documents, backend.max_chunks, backend.chunk_overlap, backend.chunk_aggregate) == (
        "truncate",
        8,
        32,
        "max",
    )
    assert list(backend.exit_layers) == [] and backend.cascade_keep == 0
    # Every health name GetInfo lists is one the health service answers for.
    assert "hybridsearch.v1.Rerank" in info.health_services and "" in info.health_services
    health = health_pb2_grpc.HealthStub(running.channel())
    for name in info.health_services:
        assert (
            health.Check(health_pb2.HealthCheckRequest(service=name)).status == health_pb2.HealthCheckResponse.SERVING
        )


def test_info_states_the_callers_limits_and_the_defaults_that_searches_use(filled):
    running, client = filled
    info = info_of(client)
    limits = running.settings.limits
    assert (info.limits.max_top_k, info.limits.max_depth, info.limits.default_depth) == (
        limits.max_top_k,
        limits.max_depth,
        limits.default_depth,
    )
    assert (
        info.limits.max_text_bytes == limits.max_text_bytes
        and info.limits.max_rerank_documents == running.settings.rerank.max_documents
    )
    d = info.defaults
    assert (d.fusion_method, d.rrf_k, d.dense_weight, d.sparse_weight, d.normalizer) == (
        pb.RRF,
        60.0,
        1.0,
        1.0,
        pb.MIN_MAX,
    )
    assert d.candidate_depth == limits.default_depth and d.rerank_mode == pb.OFF
    # The stated defaults are the applied ones: a search that leaves them unset and one that
    # spells them out answer the same hits with the same scores and candidate counts.
    for query in ("cancer protein", "蛋白质表达", "中文 text"):
        implicit = client.stub.Search(
            pb.SearchRequest(collection=COLLECTION, query=query, top_k=3), metadata=client.metadata
        )
        explicit = client.stub.Search(
            pb.SearchRequest(
                collection=COLLECTION,
                query=query,
                top_k=3,
                dense_k=d.candidate_depth,
                sparse_k=d.candidate_depth,
                rerank_mode=d.rerank_mode,
                fusion=pb.FusionSpec(
                    method=d.fusion_method,
                    rrf_k=d.rrf_k,
                    dense_weight=d.dense_weight,
                    sparse_weight=d.sparse_weight,
                    normalizer=d.normalizer,
                ),
            ),
            metadata=client.metadata,
        )
        assert [(h.id, h.score) for h in implicit.hits] == [(h.id, h.score) for h in explicit.hits]
        assert (implicit.dense_candidates, implicit.sparse_candidates) == (
            explicit.dense_candidates,
            explicit.sparse_candidates,
        )


def test_info_follows_per_tenant_limits_and_the_tenants_budget(start_server):
    running = start_server(
        limits={
            "max_top_k": 100,
            "max_depth": 200,
            "default_depth": 50,
            "per_tenant": {"small": {"max_top_k": 5, "max_depth": 20, "max_concurrent": 3}},
        }
    )
    small, other = running.client("small"), running.client("other")
    small.admin.SetBudget(
        pb.SetBudgetRequest(budget=pb.RerankBudget(tenant="small", max_depth=10, default_mode=pb.AUTO)),
        metadata=small.metadata,
    )
    mine, theirs = info_of(small), info_of(other)
    assert (mine.limits.max_top_k, mine.limits.max_depth, mine.limits.default_depth, mine.limits.max_concurrent) == (
        5,
        20,
        20,
        3,
    )
    assert (theirs.limits.max_top_k, theirs.limits.max_depth, theirs.limits.max_concurrent) == (100, 200, 16)
    assert mine.defaults.rerank_mode == pb.AUTO and mine.budget.max_depth == 10 and mine.budget.tenant == "small"
    assert theirs.defaults.rerank_mode == pb.OFF and theirs.budget.tenant == ""  # the default budget
    # The limit GetInfo states is the one enforced.
    code, details = status_of(
        lambda: small.stub.Search(pb.SearchRequest(collection="nope", query="x", top_k=6), metadata=small.metadata)
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "top_k" in details and "between 1 and 5" in details


def test_info_without_reranking_lists_no_backends(start_server):
    running = start_server(rerank={"enabled": False})
    info = info_of(running.client("acme"))
    assert not info.rerank_backends and info.default_rerank_backend == "" and not info.HasField("budget")
    assert info.defaults.rerank_mode == pb.OFF


def test_info_needs_a_valid_key_and_reports_the_keys_role(start_server, tmp_path):
    running = start_server(tmp_path / "data", auth_mode="api_key")
    _, secret = ApiKeyStore(running.settings.state_path).create("acme", "search", "reader")
    code, _ = status_of(lambda: info_of(running.client(tenant=None)))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    info = info_of(running.client(tenant=None, api_key=secret))
    assert info.tenant == "acme" and info.role == pb.SEARCH


def test_search_usage_counts_rerank_tokens_the_encoder_and_the_time(filled):
    _, client = filled
    request = pb.SearchRequest(
        collection=COLLECTION, query="癌细胞 protein usage", top_k=3, rerank_mode=pb.FIXED, rerank_depth=4
    )
    first = client.stub.Search(request, metadata=client.metadata)
    u = first.usage
    assert u.tokens == first.rerank.cost_units > 0 and first.rerank.depth_scored == 4
    assert u.encoded_texts == 1 and u.encode_ms == pytest.approx(first.timings.encode_ms)
    assert u.rerank_ms == pytest.approx(first.timings.rerank_ms) and u.rerank_ms > 0
    assert u.queue_ms >= 0 and u.total_ms >= first.timings.total_ms + u.queue_ms - 1e-6
    again = client.stub.Search(request, metadata=client.metadata)
    assert again.timings.query_cache_hit and again.usage.encoded_texts == 0
    off = client.stub.Search(
        pb.SearchRequest(collection=COLLECTION, query="protein", top_k=3, rerank_mode=pb.OFF), metadata=client.metadata
    )
    assert off.usage.tokens == 0 and off.usage.rerank_ms == 0


def test_write_read_and_rerank_replies_carry_usage(filled):
    _, client = filled
    docs = [{"id": f"u{i}", "text": f"用量 usage document {i}"} for i in range(3)]
    reply = client.upsert(COLLECTION, docs)
    assert reply.usage.encoded_texts == 3 and 0 < reply.usage.encode_ms <= reply.elapsed_ms
    assert reply.usage.total_ms >= reply.elapsed_ms
    acks = list(client.bulk_upsert_acked(COLLECTION, [docs[:2], docs[2:]]))
    assert [a.usage.encoded_texts for a in acks] == [2, 1] and all(a.usage.encode_ms > 0 for a in acks)
    assert acks[1].usage.queue_ms == 0  # the stream's wait is reported once, on its first batch
    got = client.stub.Get(pb.GetRequest(collection=COLLECTION, ids=["u0", "u1"]), metadata=client.metadata)
    assert len(got.documents) == 2 and got.usage.total_ms > 0 and got.usage.encoded_texts == 0
    ranked = client.rerank("癌细胞 protein", ["蛋白质 protein in cancer cells", "the weather in Beijing"])
    assert ranked.usage.tokens > 0 and ranked.usage.rerank_ms == pytest.approx(ranked.elapsed_ms)
    assert ranked.usage.total_ms >= ranked.usage.rerank_ms
    deleted = client.stub.Delete(
        pb.DeleteRequest(collection=COLLECTION, ids=["u0", "u1", "u2"]), metadata=client.metadata
    )
    assert deleted.deleted == 3 and deleted.usage.total_ms > 0


def test_call_clock_reports_the_admission_wait_it_was_given():
    token = QUEUE_WAIT_S.set(0.25)
    try:
        usage = CallClock().usage(tokens=7)
    finally:
        QUEUE_WAIT_S.reset(token)
    assert usage.queue_ms == pytest.approx(250.0) and usage.total_ms >= 250.0 and usage.tokens == 7
    assert CallClock().usage(queued=True).queue_ms == 0.0  # outside a scheduled call: no wait


def test_hsearch_info_prints_getinfo_as_json(filled, capsys):
    import json

    from hybridsearch.engine.cli import main

    running, _ = filled
    assert main(["info", "--target", running.target, "--tenant", "acme"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert (
        printed["tenant"] == "acme"
        and printed["defaults"]["rrfK"] == 60.0
        and "hybridsearch.v1.Rerank" in printed["healthServices"]
    )
    assert main(["info", "--target", running.target, "--tenant", "bad tenant!"]) == 1
    assert capsys.readouterr().err.startswith("error: UNAUTHENTICATED: x-tenant")
