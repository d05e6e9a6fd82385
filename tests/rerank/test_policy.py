"""The depth policy: every bound (depth range, cost cap, rate budget, deadline, latency target) limits n."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from hybridsearch.rerank.budgets import RerankBudget
from hybridsearch.rerank.latency_model import LatencyModel
from hybridsearch.rerank.policy import PolicyInputs, choose_depth
from hybridsearch.rerank.signals import QuerySignals, query_signals

TOKENS_PER_PAIR = 20.0
CUMULATIVE = np.cumsum(np.full(100, TOKENS_PER_PAIR))  # 100 candidates of 20 tokens each
UNSURE = QuerySignals(top_agree=False, route_agreement=0.0)
AGREE = QuerySignals(top_agree=True, route_agreement=0.7)


@pytest.fixture(scope="module")
def model() -> LatencyModel:
    """Trained on ms = 1 + 0.02 * tokens: a pair of 20 tokens adds 0.4 ms."""
    rng = np.random.default_rng(3)
    m = LatencyModel()
    for _ in range(300):
        pairs = int(rng.integers(1, 33))
        tokens = int(pairs * rng.integers(10, 200))
        m.observe(pairs, tokens, 1.0 + 0.02 * tokens)
    return m


def inputs(
    mode="auto",
    *,
    budget=None,
    cumulative=CUMULATIVE,
    deadline=None,
    bucket=None,
    signals=UNSURE,
    requested=0,
    elapsed=0.0,
    skip=False,
    auto_max_depth=0,
    candidates=None,
    **budget_fields,
):
    b = budget or RerankBudget(tenant="t", max_depth=100)
    if budget_fields:
        b = replace(b, **budget_fields)
    return PolicyInputs(
        mode=mode,
        budget=b,
        cumulative_tokens=cumulative,
        elapsed_ms=elapsed,
        deadline_left_ms=deadline,
        bucket_level=bucket,
        signals=signals,
        queue_wait_ms=0.0,
        reserve_ms=0.0,
        requested_depth=requested,
        skip_when_routes_agree=skip,
        auto_max_depth=auto_max_depth,
        candidates=candidates,
    )


def test_auto_without_limits_takes_the_tenant_max_depth(model):
    choice = choose_depth(inputs(max_depth=30), model)
    assert choice.depth == 30 and "max_depth 30" in choice.reason and choice.time_left_ms is None
    assert choice.predicted_ms == pytest.approx(model.predict_ms(30, 30 * TOKENS_PER_PAIR))


def test_no_candidates_gives_zero_depth_with_a_reason(model):
    choice = choose_depth(inputs(cumulative=CUMULATIVE[:0]), model)
    assert choice.depth == 0 and "no candidates" in choice.reason


def test_tighter_latency_target_gives_smaller_depth(model):
    depths = [choose_depth(inputs(latency_target_ms=t), model).depth for t in (40.0, 20.0, 10.0, 5.0)]
    assert depths == sorted(depths, reverse=True) and len(set(depths)) == 4
    assert depths[-1] > 0
    choice = choose_depth(inputs(latency_target_ms=10.0), model)
    assert "latency target 10 ms" in choice.reason
    assert choice.predicted_ms <= 10.0 and choice.time_left_ms == pytest.approx(10.0)


def test_latency_target_counts_the_time_the_search_already_spent(model):
    fresh = choose_depth(inputs(latency_target_ms=20.0), model).depth
    late = choose_depth(inputs(latency_target_ms=20.0, elapsed=12.0), model).depth
    assert 0 < late < fresh


def test_shorter_deadline_gives_smaller_depth(model):
    for mode, extra in (("auto", {}), ("fixed", {"requested": 100})):
        depths = [choose_depth(inputs(mode, deadline=d, **extra), model).depth for d in (40.0, 20.0, 10.0, 5.0)]
        assert depths == sorted(depths, reverse=True) and len(set(depths)) == 4, (mode, depths)
        choice = choose_depth(inputs(mode, deadline=10.0, **extra), model)
        assert "gRPC deadline" in choice.reason and choice.predicted_ms <= 10.0


def test_the_tighter_of_deadline_and_latency_target_binds(model):
    by_deadline = choose_depth(inputs(deadline=8.0, latency_target_ms=30.0), model)
    by_target = choose_depth(inputs(deadline=30.0, latency_target_ms=8.0), model)
    assert by_deadline.depth == by_target.depth > 0
    assert "gRPC deadline" in by_deadline.reason and "latency target" in by_target.reason


@pytest.mark.parametrize(
    "kwargs,bound",
    [
        ({"deadline": 0.5}, "gRPC deadline"),
        ({"deadline": -3.0}, "gRPC deadline"),
        ({"latency_target_ms": 0.001}, "latency target"),
        ({"latency_target_ms": 50.0, "elapsed": 60.0}, "latency target"),
        ({"max_cost_per_query": 10}, "cost cap"),
        ({"bucket": 5.0}, "rate budget"),
        ({"bucket": -40.0}, "rate budget"),
        ({"max_depth": 0}, "max_depth 0"),
    ],
)
def test_nothing_fits_gives_zero_depth_naming_the_bound(model, kwargs, bound):
    choice = choose_depth(inputs(**kwargs), model)
    assert choice.depth == 0
    assert choice.reason.startswith("fusion only") and bound in choice.reason
    assert choice.predicted_ms == 0.0


def test_per_query_cost_cap_limits_depth(model):
    choice = choose_depth(inputs(max_cost_per_query=150), model)
    assert choice.depth == 7  # 7 * 20 = 140 <= 150 < 160
    assert "cost cap 150" in choice.reason
    exact = choose_depth(inputs(max_cost_per_query=160), model)
    assert exact.depth == 8


def test_rate_budget_bucket_level_limits_depth(model):
    assert choose_depth(inputs(bucket=None), model).depth == 100
    choice = choose_depth(inputs(bucket=70.0), model)
    assert choice.depth == 3 and "rate budget" in choice.reason
    assert choose_depth(inputs("fixed", requested=50, bucket=70.0), model).depth == 3


def test_fixed_honours_the_requested_depth(model):
    choice = choose_depth(inputs("fixed", requested=7), model)
    assert choice.depth == 7 and "fixed depth 7" in choice.reason


def test_fixed_is_capped_by_tenant_max_depth(model):
    choice = choose_depth(inputs("fixed", requested=40, max_depth=10), model)
    assert choice.depth == 10 and "max_depth 10" in choice.reason


def test_fixed_cap_is_attributed_to_max_depth_when_the_head_was_already_cut_to_it(model):
    # the stage hands the policy only min(requested, max_depth) candidates
    choice = choose_depth(inputs("fixed", requested=40, max_depth=10, cumulative=CUMULATIVE[:10]), model)
    assert choice.depth == 10 and "max_depth 10" in choice.reason


def test_fixed_is_capped_by_the_candidates_available(model):
    choice = choose_depth(inputs("fixed", requested=40, cumulative=CUMULATIVE[:12]), model)
    assert choice.depth == 12 and "12 candidates" in choice.reason


def test_fixed_is_capped_by_the_deadline(model):
    choice = choose_depth(inputs("fixed", requested=100, deadline=10.0), model)
    assert 0 < choice.depth < 100 and "gRPC deadline" in choice.reason


def test_fixed_ignores_the_latency_target(model):
    choice = choose_depth(inputs("fixed", requested=40, latency_target_ms=0.001), model)
    assert choice.depth == 40 and "latency target" not in choice.reason


def test_fixed_ignores_min_depth_and_route_agreement(model):
    choice = choose_depth(inputs("fixed", requested=2, min_depth=5, signals=AGREE, skip=True), model)
    assert choice.depth == 2


def test_auto_skips_the_rerank_when_the_routes_agree_on_the_top_hit(model):
    choice = choose_depth(inputs(max_depth=40, signals=AGREE, skip=True), model)
    assert choice.depth == 0
    assert (
        choice.reason.startswith("fusion only: dense and sparse routes agree on the top hit")
        and "skip_when_routes_agree" in choice.reason
    )


def test_auto_takes_the_whole_budget_when_the_routes_disagree(model):
    choice = choose_depth(inputs(max_depth=40, signals=UNSURE, skip=True), model)
    assert choice.depth == 40


def test_route_agreement_changes_nothing_unless_the_backend_skips(model):
    assert choose_depth(inputs(max_depth=40, signals=AGREE, skip=False), model).depth == 40


def test_routes_agreeing_still_rerank_the_tenant_min_depth(model):
    choice = choose_depth(inputs(max_depth=40, min_depth=5, signals=AGREE, skip=True), model)
    assert choice.depth == 5 and "tenant min_depth 5: dense and sparse routes agree" in choice.reason
    # and the other bounds still hold under it
    capped = choose_depth(
        inputs(max_depth=40, min_depth=5, max_cost_per_query=3 * TOKENS_PER_PAIR, signals=AGREE, skip=True), model
    )
    assert capped.depth == 0 and "cost cap" in capped.reason


def test_auto_below_min_depth_gives_zero(model):
    choice = choose_depth(inputs(min_depth=10, max_cost_per_query=100), model)  # 5 fit the cap
    assert choice.depth == 0
    assert "below tenant min_depth 10" in choice.reason and "cost cap" in choice.reason


def test_query_signals_see_the_routes_agree_on_the_top_hit_and_measure_overlap():
    same = np.array([1, 2, 3, 4])
    agree = query_signals({"dense": same, "sparse": same}, k=4)
    assert agree.top_agree and agree.route_agreement == 1.0
    # both routes retrieved the first two documents, in swapped order: no top agreement
    swapped = query_signals({"dense": np.array([1, 2, 3, 0]), "sparse": np.array([2, 1, 0, 3])}, k=4)
    assert not swapped.top_agree and swapped.route_agreement == pytest.approx(2 / 3)
    disjoint = query_signals({"dense": np.array([1, 2, 0, 0]), "sparse": np.array([0, 0, 1, 2])}, k=4)
    assert not disjoint.top_agree and disjoint.route_agreement == 0.0


def test_one_route_alone_gives_no_agreement_signal():
    alone = query_signals({"dense": np.array([1, 2, 3])})
    assert not alone.top_agree and alone.route_agreement == 0.0


def test_auto_never_goes_past_the_models_auto_max_depth(model):
    choice = choose_depth(inputs(max_depth=40, auto_max_depth=15), model)
    assert choice.depth == 15 and "auto_max_depth 15" in choice.reason
    # the tighter bound wins either way, and FIXED is not bound by it
    assert choose_depth(inputs(max_depth=10, auto_max_depth=15), model).depth == 10
    assert (
        choose_depth(inputs(max_depth=40, auto_max_depth=15, max_cost_per_query=5 * TOKENS_PER_PAIR), model).depth == 5
    )
    assert choose_depth(inputs("fixed", requested=30, max_depth=40, auto_max_depth=15), model).depth == 30


@pytest.mark.parametrize(
    "kwargs", [{}, {"latency_target_ms": 5.0}, {"max_cost_per_query": 25 * TOKENS_PER_PAIR}, {"deadline": 9.0}]
)
def test_deciding_on_a_tokenised_prefix_asks_for_more_until_it_gives_the_full_answer(model, kwargs):
    """The stage tokenises AUTO's candidates in growing batches: on any prefix the policy
    either decides what it would on all of them, or says it needs more."""
    full = choose_depth(inputs(max_depth=100, **kwargs), model)
    known = 0
    while True:
        choice = choose_depth(
            inputs(max_depth=100, cumulative=CUMULATIVE[:known], candidates=len(CUMULATIVE), **kwargs), model
        )
        if not choice.more:
            break
        assert choice.depth == known < len(CUMULATIVE) and known <= full.depth
        known = min(len(CUMULATIVE), max(2 * known, 16))
    assert (choice.depth, choice.reason) == (full.depth, full.reason)
    assert known <= max(16, 2 * full.depth)  # no more tokenised than the depth needed, give or take a doubling


def test_agreeing_routes_decide_before_anything_is_tokenised(model):
    choice = choose_depth(
        inputs(max_depth=100, cumulative=CUMULATIVE[:0], candidates=100, signals=AGREE, skip=True), model
    )
    assert choice.depth == 0 and not choice.more and "agree on the top hit" in choice.reason
