"""Batch rerank requests from concurrent searches into shared forward passes.

One worker thread per backend. It takes the oldest request, adds whatever else is
queued (up to ``max_batch_pairs``), drops requests whose deadline has passed
without scoring them, scores the rest together (the backend sorts pairs by length
so short pairs are not padded to long ones), feeds the latency model, and hands
each request its slice. The queue is bounded in pairs: a full queue answers
``Overloaded`` at once instead of letting latency grow without bound.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field

from hybridsearch.rerank.base import EncodedPairs, RerankBackend
from hybridsearch.rerank.latency_model import LatencyModel

log = logging.getLogger(__name__)


class Overloaded(RuntimeError):
    """The rerank queue is full."""


class DeadlineExpired(RuntimeError):
    """The request's deadline passed while it waited; it was not scored."""


class RerankFuture(Future):
    """A request's scores, with its times in the queue (``time.monotonic()``): ``enqueued``
    when submitted, ``started`` when its batch began scoring (None until then)."""

    def __init__(self) -> None:
        super().__init__()
        self.enqueued = time.monotonic()
        self.started: float | None = None


@dataclass
class _Request:
    pairs: EncodedPairs
    deadline: float | None  # time.monotonic()
    future: RerankFuture = field(default_factory=RerankFuture)
    enqueued: float = field(default_factory=time.monotonic)


class RerankBatcher:
    def __init__(
        self, backend: RerankBackend, model: LatencyModel, *, max_queue_pairs: int = 2048, max_batch_pairs: int = 64
    ):
        self.backend = backend
        self.model = model
        self.max_queue_pairs = max_queue_pairs
        self.max_batch_pairs = max_batch_pairs
        self._queue: deque[_Request] = deque()
        self._queued_pairs = 0
        self._in_flight_pairs = 0
        self._batch_started: float | None = None  # monotonic start of the batch being scored
        self._cond = threading.Condition()
        self._closed = False
        self.dropped_expired = 0
        self.batches = 0
        self.restarts = 0
        self.crash = ""  # why the last worker died, if one did
        self._worker = threading.Thread(target=self._run, name=f"rerank-{backend.name}", daemon=True)
        self._worker.start()

    @property
    def pending_pairs(self) -> int:
        """Pairs waiting or being scored: the queue a new request stands behind."""
        with self._cond:
            return self._queued_pairs + self._in_flight_pairs

    def running_for_s(self) -> float:
        """How long the batch now being scored has run (0 when idle).

        Callers that time out use it to tell a stalled backend (one batch running far too
        long: a failure for the circuit breaker) from a long queue (overload: not a failure).
        """
        with self._cond:
            started = self._batch_started
        return 0.0 if started is None else time.monotonic() - started

    def submit(self, pairs: EncodedPairs, deadline: float | None = None) -> RerankFuture:
        """Queue pairs for scoring; the future gives Scores, or raises DeadlineExpired / the backend's error."""
        request = _Request(pairs, deadline)
        # Counted in sequences the model scores: a document in windows (chunks mode) is as
        # many pairs as it has windows.
        with self._cond:
            if self._closed:
                raise Overloaded("reranker is shutting down")
            if self._queued_pairs + pairs.n_chunks > self.max_queue_pairs:
                raise Overloaded(f"rerank queue full ({self._queued_pairs} pairs queued, limit {self.max_queue_pairs})")
            self._ensure_worker()
            self._queue.append(request)
            self._queued_pairs += pairs.n_chunks
            self._cond.notify()
        return request.future

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            while self._queue:
                request = self._queue.popleft()
                if not request.future.cancelled():
                    request.future.set_exception(Overloaded("reranker is shutting down"))
            self._queued_pairs = 0

    def _take_batch(self) -> list[_Request]:
        with self._cond:
            while not self._queue and not self._closed:
                self._cond.wait()
            if self._closed:
                return []
            batch: list[_Request] = []
            size = 0
            now = time.monotonic()
            while self._queue:
                request = self._queue[0]
                if batch and size + request.pairs.n_chunks > self.max_batch_pairs:
                    break
                self._queue.popleft()
                self._queued_pairs -= request.pairs.n_chunks
                if request.future.cancelled():  # its search stopped waiting
                    continue
                if request.deadline is not None and request.deadline <= now:
                    self.dropped_expired += 1
                    request.future.set_exception(
                        DeadlineExpired(
                            f"deadline passed after {1000 * (now - request.enqueued):.1f} ms in the rerank queue"
                        )
                    )
                    continue
                if not request.future.set_running_or_notify_cancel():
                    continue
                batch.append(request)
                size += request.pairs.n_chunks
            self._in_flight_pairs = size
            self._batch_started = time.monotonic() if batch else None
            for request in batch:
                request.future.started = self._batch_started
            return batch

    @property
    def alive(self) -> bool:
        """Whether the worker thread is running (False after close() or if it died)."""
        return self._worker.is_alive()

    def _ensure_worker(self) -> None:
        """Start a new worker if the last one died; called with ``_cond`` held."""
        if self._closed or self._worker.is_alive():
            return
        self.restarts += 1
        log.error(
            "rerank worker for %s had died (%s); starting a new one (restart %d)",
            self.backend.name,
            self.crash,
            self.restarts,
        )
        self._worker = threading.Thread(target=self._run, name=f"rerank-{self.backend.name}", daemon=True)
        self._worker.start()

    def _run(self) -> None:
        batch: list[_Request] = []
        try:
            while True:
                batch = self._take_batch()
                if not batch:
                    if self._closed:
                        return
                    continue
                try:
                    self._score(batch)
                except Exception as exc:  # a bug in this loop fails its batch, not the worker
                    log.exception("rerank worker for %s: unexpected error", self.backend.name)
                    self._fail(batch, exc)
                batch = []
        except BaseException as exc:
            # The thread is going away (killed: an asynchronous SystemExit or similar). Fail
            # what it held so nobody waits on it; the next submit() starts a new worker and
            # until then the reranker's health says it is down.
            self.crash = f"{type(exc).__name__}: {exc}"
            log.error("rerank worker for %s died: %s", self.backend.name, self.crash)
            self._fail(batch, RuntimeError(f"rerank worker died: {self.crash}"))
            self._batch_done()
            return  # the thread ends here either way; re-raising would only print it again

    def _batch_done(self) -> None:
        """Nothing is being scored any more (pending_pairs and running_for_s follow)."""
        with self._cond:
            self._in_flight_pairs = 0
            self._batch_started = None

    @staticmethod
    def _fail(batch: list[_Request], exc: BaseException) -> None:
        for r in batch:
            if not r.future.done():
                r.future.set_exception(exc)

    def _score(self, batch: list[_Request]) -> None:
        merged = EncodedPairs.concat([r.pairs for r in batch])
        start = time.perf_counter()
        try:
            scores = self.backend.score_encoded(merged)
        except Exception as exc:  # a failing backend fails its requests, not the worker
            log.warning("rerank backend %s failed: %s", self.backend.name, exc)
            self._fail(batch, exc)
            return
        finally:
            self._batch_done()
        elapsed_ms = (time.perf_counter() - start) * 1000.0
        self.model.observe(merged.n_chunks, int(scores.tokens.sum()), elapsed_ms)
        self.batches += 1
        offset = 0
        for r in batch:
            n = len(r.pairs)
            r.future.set_result(scores.slice(offset, offset + n))
            offset += n
