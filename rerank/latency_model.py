"""A live latency model of one backend: ms as a function of pairs and tokens, fitted online.

    ms ~= a + b * pairs + c * tokens,   a, b, c >= 0

fitted to the recent real batches (exponentially down-weighted with age, so the model
follows the machine as its load changes) by non-negative least squares. A tail margin
turns the mean prediction into a p95 one: the 95th percentile of recent
actual/predicted ratios (at least 1), so a latency target is met by the tail, not
the mean.

Why not recursive least squares (the first version): a service scores batches of
nearly the same size for hours, and forgetting then inflates the covariance in the
directions no batch excites ("windup": 1e26 after 3,000 same-size batches; one odd
batch then threw the fit to 478 s for 800 pairs, and AUTO answered "nothing fits"
under load). A refit over a window cannot wind up, the non-negative coefficients
keep time from falling with more work, and a weak pull towards the prior settles
what the data cannot tell apart (pairs and tokens move together). One ratio counts at
most 4x either way in the tail margin: further off is the fit being wrong, which the
next refit corrects, not the tail.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import nnls

# Feature scales (a chunk of 16 pairs, 4,096 tokens): the fit sees values near 1.
SCALE = np.array([1.0, 16.0, 4096.0])
MAX_RATIO = 4.0
PRIOR_WEIGHT = 1e-3  # the prior counts as this many observations, per coefficient
PULL_STIFFNESS = np.array(
    [30.0, 3.0, 1.0]
)  # fixed, per pair, per token (chosen on the two windup and convergence tests)


@dataclass(frozen=True)
class BatchObservation:
    """One real batch the model learnt from, with what it predicted for it just before."""

    pairs: int
    tokens: int
    ms: float  # how long the batch took
    predicted_mean_ms: float  # the mean prediction for it before this batch was fitted
    margin: float  # the tail margin before this batch


#: Told of every batch the model learns from (benchmarks/bench_policy.py logs them).
LatencyObserver = Callable[[BatchObservation], None]


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
        observer: LatencyObserver | None = None,
    ):
        # theta = [a, b, c]: ms, ms per pair, ms per token.
        self.prior = np.array([prior_fixed_ms, 0.0, prior_ms_per_token], dtype=np.float64)
        self.theta = self.prior.copy()
        self.forgetting = forgetting
        self.tail_quantile = tail_quantile
        self.min_margin = min_margin
        self.ratios: deque[float] = deque(maxlen=window)
        self._batches: deque[tuple[np.ndarray, float]] = deque(maxlen=window)
        self.observations = 0
        self.observer = observer
        self._lock = threading.Lock()

    @staticmethod
    def _x(pairs: float, tokens: float) -> np.ndarray:
        return np.array([1.0, float(pairs), float(tokens)], dtype=np.float64)

    def mean_ms(self, pairs: float, tokens: float) -> float:
        if pairs <= 0:
            return 0.0
        with self._lock:
            value = float(self._x(pairs, tokens) @ self.theta)
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
        observer = self.observer
        before = (
            BatchObservation(int(pairs), int(tokens), float(ms), self.mean_ms(pairs, tokens), self.margin)
            if observer
            else None
        )
        self._learn(pairs, tokens, ms)
        if before is not None:
            observer(before)

    def _learn(self, pairs: int, tokens: int, ms: float) -> None:
        x = self._x(pairs, tokens) / SCALE
        with self._lock:
            if self.observations >= 3:
                predicted = max(float(x @ (self.theta * SCALE)), 0.1)
                self.ratios.append(min(max(ms / predicted, 1.0 / MAX_RATIO), MAX_RATIO))
                # One stalled batch (a GC pause, a stuck thread) must not drag the fit for
                # the next hundred: it enters at most 4x off; a real, lasting change still
                # gets through, 4x per step.
                ms = min(max(ms, predicted / MAX_RATIO), predicted * MAX_RATIO)
            self._batches.append((x, float(ms)))
            self.theta = self._fit()
            self.observations += 1

    def _fit(self) -> np.ndarray:
        """Weighted NNLS over the window on scaled features, with a weak pull to the prior."""
        n = len(self._batches)
        X = np.array([b[0] for b in self._batches])
        y = np.array([b[1] for b in self._batches])
        w = np.sqrt(self.forgetting ** np.arange(n - 1, -1, -1, dtype=np.float64))
        # The pull acts in ms, like the data: moving coefficient j off its prior by d costs
        # d x (typical size of feature j), weighted as PRIOR_WEIGHT of one batch, so it only
        # settles what the batches cannot tell apart. Where they cannot (one batch size all
        # day), time is put on tokens rather than on the fixed term (held 30x harder) or the
        # per-pair term (3x): a transformer's cost is its tokens, and then 1 pair is not
        # predicted at the cost of 16.
        pull = np.sqrt(PRIOR_WEIGHT) * np.maximum(np.sqrt(np.mean(X**2, axis=0)), 1e-6) * PULL_STIFFNESS
        A = np.vstack([X * w[:, None], np.diag(pull)])
        b = np.concatenate([y * w, pull * self.prior * SCALE])
        coef, _ = nnls(A, b)
        return coef / SCALE

    def largest_fitting(self, cumulative_tokens: np.ndarray, budget_ms: float, pairs: np.ndarray | None = None) -> int:
        """The largest n with predict_ms(pairs[n-1], cumulative_tokens[n-1]) <= budget_ms (0 if none).

        ``pairs``: the sequences the first n documents are scored as, cumulative (a long
        document in windows is several pairs); None: one pair per document (pairs[n-1] = n)."""
        if budget_ms <= 0 or len(cumulative_tokens) == 0:
            return 0
        if pairs is None:
            n = np.arange(1, len(cumulative_tokens) + 1, dtype=np.float64)
        else:
            n = np.asarray(pairs, dtype=np.float64)[: len(cumulative_tokens)]
        with self._lock:
            a, b, c = self.theta
        margin = self.margin
        predicted = np.maximum(a + b * n + c * cumulative_tokens, 0.1) * margin
        # Scoring more pairs never takes less time, even if a coefficient was set
        # negative by hand: the running maximum keeps the fitting n a prefix.
        predicted = np.maximum.accumulate(predicted)
        fits = np.flatnonzero(predicted <= budget_ms)
        return int(fits[-1] + 1) if len(fits) else 0
