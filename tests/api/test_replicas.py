"""Two replicas behind one address: the same PostgreSQL state (state_uri) and the same Milvus.

Milvus is the installed milvus-lite as a server process (tests/milvus_process.py): the
embedded file holds for one process only. Each replica is a whole engine.server.Server with
its own caches and rate allowances; all they share is what a load balancer's replicas share.
"""

from __future__ import annotations

import time

import grpc
import pytest

from hybridsearch.engine.api_keys import ApiKeyStore
from hybridsearch.engine.config import ProfileConfig
from hybridsearch.engine.rate_ledger import CHUNKS_PER_MINUTE
from hybridsearch.v1 import hybridsearch_pb2 as pb
from tests.conftest import TINY_BM25_PROFILE, TINY_PROFILE, RunningServer, make_settings, postgres_database, status_of
from tests.milvus_process import MilvusProcess, free_port

COLLECTION = "shared_docs"
JIEBA_PROFILE = "tiny-jieba"
QUERY = "heart disease"
DOCS = [
    {"id": "1", "text": "heart disease and blood pressure in older patients"},
    {"id": "2", "text": "sleep deprivation impairs memory consolidation"},
    {"id": "3", "text": "a diet low in salt lowers blood pressure"},
    {"id": "4", "text": "heart failure treatment with beta blockers"},
    {"id": "5", "text": "exercise improves sleep quality and mood"},
    {"id": "6", "text": "coronary heart disease risk factors in smokers"},
]


@pytest.fixture(scope="module")
def replicas(tmp_path_factory, postgres, tiny_m3_dir, tiny_reranker_dir):
    """(replica 1, replica 2, an operator key) on one Milvus and one state database."""
    root = tmp_path_factory.mktemp("replicas")
    milvus = MilvusProcess(root / "milvus", free_port())
    milvus.start()
    started = []
    try:
        with postgres_database(postgres) as uri:
            for name in ("one", "two"):
                settings = make_settings(
                    root / name,
                    tiny_m3_dir,
                    tiny_reranker_dir,
                    auth_mode="api_key",
                    state_uri=uri,
                    milvus={"uri": f"http://127.0.0.1:{milvus.port}", "timeout_s": 10},
                )
                # Chinese words for the service's BM25 (the standard analyzer finds almost none).
                settings.profiles[JIEBA_PROFILE] = ProfileConfig(
                    kind="dense-bm25",
                    model=str(tiny_m3_dir),
                    max_length=128,
                    analyzer={"type": "jieba"},
                )
                started.append(RunningServer(settings))
            bootstrap = ApiKeyStore(uri)  # `hsearch keys create` on any host
            _, operator = bootstrap.create("ops", "operator", "bootstrap")
            bootstrap.close()
            yield started[0], started[1], operator
            for running in started:
                running.stop()
    finally:
        milvus.kill()


def clients(replicas, secret):
    one, two, _ = replicas
    return one.client(tenant=None, api_key=secret, timeout=60), two.client(tenant=None, api_key=secret, timeout=60)


def new_key(client, tenant: str, role=pb.WRITE) -> tuple[str, str]:
    reply = client.admin.CreateApiKey(pb.CreateApiKeyRequest(tenant=tenant, role=role), metadata=client.metadata)
    return reply.key.key_id, reply.secret


def seconds_until(condition, limit: float = 10.0) -> float:
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < limit, f"not within {limit} s"
        time.sleep(0.05)
    return time.monotonic() - start


@pytest.fixture(scope="module")
def corpus(replicas):
    """A dense-bm25 collection made and filled through replica one, for tenant acme."""
    op1, _ = clients(replicas, replicas[2])
    op1.create_collection(COLLECTION, profile=TINY_BM25_PROFILE)
    _, secret = new_key(op1, "acme")
    w1, _ = clients(replicas, secret)
    w1.upsert(COLLECTION, DOCS)
    return secret


def test_a_key_made_on_one_replica_works_on_the_other_and_a_revocation_holds_on_both_within_5_s(replicas):
    op1, op2 = clients(replicas, replicas[2])
    key_id, secret = new_key(op1, "acme")
    on1, on2 = clients(replicas, secret)
    on2.list_collections()  # made through one, accepted by two
    on1.list_collections()  # and cached by one
    assert op2.admin.RevokeApiKey(pb.RevokeApiKeyRequest(key_id=key_id), metadata=op2.metadata).revoked

    def refused_by_one() -> bool:
        try:
            on1.list_collections()
            return False
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.UNAUTHENTICATED, exc
            return True

    took = seconds_until(refused_by_one)
    print(f"\nrevocation on replica two refused by replica one after {took:.2f} s")
    assert took < 5.0
    code, _ = status_of(lambda: on2.list_collections())
    assert code == grpc.StatusCode.UNAUTHENTICATED


def test_a_budget_set_through_one_replica_is_in_force_on_the_other_within_5_s(replicas, corpus):
    op1, _ = clients(replicas, replicas[2])
    _, on2 = clients(replicas, corpus)
    assert on2.search(COLLECTION, QUERY, top_k=3).rerank.mode == pb.OFF  # the default budget, now cached
    op1.set_budget("acme", max_depth=2, default_mode="fixed")
    took = seconds_until(lambda: on2.search(COLLECTION, QUERY, top_k=3).rerank.mode == pb.FIXED)
    assert took < 5.0
    assert on2.search(COLLECTION, QUERY, top_k=3).rerank.depth_chosen == 2
    op1.delete_budget("acme")
    assert seconds_until(lambda: on2.search(COLLECTION, QUERY, top_k=3).rerank.mode == pb.OFF) < 5.0


