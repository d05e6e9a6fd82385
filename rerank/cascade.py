"""The cascade policy: how many candidates to score, how deep, and how many to finish.

A model with early exits (rerank/early_exit.py) scores a pair up to any of its exit layers
and can continue the pairs it keeps from there without recomputing the layers below. That
gives AUTO a second knob besides the depth (how many candidates): how far the model runs.
A plan

    screen N candidates to layer a, keep the best M of them, finish those to layer b

costs the lower layers for N pairs and the upper ones for M. Within the same time and cost
budget, a cascade screens more candidates than a full-depth rerank could score and still
orders its top M with the full model.

Pure, as rerank.policy is: every input is a value, the decision is explained, and the
bounds are the same (deadline, latency target, per-query cost cap, rate budget, the
tenant's depth range). The plan chosen:

1. the full-depth depth D that rerank.policy.choose_depth allows (today's AUTO), with the
   time of layer segments summed (LayerLatency.full);
2. if D already takes every candidate AUTO may rerank, or the model has no earlier exit,
   or the mode is FIXED (a depth the caller asked for), that plan, unchanged;
3. else, for each earlier exit a: keep M = min(D, keep) (``keep``: the backend's
   ``cascade_keep``, the head a caller sees, 10 by default) and screen the largest N that
   fits the same time and cost with those M finished; the plan with the largest N wins
   (ties: the later exit, a better screen). A cascade that would screen no more than D is
   not worth its second pass: the full-depth plan stands. So a cascade needs D > keep:
   finishing all D from layer a costs what scoring them in full does, and the screen pass
   comes on top (tests/rerank/test_cascade.py). ``keep`` is a setting of the model, as
   auto_max_depth is: how many finished candidates its early exit can be trusted to pick
   (measured with benchmarks, not assumed).

Cost of a cascade, in the budget's unit (reranker tokens): a pair's tokens weighted by the
share of the model's layers it went through, so a pair screened to layer 2 of 6 and never
finished costs a third of its tokens. A full-depth plan costs its tokens, as before.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from itertools import pairwise

import numpy as np

from hybridsearch.rerank.latency_model import LatencyModel
from hybridsearch.rerank.policy import DepthChoice, PolicyInputs, choose_depth


class LayerLatency:
    """One latency model per segment of layers between exits (0 -> a1, a1 -> a2, ...): the time
    to run ``pairs`` pairs of ``tokens`` tokens through a segment, learnt from real batches as
    LatencyModel learns whole forward passes. A span of layers costs the sum of its segments."""

    def __init__(self, exit_layers: Sequence[int], *, prior_ms_per_token: float = 0.05, prior_fixed_ms: float = 2.0):
        layers = sorted({int(a) for a in exit_layers})
        if not layers or layers[0] <= 0:
            raise ValueError(f"exit layers must be positive layer numbers, got {list(exit_layers)}")
        self.exit_layers = tuple(layers)
        self.last = layers[-1]
        bounds = (0, *layers)
        self.segments = tuple(pairwise(bounds))
        # Priors: the whole model's, shared out by each segment's share of the layers.
        self.models = {
            (lo, hi): LatencyModel(
                prior_ms_per_token=prior_ms_per_token * (hi - lo) / self.last,
                prior_fixed_ms=prior_fixed_ms * (hi - lo) / self.last,
            )
            for lo, hi in self.segments
        }
        self._lock = threading.Lock()

    def check_layer(self, layer: int, field: str = "layer") -> int:
        if layer not in self.exit_layers:
            raise ValueError(
                f"{field}: the model has exits after layers {', '.join(map(str, self.exit_layers))}; got {layer}"
            )
        return layer

    def span(self, start: int, end: int) -> list[LatencyModel]:
        if start != 0:
            self.check_layer(start, "start")
        self.check_layer(end, "end")
        return [self.models[s] for s in self.segments if start <= s[0] and s[1] <= end]

    def predict_ms(self, start: int, end: int, pairs: float, tokens: float) -> float:
        """Tail (p95) time to run ``pairs`` pairs from ``start`` (0: the embeddings) to ``end``."""
        if pairs <= 0 or end <= start:
            return 0.0
        return sum(m.predict_ms(pairs, tokens) for m in self.span(start, end))

    def observe(self, start: int, end: int, pairs: int, tokens: int, ms: float) -> None:
        """One real batch that ran from ``start`` to ``end``: its time is shared out over the
        segments it crossed by their current predictions (a pass timed as one piece)."""
        models = self.span(start, end)
        if len(models) == 1:
            models[0].observe(pairs, tokens, ms)
            return
        predicted = np.array([m.mean_ms(pairs, tokens) for m in models])
        shares = predicted / predicted.sum() if predicted.sum() > 0 else np.full(len(models), 1.0 / len(models))
        for model, share in zip(models, shares, strict=True):
            model.observe(pairs, tokens, ms * float(share))

    @property
    def full(self) -> _FullDepth:
        """The whole model as one LatencyModel-like view, for rerank.policy.choose_depth."""
        return _FullDepth(self)


class _FullDepth:
    """LatencyModel's two methods the depth policy calls, over the sum of all segments."""

    def __init__(self, layers: LayerLatency):
        self.layers = layers

    def predict_ms(self, pairs: float, tokens: float) -> float:
        return self.layers.predict_ms(0, self.layers.last, pairs, tokens)

    def largest_fitting(self, cumulative_tokens: np.ndarray, budget_ms: float, pairs: np.ndarray | None = None) -> int:
        return _largest_fitting(self.predict_ms, cumulative_tokens, budget_ms, pairs)


