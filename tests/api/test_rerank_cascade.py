"""AUTO with an early-exit reranker through a real server: the cascade plan (screen to an early
exit, finish the best to the last layer), its cost, and scores equal to the full model's.

The reranker is the tiny 6-layer BERT built at test time with (untrained) exits after layers
2 and 4. Budgets bound by cost, not time, so every plan here is decided by token counts alone
and the test does not depend on how fast this machine is."""

from __future__ import annotations

import random

import numpy as np
import pytest

from hybridsearch.v1 import hybridsearch_pb2 as pb
from tests.conftest import RunningServer, make_settings
from tests.rerank.tiny_layered import tiny_bert_with_exits

COLLECTION = "cascade_docs"
_WORDS = "protein expression cancer cells gene regulation immune response viral infection mice brain memory 蛋白质 癌症 细胞 基因".split()
_rng = random.Random(5)
DOCS = [{"id": f"c{i:02d}", "text": " ".join(_rng.sample(_WORDS, _rng.randint(5, 9)))} for i in range(40)]
KEEP = 2


@pytest.fixture(scope="module")
def exit_model(tmp_path_factory):
    return tiny_bert_with_exits(
        tmp_path_factory.getbasetemp(), tmp_path_factory.mktemp("cascade-model") / "model", [2, 4, 6]
    )


def _server(tmp_path_factory, tiny_m3_dir, exit_model, keep: int, **backend) -> RunningServer:
    rerank = {
        "default_backend": "exit",
        "backends": {
            "exit": {
                "kind": "early-exit",
                "model": str(exit_model),
                "max_length": 64,
                "batch_size": 8,
                "cascade_keep": keep,
                **backend,
            }
        },
        "default_budget": {"max_depth": 50, "default_mode": "off"},
    }
    running = RunningServer(make_settings(tmp_path_factory.mktemp("cascade-data"), tiny_m3_dir, None, rerank=rerank))
    client = running.client("acme")
    client.create_collection(COLLECTION)
    client.upsert(COLLECTION, DOCS)
    return running


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_m3_dir, exit_model):
    running = _server(tmp_path_factory, tiny_m3_dir, exit_model, KEEP)
    yield running
    running.stop()


def test_info_names_the_exit_layers_and_cascade_keep(server):
    client = server.client("acme")
    (backend,) = client.stub.GetInfo(pb.GetInfoRequest(), metadata=client.metadata).rerank_backends
    assert (backend.kind, list(backend.exit_layers), backend.cascade_keep) == ("early-exit", [2, 4, 6], KEEP)
    assert backend.cascade_screen_weight == 2.0  # the default: survivors by the exit blended with the fused rank


def _budget(client, **fields):
    client.admin.SetBudget(
        pb.SetBudgetRequest(budget=pb.RerankBudget(tenant="acme", max_depth=30, default_mode=pb.AUTO, **fields)),
        metadata=client.metadata,
    )


def _search(client, query: str):
    return client.stub.Search(
        pb.SearchRequest(collection=COLLECTION, query=query, top_k=10, rerank_mode=pb.AUTO), metadata=client.metadata
    )


@pytest.mark.parametrize("query", ["protein expression in cancer cells", "癌症 细胞 蛋白质", "gene 基因 regulation"])
def test_a_cost_cap_makes_auto_screen_more_candidates_than_it_could_score_in_full(server, query):
    client = server.client("acme")
    _budget(client)
    loose = _search(client, query)
    # Without a bound the plan is the full model on every allowed candidate: no cascade.
    assert (loose.rerank.plan, loose.rerank.depth_scored) == (
        "score 30 to layer 6",
        30,
    )  # max_depth 30 of 40 candidates
    tokens = loose.rerank.cost_units / loose.rerank.depth_scored  # the mean tokens of a candidate here
    cap = int(tokens * 6)  # about 6 candidates in full
    _budget(client, max_cost_per_query=cap)
    reply = _search(client, query)
    d = reply.rerank
    assert d.plan.startswith("score ") and f"keep {KEEP}, finish them to layer 6" in d.plan, d.plan
    assert "cascade: screen" in d.reason and f"cost cap {cap}" in d.reason
    assert d.depth_scored > 6 and 0 < d.cost_units <= cap and not d.degraded
    reranked = [h for h in reply.hits if h.reranked]
    assert len(reranked) == KEEP and [h.id for h in reply.hits[:KEEP]] == [h.id for h in reranked]
    # The finished candidates carry the full model's scores: the same as the standalone
    # Rerank RPC (always full depth) gives them.
    texts = [h.text for h in reranked]
    alone = client.rerank(query, texts, model="exit")
    by_index = {r.index: r.relevance_score for r in alone.results}
    assert [h.rerank_score for h in reranked] == pytest.approx([by_index[i] for i in range(len(texts))], abs=1e-4)
    # Ordered by those scores (fusion_weight 0).
    assert [h.rerank_score for h in reranked] == sorted((h.rerank_score for h in reranked), reverse=True)


def _kept_and_expected(server, weight: float, query: str = "immune response viral infection"):
    """What the screen kept, and the best KEEP of the screened by the early exit's scores
    (computed here with the same model directory through the backend's own score_to)
    blended with their fused rank at ``weight``."""
    from hybridsearch.fusion.blend import blend_head
    from hybridsearch.rerank.backends import load_backend

    client = server.client("acme")
    _budget(client)
    loose = _search(client, query)
    _budget(client, max_cost_per_query=int(loose.rerank.cost_units / loose.rerank.depth_scored * 6))
    reply = _search(client, query)
    screened = reply.rerank.depth_scored
    # The fused order of the screened candidates: the same search with reranking OFF.
    fused = client.stub.Search(
        pb.SearchRequest(collection=COLLECTION, query=query, top_k=screened, rerank_mode=pb.OFF),
        metadata=client.metadata,
    )
    backend = load_backend(
        "early-exit", "check", server.settings.rerank.backends["exit"].model, max_length=64, batch_size=8
    )
    try:
        handle = backend.score_to(
            backend.encode(query, [h.text for h in fused.hits]),
            int(reply.rerank.plan.split("to layer ")[1].split(",")[0]),
        )
    finally:
        backend.close()
    best = {fused.hits[i].id for i in blend_head(handle.raw, weight)[0][:KEEP]}
    return (
        {h.id for h in reply.hits if h.reranked},
        best,
        {fused.hits[i].id for i in np.argsort(-handle.raw, kind="stable")[:KEEP]},
    )


@pytest.mark.parametrize("query", ["immune response viral infection", "病毒 感染 immune response", "细胞 基因 蛋白质"])
def test_the_kept_candidates_are_the_best_of_the_early_exit_blended_with_the_fused_rank(server, query):
    kept, best, _ = _kept_and_expected(server, 2.0, query)
    assert kept == best


def test_with_screen_weight_0_the_early_exit_alone_picks_the_survivors(tmp_path_factory, tiny_m3_dir, exit_model):
    running = _server(tmp_path_factory, tiny_m3_dir, exit_model, KEEP, cascade_screen_weight=0.0)
    try:
        kept, best, by_exit = _kept_and_expected(running, 0.0)
        assert kept == best == by_exit
    finally:
        running.stop()


def test_without_cascade_keep_the_plan_is_not_reported(tmp_path_factory, tiny_m3_dir, exit_model):
    running = _server(tmp_path_factory, tiny_m3_dir, exit_model, keep=0)
    try:
        client = running.client("acme")
        _budget(client, max_cost_per_query=200)
        d = _search(client, "protein cells").rerank
        assert d.plan == "" and "cascade" not in d.reason
    finally:
        running.stop()
