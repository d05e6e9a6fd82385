"""The rerank batcher: shared forward passes for concurrent requests, deadlines, back-pressure, failures."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from hybridsearch.rerank.batcher import DeadlineExpired, Overloaded, RerankBatcher
from hybridsearch.rerank.latency_model import LatencyModel
from tests.rerank.faults import FaultyBackend

REQUESTS = [
    ("cancer cells", ["protein expression in cancer cells", "gene regulation of stem cells"]),
    ("immune response", ["immune response to viral infection in mice", "the of and", "brain imaging of memory"]),
    ("diet", ["cancer risk and diet in a large cohort study"]),
    ("bacteria", ["bacteria resistance to antibiotic treatment", "water sample", "heart and liver", "cells"]),
    ("stem cells", ["stem cell therapy for heart disease", "protein binding"]),
    ("memory", ["sleep and memory in children"]),
]
WAIT = 30  # seconds; results come in milliseconds, this only bounds a hang


@pytest.fixture
def fake(flag_backend):
    return FaultyBackend(flag_backend)


@pytest.fixture
def make_batcher():
    made = []

    def make(backend, **kwargs):
        batcher = RerankBatcher(backend, LatencyModel(), **kwargs)
        made.append(batcher)
        return batcher

    yield make
    for batcher in made:
        if hasattr(batcher.backend, "gate") and batcher.backend.gate is not None:
            batcher.backend.gate.set()
        batcher.close()


def hold(fake: FaultyBackend, batcher: RerankBatcher, query="hold", docs=("held pair one", "held pair two")):
    """Occupy the worker: it takes this request and waits at the gate until the test opens it."""
    fake.gate = fake.gate or threading.Event()
    future = batcher.submit(fake.encode(query, list(docs)))
    assert fake.started.wait(WAIT)
    return future


def test_concurrent_submissions_are_batched_and_routed_to_their_requests(fake, flag_backend, make_batcher):
    batcher = make_batcher(fake, max_batch_pairs=64)
    first = hold(fake, batcher)
    with ThreadPoolExecutor(len(REQUESTS)) as pool:
        futures = list(pool.map(lambda r: batcher.submit(fake.encode(*r)), REQUESTS))
    fake.gate.set()
    first.result(WAIT)
    results = [f.result(WAIT) for f in futures]
    # the held request went alone; everything queued behind it went in one shared batch
    assert batcher.batches == 2 < len(REQUESTS) + 1
    for (query, docs), scores in zip(REQUESTS, results, strict=True):
        direct = flag_backend.score(query, docs)
        assert len(scores.raw) == len(docs)
        np.testing.assert_allclose(scores.raw, direct.raw, atol=1e-5, rtol=0)
        assert scores.tokens.tolist() == direct.tokens.tolist()
    assert batcher.model.observations == 2  # each batch fed the latency model


def test_batches_respect_max_batch_pairs(fake, make_batcher):
    batcher = make_batcher(fake, max_batch_pairs=4)
    first = hold(fake, batcher)
    futures = [batcher.submit(fake.encode(q, d)) for q, d in REQUESTS]  # 13 pairs
    fake.gate.set()
    first.result(WAIT)
    for f in futures:
        f.result(WAIT)
    # oldest first, adding queued requests while they fit: [2] [3, 1] [4] [2, 1] after the held one
    assert fake.batch_sizes == [2, 2, 4, 4, 3]
    assert batcher.batches == 5


def test_expired_requests_are_dropped_unscored(fake, make_batcher):
    batcher = make_batcher(fake)
    first = hold(fake, batcher, docs=("a", "b"))
    expiring = batcher.submit(fake.encode("soon", ["will expire", "unscored"]), deadline=time.monotonic() + 0.05)
    patient = batcher.submit(fake.encode("later", ["no deadline"]))
    time.sleep(0.1)
    fake.gate.set()
    first.result(WAIT)
    with pytest.raises(DeadlineExpired, match="deadline passed"):
        expiring.result(WAIT)
    assert len(patient.result(WAIT).raw) == 1
    assert batcher.dropped_expired == 1
    assert fake.pairs_scored == 2 + 1  # the expired pairs never reached the model


def test_request_already_past_its_deadline_is_never_scored(fake, make_batcher):
    batcher = make_batcher(fake)
    future = batcher.submit(fake.encode("late", ["x", "y"]), deadline=time.monotonic() - 1)
    with pytest.raises(DeadlineExpired):
        future.result(WAIT)
    assert fake.calls == 0 and batcher.batches == 0


def test_full_queue_raises_overloaded_at_once(fake, make_batcher):
    batcher = make_batcher(fake, max_queue_pairs=6)
    first = hold(fake, batcher, docs=("a", "b", "c"))  # in flight: not counted against the queue
    queued = batcher.submit(fake.encode("q", ["1", "2", "3", "4"]))
    with pytest.raises(Overloaded, match="queue full"):
        batcher.submit(fake.encode("q", ["5", "6", "7"]))
    fits = batcher.submit(fake.encode("q", ["5", "6"]))
    assert batcher.pending_pairs == 3 + 6
    fake.gate.set()
    for f in (first, queued, fits):
        f.result(WAIT)
    assert batcher.pending_pairs == 0
    batcher.submit(fake.encode("q", ["1", "2", "3", "4", "5", "6"])).result(WAIT)  # room again


def test_raising_backend_fails_its_requests_and_the_worker_keeps_serving(fake, flag_backend, make_batcher):
    batcher = make_batcher(fake)
    fake.error = RuntimeError("model crashed")
    failed = [batcher.submit(fake.encode(q, d)) for q, d in REQUESTS[:3]]
    for f in failed:
        with pytest.raises(RuntimeError, match="model crashed"):
            f.result(WAIT)
    fake.error = None
    query, docs = REQUESTS[3]
    scores = batcher.submit(fake.encode(query, docs)).result(WAIT)
    np.testing.assert_allclose(scores.raw, flag_backend.score(query, docs).raw, atol=1e-5, rtol=0)
    assert batcher._worker.is_alive() and batcher.pending_pairs == 0


def test_close_fails_queued_requests_and_refuses_new_ones(fake, make_batcher):
    batcher = make_batcher(fake)
    first = hold(fake, batcher)
    queued = batcher.submit(fake.encode("q", ["waiting"]))
    batcher.close()
    with pytest.raises(Overloaded, match="shutting down"):
        queued.result(WAIT)
    with pytest.raises(Overloaded):
        batcher.submit(fake.encode("q", ["after close"]))
    fake.gate.set()
    assert len(first.result(WAIT).raw) == 2  # the batch in flight still completes


def test_cancelled_requests_are_skipped_and_the_worker_keeps_serving(fake, make_batcher):
    # A search that stopped waiting cancels its request; an expired deadline on a cancelled
    # request used to raise InvalidStateError inside the worker thread and kill it.
    batcher = make_batcher(fake, max_batch_pairs=64)
    first = hold(fake, batcher)
    assert batcher.running_for_s() > 0.0
    expired = batcher.submit(fake.encode(*REQUESTS[0]), deadline=time.monotonic() + 0.01)
    plain = batcher.submit(fake.encode(*REQUESTS[1]))
    assert expired.cancel() and plain.cancel()
    time.sleep(0.02)  # past the expired request's deadline
    fake.gate.set()
    assert len(first.result(WAIT).raw) == 2
    after = batcher.submit(fake.encode(*REQUESTS[2]))
    assert len(after.result(WAIT).raw) == 1
    assert fake.pairs_scored == 3  # the two cancelled requests were never scored
    assert batcher.running_for_s() == 0.0 and batcher.pending_pairs == 0
