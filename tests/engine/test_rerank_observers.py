"""The rerank stage's and the latency model's observers see every decision and every batch,
through the real code paths (the tiny reranker, a real batcher), without changing them."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pytest

from hybridsearch import fusion
from hybridsearch.engine.search_types import RerankOutcome, SearchQuery
from hybridsearch.engine.store import StoredDoc
from hybridsearch.rerank.latency_model import BatchObservation, LatencyModel

TEXTS = [
    "protein expression in cancer cells",
    "immune response to viral infection",
    "brain imaging of memory and sleep",
    "insulin resistance and glucose metabolism in mice",
    "gene regulation of stem cells during development",
    "cancer risk and diet in a large cohort study of women",
]
DOCS = {f"d{i}": StoredDoc(f"t:d{i}", text, {}) for i, text in enumerate(TEXTS)}


@dataclass
class Recorder:
    """A RerankObserver and a LatencyObserver that keep what they are told."""

    decisions: list = field(default_factory=list)
    finished: list = field(default_factory=list)
    batches: list[BatchObservation] = field(default_factory=list)

    def decision(self, query, inputs, choice, model) -> None:
        self.decisions.append((query, inputs, choice, model.margin))

    def finished_search(self, query, outcome, stage_ms, pending) -> None:
        self.finished.append((query, outcome, stage_ms, pending))

    def batch(self, observation: BatchObservation) -> None:
        self.batches.append(observation)


class StageObserver:
    """The Protocol's two methods, forwarding to a Recorder."""

    def __init__(self, recorder: Recorder):
        self.recorder = recorder

    def decision(self, query, inputs, choice, model) -> None:
        self.recorder.decision(query, inputs, choice, model)

    def finished(self, query, outcome, stage_ms, pending_pairs_at_entry) -> None:
        self.recorder.finished_search(query, outcome, stage_ms, pending_pairs_at_entry)


# ---------------------------------------------------------------------- the latency model


def test_latency_observer_gets_each_batch_with_the_prediction_made_before_it():
    seen: list[BatchObservation] = []
    model = LatencyModel(observer=seen.append)
    twin = LatencyModel()  # the same batches, unobserved
    for pairs, tokens, ms in [(4, 400, 12.0), (8, 900, 30.0), (2, 150, 5.0), (16, 2000, 70.0), (4, 500, 15.0)]:
        expected = (model.mean_ms(pairs, tokens), model.margin)
        model.observe(pairs, tokens, ms)
        twin.observe(pairs, tokens, ms)
        got = seen[-1]
        assert (got.pairs, got.tokens, got.ms) == (pairs, tokens, ms)
        assert (got.predicted_mean_ms, got.margin) == pytest.approx(expected)
    assert len(seen) == 5
    np.testing.assert_allclose(model.theta, twin.theta)  # observing changes nothing
    assert model.observations == twin.observations == 5


def test_latency_observer_is_not_told_of_batches_the_model_ignores():
    seen: list[BatchObservation] = []
    model = LatencyModel(observer=seen.append)
    model.observe(0, 0, 5.0)
    model.observe(3, 300, float("nan"))
    model.observe(3, 300, -1.0)
    assert seen == [] and model.observations == 0


# ---------------------------------------------------------------------- the rerank stage


@pytest.fixture
def settings(tmp_path, tiny_reranker_dir):
    from hybridsearch.engine.config import Settings

    return Settings(
        data_dir=tmp_path,
        rerank={
            "default_backend": "tiny",
            "backends": {"tiny": {"kind": "flag", "model": str(tiny_reranker_dir), "max_length": 64, "batch_size": 4}},
            "default_budget": {"max_depth": 6, "default_mode": "off"},
            "chunk_pairs": 2,
        },
    )


def fused_candidates():
    ids = list(DOCS)
    dense = fusion.RouteList("dense", ids, np.linspace(1.0, 0.5, len(ids)))
    sparse = fusion.RouteList("sparse", ids[::-1], np.linspace(9.0, 1.0, len(ids)))
    return fusion.fuse("rrf", [dense, sparse])


