"""The budget-aware depth policy: how many fused candidates to rerank for this query.

Pure: every input is a value, so the decision can be tested, replayed and explained.
The guarantees (README, "Rerank budgets and the policy"): never start work that cannot finish before the
deadline or the tenant's latency target; never spend past the per-query cap or the
tenant's rate budget; n = 0 (fusion only) with a reason when nothing fits.

AUTO takes the largest depth every bound allows, with two settings of the rerank backend
(they depend on how good the model is, so they live with it, not with the tenant):
``auto_max_depth``, the depth past which the model stops paying (a time budget says how
deep AUTO may go, not how deep is worth it), and ``skip_when_routes_agree``: a query whose
dense and sparse routes put the same document first reranks only the tenant's
``min_depth`` (0: fusion only). A tuned fixed depth is a strong baseline (Meng et al.,
SIGIR 2024); spending the same budget unevenly only pays where a signal says where it is
worth spending, and this is the one that held on held-out data (benchmarks/README.md,
"AUTO's signal"; ``benchmarks/replay_depths.py`` measures both settings for a model).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hybridsearch.rerank.budgets import RerankBudget
from hybridsearch.rerank.latency_model import LatencyModel
from hybridsearch.rerank.signals import QuerySignals


@dataclass(frozen=True)
class PolicyInputs:
    mode: str  # "fixed" | "auto"
    budget: RerankBudget
    # Tokens of the first n fused candidates, n = 1..len: all of them, or a prefix (see
    # `candidates` and DepthChoice.more).
    cumulative_tokens: np.ndarray
    elapsed_ms: float  # time this search has spent so far
    deadline_left_ms: float | None  # gRPC deadline left, None if none
    bucket_level: float | None  # tenant's rate budget left (tokens), None if unlimited
    signals: QuerySignals
    queue_wait_ms: float = 0.0  # predicted wait behind other queries' pairs
    reserve_ms: float = 2.0  # kept for merging and building the response
    requested_depth: int = 0  # FIXED only
    skip_when_routes_agree: bool = False  # AUTO only: the backend's setting
    auto_max_depth: int = 0  # AUTO only: the backend's setting; 0 = none
    candidates: int | None = None  # the head's length when only a prefix is tokenised
    # Pairs (windows) the first n candidates are scored as, n = 1..len, when a long document
    # is scored in windows (the backend's long_documents "chunks"); None: one pair each.
    # cumulative_tokens already counts every window's tokens: the cost caps need nothing more.
    cumulative_pairs: np.ndarray | None = None


@dataclass(frozen=True)
class DepthChoice:
    depth: int
    reason: str
    predicted_ms: float
    time_left_ms: float | None  # the time the rerank must fit in (None: unbounded)
    # Only a prefix of the candidates was tokenised and every one of it fits: tokenise
    # more and ask again (AUTO usually reranks a few of 100 candidates, and tokenising
    # all of them cost more than scoring the few).
    more: bool = False


def _largest_within(cumulative: np.ndarray, cap: float) -> int:
    return int(np.searchsorted(cumulative, cap, side="right"))


def choose_depth(inputs: PolicyInputs, model: LatencyModel) -> DepthChoice:
    b = inputs.budget
    cum = inputs.cumulative_tokens
    known = len(cum)
    available = known if inputs.candidates is None else inputs.candidates
    if available == 0:
        return DepthChoice(0, "fusion only: no candidates to rerank", 0.0, None)

    # Bounds from the request and the tenant's depth range.
    if inputs.mode == "fixed":
        upper = min(inputs.requested_depth, b.max_depth, available)
        bound = (
            f"fixed depth {inputs.requested_depth}"
            if upper == inputs.requested_depth
            else (
                f"tenant max_depth {b.max_depth}"
                if b.max_depth <= min(inputs.requested_depth, available)
                else f"{available} candidates"
            )
        )
    else:
        upper = min(b.max_depth, available)
        bound = f"tenant max_depth {b.max_depth}" if b.max_depth <= available else f"{available} candidates"
        if 0 < inputs.auto_max_depth < upper:
            upper, bound = inputs.auto_max_depth, f"the model's auto_max_depth {inputs.auto_max_depth}"
        if inputs.skip_when_routes_agree and inputs.signals.top_agree:
            agree = f"dense and sparse routes agree on the top hit (route agreement {inputs.signals.route_agreement:.2f} in the top 10)"
            if b.min_depth == 0:
                return DepthChoice(0, f"fusion only: {agree}; skip_when_routes_agree", 0.0, None)
            if b.min_depth < upper:
                upper, bound = b.min_depth, f"tenant min_depth {b.min_depth}: {agree}"
    limits = [(upper, bound)]

    # Cost: per-query cap and what is left of the rate budget.
    if b.max_cost_per_query > 0:
        limits.append((_largest_within(cum, b.max_cost_per_query), f"cost cap {b.max_cost_per_query} tokens/query"))
    if inputs.bucket_level is not None:
        limits.append(
            (
                _largest_within(cum, max(inputs.bucket_level, 0.0)),
                f"rate budget ({inputs.bucket_level:.0f} tokens left)",
            )
        )

    # Time: the deadline for every mode; the tenant's latency target for AUTO.
    windows = []
    if inputs.deadline_left_ms is not None:
        windows.append((inputs.deadline_left_ms, "gRPC deadline"))
    if inputs.mode == "auto" and b.latency_target_ms > 0:
        windows.append((b.latency_target_ms - inputs.elapsed_ms, f"latency target {b.latency_target_ms:g} ms"))
    time_left = None
    if windows:
        window, window_name = min(windows)
        time_left = window - inputs.reserve_ms - inputs.queue_wait_ms
        pairs = inputs.cumulative_pairs
        if pairs is None:
            n_time = model.largest_fitting(cum[:upper] if upper else cum[:0], time_left)
        else:
            n_time = model.largest_fitting(cum[:upper] if upper else cum[:0], time_left, pairs=pairs[:upper])
        limits.append((n_time, f"{window_name} ({time_left:.1f} ms left)"))

    depth, reason = min(limits, key=lambda item: item[0])
    if known < upper and depth >= known:
        return DepthChoice(
            known, f"{known} tokenised candidate(s) fit; more needed to decide", 0.0, time_left, more=True
        )

    floor = max(b.min_depth, 1) if inputs.mode == "auto" else 1
    if depth < floor:
        if depth == 0:
            why = f"fusion only: nothing fits the {reason}"
        else:
            why = f"fusion only: {depth} fit(s) the {reason}, below tenant min_depth {b.min_depth}"
        first = _pairs(inputs, 1) if known else 1.0
        what = "1 pair" if first == 1 else f"1 document in {first:g} windows"
        predicted = f" ({what} predicted {model.predict_ms(first, float(cum[0])):.1f} ms)" if known else ""
        return DepthChoice(0, f"{why}{predicted}", 0.0, time_left)
    predicted = model.predict_ms(_pairs(inputs, depth), float(cum[depth - 1]))
    return DepthChoice(depth, f"{inputs.mode} depth {depth}: bound by {reason}", predicted, time_left)


def _pairs(inputs: PolicyInputs, depth: int) -> float:
    """Pairs the first ``depth`` candidates are scored as (their windows in chunks mode)."""
    return float(depth if inputs.cumulative_pairs is None else inputs.cumulative_pairs[depth - 1])
