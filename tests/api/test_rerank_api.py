"""The rerank stage and the rerank APIs end to end: the tiny FlagReranker behind a real gRPC server.

Faults are injected by wrapping the server's real backend (tests.rerank.faults): the
real model still scores, the wrapper raises, sleeps or stalls on demand.
"""

from __future__ import annotations

import math
import random
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from hybridsearch.v1 import hybridsearch_pb2 as pb
from tests.conftest import make_settings, status_of
from tests.rerank.faults import FaultyBackend, swapped_backend

COLLECTION = "rerank_docs"
QUERY = "protein expression in cancer cells"
PRICE = 0.05  # per million tokens, the tiny backend's configured price
UNLIMITED = -1.0
_WORDS = (
    "protein expression cancer cells gene regulation stem immune response viral infection mice brain memory "
    "sleep diet cohort study bacteria resistance antibiotic treatment heart liver kidney tumor growth enzyme "
    "activity receptor binding insulin glucose diabetes vaccine influenza blood tissue mutation dna rna"
).split()
_rng = random.Random(11)
DOCS = [{"id": f"doc{i:02d}", "text": " ".join(_rng.sample(_WORDS, _rng.randint(6, 14)))} for i in range(60)]


def wait_for(predicate, timeout: float = 8.0, every: float = 0.1):
    """Poll until predicate() is truthy; its last value."""
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > end:
            return value
        time.sleep(every)


def budget(tenant: str, **fields) -> pb.RerankBudget:
    fields.setdefault("max_depth", 50)
    return pb.RerankBudget(tenant=tenant, **fields)


def rerank_overrides(tiny_m3_dir, tiny_reranker_dir, **changes) -> dict:
    """The test servers' rerank settings with some values changed (for start_server)."""
    rerank = make_settings("unused", tiny_m3_dir, tiny_reranker_dir).rerank.model_dump()
    rerank.update(changes)
    return {"rerank": rerank}


def fill(running, tenant: str, docs=DOCS):
    """A client for ``tenant`` with the corpus loaded into COLLECTION."""
    client = running.client(tenant)
    if COLLECTION not in [c.name for c in client.list_collections()]:
        client.create_collection(COLLECTION)
    client.upsert(COLLECTION, docs)
    return client


@pytest.fixture(scope="module")
def tenant(server):
    """tenant(name) -> a client of that tenant with the corpus loaded (once per tenant)."""
    clients = {}

    def get(name: str):
        if name not in clients:
            clients[name] = fill(server, name)
        return clients[name]

    return get


def reranked_prefix_is_ordered_then_fused_order(hits, n: int) -> None:
    head, tail = hits[:n], hits[n:]
    assert all(h.reranked and h.HasField("rerank_score") for h in head)
    assert all(0.0 <= h.rerank_score <= 1.0 and h.score == h.rerank_score for h in head)
    scores = [h.rerank_score for h in head]
    assert scores == sorted(scores, reverse=True)
    assert sorted(h.fused_rank for h in head) == list(range(1, n + 1))
    assert all(not h.reranked and not h.HasField("rerank_score") and h.score == h.fused_score for h in tail)
    assert [h.fused_rank for h in tail] == list(range(n + 1, n + 1 + len(tail)))


def in_fused_order(hits) -> bool:
    return [h.fused_rank for h in hits] == list(range(1, len(hits) + 1)) and not any(
        h.reranked or h.HasField("rerank_score") for h in hits
    )


def health(running, service: str = "hybridsearch.v1.Rerank"):
    stub = health_pb2_grpc.HealthStub(running.channel())
    return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status


# ---------------------------------------------------------------------- modes


def test_off_mode_returns_fused_hits_without_rerank_scores(tenant):
    reply = tenant("acme").search(COLLECTION, QUERY, top_k=10, rerank="off")
    assert len(reply.hits) == 10 and in_fused_order(reply.hits)
    d = reply.rerank
    assert d.mode == pb.OFF and d.depth_chosen == 0 and d.depth_scored == 0 and d.cost_units == 0
    assert "rerank mode OFF" in d.reason and "tenant default" not in d.reason
    assert not d.degraded and not d.partial


def test_fixed_mode_reranks_the_first_n_fused_hits_and_keeps_the_rest_in_fused_order(tenant):
    client = tenant("acme")
    n = 5
    reply = client.search(COLLECTION, QUERY, top_k=12, rerank="fixed", rerank_depth=n)
    assert len(reply.hits) == 12
    reranked_prefix_is_ordered_then_fused_order(reply.hits, n)
    d = reply.rerank
    assert d.mode == pb.FIXED and d.depth_chosen == n and d.depth_scored == n
    assert not d.partial and not d.degraded and d.backend == "tiny"
    assert d.reason.startswith("fixed depth 5") and d.predicted_ms > 0 and d.actual_ms > 0
    assert reply.timings.rerank_ms > 0
    # cost = the reranker tokens of exactly those pairs; money at 0.05 per million tokens
    head = reply.hits[:n]
    standalone = client.rerank(QUERY, [h.text for h in head])
    assert d.cost_units > 0 and d.cost_units == standalone.usage.tokens
    assert d.cost_money == pytest.approx(d.cost_units * PRICE / 1e6)
    assert d.budget_left_units == UNLIMITED
    # each hit carries its own score (the same the standalone call gives the same pair)
    by_text = {head[r.index].id: r.relevance_score for r in standalone.results}
    for h in head:
        assert h.rerank_score == pytest.approx(by_text[h.id], abs=1e-5)


