"""Chinese and mixed Chinese/English search end to end: real server, Milvus Lite, each
sparse kind and analyzer, and the refusal of a collection built with another analyzer."""

from __future__ import annotations

import json

import grpc
import pytest

from tests.conftest import status_of

DOCS = [
    {"id": "z1", "text": "卡罗莱纳黑豹队的防守在超级碗中只丢了10分。"},
    {"id": "z2", "text": "iPhone 15 的电池续航比上一代更长。"},
    {"id": "z3", "text": "北京是中华人民共和国的首都。"},
    {"id": "z4", "text": "The Panthers' defense gave up only ten points in the Super Bowl."},
    {"id": "z5", "text": "东京タワー是日本的观光名胜。"},
    {"id": "z6", "text": "한국어 형태소 분석 도구"},
]
# (query, the document it must find first on the sparse route alone)
QUERIES = [
    ("黑豹队的防守丢了多少分？", "z1"),
    ("iphone 电池", "z2"),
    ("中国的首都", "z3"),
    ("panthers defense", "z4"),
    ("東京タワー", "z5"),
    ("형태소 분석", "z6"),
]


def profile(tiny_m3_dir, sparse="service-bm25", **analyzer):
    from hybridsearch.engine.config import ProfileConfig

    return ProfileConfig(kind="dense-bm25", model=str(tiny_m3_dir), max_length=128, analyzer=analyzer, sparse=sparse)


@pytest.fixture(scope="module")
def chinese_server(tmp_path_factory, tiny_m3_dir):
    from tests.conftest import RunningServer, make_settings

    profiles = {
        "tiny-cjk": profile(tiny_m3_dir, type="cjk"),
        "tiny-jieba": profile(tiny_m3_dir, type="jieba"),
        "tiny-standard": profile(tiny_m3_dir, type="standard"),
        "tiny-milvus-jieba": profile(tiny_m3_dir, "milvus-bm25", type="jieba"),
    }
    running = RunningServer(
        make_settings(tmp_path_factory.mktemp("zh"), tiny_m3_dir, None, profiles=profiles, default_profile="tiny-cjk")
    )
    yield running
    running.stop()


@pytest.mark.parametrize("profile_name", ["tiny-cjk", "tiny-jieba", "tiny-milvus-jieba"])
def test_chinese_and_mixed_queries_find_their_document_on_the_sparse_route(chinese_server, profile_name):
    client = chinese_server.client("acme")
    name = profile_name.replace("-", "_")
    c = client.create_collection(name, profile_name)
    if profile_name == "tiny-milvus-jieba":
        assert c.sparse_kind == "milvus-bm25" and c.sparse_analyzer.startswith('milvus-bm25;k1=1.2;b=0.75;{"filter"')
    else:
        assert c.sparse_kind == "vector" and c.sparse_analyzer.startswith(
            "service-bm25;k1=1.2;b=0.75;" + profile_name.split("-")[1]
        )
    client.upsert(name, DOCS)
    for query, expected in QUERIES:
        reply = client.search(
            name, query, top_k=3, fusion="weighted", normalizer="none", dense_weight=0.0, sparse_weight=1.0
        )
        assert reply.hits and reply.hits[0].id == expected, (profile_name, query, [h.id for h in reply.hits])
        assert (
            reply.hits[0].HasField("sparse") and reply.hits[0].sparse.rank == 1 and reply.hits[0].sparse.raw_score > 0
        )
        fused = client.search(name, query, top_k=3)  # RRF with the dense route
        assert expected in [h.id for h in fused.hits]


def test_the_standard_analyzer_finds_almost_nothing_in_chinese_which_is_the_bug(chinese_server):
    client = chinese_server.client("acme")
    client.create_collection("zh_standard", "tiny-standard")
    client.upsert("zh_standard", DOCS)
    reply = client.search(
        "zh_standard",
        "黑豹队的防守丢了多少分？",
        top_k=3,
        fusion="weighted",
        normalizer="none",
        dense_weight=0.0,
        sparse_weight=1.0,
    )
    assert reply.sparse_candidates == 0


def test_a_query_with_no_terms_answers_from_the_dense_route_alone(chinese_server):
    client = chinese_server.client("acme")
    client.create_collection("zh_punct", "tiny-cjk")
    client.upsert("zh_punct", DOCS + [{"id": "p1", "text": "？！……🎉"}])
    reply = client.search("zh_punct", "？！。", top_k=3)
    assert reply.sparse_candidates == 0 and reply.dense_candidates > 0
    assert all(not h.HasField("sparse") for h in reply.hits)


