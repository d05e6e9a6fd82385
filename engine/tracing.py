"""OpenTelemetry tracing: a span per stage of a search, joined to the caller's trace.

Optional: ``pip install '.[tracing]'`` (opentelemetry-api, -sdk, the OTLP exporter) and
``tracing.enabled: true`` (``HSEARCH_TRACING__ENABLED=true``). Without either, every
function here is a no-op and nothing of OpenTelemetry is imported by the serving path.

What a traced server records (README, "Tracing"):

* one SERVER span per RPC, ``hybridsearch.v1.HybridSearch/Search`` and so on (the
  ``rpc.*`` attributes and ``rpc.grpc.status_code``), the child of the caller's span when
  the call carries W3C ``traceparent`` metadata (:class:`TracingInterceptor`);
* under a Search: ``search`` (tenant, collection, k, depths, hits), and under it
  ``encode``, ``dense``, ``sparse``, ``fusion``, ``fetch`` and ``rerank``; under ``rerank``
  one ``rerank.queue`` per chunk of pairs, the time it waited in the reranker's batcher.

The dense and sparse routes run on the service's thread pool: :meth:`Tracer.bind` carries
the search's context to the other thread, so both are children of ``search``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import grpc

from hybridsearch.engine.rpc import rebuild_handler

try:
    from opentelemetry import context as otel_context
    from opentelemetry import propagate, trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError:  # the tracing extra is not installed
    trace = None

AVAILABLE = trace is not None
INSTRUMENTATION = "hybridsearch"

# Span names (a stage's name is what it does; the RPC spans are named by their method).
SEARCH, ENCODE, DENSE, SPARSE, FUSION, FETCH, RERANK, RERANK_QUEUE = (
    "search",
    "encode",
    "dense",
    "sparse",
    "fusion",
    "fetch",
    "rerank",
    "rerank.queue",
)
ATTR = "hybridsearch."  # prefix of this service's own attributes

# Server-side codes that mark a span as failed (OpenTelemetry's gRPC conventions): the
# others (INVALID_ARGUMENT, NOT_FOUND, ...) are the caller's mistake, not the server's.
_SERVER_ERRORS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])


class _NoopSpan:
    def set_attribute(self, key: str, value: Any) -> None:
        pass

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        pass


_NOOP_SPAN = _NoopSpan()


class NoopTracer:
    """Tracing off (or OpenTelemetry missing): every call returns at once, nothing recorded."""

    enabled = False

    @contextlib.contextmanager
    def span(self, name: str, attributes: Mapping[str, Any] | None = None) -> Iterator[_NoopSpan]:
        yield _NOOP_SPAN

    def traced(self, name: str, fn: F, attributes: Callable[[Any], Mapping[str, Any]] | None = None) -> F:
        return fn

    def bind(self, fn: F) -> F:
        return fn

    def record(self, name: str, start: float, end: float, attributes: Mapping[str, Any] | None = None) -> None:
        pass


NOOP = NoopTracer()


class Tracer:
    """Spans through one OpenTelemetry tracer; the current span is the parent of each."""

    enabled = True

    def __init__(self, otel_tracer):
        self.otel = otel_tracer

    @contextlib.contextmanager
    def span(self, name: str, attributes: Mapping[str, Any] | None = None):
        """A child of the current span, current itself inside the block; an exception
        leaving the block is recorded on it."""
        with self.otel.start_as_current_span(name, attributes=attributes) as span:
            yield span

    def traced(self, name: str, fn: F, attributes: Callable[[Any], Mapping[str, Any]] | None = None) -> F:
        """``fn`` run inside a span ``name``; ``attributes(result)`` is added to the span."""

        @functools.wraps(fn)
        def call(*args, **kwargs):
            with self.span(name) as span:
                out = fn(*args, **kwargs)
                if attributes is not None:
                    span.set_attributes(attributes(out))
                return out

        return call  # type: ignore[return-value]

    def bind(self, fn: F) -> F:
        """``fn`` run in the context current now, wherever it is called (another thread of
        a pool): its spans are children of the span current here, not roots."""
        captured = otel_context.get_current()

        @functools.wraps(fn)
        def call(*args, **kwargs):
            token = otel_context.attach(captured)
            try:
                return fn(*args, **kwargs)
            finally:
                otel_context.detach(token)

        return call  # type: ignore[return-value]

    def record(self, name: str, start: float, end: float, attributes: Mapping[str, Any] | None = None) -> None:
        """A span of something timed elsewhere (``time.monotonic()`` values), a child of
        the current span: the wait in the rerank queue, measured by the batcher."""
        offset = time.time_ns() - time.monotonic_ns()
        span = self.otel.start_span(name, start_time=int(start * 1e9) + offset, attributes=attributes)
        span.end(end_time=int(max(end, start) * 1e9) + offset)


# ---------------------------------------------------------------- configuration
_providers: dict[tuple, Any] = {}
_providers_lock = threading.Lock()
_warned = False


def tracer_for(config) -> Tracer | NoopTracer:
    """The tracer for ``config`` (engine.config.TracingConfig, or None): NOOP unless
    tracing is enabled and OpenTelemetry is installed."""
    global _warned
    if config is None or not config.enabled:
        return NOOP
    if not AVAILABLE:
        if not _warned:
            log.warning(
                "tracing.enabled is set but OpenTelemetry is not installed (pip install 'hybridsearch[tracing]'): no spans are recorded"
            )
            _warned = True
        return NOOP
    if config.exporter == "global":
        # The process's provider, set by the application or by `opentelemetry-instrument`
        # (a proxy until one is set: spans start flowing once it is).
        return Tracer(trace.get_tracer(INSTRUMENTATION))
    return Tracer(_provider(config).get_tracer(INSTRUMENTATION))


def _provider(config):
    """One SDK provider per exporter setting in the process (servers in one process share it)."""
    key = (config.exporter, config.otlp_endpoint, config.service_name)
    with _providers_lock:
        provider = _providers.get(key)
        if provider is not None:
            return provider
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor

        # Sampling follows OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG (default: the
        # caller's decision, every trace when the call starts one).
        provider = TracerProvider(resource=Resource.create({"service.name": config.service_name}))
        if config.exporter == "console":
            provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
        else:
            try:
                from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
            except ImportError as exc:
                raise RuntimeError(
                    "tracing.exporter otlp needs opentelemetry-exporter-otlp-proto-grpc (pip install 'hybridsearch[tracing]')"
                ) from exc
            # Endpoint empty: OTEL_EXPORTER_OTLP_ENDPOINT, else localhost:4317.
            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=config.otlp_endpoint or None)))
        if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
            trace.set_tracer_provider(provider)  # other libraries' spans join the same traces
        _providers[key] = provider
        return provider


# ---------------------------------------------------------------- propagation
def inject(metadata: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """Client side: ``metadata`` plus the current trace context (``traceparent``, and
    ``tracestate``/``baggage`` when set), so the server's spans join the caller's trace.
    Unchanged when OpenTelemetry is missing or no span is current."""
    metadata = list(metadata)
    if not AVAILABLE:
        return metadata
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    metadata.extend(carrier.items())
    return metadata


def extract(metadata: Sequence[tuple[str, Any]] | None):
    """Server side: the caller's trace context in gRPC metadata (an empty context when none)."""
    carrier = {key: value for key, value in (metadata or ()) if isinstance(value, str)}
    return propagate.extract(carrier)


