"""Issue 28: one tenant's work cannot stall another's (through a real server on Milvus Lite).

The model calls are observed by wrapping the real model's methods (they still run): the
order in which searches and document slices reach the model is the behaviour under test.
"""

from __future__ import annotations

import threading
import time

import grpc
import pytest

from hybridsearch.engine import client_requests as build
from tests.conftest import TINY_BM25_PROFILE, TINY_PROFILE


def _wait_for(predicate, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.005)


def _long_docs(n: int, lang: str = "en") -> list[dict]:
    body = "protein folding in cells " * 25 if lang == "en" else "蛋白质在细胞中折叠，mixed text 检索 " * 25
    return [{"id": f"d{i}", "text": f"{i} {body}"} for i in range(n)]


def _slicing_server(start_server):
    """A server whose profiles encode documents one per slice (the slice budget is tiny)."""
    from hybridsearch.engine.config import ProfileConfig

    server = start_server(
        profiles={
            TINY_PROFILE: ProfileConfig(
                kind="bge-m3", model=str(start_server.tiny_m3_dir), max_length=128, document_slice_ms=0.001
            ),
            TINY_BM25_PROFILE: ProfileConfig(
                kind="dense-bm25", model=str(start_server.tiny_m3_dir), max_length=128, document_slice_ms=0.001
            ),
        }
    )
    return server


class _ModelCalls:
    """Wraps the profile's model entry points: records each call as 'query' or 'docs:<n>'."""

    def __init__(self, monkeypatch, profile, block_documents: threading.Event | None = None):
        self.calls: list[str] = []
        self.texts: list[list[str]] = []  # the texts of each query pass
        self.block = block_documents
        if profile.kind == "bge-m3":
            real = profile.model.encode

            def encode(texts, *args, **kwargs):
                self._record(["passage" if t.startswith(tuple("0123456789")) else "query" for t in texts], texts)
                return real(texts, *args, **kwargs)

            monkeypatch.setattr(profile.model, "encode", encode)
        else:
            real_q, real_p = profile.model.encode_queries, profile.model.encode_passages

            def queries(texts, *args):
                self._record(["query"] * len(texts), texts)
                return real_q(texts, *args)

            def passages(texts):
                self._record(["passage"] * len(texts))
                return real_p(texts)

            monkeypatch.setattr(profile.model, "encode_queries", queries)
            monkeypatch.setattr(profile.model, "encode_passages", passages)

    def _record(self, kinds: list[str], texts=None) -> None:
        self.calls.append("query" if kinds[0] == "query" else f"docs:{len(kinds)}")
        if kinds[0] == "query":
            self.texts.append([t.split(": ", 1)[-1] for t in texts or []])
        if kinds[0] != "query" and self.block is not None:
            self.block.wait(30)

    def documents(self) -> int:
        return sum(int(c.split(":")[1]) for c in self.calls if c.startswith("docs:"))


@pytest.fixture
def slicing_server(start_server, tiny_m3_dir):
    start_server.tiny_m3_dir = tiny_m3_dir
    return _slicing_server(start_server)


@pytest.mark.parametrize("profile_name", [TINY_PROFILE, TINY_BM25_PROFILE])
@pytest.mark.parametrize("lang", ["en", "zh"])
def test_a_search_goes_before_the_rest_of_another_tenants_bulk_load(slicing_server, monkeypatch, profile_name, lang):
    a, b = slicing_server.client("tenant-a"), slicing_server.client("tenant-b")
    name = f"iso_{profile_name.replace('-', '_')}_{lang}"
    a.create_collection(name, profile=profile_name)
    a.upsert(name, _long_docs(1, lang))
    b.upsert(name, [{"id": "b0", "text": "蛋白质 protein folding"}])
    b.search(name, "warm up", top_k=1)  # the profile is loaded and its batcher running
    profile = slicing_server.server.service.profiles.get(profile_name)
    gate = profile._gate
    calls = _ModelCalls(monkeypatch, profile)
    with gate.documents("someone-else"):  # the model is busy with a slice when both arrive
        upsert = a.stub.Upsert.future(build.upsert(name, _long_docs(6, lang)), metadata=a.metadata)
        _wait_for(lambda: gate.snapshot()["slices_waiting"] == 1)
        search = b.stub.Search.future(build.search(name, "蛋白质 protein", top_k=3), metadata=b.metadata)
        _wait_for(lambda: gate.snapshot()["queries_waiting"] == 1)
    assert search.result(timeout=30).hits
    assert upsert.result(timeout=60).upserted == 6
    # The search waited for no slice of A's: it reached the model first, then A's 6 slices.
    assert calls.calls == ["query"] + ["docs:1"] * 6