def test_one_tenants_chinese_documents_do_not_move_another_tenants_bm25_scores(chinese_server):
    a, b = chinese_server.client("tenant_a"), chinese_server.client("tenant_b")
    a.create_collection("zh_tenants", "tiny-jieba")
    b.upsert("zh_tenants", [{"id": "b1", "text": "黑豹队的防守"}, {"id": "b2", "text": "北京的天气"}])

    def score() -> float:
        hits = b.search("zh_tenants", "黑豹队", top_k=5).hits
        assert [h.id for h in hits if h.HasField("sparse")] == ["b1"]
        return hits[0].sparse.raw_score

    before = score()
    a.upsert("zh_tenants", DOCS + [{"id": f"a{i}", "text": "黑豹队" * (i + 1)} for i in range(5)])
    assert score() == pytest.approx(before, rel=1e-6)


def test_a_collection_searched_with_another_analyzer_is_refused(tmp_path, tiny_m3_dir):
    from tests.conftest import RunningServer, make_settings

    data = tmp_path / "data"
    first = RunningServer(
        make_settings(data, tiny_m3_dir, None, profiles={"zh": profile(tiny_m3_dir, type="cjk")}, default_profile="zh")
    )
    try:
        client = first.client("acme")
        client.create_collection("docs", "zh")
        client.upsert("docs", DOCS[:3])
    finally:
        first.stop()
    # The operator switches the profile to jieba: the stored bigram weights no longer match.
    second = RunningServer(
        make_settings(
            data, tiny_m3_dir, None, profiles={"zh": profile(tiny_m3_dir, type="jieba")}, default_profile="zh"
        )
    )
    try:
        client = second.client("acme")
        for call in (
            lambda: client.search("docs", "黑豹队"),
            lambda: client.upsert("docs", DOCS[3:4]),
            lambda: client.delete("docs", ["z1"]),
        ):
            code, details = status_of(call)
            assert code == grpc.StatusCode.FAILED_PRECONDITION
            assert "collection 'docs' was built with" in details and "cjk;unigrams=1" in details and "jieba;" in details
        # Nothing was written or deleted by the refused calls, and the server keeps serving.
        assert [d.id for d in client.get("docs", ["z1", "z4"])] == ["z1"]
        assert client.describe_collection("docs").tenant_document_count == 3
        # The demo, whose collections are its own, drops such a collection and builds it again.
        from hybridsearch.engine.cli import ingest_demo

        sample = tmp_path / "sample.jsonl"
        sample.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in DOCS), encoding="utf-8")
        ingest_demo(client, "docs", "zh", {}, sample)
        rebuilt = client.describe_collection("docs")
        assert "jieba;" in rebuilt.sparse_analyzer and rebuilt.tenant_document_count == len(DOCS)
        # The sparse route alone: the tiny model's dense ranks are arbitrary (RRF can tie).
        sparse_only = dict(fusion="weighted", normalizer="none", dense_weight=0.0, sparse_weight=1.0)
        assert client.search("docs", "黑豹队的防守", top_k=1, **sparse_only).hits[0].id == "z1"
    finally:
        second.stop()


def test_milvus_bm25_follows_upserts_and_deletes(chinese_server):
    client = chinese_server.client("acme")
    client.create_collection("zh_milvus_writes", "tiny-milvus-jieba")
    client.upsert("zh_milvus_writes", DOCS)

    def sparse_ids(query: str) -> list[str]:
        reply = client.search(
            "zh_milvus_writes",
            query,
            top_k=5,
            fusion="weighted",
            normalizer="none",
            dense_weight=0.0,
            sparse_weight=1.0,
        )
        return [h.id for h in reply.hits if h.HasField("sparse")]

    assert sparse_ids("首都")[0] == "z3"
    client.upsert("zh_milvus_writes", [{"id": "z3", "text": "上海是中国最大的城市。"}])  # Milvus re-derives z3's vector
    assert "z3" not in sparse_ids("首都") and sparse_ids("最大的城市")[0] == "z3"
    client.delete("zh_milvus_writes", ["z1"])
    assert "z1" not in sparse_ids("黑豹队的防守")
    assert client.search("zh_milvus_writes", "？！。", top_k=3).sparse_candidates == 0


def test_switching_a_collection_between_service_and_milvus_bm25_is_refused(tmp_path, tiny_m3_dir):
    from tests.conftest import RunningServer, make_settings

    data = tmp_path / "data"
    first = RunningServer(
        make_settings(
            data, tiny_m3_dir, None, profiles={"zh": profile(tiny_m3_dir, type="jieba")}, default_profile="zh"
        )
    )
    try:
        first.client("acme").create_collection("docs", "zh")
    finally:
        first.stop()
    second = RunningServer(
        make_settings(
            data,
            tiny_m3_dir,
            None,
            profiles={"zh": profile(tiny_m3_dir, "milvus-bm25", type="jieba")},
            default_profile="zh",
        )
    )
    try:
        code, details = status_of(lambda: second.client("acme").search("docs", "黑豹队"))
        assert (
            code == grpc.StatusCode.FAILED_PRECONDITION
            and "sparse route vector" in details
            and "milvus-bm25" in details
        )
    finally:
        second.stop()
