"""A live latency model of one backend: ms as a function of pairs and tokens, fitted online.

    ms ~= a + b * pairs + c * tokens

fitted by recursive least squares with exponential forgetting over real batches,
so the model follows the machine as its load changes. A tail margin turns the
mean prediction into a p95 one: the 95th percentile of recent actual/predicted
ratios (at least 1), so a latency target is met by the tail, not the mean.
"""
from __future__ import annotations

import threading
from collections import deque

import numpy as np


class LatencyModel:
    def __init__(
        self,
        *,
        prior_ms_per_token: float = 0.05,
        prior_fixed_ms: float = 2.0,
        forgetting: float = 0.98,
        tail_quantile: float = 0.95,
        window: int = 200,
        min_margin: float = 1.0,
    ):
        # theta = [a, b, c]; a wide prior covariance lets real batches take over fast.
        self.theta = np.array([prior_fixed_ms, 0.0, prior_ms_per_token], dtype=np.float64)
        self.P = np.diag([100.0, 1.0, 1e-2])
        self.forgetting = forgetting
        self.tail_quantile = tail_quantile
        self.min_margin = min_margin
        self.ratios: deque[float] = deque(maxlen=window)
        self.observations = 0
        self._lock = threading.Lock()

    @staticmethod
    def _x(pairs: float, tokens: float) -> np.ndarray:
        return np.array([1.0, float(pairs), float(tokens)], dtype=np.float64)

    def mean_ms(self, pairs: float, tokens: float) -> float:
        if pairs <= 0:
            return 0.0
        with self._lock:
            value = float(self._x(pairs, tokens) @ self.theta)
        # Never predict less than the token term alone at its prior rate's fraction;
        # a fitted model can drift negative on tiny batches.
        return max(value, 0.1)

    @property
    def margin(self) -> float:
        with self._lock:
            if len(self.ratios) < 5:
                return max(self.min_margin, 1.5)  # cautious until the tail is known
            return max(self.min_margin, float(np.quantile(np.fromiter(self.ratios, float), self.tail_quantile)))

    def predict_ms(self, pairs: float, tokens: float) -> float:
        """Tail (p95) prediction for scoring ``pairs`` pairs of ``tokens`` tokens in all."""
        return self.mean_ms(pairs, tokens) * self.margin

    def observe(self, pairs: int, tokens: int, ms: float) -> None:
        """Feed one real batch: its size and how long it took."""
        if pairs <= 0 or not np.isfinite(ms) or ms <= 0:
            return
        x = self._x(pairs, tokens)
        with self._lock:
            predicted = float(x @ self.theta)
            if self.observations >= 3 and predicted > 0:
                self.ratios.append(ms / predicted)
            lam = self.forgetting
            Px = self.P @ x
            gain = Px / (lam + x @ Px)
            self.theta = self.theta + gain * (ms - predicted)
            self.P = (self.P - np.outer(gain, Px)) / lam
            self.observations += 1

    def largest_fitting(self, cumulative_tokens: np.ndarray, budget_ms: float) -> int:
        """The largest n with predict_ms(n, cumulative_tokens[n-1]) <= budget_ms (0 if none)."""
        if budget_ms <= 0 or len(cumulative_tokens) == 0:
            return 0
        n = np.arange(1, len(cumulative_tokens) + 1, dtype=np.float64)
        with self._lock:
            a, b, c = self.theta
        margin = self.margin
        predicted = np.maximum(a + b * n + c * cumulative_tokens, 0.1) * margin
        # Scoring more pairs never takes less time, even if a fitted coefficient went
        # negative: the running maximum keeps the fitting n a prefix.
        predicted = np.maximum.accumulate(predicted)
        fits = np.flatnonzero(predicted <= budget_ms)
        return int(fits[-1] + 1) if len(fits) else 0
