"""The cascade policy: plans under tight and loose budgets, their time and cost, and the
per-segment latency model. Latency models are left at their priors (no batches seen), so
every prediction is exact: a segment of s of the model's 6 layers predicts
1.5 x (2 + 0.05 x tokens) x s / 6 ms (1.5: the cautious tail margin before any batch)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from hybridsearch.rerank.budgets import RerankBudget
from hybridsearch.rerank.cascade import CascadePlan, LayerLatency, cascade_cost, choose_plan
from hybridsearch.rerank.policy import PolicyInputs
from hybridsearch.rerank.signals import QuerySignals

TOKENS = 100.0
CUMULATIVE = np.cumsum(np.full(100, TOKENS))  # 100 candidates of 100 tokens each
UNSURE = QuerySignals(top_agree=False, route_agreement=0.0)


def full_ms(pairs: int, tokens: float, layers: int = 6) -> float:
    return 1.5 * (2.0 + 0.05 * tokens) * layers / 6 if pairs else 0.0


def inputs(
    mode="auto",
    *,
    cumulative=CUMULATIVE,
    deadline=None,
    target=0.0,
    bucket=None,
    max_cost=0,
    max_depth=100,
    requested=0,
    auto_max_depth=0,
    candidates=None,
    min_depth=0,
):
    return PolicyInputs(
        mode=mode,
        budget=RerankBudget(
            tenant="t", max_depth=max_depth, latency_target_ms=target, max_cost_per_query=max_cost, min_depth=min_depth
        ),
        cumulative_tokens=cumulative,
        elapsed_ms=0.0,
        deadline_left_ms=deadline,
        bucket_level=bucket,
        signals=UNSURE,
        reserve_ms=0.0,
        requested_depth=requested,
        auto_max_depth=auto_max_depth,
        candidates=candidates,
    )


@pytest.fixture
def layers() -> LayerLatency:
    return LayerLatency([2, 4, 6])


def test_segments_add_up_to_the_whole_model(layers):
    assert layers.segments == ((0, 2), (2, 4), (4, 6))
    for pairs, tokens in ((1, 100.0), (10, 1000.0)):
        whole = layers.predict_ms(0, 6, pairs, tokens)
        assert whole == pytest.approx(full_ms(pairs, tokens))
        assert layers.predict_ms(0, 2, pairs, tokens) + layers.predict_ms(2, 6, pairs, tokens) == pytest.approx(whole)
    assert layers.predict_ms(0, 6, 0, 0.0) == 0.0


def test_a_layer_without_an_exit_is_refused_by_name(layers):
    with pytest.raises(ValueError, match=r"end: the model has exits after layers 2, 4, 6; got 5"):
        layers.predict_ms(0, 5, 1, 10.0)
    with pytest.raises(ValueError, match=r"start: .*got 3"):
        layers.observe(3, 6, 1, 10, 1.0)
    with pytest.raises(ValueError, match="positive"):
        LayerLatency([0, 6])


def test_observing_a_span_shares_its_time_by_the_segments_predictions():
    layers = LayerLatency([2, 6])
    for _ in range(30):
        layers.observe(0, 6, 8, 800, 30.0)  # a pass timed as one piece
    # Shared 1:2 as the priors predicted (2 of 6 layers, then 4): the segments keep that split.
    low, high = layers.models[(0, 2)].mean_ms(8, 800), layers.models[(2, 6)].mean_ms(8, 800)
    assert low + high == pytest.approx(30.0, rel=0.05)
    assert high / low == pytest.approx(2.0, rel=0.05)


def test_cost_weights_tokens_by_the_layers_they_ran():
    cum = np.cumsum([100.0, 300.0, 50.0, 200.0])
    assert cascade_cost(cum, 4, 6, 4, 6) == 650.0  # full depth: the tokens
    # Screen 4 to layer 2 (650 x 2/6), finish the 2 longest (300 + 200) from 2 to 6 (x 4/6).
    assert cascade_cost(cum, 4, 2, 2, 6) == pytest.approx(650 * 2 / 6 + 500 * 4 / 6)
    assert cascade_cost(cum, 0, 2, 0, 6) == 0.0


def test_a_loose_budget_scores_everything_in_full(layers):
    plan = choose_plan(inputs(target=10_000.0), layers)
    assert (plan.screen, plan.screen_layer, plan.keep, plan.final_layer, plan.cascade) == (100, 6, 100, 6, False)
    assert plan.describe() == "score 100 to layer 6" and plan.cost_units == 10_000.0


def test_a_tight_latency_target_screens_more_than_full_depth_could_score(layers):
    target = full_ms(1, 20 * TOKENS)  # 20 pairs in full: today's AUTO depth is 20
    plan = choose_plan(inputs(target=target), layers)
    assert plan.cascade and plan.keep == 10 and plan.final_layer == 6
    assert plan.screen > 20 and plan.predicted_ms <= target
    # The widest: one more screened candidate would not fit.
    more = layers.predict_ms(0, plan.screen_layer, 1, (plan.screen + 1) * TOKENS) + layers.predict_ms(
        plan.screen_layer, 6, 1, 10 * TOKENS
    )
    assert more > target
    # Layer 2 screens the most here (time falls with the layers run before the cut).
    assert plan.screen_layer == 2 and "cascade: screen" in plan.reason and "bound by time" in plan.reason
    assert plan.describe() == f"score {plan.screen} to layer 2, keep 10, finish them to layer 6"
    assert plan.cost_units == pytest.approx(plan.screen * TOKENS * 2 / 6 + 10 * TOKENS * 4 / 6)


def test_the_cost_cap_bounds_a_cascade_by_its_layer_weighted_tokens(layers):
    cap = 3000  # 30 candidates in full; a cascade at layer 2 pays a third for the screen
    plan = choose_plan(inputs(target=10_000.0, max_cost=cap, max_depth=100), layers)
    assert plan.cascade and plan.cost_units <= cap
    assert cascade_cost(CUMULATIVE, plan.screen + 1, plan.screen_layer, plan.keep, 6) > cap
    assert plan.screen > 30 and "cost cap 3000" in plan.reason


def test_the_rate_budget_left_bounds_a_cascade_too(layers):
    plan = choose_plan(inputs(target=10_000.0, bucket=1500.0), layers)
    assert plan.cost_units <= 1500.0 and "rate budget" in plan.reason


def test_fixed_keeps_its_depth_and_full_model(layers):
    plan = choose_plan(inputs("fixed", requested=15, target=1.0), layers)  # FIXED ignores the target
    assert (plan.screen, plan.screen_layer, plan.keep, plan.cascade) == (15, 6, 15, False)


def test_nothing_fits_a_deadline_even_as_a_cascade(layers):
    plan = choose_plan(inputs(deadline=0.5), layers)
    assert plan.screen == 0 and plan.describe() == "fusion only" and "nothing fits" in plan.reason


def test_a_model_without_earlier_exits_plans_full_depth_only():
    plan = choose_plan(inputs(target=full_ms(1, 20 * TOKENS) + 1e-6), LayerLatency([6]))
    assert (plan.screen, plan.cascade) == (20, False)


def test_a_cascade_never_screens_past_the_tenants_max_depth_or_the_models_limit(layers):
    target = full_ms(1, 20 * TOKENS)
    assert choose_plan(inputs(target=target, max_depth=25), layers).screen == 25
    assert choose_plan(inputs(target=target, auto_max_depth=30), layers).screen == 30


def test_when_full_depth_already_takes_every_allowed_candidate_there_is_no_cascade(layers):
    plan = choose_plan(inputs(target=full_ms(1, 20 * TOKENS), max_depth=15), layers)
    assert (plan.screen, plan.cascade) == (15, False)


def test_no_cascade_when_the_full_depth_is_no_more_than_keep(layers):
    # Keeping all D that fit in full leaves no time to screen more: finishing D pairs from
    # layer 2 costs what scoring them in full does, and the screen pass adds its own.
    target = full_ms(1, 5 * TOKENS) + 1e-6  # 5 in full
    plan = choose_plan(inputs(target=target), layers, keep=10)
    assert (plan.screen, plan.cascade) == (5, False) and "no cascade screens more than 5" in plan.reason
    # Keeping 3 of them frees the time to screen 9: 0.5 (2 + 5 N) + (2 + 0.05 x 300) <= 40.5.
    plan = choose_plan(inputs(target=target), layers, keep=3)
    assert (plan.screen, plan.screen_layer, plan.keep) == (9, 2, 3) and plan.predicted_ms <= target


def test_a_tokenised_prefix_asks_for_more_before_a_cascade(layers):
    short = CUMULATIVE[:8]
    plan = choose_plan(inputs(target=full_ms(1, 20 * TOKENS), cumulative=short, candidates=100), layers)
    assert plan.more and plan.screen <= 8


def test_long_survivors_are_planned_for(layers):
    # Half the candidates are 10x longer: the plan must fit even if those are the ones kept.
    per = np.where(np.arange(100) % 2 == 0, 20.0, 200.0)
    cum = np.cumsum(per)
    target = 60.0
    plan = choose_plan(inputs(target=target, cumulative=cum), layers)
    worst_kept = np.sort(per[: plan.screen])[-plan.keep :].sum()
    assert (
        layers.predict_ms(0, plan.screen_layer, plan.screen, cum[plan.screen - 1])
        + layers.predict_ms(plan.screen_layer, 6, plan.keep, worst_kept)
        <= target + 1e-9
    )


def test_plan_describes_itself():
    assert CascadePlan(0, 6, 0, 6, 0.0, 0.0, "x").describe() == "fusion only"
    assert replace(CascadePlan(40, 2, 10, 6, 1.0, 2.0, "x")).cascade


def test_screen_layers_limit_the_exits_a_cascade_may_screen_at(layers):
    target = full_ms(1, 20 * TOKENS)
    anywhere = choose_plan(inputs(target=target), layers)
    at4 = choose_plan(inputs(target=target), layers, screen_layers=[4])
    assert anywhere.screen_layer == 2 and at4.screen_layer == 4
    assert 20 < at4.screen < anywhere.screen and at4.predicted_ms <= target  # layer 4 costs more per screened pair