def test_fusion_weight_orders_the_head_by_the_blend_of_fused_and_rerank_ranks(
    start_server, tmp_path, tiny_m3_dir, tiny_reranker_dir
):
    from hybridsearch.fusion.blend import blend_head

    backends = make_settings("unused", tiny_m3_dir, tiny_reranker_dir).rerank.model_dump()["backends"]
    backends["tiny"]["fusion_weight"] = 1.0
    running = start_server(tmp_path / "blend", **rerank_overrides(tiny_m3_dir, tiny_reranker_dir, backends=backends))
    client = fill(running, "acme")
    n = 20
    reply = client.search(COLLECTION, QUERY, top_k=30, rerank="fixed", rerank_depth=n)
    head, tail = reply.hits[:n], reply.hits[n:]
    assert all(h.reranked and 0.0 <= h.rerank_score <= 1.0 for h in head)
    assert "RRF of fused rank (weight 1)" in reply.rerank.reason
    # the same order and scores the pure function gives the head's rerank scores in fused order
    by_fused = sorted(head, key=lambda h: h.fused_rank)
    order, blended = blend_head([h.rerank_score for h in by_fused], 1.0)
    assert [h.id for h in head] == [by_fused[i].id for i in order]
    assert [h.score for h in head] == pytest.approx(blended[order].tolist())
    assert [h.score for h in head] == sorted((h.score for h in head), reverse=True)
    assert [h.fused_rank for h in tail] == list(range(n + 1, n + 1 + len(tail)))
    # the blend differs from the reranker's order alone on this corpus (else the test proves nothing)
    assert [h.id for h in head] != [h.id for h in sorted(by_fused, key=lambda h: -h.rerank_score)]


def test_auto_skips_queries_whose_routes_agree_on_the_top_hit_when_the_backend_says_so(
    start_server, tmp_path, tiny_m3_dir, tiny_reranker_dir
):
    backends = make_settings("unused", tiny_m3_dir, tiny_reranker_dir).rerank.model_dump()["backends"]
    backends["tiny"]["skip_when_routes_agree"] = True
    running = start_server(tmp_path / "agree", **rerank_overrides(tiny_m3_dir, tiny_reranker_dir, backends=backends))
    client = fill(running, "acme")
    client.admin.SetBudget(pb.SetBudgetRequest(budget=budget("acme", max_depth=8)), metadata=client.metadata)
    seen = set()
    # Each document's own text: BM25 puts it first; the tiny dense model sometimes does too.
    for doc in DOCS[:30]:
        reply = client.search(COLLECTION, doc["text"], top_k=10, rerank="auto")
        agree = any(h.dense.rank == 1 and h.sparse.rank == 1 for h in reply.hits)
        d = reply.rerank
        assert not d.degraded
        if agree:
            assert d.depth_chosen == 0 and d.cost_units == 0 and in_fused_order(reply.hits)
            assert d.reason.startswith("fusion only: dense and sparse routes agree on the top hit")
        else:
            assert d.depth_chosen == 8 and any(h.reranked for h in reply.hits)
        seen.add(agree)
    assert seen == {True, False}  # both kinds of query occurred (else the test proves nothing)
    # FIXED ignores the signal
    text = next(
        doc["text"]
        for doc in DOCS[:30]
        if any(h.dense.rank == 1 and h.sparse.rank == 1 for h in client.search(COLLECTION, doc["text"], top_k=10).hits)
    )
    assert client.search(COLLECTION, text, top_k=10, rerank="fixed", rerank_depth=5).rerank.depth_scored == 5


def test_auto_tokenises_only_the_candidates_it_may_rerank(server, tenant):
    client = tenant("lazy")
    # A cost cap of 40 tokens fits a few short pairs of the 50 candidates.
    client.admin.SetBudget(
        pb.SetBudgetRequest(budget=budget("lazy", max_depth=50, max_cost_per_query=40)), metadata=client.metadata
    )
    first = server.settings.rerank.chunk_pairs  # the first batch AUTO tokenises
    with swapped_backend(server, lambda real: FaultyBackend(real)) as counting:
        reply = client.search(COLLECTION, QUERY, top_k=50, rerank="auto")
        assert 0 < reply.rerank.depth_chosen < first and "cost cap 40" in reply.rerank.reason
        assert counting.docs_encoded == first  # the first batch decided it, not all 50
        client.search(COLLECTION, QUERY, top_k=50, rerank="fixed", rerank_depth=30)
        assert counting.docs_encoded == first + 30  # FIXED needs its whole head


