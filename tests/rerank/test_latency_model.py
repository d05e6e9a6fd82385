"""The live latency model: converges on real-shaped observations, predicts the tail, fits budgets."""

from __future__ import annotations

import numpy as np
import pytest

from hybridsearch.rerank.latency_model import LatencyModel


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


def test_hours_of_same_size_batches_do_not_wind_the_fit_up():
    # A service scores 16-pair chunks all day. The recursive least-squares fit this model
    # had first let its covariance grow without bound in the directions such batches never
    # excite (1e26 after 3,000 of them), predicted 0 ms for 1 pair and 478 s for 800,
    # and AUTO answered "nothing fits" under load. Predictions must stay near the truth.
    rng = np.random.default_rng(0)

    def true_ms(tokens):
        return 5.0 + 0.23 * tokens  # about 43 ms per pair of 180 tokens, as measured on 2 cores

    model = LatencyModel()
    for pairs in (1, 4, 8, 16):  # start-up calibration
        model.observe(pairs, pairs * 180, true_ms(pairs * 180))
    for _ in range(3000):
        tokens = int(16 * rng.normal(180, 20))
        model.observe(16, tokens, true_ms(tokens) * float(rng.lognormal(0.0, 0.15)))
    assert np.all(model.theta >= 0) and np.all(np.isfinite(model.theta))
    for pairs in (1, 16, 100, 800):
        mean = model.mean_ms(pairs, pairs * 180)
        assert 0.7 * true_ms(pairs * 180) <= mean <= 1.5 * true_ms(pairs * 180), (pairs, mean)
    assert 1.0 <= model.margin <= 1.6

    # a burst of contended batches (twice as slow) moves the fit towards it, but sanely
    for _ in range(20):
        model.observe(64, 64 * 180, 2 * true_ms(64 * 180))
    predictions = [model.predict_ms(p, p * 180) for p in (1, 16, 64, 100, 800)]
    assert predictions == sorted(predictions) and predictions[0] > 0
    assert predictions[-1] <= 4 * true_ms(800 * 180)


def test_one_wild_batch_cannot_blow_up_the_fit_or_the_tail_margin():
    model = trained()
    before = model.mean_ms(8, 400)
    model.observe(8, 400, 1e6)  # a stall: a hundred thousand times the usual time
    assert model.margin <= 4.0
    assert np.all(model.theta >= 0)
    assert model.mean_ms(8, 400) <= 1.3 * before


def test_a_lasting_slowdown_is_learned_even_past_the_outlier_clip():
    model = trained()
    slow = 10 * float(truth(400))
    for _ in range(20):  # the machine became ten times slower and stays so
        model.observe(8, 400, slow)
    # the tail margin reacts first: the p95 prediction already covers the new speed
    assert model.predict_ms(8, 400) >= slow
    for _ in range(130):
        model.observe(8, 400, slow)
    # and the mean follows at the forgetting rate
    assert model.mean_ms(8, 400) == pytest.approx(slow, rel=0.15)
