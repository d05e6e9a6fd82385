"""Bounds on streaming calls, so that open streams cannot starve unary calls of threads.

grpcio's sync server runs each call on a pool thread for the call's whole life. A stream
(Health.Watch, reflection's ServerReflectionInfo, BulkUpsert, BulkUpsertAcked) may stay open
for as long as its client likes while doing nothing, and health and reflection need no API
key: 64 idle Health.Watch streams without credentials held all 64 threads, and every
tenant's searches answered DEADLINE_EXCEEDED until they closed (issue 28).

So streaming calls run on threads of their own (the server's pool is ``server.max_workers``
plus ``limits.max_streams``), and the interceptor below refuses, with RESOURCE_EXHAUSTED and
a retry hint, a stream beyond

* ``limits.max_streams`` open in total,
* ``limits.max_unauthenticated_streams`` open without valid credentials (checked on arrival,
  on grpcio's polling thread, before a thread is taken),
* ``limits.max_streams_per_peer`` open from one client address (the peer is known only
  inside the call: checked first thing on its thread, which it leaves within microseconds).

Behind a proxy every client has the proxy's address: raise the per-peer bound there.
"""

from __future__ import annotations

import collections
import threading
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import grpc

from hybridsearch.engine.admission import Refused, refusal_status, refusing_handler
from hybridsearch.engine.rpc import bracket_handler

# A refused stream may try again once another closes; streams are long, so not at once.
RETRY_AFTER_MS = 1000


@dataclass
class _Stream:
    identified: bool
    peer: str = ""
    closed: bool = False


def peer_address(peer: str) -> str:
    """grpc's ``ipv4:10.0.0.7:51234`` / ``ipv6:[::1]:51234`` without the port: one client
    machine opens many connections (ports); ``unix:...`` and others are kept whole."""
    kind, _, rest = peer.partition(":")
    if kind in ("ipv4", "ipv6") and ":" in rest:
        return f"{kind}:{rest.rsplit(':', 1)[0]}"
    return peer


class StreamLimiter:
    """Counts open streams in total, without credentials, and per peer."""

    def __init__(self, total: int, per_peer: int, unauthenticated: int):
        self.total, self.per_peer, self.unauthenticated = total, per_peer, unauthenticated
        self._lock = threading.Lock()
        self._open = 0
        self._unidentified = 0
        self._peers: collections.Counter[str] = collections.Counter()
        # Streams grpcio dropped before their handler ran: closed on the next open (their
        # finalizer may run inside the lock, during a garbage collection, so it cannot take it).
        self._orphans: collections.deque[_Stream] = collections.deque()

    def open(self, identified: bool) -> _Stream:
        """Count a stream at arrival, or raise Refused."""
        with self._lock:
            self._reap()
            if self._open >= self.total:
                raise Refused(
                    f"{self._open} streaming calls are open on this server (limits.max_streams = {self.total}); "
                    "close one or retry later",
                    RETRY_AFTER_MS,
                )
            if not identified and self._unidentified >= self.unauthenticated:
                raise Refused(
                    f"{self._unidentified} streaming calls without valid credentials are open "
                    f"(limits.max_unauthenticated_streams = {self.unauthenticated}); send an API key, "
                    "or close one and retry later",
                    RETRY_AFTER_MS,
                )
            self._open += 1
            self._unidentified += not identified
            return _Stream(identified)

    def at_peer(self, stream: _Stream, peer: str) -> None:
        """Count ``stream`` against its client address, or close it and raise Refused."""
        address = peer_address(peer)
        with self._lock:
            if self._peers[address] >= self.per_peer:
                self._close(stream)
                raise Refused(
                    f"{self._peers[address]} streaming calls are open from {address} "
                    f"(limits.max_streams_per_peer = {self.per_peer}); close one or retry later",
                    RETRY_AFTER_MS,
                )
            self._peers[address] += 1
            stream.peer = address

    def close(self, stream: _Stream) -> None:
        """The stream ended. Idempotent."""
        with self._lock:
            self._reap()
            self._close(stream)

    def orphan(self, stream: _Stream) -> None:
        """Close ``stream`` soon; safe from a finalizer (takes no lock)."""
        if not stream.closed:
            self._orphans.append(stream)

    def _reap(self) -> None:
        while self._orphans:
            self._close(self._orphans.popleft())

    def _close(self, stream: _Stream) -> None:
        if stream.closed:
            return
        stream.closed = True
        self._open -= 1
        self._unidentified -= not stream.identified
        if stream.peer:
            self._peers[stream.peer] -= 1
            if not self._peers[stream.peer]:
                del self._peers[stream.peer]

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            self._reap()
            return {"open": self._open, "unauthenticated": self._unidentified, "peers": len(self._peers)}


class StreamBoundInterceptor(grpc.ServerInterceptor):
    """Applies a StreamLimiter to every call that streams requests or replies."""

    def __init__(self, limiter: StreamLimiter, identify: Callable[[Iterable], str | None], metrics=None):
        self.limiter = limiter
        self.identify = identify  # metadata -> tenant, or None without valid credentials
        self.metrics = metrics

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or not (handler.request_streaming or handler.response_streaming):
            return handler
        tenant = self.identify(handler_call_details.invocation_metadata or ())
        try:
            stream = self.limiter.open(tenant is not None)
        except Refused as refused:
            self._count_refusal(tenant)
            return refusing_handler(handler, refusal_status(refused))
        wrapped = _bounded(handler, self.limiter, stream, lambda: self._count_refusal(tenant))
        behaviour = wrapped.unary_stream or wrapped.stream_unary or wrapped.stream_stream
        weakref.finalize(behaviour, self.limiter.orphan, stream)
        return wrapped

    def _count_refusal(self, tenant: str | None) -> None:
        if self.metrics is not None:
            self.metrics.count_refusal(tenant or "(unidentified)")


def _bounded(handler, limiter: StreamLimiter, stream: _Stream, on_refusal: Callable[[], None]):
    def enter(context) -> None:
        try:
            limiter.at_peer(stream, context.peer())
        except Refused as refused:
            on_refusal()
            context.abort_with_status(refusal_status(refused))

    return bracket_handler(handler, enter, lambda: limiter.close(stream))


def stream_limiter_for(limits) -> StreamLimiter:
    return StreamLimiter(limits.max_streams, limits.max_streams_per_peer, limits.max_unauthenticated_streams)
