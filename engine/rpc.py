"""What every RPC handler shares: errors to statuses (the ``rpc`` decorator), the call's
deadline and its end as values the service understands."""

from __future__ import annotations

import contextvars
import functools
import inspect
import logging
import threading
import time
from collections.abc import Callable

import grpc

from hybridsearch.engine.errors import ServiceError
from hybridsearch.engine.search_types import Usage

log = logging.getLogger(__name__)

# Seconds the running call waited for its slot (engine.admission sets it before each
# scheduled handler runs, so a pool thread never shows a previous call's): Usage.queue_ms.
QUEUE_WAIT_S: contextvars.ContextVar[float] = contextvars.ContextVar("queue_wait_s", default=0.0)


# The status message travels percent-encoded in the grpc-message trailer (a byte outside
# printable ASCII takes 3, so up to 12 per character); gRPC clients start refusing
# trailers over 8 KiB and then see a transport error instead of the status. Messages that
# echo a caller's huge value are cut to fit.
MAX_STATUS_MESSAGE_BYTES = 4096


def status_message(text: str) -> str:
    size = 0
    for i, ch in enumerate(text):
        size += 1 if " " <= ch <= "~" and ch != "%" else 3 * len(ch.encode("utf-8", "surrogatepass"))
        if size > MAX_STATUS_MESSAGE_BYTES - 64:
            return text[:i] + f"... ({len(text)} characters, cut)"
    return text


def _aborted(context: grpc.ServicerContext) -> bool:
    """Whether ``context.abort()`` already set the call's status: grpcio's sync server then
    raises a bare Exception, which must pass through (not be turned into INTERNAL)."""
    try:
        return context.code() is not None
    except (AttributeError, NotImplementedError):
        return False


def rpc(method: Callable) -> Callable:
    """Turn ServiceError into its status; anything unexpected into INTERNAL, and keep serving.
    Works for unary handlers and for handlers that stream their replies (generators)."""

    def fail(self, exc: Exception, context: grpc.ServicerContext) -> None:
        if isinstance(exc, ServiceError):
            self.service.metrics.rpc_errors.labels(method.__name__, exc.code.name).inc()
            context.abort(exc.code, status_message(exc.message))
        if isinstance(exc, grpc.RpcError) or _aborted(context):
            raise exc
        log.exception("%s failed", method.__name__)
        context.abort(
            grpc.StatusCode.INTERNAL, status_message(f"{method.__name__} failed: {type(exc).__name__}: {exc}")
        )

    if inspect.isgeneratorfunction(method):

        @functools.wraps(method)
        def streaming(self, request, context: grpc.ServicerContext):
            try:
                yield from method(self, request, context)
            except Exception as exc:  # the server must survive any request
                if not isinstance(exc, ServiceError) and not context.is_active():
                    raise  # the caller is gone: nobody to answer
                fail(self, exc, context)

        return streaming

    @functools.wraps(method)
    def wrapper(self, request, context: grpc.ServicerContext):
        try:
            return method(self, request, context)
        except Exception as exc:  # the server must survive any request
            fail(self, exc, context)

    return wrapper


def call_ended(context: grpc.ServicerContext) -> threading.Event:
    """An event set when the call ends, however (cancelled, deadline, done)."""
    ended = threading.Event()
    context.add_callback(ended.set)
    return ended


def deadline_of(context: grpc.ServicerContext) -> float | None:
    remaining = context.time_remaining()
    if remaining is None or remaining > 1e8:
        return None
    return time.monotonic() + remaining


class CallClock:
    """One call's time for its Usage: the wait for a run slot (admission, before the
    handler) and the handler's own time from this clock's start."""

    def __init__(self) -> None:
        self.queue_ms = QUEUE_WAIT_S.get() * 1000
        self.start = time.perf_counter()

    def handler_ms(self) -> float:
        return (time.perf_counter() - self.start) * 1000

    def usage(self, *, queued: bool = True, **spent) -> Usage:
        """Usage with ``spent`` (tokens, encode_ms, ...); ``queued=False`` for a later part of
        a stream, whose wait was reported with its first."""
        queue_ms = self.queue_ms if queued else 0.0
        return Usage(queue_ms=queue_ms, total_ms=queue_ms + self.handler_ms(), **spent)


def rebuild_handler(handler, unary, streaming):
    """The same kind of method handler, its behaviour wrapped (reply streams by ``streaming``):
    how the server's interceptors (admission, tracing) wrap a call."""
    de, ser = handler.request_deserializer, handler.response_serializer
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(unary(handler.unary_unary), de, ser)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(unary(handler.stream_unary), de, ser)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(streaming(handler.unary_stream), de, ser)
    return grpc.stream_stream_rpc_method_handler(streaming(handler.stream_stream), de, ser)


def bracket_handler(handler, enter: Callable, leave: Callable[[], None]):
    """The same handler with ``enter(context)`` run before the call's work (it may abort the
    call) and ``leave()`` after it, however it ends (streams: once the last reply is sent)."""

    def unary(inner):
        def run(request, context):
            enter(context)
            try:
                return inner(request, context)
            finally:
                leave()

        return run

    def streaming(inner):
        def run(request, context):
            enter(context)
            try:
                yield from inner(request, context)
            finally:
                leave()

        return run

    return rebuild_handler(handler, unary, streaming)
