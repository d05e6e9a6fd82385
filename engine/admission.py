"""Fair admission: calls are counted per tenant when they arrive and run in weighted fair order.

Why here and not in the handlers: grpcio's sync server hands every call to one FIFO thread
pool. A limit checked inside a handler is checked only once a pool thread is free, so a
tenant that sends more calls than there are threads makes everyone else's calls wait in
that FIFO behind its own (issue 15: an ordinary search took 29.6 s instead of 76 ms while
another tenant ran 70 heavy ones). grpcio runs server interceptors on its polling thread,
as each call arrives and before the pool, so the interceptor below:

1. counts the call against its tenant at arrival, and refuses what exceeds the tenant's
   queue (``limits.max_concurrent_per_tenant``, running + waiting) or the server's
   (``server.max_workers`` less a reserve) with RESOURCE_EXHAUSTED and a retry hint
   (google.rpc.RetryInfo in the status details, and ``retry-after-ms`` trailing metadata);
2. lets an admitted call run only when the scheduler grants it one of
   ``limits.max_running`` slots: free slots go to the waiting tenant with the least
   weighted service so far (start-time fair queueing, in calls). A tenant alone may use
   every slot but one (kept for the next tenant to arrive); while other tenants are active
   (a call of theirs in the last ``limits.tenant_active_window_s``) it holds at most
   ``limits.max_running_per_tenant``. Calls cannot be preempted once they run, and on a
   small machine the calls running at once share the cores and one encoder's batches, so
   a burst is only harmless to others if it is kept to a few running calls while others
   are active (benchmarks/README.md, "Noisy neighbour": the numbers behind the defaults).

A refusal still runs on a pool thread (grpcio rejects on the polling thread only for its
own reasons), but it takes microseconds, and the pool is never filled by waiting calls:
admitted calls are bounded below the number of threads.
"""

from __future__ import annotations

import collections
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import grpc

from hybridsearch.engine.errors import ServiceError
from hybridsearch.engine.rpc import QUEUE_WAIT_S, bracket_handler, rebuild_handler

# Services whose calls are scheduled; health checks and reflection never wait or count.
SCHEDULED_PREFIXES = ("/hybridsearch.v1.HybridSearch/", "/hybridsearch.v1.TenantAdmin/")
# Calls that could not be attributed to a tenant (no or bad credentials) share one lane,
# so a flood of them is limited like any tenant's and cannot crowd out the others.
UNIDENTIFIED = "(unidentified)"
RETRY_AFTER_KEY = "retry-after-ms"


@dataclass
class _Tenant:
    waiting: collections.deque = field(default_factory=collections.deque)
    running: int = 0
    vtime: float = 0.0
    hold_ms: float = 0.0  # moving average of how long its calls hold a slot
    last_seen: float = 0.0  # when a call of it last arrived or finished


class Ticket:
    """One admitted call: waiting for a slot, then holding it until ``done``."""

    __slots__ = ("tenant", "granted", "finished", "event", "arrived", "started", "__weakref__")

    def __init__(self, tenant: str):
        self.tenant = tenant
        self.granted = False
        self.finished = False
        self.event = threading.Event()
        self.arrived = time.monotonic()
        self.started = 0.0


class Refused(Exception):
    def __init__(self, message: str, retry_after_ms: int):
        super().__init__(message)
        self.message = message
        self.retry_after_ms = retry_after_ms