def _largest_fitting(predict, cumulative_tokens: np.ndarray, budget_ms: float, pairs: np.ndarray | None = None) -> int:
    """Largest n with predict(pairs of the first n, cumulative_tokens[n-1]) <= budget_ms (pairs:
    the cumulative windows in chunks mode, else n); time grows with n."""
    if budget_ms <= 0 or len(cumulative_tokens) == 0:
        return 0
    lo, hi = 0, len(cumulative_tokens)
    while lo < hi:  # bisection: predictions only grow with n
        mid = (lo + hi + 1) // 2
        n_pairs = mid if pairs is None else float(pairs[mid - 1])
        if predict(n_pairs, float(cumulative_tokens[mid - 1])) <= budget_ms:
            lo = mid
        else:
            hi = mid - 1
    return lo


@dataclass(frozen=True)
class CascadePlan:
    """Score ``screen`` candidates to ``screen_layer``, keep the best ``keep``, finish them to
    ``final_layer``. A full-depth plan has screen == keep and screen_layer == final_layer."""

    screen: int
    screen_layer: int
    keep: int
    final_layer: int
    predicted_ms: float
    cost_units: float
    reason: str
    time_left_ms: float | None = None
    more: bool = False  # as DepthChoice.more: tokenise more candidates and ask again

    @property
    def cascade(self) -> bool:
        return self.screen_layer < self.final_layer

    @property
    def depth(self) -> int:
        return self.screen

    def describe(self) -> str:
        if self.screen == 0:
            return "fusion only"
        if not self.cascade:
            return f"score {self.screen} to layer {self.final_layer}"
        return f"score {self.screen} to layer {self.screen_layer}, keep {self.keep}, finish them to layer {self.final_layer}"


def cascade_cost(
    cumulative_tokens: np.ndarray,
    screen: int,
    screen_layer: int,
    keep: int,
    final_layer: int,
    kept_tokens: float | None = None,
) -> float:
    """Cost units of a plan: tokens weighted by the share of the layers each pair ran."""
    if screen == 0:
        return 0.0
    screened = float(cumulative_tokens[screen - 1])
    if screen_layer >= final_layer:
        return screened
    kept = _kept_tokens(cumulative_tokens, screen, keep) if kept_tokens is None else kept_tokens
    return screened * screen_layer / final_layer + kept * (final_layer - screen_layer) / final_layer


def _kept_tokens(cumulative_tokens: np.ndarray, screen: int, keep: int) -> float:
    """Before the screen is scored nobody knows which ``keep`` survive: plan for the longest."""
    if keep <= 0:
        return 0.0
    per_pair = np.diff(np.concatenate([[0.0], cumulative_tokens[:screen]]))
    return float(np.sort(per_pair)[-keep:].sum())