def test_fixed_depth_is_capped_by_the_tenant_max_depth(tenant):
    client = tenant("capped")
    client.admin.SetBudget(pb.SetBudgetRequest(budget=budget("capped", max_depth=3)), metadata=client.metadata)
    reply = client.search(COLLECTION, QUERY, top_k=8, rerank="fixed", rerank_depth=7)
    assert reply.rerank.depth_chosen == 3 and "max_depth 3" in reply.rerank.reason
    reranked_prefix_is_ordered_then_fused_order(reply.hits, 3)


def test_auto_mode_with_a_tenant_budget_picks_a_depth_within_its_range(tenant):
    client = tenant("auto-t")
    client.admin.SetBudget(
        pb.SetBudgetRequest(budget=budget("auto-t", min_depth=3, max_depth=12)), metadata=client.metadata
    )
    reply = client.search(COLLECTION, QUERY, top_k=20, rerank="auto")
    d = reply.rerank
    assert d.mode == pb.AUTO and d.reason and not d.degraded
    assert 3 <= d.depth_chosen <= 12 and d.depth_scored == d.depth_chosen
    assert d.cost_units > 0
    reranked_prefix_is_ordered_then_fused_order(reply.hits, d.depth_chosen)


def test_tenant_default_mode_applies_when_the_request_leaves_the_mode_unset(tenant):
    client = tenant("dflt-auto")
    client.admin.SetBudget(
        pb.SetBudgetRequest(budget=budget("dflt-auto", max_depth=6, default_mode=pb.AUTO)), metadata=client.metadata
    )
    reply = client.search(COLLECTION, QUERY, top_k=10)
    assert reply.rerank.mode == pb.AUTO and 1 <= reply.rerank.depth_chosen <= 6
    assert any(h.reranked for h in reply.hits)
    # an explicit mode wins over the tenant default
    off = client.search(COLLECTION, QUERY, top_k=10, rerank="off")
    assert off.rerank.mode == pb.OFF and in_fused_order(off.hits)
    # a tenant without a budget of its own gets the server default (OFF)
    plain = tenant("acme").search(COLLECTION, QUERY, top_k=10)
    assert plain.rerank.mode == pb.OFF and "tenant default" in plain.rerank.reason and in_fused_order(plain.hits)


def test_tighter_latency_target_gives_smaller_or_zero_depth(tenant):
    client = tenant("latency")

    def depth_with_target(ms: float):
        client.admin.SetBudget(
            pb.SetBudgetRequest(budget=budget("latency", max_depth=10, latency_target_ms=ms)), metadata=client.metadata
        )
        return client.search(COLLECTION, QUERY, top_k=10, rerank="auto")

    loose = depth_with_target(60_000.0)
    tight = depth_with_target(0.001)
    assert loose.rerank.depth_chosen > 0
    assert tight.rerank.depth_chosen == 0 <= loose.rerank.depth_chosen
    assert "latency target" in tight.rerank.reason and tight.rerank.reason.startswith("fusion only")
    assert tight.rerank.cost_units == 0 and in_fused_order(tight.hits) and not tight.rerank.degraded


def test_rate_budget_runs_out_and_reports_what_is_left(tenant):
    client = tenant("rate")
    per_minute = 100.0
    client.admin.SetBudget(
        pb.SetBudgetRequest(budget=budget("rate", cost_per_minute=per_minute)), metadata=client.metadata
    )
    decisions = []
    start = time.monotonic()
    for _ in range(12):
        decisions.append(client.search(COLLECTION, QUERY, top_k=10, rerank="fixed", rerank_depth=10).rerank)
        if decisions[-1].depth_chosen == 0:
            break
    first, last = decisions[0], decisions[-1]
    # ~20 tokens a pair: 10 pairs would cost more than the whole minute's budget
    assert 0 < first.depth_chosen < 10 and "rate budget" in first.reason
    assert first.cost_units <= per_minute
    assert first.budget_left_units == pytest.approx(per_minute - first.cost_units, abs=2.0)
    assert last.depth_chosen == 0, [(d.depth_chosen, d.reason) for d in decisions]
    assert "rate budget" in last.reason and last.reason.startswith("fusion only")
    assert 0 <= last.budget_left_units < per_minute
    refilled = (time.monotonic() - start) * per_minute / 60.0
    assert sum(d.cost_units for d in decisions) <= per_minute + refilled


# ---------------------------------------------------------------------- deadlines and faults


