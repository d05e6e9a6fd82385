"""Encode the queries of concurrent searches in shared forward passes.

Each profile's model runs one forward pass at a time (more only fight over the same
cores), so under 8 clients a query used to wait for up to 7 single-text passes. Here the
queries that miss the cache queue up; one worker thread takes the oldest, waits at most
``max_wait_s`` (2 ms) for more to arrive, and encodes up to ``max_batch`` of them in one
call: a batch of 8 short queries costs about what 2-3 single ones do on a CPU.

* A full queue answers :class:`QueueFull` at once (RESOURCE_EXHAUSTED upstream), rather
  than letting waits grow without bound.
* A request whose caller stopped waiting (deadline passed, call cancelled) is dropped
  before it is encoded: it costs nothing.
* If a batch fails, its queries are encoded again one by one, so one bad query fails only
  its own request.
* Short queries go first, and a batch holds queries of similar length: a batch is padded to
  its longest query, so a short query batched with a 512-token one would cost what that one
  does (issue 28: two tenants' 4,096-character queries slowed everyone's searches). A query
  that has waited ``max_age_s`` goes next whatever its length, so long ones are never starved.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError, Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Generic, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


class QueueFull(RuntimeError):
    """Too many queries are waiting to be encoded."""


class EncodeTimeout(TimeoutError):
    """The query's deadline passed before its vectors were ready."""


class EncodeCancelled(RuntimeError):
    """The caller went away (its call was cancelled) before the query was encoded."""


@dataclass
class _Request(Generic[T]):
    text: str
    deadline: float | None  # time.monotonic()
    cancelled: threading.Event | None = None  # set when the caller's call ends
    future: Future = field(default_factory=Future)
    arrived: float = field(default_factory=time.monotonic)


class QueryBatcher(Generic[T]):
    """``encode(texts) -> one result per text`` (in order), called from one worker thread."""

    def __init__(
        self,
        name: str,
        encode: Callable[[Sequence[str]], Sequence[T]],
        *,
        max_batch: int = 32,
        max_wait_s: float = 0.002,
        max_queue: int = 1024,
        max_age_s: float = 0.25,
    ):
        if max_batch < 1 or max_queue < 1 or not 0 <= max_wait_s <= 0.1:
            raise ValueError(
                f"max_batch and max_queue must be >= 1 and max_wait_s in [0, 0.1]; got {max_batch}, {max_queue}, {max_wait_s}"
            )
        self.name = name
        self._encode = encode
        self.max_batch, self.max_wait_s, self.max_queue = max_batch, max_wait_s, max_queue
        self.max_age_s = max_age_s
        self._queue: deque[_Request[T]] = deque()
        self._cond = threading.Condition()
        self._closed = False
        # Counters for metrics and tests.
        self.batches = 0
        self.encoded = 0
        self.dropped = 0
        self._worker = threading.Thread(target=self._run, name=f"query-encoder-{name}", daemon=True)
        self._worker.start()

    def encode(self, text: str, timeout_s: float | None = None, cancelled: threading.Event | None = None) -> T:
        """The vectors of one query, encoded with whatever else is waiting. Raises QueueFull,
        EncodeTimeout / EncodeCancelled (nothing is encoded for a request that expired, or
        whose ``cancelled`` event was set, while queued), or the encoder's own error."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        request: _Request[T] = _Request(text, deadline, cancelled)
        with self._cond:
            if self._closed:
                raise QueueFull(f"query encoder {self.name} is shutting down")
            if len(self._queue) >= self.max_queue:
                raise QueueFull(
                    f"query encoder {self.name}: {len(self._queue)} queries waiting (limit {self.max_queue})"
                )
            self._queue.append(request)
            self._cond.notify()
        try:
            return request.future.result(timeout=timeout_s)
        except FutureTimeout:
            # Still queued: cancelling drops it from the next batch. Already running: its
            # batch finishes for the others and this result is discarded.
            request.future.cancel()
            raise EncodeTimeout(f"query encoding took longer than {1000 * timeout_s:.0f} ms") from None
        except CancelledError:
            raise EncodeTimeout("query encoding was cancelled") from None

    def close(self) -> None:
        with self._cond:
            self._closed = True
            while self._queue:
                self._queue.popleft().future.set_exception(QueueFull(f"query encoder {self.name} is shutting down"))
            self._cond.notify_all()

    @property
    def waiting(self) -> int:
        with self._cond:
            return len(self._queue)

    def _take_batch(self) -> list[_Request[T]]:
        with self._cond:
            while not self._queue and not self._closed:
                self._cond.wait()
            if self._closed:
                return []
            # The first query waits at most max_wait_s for company; a full batch goes at once.
            until = time.monotonic() + self.max_wait_s
            while len(self._queue) < self.max_batch and not self._closed:
                left = until - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            now = time.monotonic()
            live = [r for r in self._queue if not self._dropped(r, now)]
            if not live:
                self._queue.clear()
                return []
            # The lead: the oldest query once it has waited max_age_s, else the shortest.
            lead = live[0] if now - live[0].arrived >= self.max_age_s else min(live, key=lambda r: len(r.text))
            longest = max(2 * len(lead.text), 64)
            batch = [lead] + [r for r in live if r is not lead and len(r.text) <= longest][: self.max_batch - 1]
            taken = {id(r) for r in batch}
            self._queue = deque(r for r in live if id(r) not in taken)
            running = []
            for request in batch:
                if request.future.set_running_or_notify_cancel():
                    running.append(request)
                else:  # its caller cancelled it since _dropped looked
                    self.dropped += 1
            return running

    def _dropped(self, request: _Request[T], now: float) -> bool:
        """Whether a queued request is no longer wanted (deadline passed, call ended, future
        cancelled); its caller is told so."""
        expired = request.deadline is not None and request.deadline <= now
        gone = request.cancelled is not None and request.cancelled.is_set()
        if not (expired or gone or request.future.cancelled()):
            return False
        self.dropped += 1
        if not request.future.done():
            request.future.set_exception(
                EncodeTimeout("deadline passed while queued for encoding")
                if expired
                else EncodeCancelled("the call was cancelled while its query was queued")
            )
        return True

    def _run(self) -> None:
        while True:
            batch = self._take_batch()
            if not batch:
                if self._closed:
                    return
                continue
            try:
                self._encode_batch(batch)
            except BaseException as exc:  # never leave a caller waiting on a dead worker
                log.exception("query encoder %s: unexpected error", self.name)
                for r in batch:
                    if not r.future.done():
                        r.future.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise

    def _encode_batch(self, batch: list[_Request[T]]) -> None:
        try:
            results = list(self._encode([r.text for r in batch]))
            if len(results) != len(batch):
                raise RuntimeError(f"encoder returned {len(results)} results for {len(batch)} queries")
        except Exception as exc:
            if len(batch) == 1:
                batch[0].future.set_exception(exc)
                return
            log.warning(
                "query encoder %s: a batch of %d failed (%s); encoding them one by one", self.name, len(batch), exc
            )
            for r in batch:
                self._encode_batch([r])
            return
        self.batches += 1
        self.encoded += len(batch)
        for r, result in zip(batch, results, strict=True):
            r.future.set_result(result)