class FairScheduler:
    """Slots for calls that do work, shared between tenants by weight."""

    def __init__(
        self,
        slots: int,
        shared_cap: Callable[[str], int],
        queue_cap: Callable[[str], tuple[int, str]],
        weight: Callable[[str], float],
        total_cap: int,
        alone_cap: Callable[[str], int] | None = None,
        active_window_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.slots = slots
        self.shared_cap = shared_cap  # running calls of a tenant while others are active
        self.alone_cap = alone_cap or (lambda _t: max(1, slots - 1))  # ... and while alone
        self.queue_cap = queue_cap  # (limit, the setting that sets it)
        self.weight = weight
        self.total_cap = total_cap
        self.active_window_s = active_window_s
        self.clock = clock
        # A tenant's calls running or waiting are its running count plus its queue: nothing
        # else keeps count, so the books cannot disagree.
        self._tenants: dict[str, _Tenant] = {}
        self._free = slots
        self._vclock = 0.0
        self._lock = threading.Lock()
        # Tickets of calls grpcio dropped unrun (see AdmissionInterceptor), released on the
        # next admit or done: their finalizer can run inside this lock (a garbage collection
        # triggered there), so it must not take the lock itself.
        self._orphans: collections.deque = collections.deque()

    # ------------------------------------------------------------------ arrival
    def admit(self, tenant: str) -> Ticket:
        """Count a call at arrival, or raise Refused."""
        limit, setting = self.queue_cap(tenant)
        with self._lock:
            self._reap()
            state = self._tenants.get(tenant)
            n = state.running + len(state.waiting) if state is not None else 0
            if n >= limit:
                raise Refused(
                    f"tenant {tenant!r} has {n} calls running or waiting; limit {limit} ({setting}); retry later",
                    self._retry_after_ms(tenant, n),
                )
            total = (self.slots - self._free) + sum(len(s.waiting) for s in self._tenants.values())
            if total >= self.total_cap:
                raise Refused(
                    f"the server has {total} calls running or waiting, its limit (server.max_workers less a reserve); retry later",
                    self._retry_after_ms(tenant, n),
                )
            if state is None:
                state = self._tenants[tenant] = _Tenant()
            state.last_seen = self.clock()
            if not state.waiting and state.running == 0:
                # A tenant that was idle starts level with the others: no credit saved up.
                state.vtime = max(state.vtime, self._vclock)
            ticket = Ticket(tenant)
            state.waiting.append(ticket)
            self._dispatch()
            return ticket

    def _retry_after_ms(self, tenant: str, admitted: int) -> int:
        state = self._tenants.get(tenant)
        hold = state.hold_ms if state and state.hold_ms else 100.0
        cap = max(1, self.shared_cap(tenant))
        return int(min(10_000, max(50, hold * max(1, admitted) / cap)))

    # ----------------------------------------------------------------- dispatch
    def _active(self, now: float) -> int:
        """Tenants with a call running, waiting, or seen within the window (lock held)."""
        return sum(
            1 for s in self._tenants.values() if s.running or s.waiting or now - s.last_seen < self.active_window_s
        )

    def cap(self, tenant: str, active: int) -> int:
        """How many calls ``tenant`` may run now, with ``active`` tenants active (itself included)."""
        alone = self.alone_cap(tenant)
        return alone if active <= 1 else min(alone, self.shared_cap(tenant))

    def _dispatch(self) -> None:
        """Give free slots to waiting calls, least weighted service first (lock held)."""
        active = self._active(self.clock())
        while self._free > 0:
            best, best_key = None, None
            for name, state in self._tenants.items():
                if state.waiting and state.running < self.cap(name, active):
                    key = (state.vtime, state.waiting[0].arrived)
                    if best_key is None or key < best_key:
                        best, best_key = name, key
            if best is None:
                return
            state = self._tenants[best]
            ticket = state.waiting.popleft()
            state.running += 1
            self._free -= 1
            self._vclock = state.vtime
            state.vtime += 1.0 / self.weight(best)
            ticket.granted = True
            ticket.started = time.monotonic()
            ticket.event.set()

    def wait(self, ticket: Ticket, timeout: float | None, active: Callable[[], bool]) -> float:
        """Block until ``ticket`` holds a slot; the seconds waited. Raises ServiceError when
        the deadline passes or the caller goes away first (the ticket is then done)."""
        end = None if timeout is None else time.monotonic() + timeout
        while not ticket.event.wait(0.05 if end is None else max(0.0, min(0.05, end - time.monotonic()))):
            if not active():
                self.done(ticket)
                raise ServiceError(grpc.StatusCode.CANCELLED, "the call was cancelled while waiting for its turn")
            if end is not None and time.monotonic() >= end:
                self.done(ticket)  # also when granted in this instant: the deadline has passed
                raise ServiceError(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    f"the deadline passed after {time.monotonic() - ticket.arrived:.3f}s waiting behind tenant "
                    f"{ticket.tenant!r}'s other calls (limits.max_running_per_tenant) or the server's (limits.max_running)",
                )
        return ticket.started - ticket.arrived

    def orphan(self, ticket: Ticket) -> None:
        """Release ``ticket`` soon; safe to call from a finalizer (takes no lock)."""
        if not ticket.finished:
            self._orphans.append(ticket)

    def _reap(self) -> None:
        while self._orphans:
            self._finish(self._orphans.popleft())

    def done(self, ticket: Ticket) -> None:
        """The call finished (or gave up waiting): free its slot and its place. Idempotent."""
        with self._lock:
            self._reap()
            self._finish(ticket)
            self._dispatch()

    def _finish(self, ticket: Ticket) -> None:
        """Take ``ticket`` off the books (lock held)."""
        if ticket.finished:
            return
        ticket.finished = True
        state = self._tenants[ticket.tenant]
        state.last_seen = self.clock()
        if ticket.granted:
            state.running -= 1
            self._free += 1
            held_ms = (time.monotonic() - ticket.started) * 1000
            state.hold_ms = held_ms if not state.hold_ms else 0.8 * state.hold_ms + 0.2 * held_ms
        else:
            state.waiting.remove(ticket)
        # The tenant's entry stays (its virtual time and average hold): one per tenant.

    def snapshot(self) -> dict[str, tuple[int, int]]:
        """tenant -> (running, waiting), for metrics and tests."""
        with self._lock:
            self._reap()
            return {name: (s.running, len(s.waiting)) for name, s in self._tenants.items() if s.running or s.waiting}


def refusal_status(refused: Refused):
    """RESOURCE_EXHAUSTED with google.rpc.RetryInfo (the standard retry hint) in the details."""
    from google.protobuf import duration_pb2
    from google.rpc import code_pb2, error_details_pb2, status_pb2
    from grpc_status import rpc_status

    delay = duration_pb2.Duration()
    delay.FromMilliseconds(refused.retry_after_ms)
    info = error_details_pb2.RetryInfo(retry_delay=delay)
    detail = status_pb2.Status(code=code_pb2.RESOURCE_EXHAUSTED, message=refused.message)
    detail.details.add().Pack(info)
    status = rpc_status.to_status(detail)
    return _Status(
        status.code, status.details, tuple(status.trailing_metadata) + ((RETRY_AFTER_KEY, str(refused.retry_after_ms)),)
    )


class _Status(grpc.Status):
    def __init__(self, code, details, trailing_metadata):
        self.code, self.details, self.trailing_metadata = code, details, trailing_metadata


def retry_after_ms(error: grpc.RpcError) -> int | None:
    """The server's retry hint on a refused call, for clients (None if it gave none)."""
    for key, value in error.trailing_metadata() or ():
        if key == RETRY_AFTER_KEY:
            return int(value)
    return None


class AdmissionInterceptor(grpc.ServerInterceptor):
    """Counts each call against its tenant on arrival; the handler then waits for its turn."""

    def __init__(self, scheduler: FairScheduler, identify: Callable[[Iterable], str | None], metrics=None):
        self.scheduler = scheduler
        self.identify = identify  # metadata -> tenant, or None when the caller is not identified
        self.metrics = metrics  # engine.metrics.Metrics, or None

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or not handler_call_details.method.startswith(SCHEDULED_PREFIXES):
            return handler
        tenant = self.identify(handler_call_details.invocation_metadata or ()) or UNIDENTIFIED
        try:
            ticket = self.scheduler.admit(tenant)
        except Refused as refused:
            if self.metrics is not None:
                self.metrics.count_refusal(tenant)
            return refusing_handler(handler, refusal_status(refused))
        on_wait = self.metrics.observe_admission_wait if self.metrics is not None else None
        wrapped = _scheduled(handler, self.scheduler, ticket, on_wait)
        # grpcio may drop a call that was cancelled before its request arrived without ever
        # running the handler: the ticket is then released when the handler is collected.
        behaviour = wrapped.unary_unary or wrapped.stream_unary or wrapped.unary_stream or wrapped.stream_stream
        weakref.finalize(behaviour, self.scheduler.orphan, ticket)
        return wrapped


def _scheduled(handler, scheduler: FairScheduler, ticket: Ticket, on_wait):
    def enter(context) -> None:
        try:
            waited = scheduler.wait(ticket, context.time_remaining(), context.is_active)
        except ServiceError as exc:
            context.abort(exc.code, exc.message)
        QUEUE_WAIT_S.set(waited)
        if on_wait is not None:
            on_wait(ticket.tenant, waited)

    return bracket_handler(handler, enter, lambda: scheduler.done(ticket))


def refusing_handler(handler, status):
    """A handler of the same kind that answers ``status`` at once (a refused call)."""

    def unary(_inner):
        def run(request, context):
            context.abort_with_status(status)

        return run

    def streaming(_inner):
        def run(request, context):
            context.abort_with_status(status)
            yield  # pragma: no cover - abort raises

        return run

    return rebuild_handler(handler, unary, streaming)


def scheduler_for(limits, max_workers: int) -> FairScheduler:
    """The scheduler ``limits`` (LimitsConfig) and the pool size describe."""
    slots = limits.running_slots()
    reserve = min(8, max(1, max_workers // 4))

    def own(tenant: str):
        return limits.per_tenant.get(tenant)

    def alone_cap(tenant: str) -> int:
        # One slot stays free for the next tenant to arrive; a tenant's own max_running always holds.
        cap = max(1, slots - 1)
        mine = own(tenant)
        return min(cap, mine.max_running) if mine and mine.max_running else cap

    def shared_cap(tenant: str) -> int:
        return min(alone_cap(tenant), limits.running_per_tenant())

    def queue_cap(tenant: str) -> tuple[int, str]:
        mine = own(tenant)
        if mine and mine.max_concurrent and mine.max_concurrent < limits.max_concurrent_per_tenant:
            return mine.max_concurrent, f"limits.per_tenant[{tenant!r}].max_concurrent"
        return limits.max_concurrent_per_tenant, "limits.max_concurrent_per_tenant"

    def weight(tenant: str) -> float:
        mine = own(tenant)
        return mine.weight if mine else 1.0

    return FairScheduler(
        slots,
        shared_cap,
        queue_cap,
        weight,
        total_cap=max(1, max_workers - reserve),
        alone_cap=alone_cap,
        active_window_s=limits.tenant_active_window_s,
    )


def default_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)