def test_rerank_stops_partway_at_the_grpc_deadline_and_the_search_still_succeeds(server, tenant):
    client = tenant("acme")
    with swapped_backend(server, lambda real: FaultyBackend(real, delay_per_pair_s=0.05)) as slow:
        # 48 pairs at 50 ms each (chunks of 8: 400 ms) would take 2.4 s, more than the 2 s deadline
        reply = client.search(COLLECTION, QUERY, top_k=50, rerank="fixed", rerank_depth=48, timeout=2.0)
    d = reply.rerank
    assert d.partial and not d.degraded, d.reason
    assert d.depth_chosen == 48 and 0 < d.depth_scored < d.depth_chosen
    assert "partial" in d.reason and slow.pairs_scored >= d.depth_scored
    reranked_prefix_is_ordered_then_fused_order(reply.hits, d.depth_scored)


def test_failing_backend_degrades_to_fusion_only_and_the_search_succeeds(server, tenant):
    client = tenant("acme")
    with swapped_backend(server, lambda real: FaultyBackend(real, error=RuntimeError("injected model failure"))):
        reply = client.search(COLLECTION, QUERY, top_k=10, rerank="fixed", rerank_depth=5)
    d = reply.rerank
    assert d.degraded and "injected model failure" in d.degraded_reason
    assert d.reason and d.depth_scored == 0 and d.cost_units == 0
    assert len(reply.hits) == 10 and in_fused_order(reply.hits)
    # and the real backend serves the next search
    assert client.search(COLLECTION, QUERY, top_k=5, rerank="fixed", rerank_depth=3).rerank.depth_scored == 3


def test_circuit_opens_after_repeated_failures_and_health_recovers_after_cooldown(
    start_server, tmp_path, tiny_m3_dir, tiny_reranker_dir
):
    running = start_server(
        tmp_path / "circuit", **rerank_overrides(tiny_m3_dir, tiny_reranker_dir, failure_threshold=2, cooldown_s=1.0)
    )
    client = fill(running, "acme", DOCS[:20])
    SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
    assert wait_for(lambda: health(running) == SERVING)

    def search():
        return client.search(COLLECTION, QUERY, top_k=5, rerank="fixed", rerank_depth=3)

    with swapped_backend(running, lambda real: FaultyBackend(real, error=RuntimeError("backend down"))) as fake:
        reasons = [search().rerank.degraded_reason for _ in range(3)]
        assert "backend down" in reasons[0] and "backend down" in reasons[1]
        assert "circuit" in reasons[2], reasons
        calls = fake.calls
        assert search().rerank.degraded and fake.calls == calls  # an open circuit sends no work
        assert wait_for(lambda: health(running) == NOT_SERVING)
        assert health(running, "hybridsearch.v1.HybridSearch") == SERVING  # searches still work

        fake.error = None  # the backend recovers; after the cooldown a probe closes the circuit
        recovered = wait_for(lambda: (lambda r: r if not r.rerank.degraded else None)(search()), timeout=10, every=0.2)
        assert recovered and recovered.rerank.depth_scored == 3
        assert wait_for(lambda: health(running) == SERVING)


def kill_thread(thread) -> None:
    """Raise SystemExit inside another Python thread: the closest thing to killing it."""
    import ctypes

    done = ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(SystemExit))
    assert done == 1


def test_killed_rerank_worker_degrades_searches_reports_down_and_is_replaced(
    start_server, tmp_path, tiny_m3_dir, tiny_reranker_dir
):
    import threading

    running = start_server(tmp_path / "killed", **rerank_overrides(tiny_m3_dir, tiny_reranker_dir, calibrate=False))
    client = fill(running, "acme", DOCS[:20])
    SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
    assert wait_for(lambda: health(running) == SERVING)
    batcher = running.server.service.rerank_stage.rerankers["tiny"].batcher

    def search():
        return client.search(COLLECTION, QUERY, top_k=5, rerank="fixed", rerank_depth=3)

    with swapped_backend(running, lambda real: FaultyBackend(real)) as fake:
        fake.gate = threading.Event()
        replies = []
        searching = threading.Thread(target=lambda: replies.append(search()))
        searching.start()
        assert fake.started.wait(10)  # the worker is inside a forward pass for this search
        worker = batcher._worker
        kill_thread(worker)
        fake.gate.set()  # the SystemExit lands as soon as the worker runs Python again
        searching.join(10)
        worker.join(10)
        assert not worker.is_alive()

        # the search in flight answered fusion-only, saying why; the server kept serving
        (reply,) = replies
        assert reply.rerank.degraded and "rerank worker died: SystemExit" in reply.rerank.degraded_reason
        assert in_fused_order(reply.hits)
        assert wait_for(lambda: health(running) == NOT_SERVING)
        assert health(running, "hybridsearch.v1.HybridSearch") == SERVING

        # the next search starts a new worker and is reranked; health follows
        fake.gate = None
        again = search()
        assert not again.rerank.degraded and again.rerank.depth_scored == 3
        assert batcher.restarts == 1 and batcher.alive
        assert wait_for(lambda: health(running) == SERVING)