# ---------------------------------------------------------------- gRPC server
def server_interceptors(tracer: Tracer | NoopTracer) -> list[grpc.ServerInterceptor]:
    """The interceptors a server adds for ``tracer``: none when tracing is off."""
    return [TracingInterceptor(tracer)] if tracer.enabled else []


class TracingInterceptor(grpc.ServerInterceptor):
    """One SERVER span per call, the child of the caller's span from its ``traceparent``
    metadata, current while the handler runs (the service's spans are its children). First
    in the chain: the span covers the wait for admission too."""

    def __init__(self, tracer: Tracer):
        self.tracer = tracer

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method.lstrip("/")
        service, _, name = method.rpartition("/")
        parent = extract(handler_call_details.invocation_metadata)
        attributes = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}
        otel = self.tracer.otel

        def start():
            return otel.start_span(method, context=parent, kind=SpanKind.SERVER, attributes=attributes)

        def unary(inner):
            def run(request, context):
                span = start()
                token = otel_context.attach(trace.set_span_in_context(span, parent))
                error = None
                try:
                    return inner(request, context)
                except BaseException as exc:
                    error = exc
                    raise
                finally:
                    otel_context.detach(token)
                    _finish(span, context, error)

            return run

        def streaming(inner):
            def run(request, context):
                span = start()
                ctx = trace.set_span_in_context(span, parent)
                error = None
                try:
                    replies = iter(inner(request, context))
                    while True:
                        # Current only while the handler works on the next reply: between
                        # replies this thread is gRPC's.
                        token = otel_context.attach(ctx)
                        try:
                            reply = next(replies)
                        except StopIteration:
                            break
                        finally:
                            otel_context.detach(token)
                        yield reply
                except BaseException as exc:
                    error = exc
                    raise
                finally:
                    _finish(span, context, error)

            return run

        return rebuild_handler(handler, unary, streaming)