def choose_plan(
    inputs: PolicyInputs,
    layers: LayerLatency,
    keep: int = 10,
    full_model=None,
    screen_layers: Sequence[int] | None = None,
) -> CascadePlan:
    """The plan for one query: the full-depth depth of rerank.policy, or a cascade that screens
    more candidates within the same bounds (module docstring).

    ``full_model``: the latency model of full passes, when one is kept apart from the layer
    segments (the service's backend learns full passes from its batcher; default: the sum of
    the segments). ``screen_layers``: the exits a cascade may screen at (default: every
    earlier exit); an exit whose scores do not rank well picks the wrong survivors, and the
    widest screen is the cheapest exit, so which ones are worth screening at is measured."""
    full = choose_depth(inputs, full_model if full_model is not None else layers.full)
    last = layers.last
    base = _full_plan(full, inputs, last)
    earlier = [a for a in layers.exit_layers if a < last and (not screen_layers or a in screen_layers)]
    if inputs.mode != "auto" or full.more or full.depth == 0 or not earlier:
        return base
    available = len(inputs.cumulative_tokens) if inputs.candidates is None else inputs.candidates
    cap = _depth_cap(inputs, available)
    if full.depth >= cap:
        return base  # every candidate AUTO may take is already scored in full
    if len(inputs.cumulative_tokens) < cap:
        # A cascade may screen past what is tokenised: tokenise the rest first.
        return replace(
            base,
            more=True,
            reason=f"{len(inputs.cumulative_tokens)} tokenised candidate(s); a cascade may screen up to {cap}",
        )
    m = max(1, min(full.depth, keep))
    best: CascadePlan | None = None
    for a in earlier:
        plan = _widest_screen(inputs, layers, a, m, cap, full.time_left_ms)
        if plan is not None and (best is None or plan.screen >= best.screen):
            best = plan
    if best is None or best.screen <= full.depth:
        return replace(base, reason=f"{base.reason}; no cascade screens more than {full.depth}")
    return best


def _full_plan(choice: DepthChoice, inputs: PolicyInputs, last: int) -> CascadePlan:
    cost = float(inputs.cumulative_tokens[choice.depth - 1]) if choice.depth else 0.0
    return CascadePlan(
        choice.depth,
        last,
        choice.depth,
        last,
        choice.predicted_ms,
        cost,
        choice.reason,
        choice.time_left_ms,
        choice.more,
    )


def _depth_cap(inputs: PolicyInputs, available: int) -> int:
    """The most candidates AUTO may rerank at all: the tenant's max_depth, the model's
    auto_max_depth and the candidates there are (the bounds on *how many*, before time and cost)."""
    cap = min(inputs.budget.max_depth, available)
    if 0 < inputs.auto_max_depth < cap:
        cap = inputs.auto_max_depth
    return cap


def _widest_screen(
    inputs: PolicyInputs, layers: LayerLatency, a: int, m: int, cap: int, time_left: float | None
) -> CascadePlan | None:
    """The largest N (m <= N <= cap) to screen to layer ``a`` with the best m finished, within
    the time window and the cost bounds; None when not even N = m fits."""
    cum = inputs.cumulative_tokens
    last = layers.last
    b = inputs.budget
    cost_caps = []
    if b.max_cost_per_query > 0:
        cost_caps.append((float(b.max_cost_per_query), f"cost cap {b.max_cost_per_query} tokens/query"))
    if inputs.bucket_level is not None:
        cost_caps.append((max(inputs.bucket_level, 0.0), f"rate budget ({inputs.bucket_level:.0f} tokens left)"))

    windows = inputs.cumulative_pairs  # chunks mode: a long candidate is several pairs

    def time_of(n: int) -> float:
        kept = _kept_tokens(cum, n, m)
        screened_pairs = n if windows is None else float(windows[n - 1])
        kept_pairs = m if windows is None else _kept_tokens(windows, n, m)
        return layers.predict_ms(0, a, screened_pairs, float(cum[n - 1])) + layers.predict_ms(a, last, kept_pairs, kept)

    def fits(n: int) -> bool:
        if time_left is not None and time_of(n) > time_left:
            return False
        return all(cascade_cost(cum, n, a, m, last) <= limit for limit, _ in cost_caps)

    if not fits(m):
        return None
    lo, hi = m, cap
    while lo < hi:  # time and cost only grow with N
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    n = lo
    if n >= cap:
        bound = f"{cap} candidates AUTO may take"
    elif time_left is not None and time_of(n + 1) > time_left:
        bound = f"time ({time_left:.1f} ms left)"
    else:
        bound = next((name for limit, name in cost_caps if cascade_cost(cum, n + 1, a, m, last) > limit), "cost")
    reason = f"cascade: screen {n} to layer {a}, finish the best {m} to layer {last}: bound by {bound}"
    return CascadePlan(n, a, m, last, time_of(n), cascade_cost(cum, n, a, m, last), reason, time_left)
