"""QueryBatcher: concurrent queries encoded together, deadlines, a full queue, failures
that stay with their own query."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from hybridsearch.engine.encoders.query_batcher import EncodeCancelled, EncodeTimeout, QueryBatcher, QueueFull


class SlowEncoder:
    """Upper-cases texts; each call takes `seconds` (a forward pass) and is recorded."""

    def __init__(self, seconds: float = 0.02):
        self.seconds = seconds
        self.calls: list[list[str]] = []
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, texts):
        self.gate.wait(5)
        self.calls.append(list(texts))
        time.sleep(self.seconds)
        if any("bad" in t for t in texts):
            raise ValueError(f"cannot encode {[t for t in texts if 'bad' in t]}")
        return [t.upper() for t in texts]


def test_concurrent_queries_share_forward_passes_and_each_gets_its_own_result():
    encoder = SlowEncoder()
    batcher = QueryBatcher("t", encoder, max_batch=8)
    texts = [f"query {i}" for i in range(24)]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(batcher.encode, texts))
    assert results == [t.upper() for t in texts]
    assert sorted(t for call in encoder.calls for t in call) == sorted(texts)  # each encoded once
    assert len(encoder.calls) < len(texts) and max(len(c) for c in encoder.calls) > 1
    assert all(len(c) <= 8 for c in encoder.calls)
    batcher.close()


def test_a_lone_query_waits_at_most_the_batching_window():
    encoder = SlowEncoder(seconds=0)
    batcher = QueryBatcher("t", encoder, max_wait_s=0.002)
    assert batcher.encode("one") == "ONE" and encoder.calls == [["one"]]
    batcher.close()


def test_a_query_whose_deadline_passes_while_queued_is_never_encoded():
    encoder = SlowEncoder()
    encoder.gate.clear()  # the worker is stuck in a forward pass
    batcher = QueryBatcher("t", encoder)
    busy = threading.Thread(target=batcher.encode, args=("first",))
    busy.start()
    time.sleep(0.05)
    with pytest.raises(EncodeTimeout):
        batcher.encode("late", timeout_s=0.01)
    encoder.gate.set()
    busy.join(5)
    assert batcher.encode("after") == "AFTER"
    assert all("late" not in call for call in encoder.calls) and batcher.dropped == 1
    batcher.close()


def test_a_full_queue_answers_at_once():
    encoder = SlowEncoder()
    encoder.gate.clear()
    batcher = QueryBatcher("t", encoder, max_queue=2, max_batch=1)
    threads = [threading.Thread(target=lambda t=t: batcher.encode(t, timeout_s=5)) for t in ("a", "b", "c")]
    for t in threads:
        t.start()
        time.sleep(0.03)  # "a" is taken into the stuck pass, "b" and "c" fill the queue
    started = time.monotonic()
    with pytest.raises(QueueFull, match="limit 2"):
        batcher.encode("d")
    assert time.monotonic() - started < 0.5
    encoder.gate.set()
    for t in threads:
        t.join(5)
    batcher.close()


def test_a_failing_query_fails_alone_and_its_batch_mates_succeed():
    encoder = SlowEncoder()
    batcher = QueryBatcher("t", encoder, max_batch=8, max_wait_s=0.05)
    texts = ["fine 1", "bad one", "fine 2", "fine 3"]
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(batcher.encode, t) for t in texts]
        outcomes = []
        for f in futures:
            try:
                outcomes.append(f.result(5))
            except ValueError as exc:
                outcomes.append(exc)
    assert outcomes[0] == "FINE 1" and outcomes[2] == "FINE 2" and outcomes[3] == "FINE 3"
    assert isinstance(outcomes[1], ValueError) and "bad one" in str(outcomes[1])
    batcher.close()


def test_closing_fails_new_queries_with_queue_full():
    batcher = QueryBatcher("t", SlowEncoder(0))
    batcher.close()
    with pytest.raises(QueueFull, match="shutting down"):
        batcher.encode("x")


def test_a_query_whose_call_was_cancelled_while_queued_is_never_encoded():
    encoder = SlowEncoder()
    encoder.gate.clear()
    batcher = QueryBatcher("t", encoder)
    busy = threading.Thread(target=batcher.encode, args=("first",))
    busy.start()
    time.sleep(0.05)
    ended = threading.Event()
    outcome = []
    waiter = threading.Thread(target=lambda: outcome.append(_raises(lambda: batcher.encode("gone", cancelled=ended))))
    waiter.start()
    time.sleep(0.05)
    ended.set()  # the client cancels while its query waits behind the stuck pass
    encoder.gate.set()
    busy.join(5)
    waiter.join(5)
    assert outcome and isinstance(outcome[0], EncodeCancelled)
    assert all("gone" not in call for call in encoder.calls) and batcher.dropped == 1
    batcher.close()


def _raises(fn):
    try:
        fn()
    except Exception as exc:  # the test inspects the type
        return exc
    return None


def _submit(batcher: QueryBatcher, texts: list[str]) -> list[threading.Thread]:
    threads = []
    for t in texts:
        threads.append(threading.Thread(target=batcher.encode, args=(t,), daemon=True))
        threads[-1].start()
        time.sleep(0.01)  # arrival order
    return threads


def test_short_queries_go_first_and_are_not_batched_with_long_ones():
    """Issue 28: a batch is padded to its longest query; a short query batched with a
    4,096-character one costs what that one does."""
    encoder = SlowEncoder(seconds=0.01)
    encoder.gate.clear()  # the worker is in a forward pass while the queue fills
    batcher = QueryBatcher("t", encoder, max_age_s=10)
    first = _submit(batcher, ["first"])
    long_a, long_b = "长" * 4096, "长" * 4000
    threads = _submit(batcher, [long_a, "蛋白质 protein", long_b, "short two"])
    encoder.gate.set()
    for t in first + threads:
        t.join(10)
    assert encoder.calls[0] == ["first"]
    assert sorted(encoder.calls[1]) == ["short two", "蛋白质 protein"]  # the shorts, together, before the longs
    assert sorted(map(len, encoder.calls[2])) == [4000, 4096]  # the longs together
    batcher.close()


def test_a_long_query_that_waited_max_age_goes_next_whatever_its_length():
    encoder = SlowEncoder(seconds=0.01)
    encoder.gate.clear()
    batcher = QueryBatcher("t", encoder, max_age_s=0.05)
    first = _submit(batcher, ["first"])
    threads = _submit(batcher, ["long " * 100, "short"])
    time.sleep(0.1)  # the long query is now older than max_age_s
    encoder.gate.set()
    for t in first + threads:
        t.join(10)
    assert encoder.calls[1] == ["long " * 100, "short"]  # it leads; the short one fits in its batch
    batcher.close()