def test_circuit_recovers_when_the_first_probe_after_cooldown_scores_nothing(
    start_server, tmp_path, tiny_m3_dir, tiny_reranker_dir
):
    running = start_server(
        tmp_path / "probe", **rerank_overrides(tiny_m3_dir, tiny_reranker_dir, failure_threshold=1, cooldown_s=0.5)
    )
    client = fill(running, "acme", DOCS[:20])
    tight = fill(running, "tight", DOCS[:20])
    tight.admin.SetBudget(
        pb.SetBudgetRequest(budget=budget("tight", latency_target_ms=0.001, default_mode=pb.AUTO)),
        metadata=tight.metadata,
    )

    def search():
        return client.search(COLLECTION, QUERY, top_k=5, rerank="fixed", rerank_depth=3)

    with swapped_backend(running, lambda real: FaultyBackend(real, error=RuntimeError("backend down"))) as fake:
        assert "backend down" in search().rerank.degraded_reason
        assert "circuit" in search().rerank.degraded_reason
        fake.error = None
        time.sleep(0.6)  # past the cooldown
        # the first search after the cooldown is one that reranks nothing (its latency target fits no pair)
        probe = tight.search(COLLECTION, QUERY, top_k=5)
        assert probe.rerank.depth_scored == 0
        recovered = wait_for(lambda: (lambda r: r if not r.rerank.degraded else None)(search()), timeout=5, every=0.2)
        assert recovered and recovered.rerank.depth_scored == 3


def test_stalled_backend_degrades_with_timed_out(start_server, tmp_path, tiny_m3_dir, tiny_reranker_dir):
    running = start_server(tmp_path / "stall", **rerank_overrides(tiny_m3_dir, tiny_reranker_dir, stall_timeout_s=0.3))
    client = fill(running, "acme", DOCS[:20])
    with swapped_backend(running, lambda real: FaultyBackend(real, delay_s=3.0)):
        start = time.monotonic()
        reply = client.search(COLLECTION, QUERY, top_k=5, rerank="fixed", rerank_depth=3)
        waited = time.monotonic() - start
        breaker = running.server.service.rerank_stage.rerankers["tiny"].breaker
        assert breaker.failures == 1
    d = reply.rerank
    assert (
        d.degraded
        and "timed out" in d.degraded_reason
        and "stalled" in d.degraded_reason
        and in_fused_order(reply.hits)
    )
    assert waited < 2.5  # answered at the 0.3 s stall timeout, not when the backend woke up after 3 s


def test_a_long_rerank_queue_degrades_as_overloaded_without_opening_the_breaker(
    start_server, tmp_path, tiny_m3_dir, tiny_reranker_dir
):
    # A healthy but busy backend: every batch takes 0.35 s, under the 0.5 s stall timeout,
    # but four searches queued one batch each wait longer than that. Overload degrades the
    # late searches; it is not a backend failure, so the breaker stays closed.
    import concurrent.futures

    running = start_server(
        tmp_path / "queue",
        **rerank_overrides(tiny_m3_dir, tiny_reranker_dir, stall_timeout_s=0.5, max_batch_pairs=3, calibrate=False),
    )
    client = fill(running, "acme", DOCS[:20])
    with swapped_backend(running, lambda real: FaultyBackend(real, delay_s=0.35)):
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            replies = list(
                pool.map(lambda _: client.search(COLLECTION, QUERY, top_k=5, rerank="fixed", rerank_depth=3), range(4))
            )
        breaker = running.server.service.rerank_stage.rerankers["tiny"].breaker
        assert breaker.failures == 0 and breaker.allow()
    reasons = [r.rerank.degraded_reason for r in replies if r.rerank.degraded]
    assert reasons, "some searches must have waited past the stall timeout"
    assert all("overloaded" in reason and "stalled" not in reason for reason in reasons)
    assert all(in_fused_order(r.hits) for r in replies if r.rerank.degraded)
    assert any(not r.rerank.degraded and r.rerank.depth_scored == 3 for r in replies)


def test_budgets_persist_across_a_server_restart(start_server, tmp_path):
    first = start_server(tmp_path / "persist")
    admin = first.client("ops")
    saved = budget(
        "durable-tenant",
        latency_target_ms=80.0,
        max_cost_per_query=900,
        cost_per_minute=12000.0,
        min_depth=2,
        max_depth=40,
        default_mode=pb.AUTO,
    )
    assert admin.admin.SetBudget(pb.SetBudgetRequest(budget=saved), metadata=admin.metadata) == saved
    first.stop()
    second = start_server(tmp_path / "persist")
    admin2 = second.client("ops")
    assert admin2.admin.GetBudget(pb.GetBudgetRequest(tenant="durable-tenant"), metadata=admin2.metadata) == saved
    listed = admin2.admin.ListBudgets(pb.ListBudgetsRequest(), metadata=admin2.metadata)
    assert list(listed.budgets) == [saved]
    assert listed.default_budget.tenant == "" and listed.default_budget.default_mode == pb.OFF