def search(stage, mode: str, depth: int = 0) -> tuple[SearchQuery, RerankOutcome]:
    query = SearchQuery(
        collection="c", text="protein in cancer", top_k=6, dense_k=6, sparse_k=6, rerank_mode=mode, rerank_depth=depth
    )
    outcome = stage.run(
        tenant="acme", query=query, fused=fused_candidates(), docs=DOCS, started=time.perf_counter(), deadline=None
    )
    return query, outcome


def test_stage_observers_see_calibration_batches_decisions_and_outcomes(settings):
    from hybridsearch.engine.rerank_stage import RerankStage

    recorder = Recorder()
    stage = RerankStage(settings, observer=StageObserver(recorder), latency_observer=recorder.batch)
    stage.start()
    try:
        calibration = len(recorder.batches)
        assert calibration == 5  # the calibration batches after the warm-up one
        query, outcome = search(stage, "fixed", depth=4)
        ((seen_query, inputs, choice, margin),) = recorder.decisions
        assert seen_query is query and inputs.mode == "fixed" and inputs.requested_depth == 4
        assert choice.depth == outcome.decision.depth_chosen == 4 and margin >= 1.0
        ((done_query, done, stage_ms, pending),) = recorder.finished
        assert done_query is query and done == outcome and stage_ms > 0 and pending == 0
        # The four pairs went through the batcher in chunks of two: the model learnt from them.
        scored = recorder.batches[calibration:]
        assert sum(b.pairs for b in scored) == outcome.decision.depth_scored == 4
        assert all(b.predicted_mean_ms > 0 and b.ms > 0 for b in scored)
    finally:
        stage.close()


def test_auto_reports_every_policy_call_while_it_tokenises_more(settings):
    from hybridsearch.engine.rerank_stage import RerankStage

    recorder = Recorder()
    stage = RerankStage(settings)
    stage.set_observers(StageObserver(recorder), recorder.batch)
    stage.start()
    try:
        _, outcome = search(stage, "auto")
        # AUTO starts with nothing tokenised and asks again after each larger prefix.
        assert len(recorder.decisions) >= 2
        assert recorder.decisions[0][2].more and not recorder.decisions[-1][2].more
        assert [len(d[1].cumulative_tokens) for d in recorder.decisions] == sorted(
            len(d[1].cumulative_tokens) for d in recorder.decisions
        )
        assert recorder.decisions[-1][2].depth == outcome.decision.depth_chosen
        assert len(recorder.finished) == 1 and recorder.finished[0][1] == outcome
    finally:
        stage.close()


def test_a_search_without_rerank_is_finished_without_a_decision(settings):
    from hybridsearch.engine.rerank_stage import RerankStage

    recorder = Recorder()
    stage = RerankStage(settings, observer=StageObserver(recorder))
    stage.start()
    try:
        _, outcome = search(stage, "off")
        assert recorder.decisions == [] and outcome.decision.reason.startswith("fusion only")
        assert len(recorder.finished) == 1 and recorder.finished[0][1].order == outcome.order
    finally:
        stage.close()


def test_without_observers_the_stage_answers_the_same(settings):
    from hybridsearch.engine.rerank_stage import RerankStage

    plain, observed = (
        RerankStage(settings),
        RerankStage(settings, observer=StageObserver(Recorder()), latency_observer=lambda b: None),
    )
    for stage in (plain, observed):
        stage.start()
    try:
        (_, a), (_, b) = search(plain, "fixed", depth=5), search(observed, "fixed", depth=5)
        assert a.order == b.order and a.decision.depth_scored == b.decision.depth_scored == 5
        assert {pk: s.rerank for pk, s in a.scores.items()} == pytest.approx(
            {pk: s.rerank for pk, s in b.scores.items()}
        )
    finally:
        plain.close()
        observed.close()