def _finish(span, context, error: BaseException | None) -> None:
    """The call's status on its span, then end it. A handler that aborted has set the code
    (the exception that carried the abort says nothing more); one that raised anything else
    answers UNKNOWN, with the exception recorded."""
    try:
        code = context.code()
    except (AttributeError, NotImplementedError):
        code = None
    if code is None and error is not None and not isinstance(error, GeneratorExit):  # GeneratorExit: the caller left
        span.record_exception(error)
        code = grpc.StatusCode.UNKNOWN
    code = code or grpc.StatusCode.OK
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    if code in _SERVER_ERRORS:
        span.set_status(Status(StatusCode.ERROR, code.name))
    span.end()


# ---------------------------------------------------------------- search attributes
def search_attributes(tenant: str, query) -> dict[str, Any]:
    """What a search asked for (engine.search_types.SearchQuery); never the query text."""
    return {
        ATTR + "tenant": tenant,
        ATTR + "collection": query.collection,
        ATTR + "top_k": query.top_k,
        ATTR + "dense_k": query.dense_k,
        ATTR + "sparse_k": query.sparse_k,
        ATTR + "fusion": query.fusion.method,
        ATTR + "rerank.mode": query.rerank_mode or "default",
        ATTR + "rerank.depth": query.rerank_depth,
    }


def outcome_attributes(outcome) -> dict[str, Any]:
    """What a search found (engine.search_types.SearchOutcome)."""
    d = outcome.decision
    return {
        ATTR + "hits": len(outcome.hits),
        ATTR + "dense_candidates": outcome.dense_candidates,
        ATTR + "sparse_candidates": outcome.sparse_candidates,
        ATTR + "query_cache_hit": outcome.timings.query_cache_hit,
        ATTR + "rerank.depth_scored": d.depth_scored,
        ATTR + "rerank.degraded": d.degraded,
    }


def candidates(hits) -> dict[str, Any]:
    """A route's span: how many candidates it returned."""
    return {ATTR + "candidates": len(hits)}


def rerank_attributes(outcome) -> dict[str, Any]:
    """The rerank span: what the stage decided (engine.search_types.RerankOutcome)."""
    d = outcome.decision
    return {
        ATTR + "rerank.mode": d.mode,
        ATTR + "rerank.backend": d.backend,
        ATTR + "rerank.depth_chosen": d.depth_chosen,
        ATTR + "rerank.depth_scored": d.depth_scored,
        ATTR + "rerank.partial": d.partial,
        ATTR + "rerank.degraded": d.degraded,
        ATTR + "rerank.cost_units": d.cost_units,
    }