# ---------------------------------------------------------------------- tenant admin


@pytest.mark.parametrize(
    "fields,field",
    [
        ({"tenant": ""}, "budget.tenant"),
        ({"tenant": "bad tenant!"}, "budget.tenant"),
        ({"latency_target_ms": -5.0}, "budget.latency_target_ms"),
        ({"latency_target_ms": math.nan}, "budget.latency_target_ms"),
        ({"max_cost_per_query": -1}, "budget.max_cost_per_query"),
        ({"cost_per_minute": -100.0}, "budget.cost_per_minute"),
        ({"min_depth": -1}, "budget.min_depth"),
        ({"min_depth": 20, "max_depth": 10}, "budget.min_depth"),
        ({"max_depth": 201}, "budget.max_depth"),
        ({"max_depth": -1}, "budget.max_depth"),
        ({"default_mode": 9}, "budget.default_mode"),
    ],
)
def test_set_budget_rejects_bad_input_naming_the_field(server, fields, field):
    client = server.client("ops")
    values = {"tenant": "someone", "max_depth": 50, **fields}
    request = pb.SetBudgetRequest(budget=pb.RerankBudget(**values))
    code, details = status_of(lambda: client.admin.SetBudget(request, metadata=client.metadata))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith(field + ":"), details
    assert client.admin.GetBudget(pb.GetBudgetRequest(tenant="someone"), metadata=client.metadata).tenant == ""


