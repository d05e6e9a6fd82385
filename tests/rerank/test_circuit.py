"""The circuit breaker: opens after N consecutive failures, probes once after the cooldown."""

from __future__ import annotations

from hybridsearch.rerank.circuit import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from tests.conftest import FakeClock


def test_circuit_opens_after_threshold_consecutive_failures():
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=3, cooldown_s=10, clock=clock)
    for i in range(2):
        assert breaker.allow()
        breaker.record_failure(f"boom {i}")
        assert breaker.state == CLOSED
    assert breaker.allow()
    breaker.record_failure("boom 2")
    assert breaker.state == OPEN and breaker.failures == 3 and breaker.last_error == "boom 2"
    assert not breaker.allow()


def test_a_success_resets_the_failure_count():
    breaker = CircuitBreaker(failure_threshold=2, cooldown_s=10, clock=FakeClock())
    breaker.record_failure("a")
    breaker.record_success()
    breaker.record_failure("b")
    assert breaker.state == CLOSED and breaker.failures == 1


def test_open_circuit_lets_one_probe_through_after_the_cooldown():
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, cooldown_s=10, clock=clock)
    breaker.record_failure("down")
    clock.advance(9.9)
    assert not breaker.allow() and breaker.state == OPEN
    clock.advance(0.1)
    assert breaker.allow()  # the probe
    assert breaker.state == HALF_OPEN
    assert not breaker.allow()  # only one probe at a time


def test_successful_probe_closes_the_circuit():
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=2, cooldown_s=5, clock=clock)
    breaker.record_failure("x")
    breaker.record_failure("x")
    clock.advance(5)
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state == CLOSED and breaker.failures == 0
    assert all(breaker.allow() for _ in range(3))


def test_failed_probe_opens_the_circuit_again_for_a_full_cooldown():
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=3, cooldown_s=5, clock=clock)
    for _ in range(3):
        breaker.record_failure("x")
    clock.advance(6)
    assert breaker.allow()
    breaker.record_failure("still down")
    assert breaker.state == OPEN and breaker.last_error == "still down"
    clock.advance(4)
    assert not breaker.allow()
    clock.advance(1)
    assert breaker.allow()


def test_probe_that_never_reports_back_is_replaced_after_another_cooldown():
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, cooldown_s=10, clock=clock)
    breaker.record_failure("down")
    clock.advance(10)
    assert breaker.allow()  # a probe whose caller then scores nothing and reports nothing
    clock.advance(9)
    assert not breaker.allow()
    clock.advance(1)
    assert breaker.allow()  # the next caller probes instead
    breaker.record_success()
    assert breaker.state == CLOSED
