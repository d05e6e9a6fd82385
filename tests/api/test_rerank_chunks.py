"""Long documents in windows through the API: the Rerank RPC's and Search's usage and
decision count every window, and a tenant's cost cap sees the windows' tokens before any
scoring (the tiny FlagReranker behind a real gRPC server, two backends: truncate and chunks)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from hybridsearch.v1 import hybridsearch_pb2 as pb
from tests.conftest import RunningServer, make_settings
from tests.rerank.faults import FaultyBackend, swapped_backend

COLLECTION = "long_docs"
QUERY = "protein expression in cancer cells"
MAX_LENGTH = 64
MAX_CHUNKS = 4
_WORDS = (
    "protein expression cancer cells gene regulation stem immune response viral infection mice brain memory "
    "sleep diet cohort study bacteria resistance antibiotic treatment heart liver kidney tumor growth enzyme"
).split()
_rng = random.Random(5)
# 40-260 words: one window (a window holds about 55 document tokens here) to past MAX_CHUNKS.
DOCS = [
    {"id": f"long{i:02d}", "text": " ".join(_rng.choice(_WORDS) for _ in range(_rng.randint(40, 260)))}
    for i in range(20)
]


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_m3_dir, tiny_reranker_dir):
    rerank = make_settings("unused", tiny_m3_dir, tiny_reranker_dir).rerank.model_dump()
    plain = {"kind": "flag", "model": str(tiny_reranker_dir), "max_length": MAX_LENGTH, "batch_size": 16}
    rerank["backends"] = {
        "truncate": plain,
        "chunks": {**plain, "long_documents": "chunks", "chunk_overlap": 8, "max_chunks": MAX_CHUNKS},
    }
    rerank["default_backend"] = "chunks"
    running = RunningServer(
        make_settings(tmp_path_factory.mktemp("data"), tiny_m3_dir, tiny_reranker_dir, rerank=rerank)
    )
    client = running.client("acme")
    client.create_collection(COLLECTION)
    client.upsert(COLLECTION, DOCS)
    yield running
    running.stop()


def backend(server, name: str = "chunks"):
    return server.server.service.rerank_stage.rerankers[name].backend


def test_the_rerank_rpc_counts_every_window_in_its_usage(server):
    client = server.client("acme")
    texts = [d["text"] for d in DOCS[:8]]
    reply = client.rerank(QUERY, texts, model="chunks")
    encoded = backend(server).encode(QUERY, texts)
    assert encoded.n_chunks > len(texts)  # some documents are several windows
    assert reply.usage.chunks == encoded.n_chunks
    assert reply.usage.tokens == int(encoded.tokens.sum()) == sum(len(ids) for ids in encoded.input_ids)
    # documents past MAX_CHUNKS windows: their first MAX_CHUNKS scored, counted as truncated
    assert reply.usage.truncated_documents == int(encoded.truncated.sum()) > 0
    assert encoded.chunks[encoded.truncated].tolist() == [MAX_CHUNKS] * int(encoded.truncated.sum())
    direct = backend(server).score_encoded(encoded)
    for r in reply.results:
        assert r.raw_score == pytest.approx(direct.raw[r.index], abs=1e-5)
    # the same documents truncated: one pair each, every long one flagged
    cut = client.rerank(QUERY, texts, model="truncate")
    assert cut.usage.chunks == len(texts) and cut.usage.tokens < reply.usage.tokens
    assert cut.usage.truncated_documents == int(backend(server, "truncate").encode(QUERY, texts).truncated.sum())


def test_an_empty_document_is_one_window_in_the_rerank_rpc(server):
    client = server.client("acme")
    reply = client.rerank(QUERY, ["", DOCS[0]["text"]], model="chunks")
    windows = backend(server).encode(QUERY, [DOCS[0]["text"]]).n_chunks
    assert reply.usage.chunks == 1 + windows and len(reply.results) == 2
    empty = next(r for r in reply.results if r.index == 0)
    assert empty.raw_score == pytest.approx(backend(server, "truncate").score(QUERY, [""]).raw[0], abs=1e-5)


def test_search_reports_the_windows_it_scored_and_charges_their_tokens(server):
    client = server.client("acme")
    reply = client.search(COLLECTION, QUERY, top_k=10, rerank="fixed", rerank_depth=5)
    d = reply.rerank
    assert d.backend == "chunks" and d.depth_scored == 5 and not d.degraded
    head = reply.hits[:5]
    texts = {h.id: h.text for h in reply.hits}
    order = [h.id for h in sorted(reply.hits, key=lambda h: h.fused_rank)][:5]
    assert {h.id for h in head} == set(order)
    encoded = backend(server).encode(QUERY, [texts[pk] for pk in order])
    assert d.chunks_scored == encoded.n_chunks > 5
    assert d.cost_units == int(encoded.tokens.sum())
    assert reply.usage.chunks == d.chunks_scored and reply.usage.tokens == d.cost_units
    off = client.search(COLLECTION, QUERY, top_k=10)
    assert off.rerank.chunks_scored == 0 and off.usage.chunks == 0


def test_a_cost_cap_for_two_truncated_documents_reranks_fewer_in_windows(server):
    client = server.client("capped")
    if COLLECTION not in [c.name for c in client.list_collections()]:
        client.create_collection(COLLECTION)
    client.upsert(COLLECTION, DOCS)  # this tenant's own documents
    fused = client.search(COLLECTION, QUERY, top_k=10)
    texts = [h.text for h in fused.hits]
    cut = backend(server, "truncate").encode(QUERY, texts)
    windows = backend(server).encode(QUERY, texts)
    cap = int(cut.tokens[:2].sum())  # two truncated documents
    expected = int(np.searchsorted(np.cumsum(windows.tokens), cap, side="right"))
    assert expected < 2
    client.admin.SetBudget(
        pb.SetBudgetRequest(budget=pb.RerankBudget(tenant="capped", max_depth=50, max_cost_per_query=cap)),
        metadata=client.metadata,
    )
    reply = client.search(COLLECTION, QUERY, top_k=10, rerank="fixed", rerank_depth=5)
    d = reply.rerank
    assert d.depth_chosen == expected and f"cost cap {cap}" in d.reason
    assert d.cost_units <= cap and d.chunks_scored == int(windows.chunks[:expected].sum())
    # AUTO decides on the same windows' tokens
    auto = client.search(COLLECTION, QUERY, top_k=10, rerank="auto")
    assert auto.rerank.depth_chosen == expected and auto.rerank.cost_units <= cap


def test_scoring_goes_in_chunks_of_windows_and_stops_partway_at_the_deadline(server):
    client = server.client("acme")
    chunk_pairs = server.settings.rerank.chunk_pairs
    with swapped_backend(server, lambda real: FaultyBackend(real), name="chunks") as counting:
        full = client.search(COLLECTION, QUERY, top_k=20, rerank="fixed", rerank_depth=20)
    assert full.rerank.depth_scored == 20 and full.rerank.chunks_scored == sum(counting.batch_windows)
    # each submit holds at most chunk_pairs windows (a document is never split across two)
    assert max(counting.batch_windows) <= chunk_pairs
    assert len(counting.batch_windows) >= -(-full.rerank.chunks_scored // chunk_pairs) > 20 // chunk_pairs
    with swapped_backend(server, lambda real: FaultyBackend(real, delay_per_pair_s=0.05), name="chunks") as slow:
        # 50 ms per window: the head's windows need several seconds, the deadline is 1.5 s
        reply = client.search(COLLECTION, QUERY, top_k=20, rerank="fixed", rerank_depth=20, timeout=1.5)
    d = reply.rerank
    assert d.partial and not d.degraded, d.reason
    assert 0 < d.depth_scored < 20 and d.chunks_scored == slow.pairs_scored
    order = [h.id for h in sorted(reply.hits, key=lambda h: h.fused_rank)][: d.depth_scored]
    texts = {h.id: h.text for h in reply.hits}
    encoded = backend(server).encode(QUERY, [texts[pk] for pk in order])
    assert d.chunks_scored == encoded.n_chunks and d.cost_units == int(encoded.tokens.sum())