def test_get_budget_of_an_unknown_tenant_returns_the_default_budget(server):
    client = server.client("ops")
    reply = client.admin.GetBudget(pb.GetBudgetRequest(tenant="never-configured"), metadata=client.metadata)
    assert reply.tenant == "" and reply.max_depth == 50 and reply.default_mode == pb.OFF
    assert reply.latency_target_ms == 0 and reply.cost_per_minute == 0 and reply.max_cost_per_query == 0
    code, details = status_of(
        lambda: client.admin.GetBudget(pb.GetBudgetRequest(tenant="no spaces"), metadata=client.metadata)
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("tenant:")


def test_delete_budget_returns_the_tenant_to_the_default(server):
    client = server.client("ops")
    mine = budget("to-delete", max_depth=7, default_mode=pb.FIXED)
    client.admin.SetBudget(pb.SetBudgetRequest(budget=mine), metadata=client.metadata)
    assert client.admin.GetBudget(pb.GetBudgetRequest(tenant="to-delete"), metadata=client.metadata) == mine
    assert mine in client.admin.ListBudgets(pb.ListBudgetsRequest(), metadata=client.metadata).budgets
    assert client.admin.DeleteBudget(pb.DeleteBudgetRequest(tenant="to-delete"), metadata=client.metadata).deleted
    assert client.admin.GetBudget(pb.GetBudgetRequest(tenant="to-delete"), metadata=client.metadata).tenant == ""
    assert not client.admin.DeleteBudget(pb.DeleteBudgetRequest(tenant="to-delete"), metadata=client.metadata).deleted
    code, details = status_of(
        lambda: client.admin.DeleteBudget(pb.DeleteBudgetRequest(tenant=""), metadata=client.metadata)
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("tenant:")


# ---------------------------------------------------------------------- search input


@pytest.mark.parametrize(
    "fields,field",
    [
        ({"rerank_mode": 9}, "rerank_mode"),
        ({"rerank_mode": pb.FIXED, "rerank_depth": -1}, "rerank_depth"),
        ({"rerank_mode": pb.FIXED, "rerank_depth": 201}, "rerank_depth"),
        ({"rerank_mode": pb.FIXED, "rerank_depth": 0}, "rerank_depth"),
        ({"rerank_mode": pb.AUTO, "rerank_depth": 5}, "rerank_depth"),
    ],
)
def test_search_rejects_bad_rerank_input_naming_the_field(tenant, fields, field):
    client = tenant("acme")
    request = pb.SearchRequest(collection=COLLECTION, query=QUERY, top_k=5, **fields)
    code, details = status_of(lambda: client.stub.Search(request, metadata=client.metadata, timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith(field + ":"), details


# ---------------------------------------------------------------------- standalone Rerank


RERANK_DOCS = [
    "protein expression in cancer cells",
    "bacteria resistance to antibiotic treatment",
    "the of and",
    "cancer cells and protein binding in tumor growth",
    "sleep and memory",
    "gene regulation of stem cells",
]


def test_rerank_sorts_documents_by_relevance_with_their_indexes(server):
    client = server.client("acme")
    reply = client.rerank(QUERY, RERANK_DOCS)
    assert reply.model == "tiny" and reply.elapsed_ms > 0
    assert sorted(r.index for r in reply.results) == list(range(len(RERANK_DOCS)))
    scores = [r.relevance_score for r in reply.results]
    assert scores == sorted(scores, reverse=True)
    for r in reply.results:
        assert 0.0 <= r.relevance_score <= 1.0 and r.document == ""
        assert r.relevance_score == pytest.approx(1.0 / (1.0 + math.exp(-r.raw_score)))
    backend = server.server.service.rerank_stage.rerankers["tiny"].backend
    direct = backend.score(QUERY, RERANK_DOCS)
    for r in reply.results:
        assert r.raw_score == pytest.approx(direct.raw[r.index], abs=1e-5)
    assert reply.usage.tokens == int(direct.tokens.sum()) > 0 and reply.usage.truncated_documents == 0


def test_rerank_top_n_cuts_and_return_documents_echoes_them(server):
    client = server.client("acme")
    full = client.rerank(QUERY, RERANK_DOCS)
    top = client.rerank(QUERY, RERANK_DOCS, top_n=2, return_documents=True)
    assert [r.index for r in top.results] == [r.index for r in full.results[:2]]
    assert [r.document for r in top.results] == [RERANK_DOCS[r.index] for r in top.results]
    assert top.usage.tokens == full.usage.tokens  # every document is scored either way
    assert len(client.rerank(QUERY, RERANK_DOCS, top_n=100).results) == len(RERANK_DOCS)


def test_rerank_truncates_documents_over_max_length_and_counts_them(server):
    client = server.client("acme")
    long_doc = " ".join(_WORDS * 6)  # far over the tiny backend's 128 tokens
    reply = client.rerank(QUERY, [RERANK_DOCS[0], long_doc, long_doc + " again"])
    assert reply.usage.truncated_documents == 2
    assert len(reply.results) == 3
    backend = server.server.service.rerank_stage.rerankers["tiny"].backend
    short = int(backend.encode(QUERY, [RERANK_DOCS[0]]).tokens[0])
    assert reply.usage.tokens == short + 2 * 128


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"query": QUERY, "documents": []}, "documents"),
        ({"query": "", "documents": RERANK_DOCS}, "query"),
        ({"query": "   ", "documents": RERANK_DOCS}, "query"),
        ({"query": QUERY, "documents": RERANK_DOCS, "top_n": -1}, "top_n"),
        ({"query": QUERY, "documents": RERANK_DOCS, "model": "no-such-model"}, "model"),
        ({"query": QUERY, "documents": ["x" * 5000]}, "documents[0]"),
    ],
)
def test_rerank_rejects_bad_input_naming_the_field(server, kwargs, field):
    client = server.client("acme")
    code, details = status_of(
        lambda: client.stub.Rerank(pb.RerankRequest(**kwargs), metadata=client.metadata, timeout=10)
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith(field + ":"), details
    assert client.rerank(QUERY, RERANK_DOCS[:2]).results  # still serving


def test_rerank_rejects_too_many_documents(start_server, tmp_path, tiny_m3_dir, tiny_reranker_dir):
    running = start_server(tmp_path / "few", **rerank_overrides(tiny_m3_dir, tiny_reranker_dir, max_documents=3))
    client = running.client("acme")
    assert len(client.rerank(QUERY, RERANK_DOCS[:3]).results) == 3
    code, details = status_of(lambda: client.rerank(QUERY, RERANK_DOCS[:4]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("documents:") and "at most 3" in details
    assert len(client.rerank(QUERY, RERANK_DOCS[:2]).results) == 2


def test_server_keeps_serving_after_bad_rerank_requests(server, tenant):
    client = tenant("acme")
    for request in (
        pb.RerankRequest(query="", documents=["a"]),
        pb.RerankRequest(query="q"),
        pb.RerankRequest(query="q", documents=["a"], top_n=-3),
    ):
        code, _ = status_of(lambda request=request: client.stub.Rerank(request, metadata=client.metadata, timeout=10))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert client.rerank(QUERY, RERANK_DOCS).usage.tokens > 0
    reply = client.search(COLLECTION, QUERY, top_k=5, rerank="fixed", rerank_depth=3)
    assert reply.rerank.depth_scored == 3 and not reply.rerank.degraded
    assert health(server) == health_pb2.HealthCheckResponse.SERVING


def test_tenant_default_fixed_mode_reranks_the_tenants_max_depth(server):
    c = server.client("fixeddefault")
    c.set_budget("fixeddefault", default_mode="fixed", max_depth=4)
    if "fixed_default_docs" not in {x.name for x in c.list_collections()}:
        c.create_collection("fixed_default_docs")
        c.upsert("fixed_default_docs", [{"id": str(i), "text": f"protein cells sample {i}"} for i in range(10)])
    reply = c.search("fixed_default_docs", "protein cells", top_k=6)
    assert reply.rerank.depth_chosen == 4 and sum(h.reranked for h in reply.hits) == 4


class FlippingBudgets:
    """The server's real budget store, whose answer for one tenant alternates between two
    max_depths at every read: a budget changed between any two reads of one search."""

    def __init__(self, store, tenant: str, depths: tuple[int, int]):
        self.store, self.tenant, self.depths, self.reads = store, tenant, depths, 0

    def effective(self, tenant: str):
        budget = self.store.effective(tenant)
        if tenant != self.tenant:
            return budget
        self.reads += 1
        return type(budget)(**{**budget.__dict__, "max_depth": self.depths[self.reads % 2]})

    def __getattr__(self, name):
        return getattr(self.store, name)


def test_a_budget_changed_during_a_search_never_answers_internal(server):
    """Issue 29: the stage read the budget before the fetch and again after it; a deeper second
    read reranked documents never fetched (KeyError -> INTERNAL). One plan per search now."""
    c = server.client("flipping")
    c.set_budget("flipping", default_mode="fixed", max_depth=2)
    if "flip_docs" not in {x.name for x in c.list_collections()}:
        c.create_collection("flip_docs")
        c.upsert("flip_docs", [{"id": str(i), "text": f"protein cells sample {i}"} for i in range(20)])
    stage = server.server.service.rerank_stage
    real = stage.budgets
    stage.budgets = FlippingBudgets(real, "flipping", (2, 12))
    try:
        for _ in range(6):
            reply = c.search("flip_docs", "protein cells", top_k=3)
            d = reply.rerank
            assert not d.degraded and d.depth_chosen in (2, 12), d.reason
            # The whole decision comes from one of the two budgets: the head it reranked is
            # the depth it chose, and that depth's documents were there to rerank.
            assert d.depth_scored == d.depth_chosen and f"depth {d.depth_chosen}" in d.reason
            assert sum(h.reranked for h in reply.hits) == min(d.depth_chosen, 3)
        assert stage.budgets.reads >= 6
    finally:
        stage.budgets = real


def test_budgets_set_while_searches_run_give_consistent_decisions(server):
    """SetBudget from one thread while others search: no error, and each decision is one of
    the budgets set (its depth and the reason's max_depth agree)."""
    import threading

    admin = server.client("busybudget")
    admin.set_budget("busybudget", default_mode="fixed", max_depth=1)
    if "busy_docs" not in {x.name for x in admin.list_collections()}:
        admin.create_collection("busy_docs")
        admin.upsert("busy_docs", [{"id": str(i), "text": f"protein cells sample {i}"} for i in range(20)])
    stop, errors, decisions = threading.Event(), [], []

    def flip():
        depth = 1
        while not stop.is_set():
            depth = 9 if depth == 1 else 1
            admin.set_budget("busybudget", default_mode="fixed", max_depth=depth)

    def searching():
        client = server.client("busybudget")
        for _ in range(15):
            try:
                decisions.append(client.search("busy_docs", "protein cells", top_k=3).rerank)
            except grpc.RpcError as exc:
                errors.append(exc.code())

    flipper = threading.Thread(target=flip)
    flipper.start()
    searchers = [threading.Thread(target=searching) for _ in range(3)]
    for t in searchers:
        t.start()
    for t in searchers:
        t.join(timeout=120)
    stop.set()
    flipper.join(timeout=30)
    assert errors == [] and len(decisions) == 45
    for d in decisions:
        assert d.depth_chosen in (1, 9) and d.depth_scored == d.depth_chosen and f"depth {d.depth_chosen}:" in d.reason


def test_a_search_whose_call_ended_stops_reranking_at_the_next_chunk(server, monkeypatch):
    """Issue 28: the rerank head is scored chunk by chunk (chunk_pairs 8); once the caller is
    gone no further chunk goes to the model."""
    import threading

    from hybridsearch.engine.search_types import SearchQuery

    fill(server, "gone")
    service = server.server.service
    reranker = service.rerank_stage.reranker()
    ended, submitted = threading.Event(), []
    real_submit = reranker.batcher.submit

    def submit(pairs, **kwargs):
        submitted.append(len(pairs))
        ended.set()  # the caller goes away while its first chunk is scored
        return real_submit(pairs, **kwargs)

    monkeypatch.setattr(reranker.batcher, "submit", submit)
    query = SearchQuery(
        COLLECTION, "protein cells", top_k=10, dense_k=50, sparse_k=50, rerank_mode="fixed", rerank_depth=40
    )
    decision = service.search("gone", query, call_ended=ended).decision
    assert submitted == [8] and decision.depth_scored == 8 and decision.partial
    ended.clear()
    submitted.clear()
    assert service.search("gone", query, call_ended=threading.Event()).decision.depth_scored == 40
    assert sum(submitted) == 40