@pytest.mark.parametrize("profile_name", [TINY_PROFILE, TINY_BM25_PROFILE])
def test_a_cancelled_upsert_stops_at_the_next_slice_and_writes_nothing(slicing_server, monkeypatch, profile_name):
    a = slicing_server.client("tenant-a")
    name = f"cancel_{profile_name.replace('-', '_')}"
    a.create_collection(name, profile=profile_name)
    a.upsert(name, [{"id": "keep", "text": "已经写入的文档 already written"}])
    profile = slicing_server.server.service.profiles.get(profile_name)
    go = threading.Event()
    calls = _ModelCalls(monkeypatch, profile, block_documents=go)
    docs = _long_docs(20, "zh")
    call = a.stub.Upsert.future(build.upsert(name, docs), metadata=a.metadata)
    _wait_for(lambda: calls.calls)  # its first slice is in the model
    call.cancel()
    time.sleep(0.3)  # the server sees the cancellation
    go.set()
    with pytest.raises(grpc.FutureCancelledError):
        call.result()
    scheduler = slicing_server.server.scheduler
    # The handler stops after the slice in progress: the call's slot is free, the model idle.
    _wait_for(lambda: not scheduler.snapshot(), timeout=5)
    assert calls.documents() == 1
    assert profile._gate.snapshot()["slices_waiting"] == 0
    assert a.get(name, [d["id"] for d in docs]) == []
    assert a.describe_collection(name).tenant_document_count == 1


TEXTS = {
    "en": "protein folding in cells and the chaperones that assist it " * 20,
    # The tiny test tokenizer reads a run of Chinese without spaces as one piece (real XLM-R
    # tokenizers split it: tests/api/test_e5_profile.py); spaces make it many here.
    "zh": "蛋白质 在 细胞 中 折叠 ， 分子 伴侣 协助 其 折叠 过程 。" * 20,
    "mixed": "蛋白质 protein 折叠 folding 在细胞 in cells 中。" * 20,
}


@pytest.mark.parametrize("profile_name", [TINY_PROFILE, TINY_BM25_PROFILE])
@pytest.mark.parametrize("lang", ["en", "zh", "mixed"])
def test_texts_over_the_token_limit_are_cut_and_counted(server, profile_name, lang):
    """The tiny profiles read 128 tokens (max_length); Usage.truncated_texts counts the
    texts cut, for documents (Upsert and BulkUpsert) and queries."""
    client = server.client("acme")
    name = f"trunc_{profile_name.replace('-', '_')}_{lang}"
    client.create_collection(name, profile=profile_name)
    long, short = TEXTS[lang], TEXTS[lang][:40]
    reply = client.upsert(name, [{"id": "long", "text": long}, {"id": "short", "text": short}])
    assert (reply.usage.truncated_texts, reply.usage.encoded_texts) == (1, 2)
    bulk = client.bulk_upsert(name, [[{"id": "l2", "text": long}], [{"id": "l3", "text": long}]])
    assert bulk.usage.truncated_texts == 2
    assert client.search(name, long[:480], top_k=2).usage.truncated_texts == 1
    assert client.search(name, short, top_k=2).usage.truncated_texts == 0


@pytest.mark.parametrize("profile_name", [TINY_PROFILE, TINY_BM25_PROFILE])
def test_a_long_query_waits_its_tenants_turn_and_short_queries_pass_it(slicing_server, monkeypatch, profile_name):
    """A query over LONG_QUERY_TOKENS is the tenant's work (a slice at the model, pausable
    between layers), not a short query: a short query that arrives later goes first."""
    from hybridsearch.engine.encoders.base import LONG_QUERY_TOKENS

    a, b = slicing_server.client("tenant-a"), slicing_server.client("tenant-b")
    name = f"longq_{profile_name.replace('-', '_')}"
    a.create_collection(name, profile=profile_name)
    a.upsert(name, [{"id": "x", "text": "蛋白质 protein folding"}])
    b.upsert(name, [{"id": "y", "text": "蛋白质 protein folding"}])
    b.search(name, "warm up", top_k=1)
    profile = slicing_server.server.service.profiles.get(profile_name)
    gate = profile._gate
    long_query = "protein folding in cells " * 19  # 475 characters, 154 tiny-tokenizer tokens
    calls = _ModelCalls(monkeypatch, profile)
    with gate.documents("someone-else"):
        long_call = a.stub.Search.future(build.search(name, long_query, top_k=1), metadata=a.metadata)
        _wait_for(lambda: gate.snapshot()["slices_waiting"] == 1)
        short_call = b.stub.Search.future(build.search(name, "蛋白质", top_k=1), metadata=b.metadata)
        _wait_for(lambda: gate.snapshot()["queries_waiting"] == 1)
    assert short_call.result(timeout=30).usage.truncated_texts == 0
    # Over the 128 tokens the tiny profiles read of a query, so over LONG_QUERY_TOKENS too.
    assert long_call.result(timeout=30).usage.truncated_texts == 1 and LONG_QUERY_TOKENS < 128
    assert [len(batch) for batch in calls.texts] == [1, 1] and calls.texts[0] == ["蛋白质"]
