"""Prometheus metrics per tenant and stage, served over HTTP on server.metrics_port."""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from hybridsearch.engine.search_types import SearchOutcome

log = logging.getLogger(__name__)
STAGES = ("encode", "dense_search", "sparse_search", "fusion", "rerank", "total")
_MS_BUCKETS = (1, 2, 5, 10, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750, 1000, 2000, 5000)
_DEPTH_BUCKETS = (0, 1, 5, 10, 20, 30, 50, 75, 100, 150, 200)


class Metrics:
    """One registry per server, so several servers in one process (tests) don't collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.stage_ms = Histogram(
            "hsearch_search_stage_ms",
            "Search latency by stage (ms)",
            ["tenant", "stage"],
            buckets=_MS_BUCKETS,
            registry=self.registry,
        )
        self.searches = Counter(
            "hsearch_searches_total", "Searches answered", ["tenant", "mode"], registry=self.registry
        )
        self.depth = Histogram(
            "hsearch_rerank_depth",
            "Rerank depth chosen",
            ["tenant", "mode"],
            buckets=_DEPTH_BUCKETS,
            registry=self.registry,
        )
        self.degraded = Counter(
            "hsearch_rerank_degraded_total",
            "Searches answered fusion-only because the reranker failed",
            ["tenant"],
            registry=self.registry,
        )
        self.partial = Counter(
            "hsearch_rerank_partial_total",
            "Searches whose rerank stopped early at the deadline or target",
            ["tenant"],
            registry=self.registry,
        )
        self.cost = Counter(
            "hsearch_rerank_cost_tokens_total", "Reranker tokens spent", ["tenant"], registry=self.registry
        )
        self.rerank_error_ms = Histogram(
            "hsearch_rerank_prediction_error_ms",
            "Actual minus predicted rerank time (ms)",
            ["tenant"],
            buckets=(-100, -50, -20, -10, -5, -2, 0, 2, 5, 10, 20, 50, 100),
            registry=self.registry,
        )
        self.admission_wait_ms = Histogram(
            "hsearch_admission_wait_ms",
            "Time a call waited for a running slot (ms)",
            ["tenant"],
            buckets=_MS_BUCKETS,
            registry=self.registry,
        )
        self.admission_refused = Counter(
            "hsearch_admission_refused_total",
            "Calls refused on arrival (tenant or server queue full)",
            ["tenant"],
            registry=self.registry,
        )
        self.rpc_errors = Counter(
            "hsearch_rpc_errors_total", "RPCs answered with an error status", ["method", "code"], registry=self.registry
        )
        self.port: int | None = None

    def serve(self, host: str, port: int) -> int:
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        self.port = server.server_port
        log.info("metrics on http://%s:%d/metrics", host, self.port)
        return self.port

    def observe_admission_wait(self, tenant: str, seconds: float) -> None:
        self.admission_wait_ms.labels(tenant).observe(seconds * 1000)

    def count_refusal(self, tenant: str) -> None:
        self.admission_refused.labels(tenant).inc()

    def observe_search(self, tenant: str, outcome: SearchOutcome) -> None:
        t = outcome.timings
        for stage in STAGES:
            self.stage_ms.labels(tenant, stage).observe(getattr(t, f"{stage}_ms"))
        d = outcome.decision
        self.searches.labels(tenant, d.mode).inc()
        if d.mode != "off":
            self.depth.labels(tenant, d.mode).observe(d.depth_chosen)
        if d.degraded:
            self.degraded.labels(tenant).inc()
        if d.partial:
            self.partial.labels(tenant).inc()
        if d.cost_units:
            self.cost.labels(tenant).inc(d.cost_units)
        if d.depth_chosen and d.actual_ms:
            self.rerank_error_ms.labels(tenant).observe(d.actual_ms - d.predicted_ms)
