"""Fair admission: the scheduler's order, caps and refusals (engine/admission.py)."""

from __future__ import annotations

import threading
import time

import grpc
import pytest

from hybridsearch.engine.admission import UNIDENTIFIED, FairScheduler, Refused
from hybridsearch.engine.errors import ServiceError
from tests.conftest import FakeClock


def scheduler(slots=1, running_cap=None, queue_cap=100, weights=None, total_cap=1000, alone=None, clock=None):
    weights = weights or {}
    return FairScheduler(
        slots,
        shared_cap=lambda t: (running_cap or {}).get(t, slots),
        queue_cap=lambda t: (queue_cap, "limits.max_concurrent_per_tenant"),
        weight=lambda t: weights.get(t, 1.0),
        total_cap=total_cap,
        alone_cap=lambda t: alone or slots,
        active_window_s=5.0,
        clock=clock or FakeClock(),
    )


def grant_order(s: FairScheduler, tickets) -> list[str]:
    """Finish granted calls one at a time and record whose call got each freed slot."""
    order = []
    pending = list(tickets)
    while pending:
        running = [t for t in pending if t.granted]
        assert running, "nothing granted while calls wait"
        for t in running:
            order.append(t.tenant)
            pending.remove(t)
            s.done(t)
    return order


def test_a_tenant_that_arrives_behind_a_burst_is_served_next():
    s = scheduler(slots=1)
    burst = [s.admit("A") for _ in range(10)]
    b = s.admit("B")
    order = grant_order(s, burst + [b])
    # A's first call held the only slot; the next free slot went to B, not A's 2nd..10th.
    assert order[:2] == ["A", "B"]


def test_slots_are_shared_by_weight():
    s = scheduler(slots=1, weights={"B": 2.0})
    tickets = [s.admit("A") for _ in range(12)] + [s.admit("B") for _ in range(12)]
    order = grant_order(s, tickets)
    # While both wait, B (weight 2) gets two slots for each of A's (A's first call held the slot).
    assert order[:15] == ["A"] + ["B", "B", "A"] * 4 + ["B", "B"]


def test_an_idle_tenant_saves_no_credit():
    s = scheduler(slots=1)
    for _ in range(20):  # B alone for a while
        s.done(s.admit("B"))
    a = [s.admit("A") for _ in range(4)]
    b = [s.admit("B") for _ in range(4)]
    order = grant_order(s, a + b)
    # B's earlier service does not make it wait behind all of A's calls, nor the reverse.
    assert order[:4].count("A") in (2, 3)


def test_a_tenant_alone_uses_all_slots_but_one_and_its_share_once_another_is_active():
    clock = FakeClock()
    s = scheduler(slots=4, running_cap={"A": 1, "B": 1}, alone=3, clock=clock)
    a = [s.admit("A") for _ in range(6)]
    assert [t.granted for t in a] == [True, True, True, False, False, False]
    b = s.admit("B")
    assert b.granted  # the slot kept free for the next tenant to arrive
    # While B is active, A gets no new slot until it is down to its shared cap (1).
    s.done(a[0])
    s.done(a[1])
    assert not a[3].granted
    s.done(a[2])
    assert a[3].granted and not a[4].granted
    s.done(b)
    # B stays "active" for the window after its last call, then A may spread again.
    clock.now += 4.9
    s.done(a[3])
    assert a[4].granted and not a[5].granted
    clock.now += 0.2
    s.done(a[4])
    s.admit("A")
    assert a[5].granted and s.snapshot()["A"] == (2, 0)


def test_refusals_name_the_setting_and_carry_a_retry_hint():
    s = scheduler(slots=1, queue_cap=3)
    tickets = [s.admit("A") for _ in range(3)]
    with pytest.raises(Refused) as info:
        s.admit("A")
    assert "limits.max_concurrent_per_tenant" in info.value.message and "'A'" in info.value.message
    assert 50 <= info.value.retry_after_ms <= 10_000
    s.admit("B")  # another tenant is not refused
    s.done(tickets[0])
    s.admit("A")


def test_the_server_wide_cap_refuses_when_every_thread_would_be_taken():
    s = scheduler(slots=1, total_cap=3)
    for name in ("A", "B", "C"):
        s.admit(name)
    with pytest.raises(Refused) as info:
        s.admit("D")
    assert "server.max_workers" in info.value.message


def test_a_deadline_while_waiting_gives_up_the_place():
    s = scheduler(slots=1)
    held = s.admit("A")
    waiting = s.admit("A")
    with pytest.raises(ServiceError) as info:
        s.wait(waiting, 0.1, lambda: True)
    assert info.value.code == grpc.StatusCode.DEADLINE_EXCEEDED and "limits.max_running" in info.value.message
    assert s.snapshot() == {"A": (1, 0)}
    s.done(held)
    assert s.snapshot() == {}


def test_a_cancelled_caller_gives_up_the_place():
    s = scheduler(slots=1)
    s.admit("A")
    waiting = s.admit("B")
    gone = threading.Event()
    threading.Timer(0.1, gone.set).start()
    t0 = time.monotonic()
    with pytest.raises(ServiceError) as info:
        s.wait(waiting, None, lambda: not gone.is_set())
    assert info.value.code == grpc.StatusCode.CANCELLED and time.monotonic() - t0 < 2
    assert s.snapshot() == {"A": (1, 0)}


def test_done_is_idempotent_and_waiting_calls_are_granted_in_turn():
    s = scheduler(slots=1)
    a, b = s.admit("A"), s.admit(UNIDENTIFIED)
    results = []
    t = threading.Thread(target=lambda: results.append(s.wait(b, 5, lambda: True)))
    t.start()
    s.done(a)
    s.done(a)
    t.join(5)
    assert results and results[0] >= 0 and b.granted
    s.done(b)
    assert s.snapshot() == {}


def test_a_call_grpc_drops_unrun_gives_back_its_place_without_deadlocking():
    """The finalizer of a dropped call's handler can run inside the scheduler's own lock (a
    garbage collection triggered there): it must only queue the release (a full suite run
    once hung on exactly that)."""
    import gc

    from hybridsearch.engine.admission import AdmissionInterceptor

    s = scheduler(slots=1)
    interceptor = AdmissionInterceptor(s, identify=lambda md: "A")
    details = type("Details", (), {"method": "/hybridsearch.v1.HybridSearch/Search", "invocation_metadata": ()})()
    inner = grpc.unary_unary_rpc_method_handler(lambda req, ctx: "never")
    handler = interceptor.intercept_service(lambda d: inner, details)
    assert s.snapshot() == {"A": (1, 0)}
    with s._lock:  # as if collected while the scheduler holds its lock
        del handler
        gc.collect()
    assert s.snapshot() == {}  # released on the next call into the scheduler
    s.done(s.admit("A"))
