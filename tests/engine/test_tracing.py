"""engine.tracing without a server: the no-op paths, the settings, context across threads."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from hybridsearch.engine import tracing
from hybridsearch.engine.config import Settings, TracingConfig


def test_tracing_is_off_by_default_and_then_a_no_op():
    assert Settings().tracing.enabled is False
    assert tracing.tracer_for(Settings().tracing) is tracing.NOOP
    assert tracing.tracer_for(None) is tracing.NOOP
    assert tracing.server_interceptors(tracing.NOOP) == []


def test_the_no_op_tracer_hands_back_what_it_is_given():
    noop = tracing.NOOP

    def fn(x):
        return x + 1

    assert noop.traced("stage", fn) is fn and noop.bind(fn) is fn
    with noop.span("search", {"a": 1}) as span:
        span.set_attribute("b", 2)
        span.set_attributes({"c": 3})
    noop.record("rerank.queue", time.monotonic(), time.monotonic())


def test_enabled_without_opentelemetry_is_a_no_op_with_one_warning(monkeypatch, caplog):
    monkeypatch.setattr(tracing, "AVAILABLE", False)
    monkeypatch.setattr(tracing, "_warned", False)
    with caplog.at_level(logging.WARNING, logger="hybridsearch.engine.tracing"):
        assert tracing.tracer_for(TracingConfig(enabled=True)) is tracing.NOOP
        assert tracing.tracer_for(TracingConfig(enabled=True)) is tracing.NOOP
    assert len([r for r in caplog.records if "not installed" in r.message]) == 1
    # Clients send their headers unchanged.
    assert tracing.inject([("x-tenant", "acme")]) == [("x-tenant", "acme")]


def test_settings_from_yaml_keys_and_environment(monkeypatch):
    settings = Settings(tracing={"enabled": True, "exporter": "console", "service_name": "search-eu"})
    assert settings.tracing.exporter == "console" and settings.tracing.service_name == "search-eu"
    monkeypatch.setenv("HSEARCH_TRACING__ENABLED", "true")
    monkeypatch.setenv("HSEARCH_TRACING__OTLP_ENDPOINT", "http://collector:4317")
    env = Settings()
    assert (
        env.tracing.enabled and env.tracing.exporter == "otlp" and env.tracing.otlp_endpoint == "http://collector:4317"
    )
    with pytest.raises(ValueError):
        Settings(tracing={"enabled": True, "exporter": "jaeger"})
    with pytest.raises(ValueError):
        Settings(tracing={"enable": True})  # a misspelt key is an error, not silently off


# ---------------------------------------------------------------- with the SDK
try:  # the test extras install the SDK; without it only the tests above run
    from opentelemetry import trace
    from opentelemetry.sdk import trace as sdk
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
except ImportError:
    sdk = None
needs_sdk = pytest.mark.skipif(sdk is None, reason="opentelemetry-sdk is not installed (pip install '.[tracing]')")


@pytest.fixture
def recorded():
    """A Tracer on its own SDK provider (not the global one) and its exporter."""
    provider = sdk.TracerProvider()
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    yield tracing.Tracer(provider.get_tracer("test")), memory
    provider.shutdown()


@needs_sdk
def test_bind_carries_the_span_to_another_thread(recorded):
    tracer, memory = recorded
    traced_work = tracer.traced("work", lambda: time.sleep(0.001), lambda _: {"done": True})
    with ThreadPoolExecutor(1) as pool:
        with tracer.span("parent"):
            pool.submit(tracer.bind(traced_work)).result()  # a child
            pool.submit(traced_work).result()  # not bound: a root of its own trace
    by_name = {}
    for span in memory.get_finished_spans():
        by_name.setdefault(span.name, []).append(span)
    parent = by_name["parent"][0]
    bound, unbound = by_name["work"]
    assert bound.parent.span_id == parent.context.span_id and bound.context.trace_id == parent.context.trace_id
    assert unbound.parent is None and unbound.context.trace_id != parent.context.trace_id
    assert bound.attributes["done"] is True


@needs_sdk
def test_record_places_a_monotonic_interval_in_wall_time(recorded):
    tracer, memory = recorded
    before = time.time_ns()
    start = time.monotonic()
    with tracer.span("rerank"):
        tracer.record("rerank.queue", start, start + 0.25, {"pairs": 4})
    queued = [s for s in memory.get_finished_spans() if s.name == "rerank.queue"][0]
    rerank = [s for s in memory.get_finished_spans() if s.name == "rerank"][0]
    assert queued.end_time - queued.start_time == pytest.approx(250_000_000, abs=1000)
    assert abs(queued.start_time - before) < 5_000_000
    assert queued.parent.span_id == rerank.context.span_id and queued.attributes["pairs"] == 4


@needs_sdk
def test_an_exception_in_a_traced_stage_is_recorded_and_raised(recorded):
    tracer, memory = recorded

    def fails():
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        tracer.traced("encode", fails)()
    span = memory.get_finished_spans()[0]
    assert span.status.status_code == trace.StatusCode.ERROR and span.events[0].name == "exception"


@needs_sdk
def test_inject_and_extract_round_trip_the_trace_context(recorded):
    tracer, _ = recorded
    with tracer.span("caller") as span:
        metadata = tracing.inject([("x-tenant", "acme")])
    assert metadata[0] == ("x-tenant", "acme")
    header = dict(metadata)["traceparent"]
    assert header.startswith(f"00-{span.get_span_context().trace_id:032x}-{span.get_span_context().span_id:016x}-")
    extracted = trace.get_current_span(tracing.extract(metadata + [("bin-bin", b"\x00")])).get_span_context()
    assert extracted.trace_id == span.get_span_context().trace_id and extracted.is_remote
    assert tracing.inject([]) == []  # no current span: nothing added


@needs_sdk
@pytest.mark.parametrize("exporter", ["console", "otlp"])
def test_a_configured_exporter_gets_one_provider_per_process(monkeypatch, exporter):
    if exporter == "otlp":
        pytest.importorskip("opentelemetry.exporter.otlp.proto.grpc.trace_exporter")
    made = []
    monkeypatch.setattr(tracing, "_providers", {})
    monkeypatch.setattr(trace, "set_tracer_provider", made.append)  # leave the process's provider alone
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: trace.ProxyTracerProvider())
    config = TracingConfig(enabled=True, exporter=exporter, otlp_endpoint="localhost:1", service_name="svc")
    first, second = tracing.tracer_for(config), tracing.tracer_for(config)
    assert first.enabled and second.enabled
    assert len(tracing._providers) == 1 and len(made) == 1  # installed as the global provider once
    provider = made[0]
    assert provider.resource.attributes["service.name"] == "svc"
    provider.shutdown()
