"""The rerank stage of a Search, and the standalone Rerank call.

Per search: the tenant's budget and the requested mode give the candidate range;
the head is tokenised once (token counts are the cost unit); the policy picks
the depth from the live latency model, the deadline, the latency target, the
cost cap and the rate budget; the head is scored in fused order, chunk by chunk,
through the shared batcher, stopping early (partial) when the next chunk would
not fit. Any reranker failure answers fusion-only with ``degraded`` set: a
Search never fails because the reranker did.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from hybridsearch.engine import statedb, tracing
from hybridsearch.engine.budget_store import BudgetStore
from hybridsearch.engine.config import RerankBackendConfig, Settings
from hybridsearch.engine.encoders.model_paths import ModelNotFound, resolve_model
from hybridsearch.engine.errors import (
    ServiceError,
    deadline_exceeded,
    exhausted,
    failed_precondition,
    invalid,
    unavailable,
)
from hybridsearch.engine.rate_ledger import RateLedger
from hybridsearch.engine.search_types import HeadScore, RerankDecision, RerankOutcome, SearchQuery
from hybridsearch.fusion.blend import blend_head
from hybridsearch.rerank.backends import load_backend
from hybridsearch.rerank.base import EncodedPairs, RerankBackend, Scores, normalize
from hybridsearch.rerank.batcher import DeadlineExpired, Overloaded, RerankBatcher
from hybridsearch.rerank.budgets import RerankBudget
from hybridsearch.rerank.cascade import CascadePlan, LayerLatency, cascade_cost, choose_plan
from hybridsearch.rerank.circuit import CircuitBreaker
from hybridsearch.rerank.latency_model import LatencyModel, LatencyObserver
from hybridsearch.rerank.policy import DepthChoice, PolicyInputs, choose_depth
from hybridsearch.rerank.signals import query_signals

log = logging.getLogger(__name__)
UNLIMITED = -1.0  # budget_left_units when the tenant has no rate budget


def _degraded(fused, decision: RerankDecision, reason: str) -> RerankOutcome:
    """Fusion only, marked degraded: a Search never fails because the reranker did."""
    decision.degraded = True
    decision.degraded_reason = reason
    decision.reason = decision.reason or "fusion only: reranker unavailable"
    return RerankOutcome(fused.ids, {}, decision)


class RerankObserver(Protocol):
    """Told what the rerank stage of a search decides (benchmarks/bench_policy.py logs it
    to explain AUTO's misses); the stage calls it in the search's thread."""

    def decision(self, query: SearchQuery, inputs: PolicyInputs, choice: DepthChoice, model: LatencyModel) -> None:
        """Every call of the depth policy: what it was given and what it chose (AUTO asks
        again after tokenising more of the head while all of it fits)."""

    def finished(
        self, query: SearchQuery, outcome: RerankOutcome, stage_ms: float, pending_pairs_at_entry: int | None
    ) -> None:
        """Every search through the stage: its outcome, the stage's wall time and the pairs
        queued in the default reranker's batcher when it entered (None: not loaded)."""


class Reranker:
    """One configured backend with its latency model, circuit breaker and batcher."""

    def __init__(
        self,
        name: str,
        config: RerankBackendConfig,
        settings: Settings,
        latency_observer: LatencyObserver | None = None,
    ):
        self.name = name
        self.config = config
        self.model = LatencyModel(observer=latency_observer)
        self.breaker = CircuitBreaker(settings.rerank.failure_threshold, settings.rerank.cooldown_s)
        self.backend: RerankBackend | None = None
        self.batcher: RerankBatcher | None = None
        self.load_error = ""
        self._settings = settings
        # Per layer segment latency, for cascade plans (early-exit backends with
        # cascade_keep > 0); None: full-depth plans only.
        self.layers: LayerLatency | None = None

    def load(self) -> None:
        try:
            path = resolve_model(
                self.config.model,
                f"rerank backend {self.name!r}",
                f"rerank.backends.{self.name}.model",
                self._settings.models_dir,
            )
            self.backend = load_backend(
                self.config.kind,
                self.name,
                path,
                max_length=self.config.max_length,
                batch_size=self.config.batch_size,
                device=self.config.device,
                use_fp16=self.config.use_fp16,
                quantize=self.config.quantize,
                threads=self._settings.torch_threads,
                long_documents=self.config.long_documents,
                chunk_overlap=self.config.chunk_overlap,
                max_chunks=self.config.max_chunks,
                chunk_aggregate=self.config.chunk_aggregate,
                chunk_first_weight=self.config.chunk_first_weight,
            )
        except ModelNotFound as exc:
            self.load_error = str(exc)
            log.warning("%s", exc)
            return
        except Exception as exc:  # a broken model directory must not stop the service
            self.load_error = (
                f"rerank backend {self.name!r} failed to load from {self.config.model!r}: {type(exc).__name__}: {exc}"
            )
            log.exception("rerank backend %s failed to load", self.name)
            return
        exits = list(getattr(self.backend, "exit_layers", []) or [])
        if self.config.cascade_keep > 0 and len(exits) > 1:
            self.layers = LayerLatency(exits)
        if self._settings.rerank.calibrate:
            self.calibrate()
        self.batcher = RerankBatcher(
            self.backend,
            self.model,
            max_queue_pairs=self._settings.rerank.max_queue_pairs,
            max_batch_pairs=self._settings.rerank.max_batch_pairs,
        )

    def calibrate(self) -> None:
        """Seed the latency model with a few real batches (the first one only warms up)."""
        words = "cell protein gene study effect patients treatment analysis".split()
        for i, (pairs, doc_words) in enumerate([(2, 16), (1, 16), (4, 64), (8, 128), (4, 200), (16, 64)]):
            docs = [" ".join(words[(j + k) % len(words)] for k in range(doc_words)) for j in range(pairs)]
            encoded = self.backend.encode("calibration query about cells", docs)
            start = time.perf_counter()
            scores = self.backend.score_encoded(encoded)
            if i > 0:
                self.model.observe(encoded.n_chunks, int(scores.tokens.sum()), (time.perf_counter() - start) * 1000)
            if self.layers is not None and i > 0:
                self.observe_layers(self.cascade_pass(encoded, self.layers.exit_layers[0], len(encoded)))

    def cascade_pass(self, pairs: EncodedPairs, screen_layer: int, keep: int):
        """Screen ``pairs`` (in fused order) to ``screen_layer`` and finish the best ``keep`` to the
        last layer: best by the exit's ranking blended with the fused one (``cascade_screen_weight``;
        ties: the earlier candidate). (screen handle, finished handle)."""
        screen = self.backend.score_to(pairs, screen_layer)
        order, _ = blend_head(screen.raw, self.config.cascade_screen_weight)
        best = sorted(order[:keep].tolist())
        finished = self.backend.continue_to(screen, best, self.layers.last)
        return screen, finished

    def observe_layers(self, handles) -> None:
        """Teach the segment latency model every batch of a cascade pass."""
        _, finished = handles
        for t in finished.history:
            self.layers.observe(t.start_layer, t.end_layer, t.pairs, t.tokens, t.ms)

    @property
    def available(self) -> bool:
        return self.backend is not None and self.batcher is not None

    def status(self) -> tuple[bool, str]:
        if not self.available:
            return False, self.load_error or "not loaded"
        if not self.batcher.alive:
            return (
                False,
                f"rerank worker is not running ({self.batcher.crash or 'stopped'}); the next rerank starts a new one",
            )
        if self.breaker.state != "closed":
            return False, f"circuit {self.breaker.state}: {self.breaker.last_error}"
        return True, "ok"

    def stalled(self, stall_s: float) -> str | None:
        """After a wait for scores timed out: why, if the backend is stuck (else None).

        One batch that has itself run ``stall_s`` is a stuck backend: a failure for the
        circuit breaker. A wait spent queued behind other searches' work is overload, not
        a failure (counting it would cut off a healthy backend).
        """
        running_s = self.batcher.running_for_s()
        if running_s < stall_s:
            return None
        why = f"stalled: a batch has run {running_s * 1000:.0f} ms"
        self.breaker.record_failure(why)
        return why

    def close(self) -> None:
        if self.batcher is not None:
            self.batcher.close()


@dataclass(frozen=True)
class RerankPlan:
    """What one search's rerank stage works from, resolved once per search: the tenant's budget
    as read at that moment, the mode (the request's, else the budget's default) and how many
    fused candidates it may rerank. The service fetches ``cap`` documents with it and hands it
    to :meth:`RerankStage.run`: read twice, a budget changed in between (SetBudget on this
    replica, or another replica's change reaching this one's cache) made the head longer than
    the documents fetched."""

    budget: RerankBudget
    mode: str
    cap: int


@dataclass
class StandaloneResult:
    order: list[int]
    scores: Scores
    truncated: int
    model: str
    elapsed_ms: float
    chunks: int = 0  # pairs scored: one per document, or its windows in chunks mode


class RerankStage:
    def __init__(
        self,
        settings: Settings,
        budgets: BudgetStore | None = None,
        metrics=None,
        *,
        observer: RerankObserver | None = None,
        latency_observer: LatencyObserver | None = None,
    ):
        self.settings = settings
        self.config = settings.rerank
        d = self.config.default_budget
        default = RerankBudget(
            tenant="",
            latency_target_ms=d.latency_target_ms,
            max_cost_per_query=d.max_cost_per_query,
            cost_per_minute=d.cost_per_minute,
            min_depth=d.min_depth,
            max_depth=d.max_depth,
            default_mode=d.default_mode,
        )
        # One state database for budgets and rate buckets: replicas sharing it (state_uri)
        # enforce one budget and one rate per tenant, not one each.
        state = statedb.shared(settings)
        self.budgets = budgets or BudgetStore(state, default)
        self.buckets = RateLedger(state)
        self.rerankers = {
            name: Reranker(name, cfg, settings, latency_observer) for name, cfg in self.config.backends.items()
        }
        self.metrics = metrics
        self.observer = observer
        self.tracer = tracing.tracer_for(getattr(settings, "tracing", None))

    def set_observers(
        self, observer: RerankObserver | None = None, latency_observer: LatencyObserver | None = None
    ) -> None:
        """Observe a stage built elsewhere (the service builds its own): the decisions, and
        every batch each backend's latency model learns from. Before start() to see the
        calibration batches too."""
        self.observer = observer
        for reranker in self.rerankers.values():
            reranker.model.observer = latency_observer

    def start(self) -> None:
        for reranker in self.rerankers.values():
            reranker.load()

    def close(self) -> None:
        for reranker in self.rerankers.values():
            reranker.close()

    def reranker(self, name: str = "") -> Reranker:
        name = name or self.config.default_backend
        reranker = self.rerankers.get(name)
        if reranker is None:
            raise invalid("model", f"unknown rerank model {name!r}; configured: {', '.join(sorted(self.rerankers))}")
        return reranker

    def health(self) -> tuple[bool, str]:
        return self.reranker().status()

    # ------------------------------------------------------------ search stage
    def plan(self, tenant: str, query: SearchQuery) -> RerankPlan:
        """This search's budget, mode and cap, read once (see RerankPlan); ``cap`` is the most
        fused candidates run() may read the text of (0: it will not rerank), and the service
        fetches those documents, and only those, before run()."""
        budget = self.budgets.effective(tenant)
        mode = query.rerank_mode or budget.default_mode
        return RerankPlan(budget, mode, 0 if mode == "off" else self._cap(query, budget, mode))

    @staticmethod
    def _cap(query: SearchQuery, budget, mode: str) -> int:
        # FIXED as the tenant's default mode comes with no depth in the request: it
        # then means "rerank max_depth".
        requested = query.rerank_depth or budget.max_depth
        return max(budget.max_depth if mode == "auto" else min(requested, budget.max_depth), 0)

    def run(
        self,
        *,
        tenant: str,
        query: SearchQuery,
        fused,
        docs: dict,
        started: float,
        deadline: float | None,
        plan: RerankPlan | None = None,
        call_ended: threading.Event | None = None,
    ) -> RerankOutcome:
        """The order, the reranked hits' scores and the decision for one search, by ``plan``
        (None: made now; the service passes the one it fetched ``docs`` with). Once
        ``call_ended`` is set (the caller went away) no further chunk is scored."""
        plan = plan or self.plan(tenant, query)
        if self.observer is None:
            return self._run(tenant, query, fused, docs, started, deadline, plan, call_ended)
        entered = time.perf_counter()
        reranker = self.rerankers.get(self.config.default_backend)
        pending = reranker.batcher.pending_pairs if reranker is not None and reranker.batcher is not None else None
        outcome = self._run(tenant, query, fused, docs, started, deadline, plan, call_ended)
        self.observer.finished(query, outcome, (time.perf_counter() - entered) * 1000.0, pending)
        return outcome

    def _run(
        self,
        tenant: str,
        query: SearchQuery,
        fused,
        docs: dict,
        started: float,
        deadline: float | None,
        plan: RerankPlan,
        call_ended: threading.Event | None = None,
    ) -> RerankOutcome:
        budget, mode = plan.budget, plan.mode
        decision = RerankDecision(mode=mode)
        bucket = self.buckets.bucket(tenant, budget.cost_per_minute) if budget.cost_per_minute > 0 else None
        decision.budget_left_units = bucket.left() if bucket else UNLIMITED
        if mode == "off":
            decision.reason = "fusion only: rerank mode OFF" + (
                " (tenant default)" if query.rerank_mode is None else ""
            )
            return RerankOutcome(fused.ids, {}, decision)
        reranker = self.reranker()
        decision.backend = reranker.name
        if not reranker.available:
            return _degraded(fused, decision, f"reranker unavailable: {reranker.load_error or 'not loaded'}")
        if not reranker.breaker.allow():
            return _degraded(
                fused,
                decision,
                f"circuit open after {reranker.breaker.failures} failures: {reranker.breaker.last_error}",
            )

        # Never beyond the documents fetched for this plan.
        head = [pk for pk in fused.ids[: plan.cap] if pk in docs]
        if not head:
            decision.reason = (
                f"fusion only: tenant max_depth {budget.max_depth}"
                if budget.max_depth == 0
                else "fusion only: no candidates"
            )
            return RerankOutcome(fused.ids, {}, decision)
        choice, inputs, encoded, now = self._choose(
            reranker, query, head, docs, fused, budget, mode, bucket, started, deadline
        )
        decision.depth_chosen = choice.depth
        decision.reason = choice.reason
        decision.predicted_ms = choice.predicted_ms
        if choice.depth == 0:
            return RerankOutcome(fused.ids, {}, decision)
        if isinstance(choice, CascadePlan):
            decision.plan = choice.describe()
            if choice.cascade:
                return self._cascade_head(reranker, decision, choice, encoded, head, fused, bucket, now)
        # Scoring must end by stop_at: the tighter of the deadline and (AUTO) the target.
        stop_at = None if choice.time_left_ms is None else now + (choice.time_left_ms + inputs.queue_wait_ms) / 1000.0
        return self._rerank_head(
            reranker, decision, choice.depth, encoded, head, fused, bucket, now, stop_at, call_ended
        )

    def _cascade_head(
        self,
        reranker: Reranker,
        decision: RerankDecision,
        plan: CascadePlan,
        encoded: EncodedPairs,
        head: list,
        fused,
        bucket,
        now: float,
    ) -> RerankOutcome:
        """Run a cascade plan: screen ``plan.screen`` candidates to the early exit, finish the best
        ``plan.keep`` to the last layer. The kept are ordered by their final scores (blended as
        any reranked head), then the other screened and the rest in fused order; only the kept
        count as reranked (an early exit's score is not the model's). Not cut short at the
        deadline as the batched path is: the plan was chosen to fit it, and its two passes run
        whole on the backend (outside the batcher: the hidden states are this query's)."""
        pairs = encoded.subset(range(plan.screen))
        try:
            screen, finished = reranker.cascade_pass(pairs, plan.screen_layer, plan.keep)
        except Exception as exc:  # a failing model degrades this search to fusion, as any rerank failure
            reranker.breaker.record_failure(f"{type(exc).__name__}: {exc}")
            return _degraded(fused, decision, f"reranker failed: {type(exc).__name__}: {exc}")
        reranker.breaker.record_success()
        reranker.observe_layers((screen, finished))
        decision.actual_ms = (time.monotonic() - now) * 1000.0
        decision.depth_scored = plan.screen
        decision.chunks_scored = int(screen.chunks.sum())
        cost = int(
            round(
                cascade_cost(
                    np.cumsum(pairs.tokens).astype(np.float64),
                    plan.screen,
                    plan.screen_layer,
                    len(finished),
                    plan.final_layer,
                    kept_tokens=float(finished.tokens.sum()),
                )
            )
        )
        decision.cost_units = cost
        decision.cost_money = cost * reranker.config.price_per_million_tokens / 1e6
        if bucket is not None:
            decision.budget_left_units = bucket.spend(cost)
        kept = [int(i) for i in finished.source]  # in fused order: cascade_pass keeps them so
        normalized = normalize(finished.raw)
        ranking, order_scores = blend_head(normalized, reranker.config.fusion_weight)
        if reranker.config.fusion_weight > 0:
            decision.reason += (
                f"; head ordered by RRF of fused rank (weight {reranker.config.fusion_weight:g}) and rerank rank"
            )
        taken = set(kept)
        order = [head[kept[i]] for i in ranking] + [pk for i, pk in enumerate(fused.ids) if i not in taken]
        scores = {head[kept[i]]: HeadScore(float(normalized[i]), float(order_scores[i])) for i in range(len(kept))}
        return RerankOutcome(order, scores, decision)

    def _choose(
        self,
        reranker: Reranker,
        query: SearchQuery,
        head: list,
        docs: dict,
        fused,
        budget,
        mode: str,
        bucket,
        started: float,
        deadline: float | None,
    ) -> tuple[DepthChoice, PolicyInputs, EncodedPairs, float]:
        """The policy's depth for this head, the inputs it decided on, the tokenised pairs and
        the monotonic time of the decision.

        FIXED needs the whole head; AUTO tokenises only what the policy may use, in growing
        batches (tokenising all 100 candidates of a search that reranks 5 cost about 135 ms
        on 2 cores, and nothing for a search it skips).
        """
        signals = query_signals(fused.route_ranks)
        encoded = (
            reranker.backend.encode(query.text, [docs[pk].text for pk in head])
            if mode == "fixed"
            else EncodedPairs.empty()
        )
        while True:
            now = time.monotonic()
            # Tokens per candidate count all its windows (chunks mode), so the cost caps see
            # them; the latency model is told the pairs (windows) as well.
            cumulative = np.cumsum(encoded.tokens).astype(np.float64)
            cumulative_pairs = np.cumsum(encoded.chunks).astype(np.float64) if encoded.offsets is not None else None
            pending = reranker.batcher.pending_pairs
            # Queued pairs of other searches, at this head's mean length per pair (the model's
            # max length, conservatively, before any of it is tokenised).
            per_pair = float(cumulative[-1]) / encoded.n_chunks if len(encoded) else float(reranker.config.max_length)
            # What the tokenised candidates would cost: the rate allowance is topped up to
            # that (a lease from the shared bucket) only when it holds less.
            bucket_level = bucket.available(float(cumulative[-1]) if len(encoded) else 0.0) if bucket else None
            inputs = PolicyInputs(
                mode=mode,
                budget=budget,
                cumulative_tokens=cumulative,
                elapsed_ms=(time.perf_counter() - started) * 1000.0,
                deadline_left_ms=(deadline - now) * 1000.0 if deadline is not None else None,
                bucket_level=bucket_level,
                signals=signals,
                queue_wait_ms=reranker.model.predict_ms(pending, pending * per_pair) if pending else 0.0,
                reserve_ms=self.config.reserve_ms,
                requested_depth=query.rerank_depth or budget.max_depth,
                skip_when_routes_agree=reranker.config.skip_when_routes_agree,
                auto_max_depth=reranker.config.auto_max_depth,
                candidates=len(head),
                cumulative_pairs=cumulative_pairs,
            )
            if mode == "auto" and reranker.layers is not None:
                # An early-exit model: the plan may be a cascade (rerank/cascade.py).
                choice = choose_plan(
                    inputs,
                    reranker.layers,
                    reranker.config.cascade_keep,
                    full_model=reranker.model,
                    screen_layers=reranker.config.cascade_screen_layers,
                )
            else:
                choice = choose_depth(inputs, reranker.model)
            if self.observer is not None:
                self.observer.decision(query, inputs, choice, reranker.model)
            if not choice.more:
                return choice, inputs, encoded, now
            more = head[len(encoded) : min(len(head), max(2 * len(encoded), self.config.chunk_pairs))]
            encoded = encoded + reranker.backend.encode(query.text, [docs[pk].text for pk in more])

    def _rerank_head(
        self,
        reranker: Reranker,
        decision: RerankDecision,
        depth: int,
        encoded: EncodedPairs,
        head: list,
        fused,
        bucket,
        now: float,
        stop_at: float | None,
        call_ended: threading.Event | None = None,
    ) -> RerankOutcome:
        """Score the first ``depth`` pairs (by ``stop_at``), charge their tokens, and order the head."""
        raw, error = self._score_prefix(reranker, encoded.subset(range(depth)), stop_at, call_ended)
        scored = len(raw)
        decision.actual_ms = (time.monotonic() - now) * 1000.0
        decision.depth_scored = scored
        tokens = int(encoded.tokens[:scored].sum())
        decision.chunks_scored = int(encoded.chunks[:scored].sum())
        decision.cost_units = tokens
        decision.cost_money = tokens * reranker.config.price_per_million_tokens / 1e6
        if bucket is not None:
            decision.budget_left_units = bucket.spend(tokens)
        if error is not None and scored == 0:
            return _degraded(fused, decision, error)
        if error is not None:
            decision.degraded, decision.degraded_reason = True, error
        if scored < depth:
            decision.partial = True
            decision.reason += f"; partial: scored {scored} of {depth} before the time ran out"
        normalized = normalize(raw)
        prefix = head[:scored]
        # Ties keep their fused order (blend_head sorts stably).
        ranking, order_scores = blend_head(normalized, reranker.config.fusion_weight)
        if reranker.config.fusion_weight > 0:
            decision.reason += (
                f"; head ordered by RRF of fused rank (weight {reranker.config.fusion_weight:g}) and rerank rank"
            )
        order = [prefix[i] for i in ranking] + list(fused.ids[scored:])
        return RerankOutcome(
            order,
            {pk: HeadScore(float(s), float(o)) for pk, s, o in zip(prefix, normalized, order_scores, strict=True)},
            decision,
        )

    def _score_prefix(
        self, reranker: Reranker, pairs: EncodedPairs, stop_at: float | None, call_ended: threading.Event | None = None
    ) -> tuple[list[float], str | None]:
        """Score pairs in order, chunk by chunk; stop before a chunk that would not finish by
        stop_at, or once ``call_ended`` is set (nobody waits for the rest: a cancelled search
        stops using the reranker at the next chunk, issue 28).

        A chunk is ``chunk_pairs`` pairs the model scores: that many documents, or fewer when
        documents are scored in windows (chunks mode; always at least one document).
        Returns the raw scores of the scored prefix and an error text if the backend failed.
        """
        raw: list[float] = []
        chunk = self.config.chunk_pairs
        stall_s = self.config.stall_timeout_s
        windows = pairs.chunks
        while len(raw) < len(pairs):
            if call_ended is not None and call_ended.is_set():
                return raw, None
            take = max(1, int(np.searchsorted(np.cumsum(windows[len(raw) :]), chunk, side="right")))
            sub = pairs.subset(range(len(raw), min(len(raw) + take, len(pairs))))
            wait_s = stall_s
            if stop_at is not None:
                left_ms = (stop_at - time.monotonic()) * 1000.0
                sub_pairs = np.cumsum(sub.chunks).astype(np.float64) if sub.offsets is not None else None
                fit = reranker.model.largest_fitting(np.cumsum(sub.tokens).astype(np.float64), left_ms, pairs=sub_pairs)
                if fit == 0:
                    return raw, None
                if fit < len(sub):
                    sub = sub.subset(range(fit))
                # Wait no later than stop_at: the reserve after it is for building the reply
                # (stop_at is already the deadline less reserve_ms).
                wait_s = min(stall_s, max(left_ms, 0.0) / 1000.0)
            try:
                future = reranker.batcher.submit(sub, deadline=stop_at)
            except Overloaded as exc:
                return raw, f"reranker overloaded: {exc}"
            try:
                scores = self._wait(future, sub.n_chunks, max(wait_s, 0.001))
            except DeadlineExpired:
                return raw, None
            except FutureTimeout:
                # Still queued: take it out so the worker does not score what nobody reads.
                future.cancel()
                if stop_at is not None and time.monotonic() >= stop_at - 0.001 and wait_s < stall_s:
                    # Our own time ran out while the batch was queued or running.
                    return raw, None
                stalled = reranker.stalled(stall_s)
                if stalled:
                    return raw, f"reranker timed out: {stalled}"
                return raw, f"reranker overloaded: no result after {wait_s * 1000:.0f} ms in the rerank queue"
            except Exception as exc:
                reranker.breaker.record_failure(f"{type(exc).__name__}: {exc}")
                return raw, f"reranker failed: {type(exc).__name__}: {exc}"
            reranker.breaker.record_success()
            raw.extend(scores.raw.tolist())
        return raw, None

    def _wait(self, future, pairs: int, timeout: float) -> Scores:
        """``future.result(timeout)``; traced, the time the pairs waited in the batcher's queue
        becomes a rerank.queue span (up to now if their batch never started)."""
        try:
            return future.result(timeout=timeout)
        finally:
            if self.tracer.enabled:
                started = getattr(future, "started", None)
                started = time.monotonic() if started is None else started
                self.tracer.record(
                    tracing.RERANK_QUEUE,
                    getattr(future, "enqueued", started),
                    started,
                    {tracing.ATTR + "rerank.pairs": pairs},
                )

    # ------------------------------------------------------------ standalone
    def standalone(self, query: str, documents: Sequence[str], model: str, deadline: float | None) -> StandaloneResult:
        reranker = self.reranker(model)
        if not reranker.available:
            raise failed_precondition(
                f"rerank model {reranker.name!r} is not available: {reranker.load_error or 'not loaded'}"
            )
        if not reranker.breaker.allow():
            raise unavailable(
                f"rerank model {reranker.name!r} is failing (circuit open): {reranker.breaker.last_error}"
            )
        start = time.perf_counter()
        encoded = reranker.backend.encode(query, documents)
        try:
            future = reranker.batcher.submit(encoded, deadline=deadline)
        except Overloaded as exc:
            raise exhausted(f"reranker overloaded: {exc}") from exc
        timeout = self.config.stall_timeout_s if deadline is None else max(deadline - time.monotonic(), 0.001)
        try:
            scores = self._wait(future, encoded.n_chunks, timeout)
        except DeadlineExpired as exc:
            raise deadline_exceeded(str(exc)) from exc
        except FutureTimeout as exc:
            future.cancel()
            stalled = reranker.stalled(self.config.stall_timeout_s) if deadline is None else None
            if stalled:
                raise unavailable(f"reranker {reranker.name!r} {stalled}") from exc
            raise deadline_exceeded(f"reranking {len(documents)} documents did not finish in time") from exc
        except ServiceError:
            raise
        except Exception as exc:
            reranker.breaker.record_failure(f"{type(exc).__name__}: {exc}")
            raise unavailable(f"reranker failed: {type(exc).__name__}: {exc}") from exc
        reranker.breaker.record_success()
        order = sorted(range(len(documents)), key=lambda i: (-scores.raw[i], i))
        return StandaloneResult(
            order,
            scores,
            int(encoded.truncated.sum()),
            reranker.name,
            (time.perf_counter() - start) * 1000,
            encoded.n_chunks,
        )
