"""The live latency model: converges on real-shaped observations, predicts the tail, fits budgets."""
from __future__ import annotations

import numpy as np
import pytest

from rerank.latency_model import LatencyModel


def truth(tokens):
    return 1.0 + 0.02 * np.asarray(tokens, dtype=np.float64)


def trained(observations: int = 300, noise: float = 0.0, seed: int = 7) -> LatencyModel:
    rng = np.random.default_rng(seed)
    model = LatencyModel()
    for _ in range(observations):
        pairs = int(rng.integers(1, 33))
        tokens = int(pairs * rng.integers(10, 200))
        ms = float(truth(tokens)) * (1.0 + noise * float(rng.standard_normal()))
        model.observe(pairs, tokens, max(ms, 0.01))
    return model


def test_latency_model_converges_on_synthetic_observations():
    model = trained()
    for pairs, tokens in [(1, 20), (8, 400), (16, 1600), (32, 6000)]:
        assert model.mean_ms(pairs, tokens) == pytest.approx(float(truth(tokens)), rel=0.02, abs=0.05)
    a, b, c = model.theta
    assert a == pytest.approx(1.0, abs=0.1) and abs(b) < 0.01 and c == pytest.approx(0.02, rel=0.02)


def test_tail_margin_is_at_least_one_and_near_one_for_exact_observations():
    model = trained()
    assert 1.0 <= model.margin < 1.05
    assert model.predict_ms(8, 400) >= model.mean_ms(8, 400)


def test_tail_margin_covers_noisy_observations():
    model = trained(noise=0.2)
    assert model.margin >= 1.1  # the p95 of actual/predicted with 20 % noise is well above 1
    assert model.predict_ms(8, 400) == pytest.approx(model.mean_ms(8, 400) * model.margin)


def test_untrained_model_is_cautious():
    model = LatencyModel()
    assert model.margin >= 1.5
    assert model.mean_ms(0, 0) == 0.0 and model.predict_ms(4, 100) > 0


def test_observations_that_cannot_be_timed_are_ignored():
    model = LatencyModel()
    before = model.theta.copy()
    for pairs, ms in [(0, 5.0), (4, float("nan")), (4, 0.0), (4, -1.0), (4, float("inf"))]:
        model.observe(pairs, 100, ms)
    assert model.observations == 0 and np.array_equal(model.theta, before)


def test_largest_fitting_is_monotone_in_the_budget():
    model = trained()
    cumulative = np.cumsum(np.full(100, 25.0))
    budgets = np.linspace(-5, 80, 300)
    depths = [model.largest_fitting(cumulative, float(b)) for b in budgets]
    assert depths == sorted(depths)
    assert depths[0] == 0 and depths[-1] == 100
    assert model.largest_fitting(cumulative, 0.0) == 0
    assert model.largest_fitting(cumulative[:0], 1e9) == 0


def test_largest_fitting_agrees_with_predict():
    model = trained()
    cumulative = np.cumsum(np.full(60, 30.0))
    for budget in (2.0, 5.0, 10.0, 20.0, 33.3):
        n = model.largest_fitting(cumulative, budget)
        if n:
            assert model.predict_ms(n, cumulative[n - 1]) <= budget + 1e-9
        if n < len(cumulative):
            assert model.predict_ms(n + 1, cumulative[n]) > budget


def test_largest_fitting_stays_a_prefix_when_a_fitted_coefficient_is_negative():
    model = LatencyModel()
    model.theta = np.array([50.0, -5.0, 0.01])  # a fit gone wrong: time falls with pairs
    cumulative = np.cumsum(np.full(20, 100.0))
    n = model.largest_fitting(cumulative, budget_ms=60.0)
    # every prefix up to n fits, none beyond it is chosen just because its own prediction dipped
    assert n == 0 or model.predict_ms(1, cumulative[0]) <= 60.0
    assert all(max(model.predict_ms(i, cumulative[i - 1]) for i in range(1, k + 1)) <= 60.0 for k in range(1, n + 1))
