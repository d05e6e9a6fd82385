"""A circuit breaker: stop sending work to a failing backend, probe it again later."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class CircuitBreaker:
    """Opens after ``failure_threshold`` consecutive failures; after ``cooldown_s`` one probe
    is let through (half-open): success closes the circuit, failure opens it again."""

    def __init__(
        self, failure_threshold: int = 3, cooldown_s: float = 10.0, clock: Callable[[], float] = time.monotonic
    ):
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self.clock = clock
        self.state = CLOSED
        self.failures = 0
        self.opened_at = 0.0
        self.last_error = ""
        self._probe_in_flight = False
        self._probe_started = 0.0
        self._lock = threading.Lock()

    def allow(self) -> bool:
        with self._lock:
            if self.state == CLOSED:
                return True
            if self.state == OPEN and self.clock() - self.opened_at >= self.cooldown_s:
                self.state = HALF_OPEN
                self._probe_in_flight = False
            # A probe that never reported back (its caller scored nothing, or gave up)
            # must not keep the circuit half-open for good: after another cooldown
            # the next caller probes instead.
            if self.state == HALF_OPEN and (
                not self._probe_in_flight or self.clock() - self._probe_started >= self.cooldown_s
            ):
                self._probe_in_flight = True
                self._probe_started = self.clock()
                return True
            return False

    def record_success(self) -> None:
        with self._lock:
            self.state = CLOSED
            self.failures = 0
            self._probe_in_flight = False

    def record_failure(self, error: str) -> None:
        with self._lock:
            self.failures += 1
            self.last_error = error
            self._probe_in_flight = False
            if self.state == HALF_OPEN or self.failures >= self.failure_threshold:
                self.state = OPEN
                self.opened_at = self.clock()