def _scores(client) -> list[tuple[str, float, float]]:
    hits = client.search(COLLECTION, QUERY, top_k=6, rerank="off").hits
    return [(h.id, round(h.sparse.raw_score, 5), round(h.score, 6)) for h in hits]


def test_bm25_statistics_ingested_through_one_replica_score_the_same_on_the_other(replicas, corpus):
    on1, on2 = clients(replicas, corpus)
    before = _scores(on1)
    assert [s for _, s, _ in before if s > 0], "the sparse route found nothing"
    assert _scores(on2) == before  # replica two holds no statistics of its own
    # More documents, through replica two: "heart" gets commoner (lower idf), "disease"
    # rarer (higher idf), and replica one's query encoding follows.
    on2.upsert(COLLECTION, [{"id": f"h{i}", "text": f"heart study number {i}"} for i in range(6)])
    after = _scores(on1)
    assert after == _scores(on2)
    assert {i: s for i, s, _ in after}["1"] != {i: s for i, s, _ in before}["1"]


def test_a_rate_budget_spent_through_both_replicas_is_one_budget_not_two(replicas, corpus):
    op1, _ = clients(replicas, replicas[2])
    per_minute, depth = 1000.0, 5
    _, secret = new_key(op1, "ratelimited")
    op1.set_budget("ratelimited", cost_per_minute=per_minute, max_depth=10)
    on = clients(replicas, secret)
    on[0].upsert(COLLECTION, DOCS)
    start = time.monotonic()
    spent = [0, 0]
    full_cost = 0
    for i in range(40):
        decision = on[i % 2].search(COLLECTION, QUERY, top_k=6, rerank="fixed", rerank_depth=depth).rerank
        spent[i % 2] += decision.cost_units
        if decision.depth_chosen == depth:
            full_cost = max(full_cost, decision.cost_units)
    refill = (time.monotonic() - start) * per_minute / 60.0
    chunk = max(per_minute / CHUNKS_PER_MINUTE, full_cost)  # engine/rate_ledger.py: what a replica may hold
    print(f"\nrate budget {per_minute:g}/min through two replicas: spent {spent}, refill {refill:.0f}, chunk {chunk:g}")
    assert all(spent), spent  # both replicas reranked
    assert 0 < full_cost < per_minute / 4
    # Two buckets of their own would have let them spend 2 x per_minute.
    assert sum(spent) <= per_minute + refill + 2 * chunk < 2 * per_minute, (spent, refill, chunk)


def test_a_collection_dropped_and_made_again_through_one_replica_is_seen_by_the_other(replicas):
    """Each replica caches collection specs; a drop and re-create elsewhere (here with
    another profile) must reach it within the cache's 2 s, not after a restart."""
    from hybridsearch.engine.store import SPEC_CACHE_S

    op1, op2 = clients(replicas, replicas[2])
    op1.create_collection("swapped")
    assert op2.describe_collection("swapped").profile == op1.describe_collection("swapped").profile  # cached on two
    first = op1.describe_collection("swapped").profile
    op1.drop_collection("swapped")
    other = TINY_BM25_PROFILE if first != TINY_BM25_PROFILE else TINY_PROFILE
    op1.create_collection("swapped", profile=other)
    waited = seconds_until(lambda: op2.describe_collection("swapped").profile == other, limit=SPEC_CACHE_S + 3)
    assert waited <= SPEC_CACHE_S + 1
    op1.drop_collection("swapped")
    seconds_until(
        lambda: status_of(lambda: op2.describe_collection("swapped"))[0] == grpc.StatusCode.NOT_FOUND,
        limit=SPEC_CACHE_S + 3,
    )


def test_chinese_and_mixed_text_scores_the_same_on_both_replicas(replicas, corpus):
    """The shared BM25 statistics hold for Chinese and mixed Chinese/English text too: what
    replica one ingests moves the scores replica two gives, term for term."""
    op1, _ = clients(replicas, replicas[2])
    op1.create_collection("shared_zh", profile=JIEBA_PROFILE)
    on1, on2 = clients(replicas, corpus)
    on1.upsert(
        "shared_zh",
        [
            {"id": "zh1", "text": "心脏病患者的血压控制"},
            {"id": "zh2", "text": "睡眠不足会影响记忆巩固"},
            {"id": "zh3", "text": "老年人的血压与饮食"},
            {"id": "mix1", "text": "heart 心脏 disease 研究 in older patients"},
        ],
    )
    for query in ("心脏病 血压", "heart 心脏 研究"):
        scores = [
            [
                (h.id, round(h.sparse.raw_score, 5), round(h.score, 6))
                for h in c.search("shared_zh", query, top_k=4, rerank="off").hits
            ]
            for c in (on1, on2)
        ]
        assert scores[0] == scores[1], query
        assert any(s > 0 and i in ("zh1", "mix1") for i, s, _ in scores[0]), (query, scores[0])
