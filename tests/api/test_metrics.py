"""Prometheus metrics per tenant and stage on the HTTP metrics port."""

from __future__ import annotations

import urllib.request

from tests.milvus_process import free_port


def test_metrics_endpoint_counts_searches_by_tenant_stage_and_rerank(start_server, tmp_path):
    port = free_port()
    running = start_server(
        tmp_path / "data", server={"host": "127.0.0.1", "port": 0, "grace_s": 1, "metrics_port": port}
    )
    c = running.client("acme")
    c.create_collection("docs")
    c.upsert("docs", [{"id": str(i), "text": f"protein cells sample {i}"} for i in range(12)])
    c.search("docs", "protein", top_k=3)
    c.search("docs", "protein", top_k=3, rerank="fixed", rerank_depth=5)
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    assert 'hsearch_search_stage_ms_count{stage="total",tenant="acme"} 2.0' in text
    assert 'hsearch_searches_total{mode="fixed",tenant="acme"} 1.0' in text
    assert 'hsearch_rerank_depth_sum{mode="fixed",tenant="acme"} 5.0' in text
    assert 'hsearch_rerank_cost_tokens_total{tenant="acme"}' in text
