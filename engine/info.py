"""What a server offers, for GetInfo: versions, profiles, rerank backends, and what an unset
request field means for the calling tenant. Read from configuration and from what is
loaded; never loads a model (a profile's dimension is known once it is)."""

from __future__ import annotations

import functools
from importlib import metadata
from pathlib import PurePath
from typing import Any

from hybridsearch.engine.search_types import FusionSettings

API = "hybridsearch.v1"
# Libraries whose version decides behaviour a caller can see (scores, analyzers, limits).
COMPONENTS = (
    "hybridsearch",
    "grpcio",
    "protobuf",
    "pymilvus",
    "milvus-lite",
    "FlagEmbedding",
    "transformers",
    "torch",
    "jieba",
)


@functools.lru_cache(maxsize=1)
def component_versions() -> dict[str, str]:
    found = {}
    for name in COMPONENTS:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def model_name(configured: str) -> str:
    """The model's name without the operator's directories (a path says nothing to a
    caller and tells it the server's layout)."""
    if configured.startswith("package:"):
        return configured
    return PurePath(configured.rstrip("/")).name or configured


def profile_info(name: str, config, loaded) -> dict[str, Any]:
    info = {
        "name": name,
        "kind": config.kind,
        "model": model_name(config.model),
        "max_length": config.max_length,
        "analyzer": config.analyzer.type if config.kind == "dense-bm25" else "",
        "loaded": loaded is not None,
    }
    if loaded is not None:
        info.update(dimension=loaded.dimension, sparse_kind=loaded.sparse_kind, sparse_analyzer=loaded.sparse_analyzer)
    return info


def backend_info(reranker) -> dict[str, Any]:
    serving, status = reranker.status()
    c = reranker.config
    return {
        "name": reranker.name,
        "kind": c.kind,
        "model": model_name(c.model),
        "max_length": c.max_length,
        "serving": serving,
        "status": "" if serving else status,
        "price_per_million_tokens": c.price_per_million_tokens,
        "long_documents": c.long_documents,
        "max_chunks": c.max_chunks,
        "chunk_overlap": c.chunk_overlap,
        "chunk_aggregate": c.chunk_aggregate,
        "exit_layers": [int(x) for x in getattr(reranker.backend, "exit_layers", None) or []],
        "cascade_keep": c.cascade_keep,
        "cascade_screen_weight": c.cascade_screen_weight,
    }


def limits_info(settings, tenant: str) -> dict[str, Any]:
    limits = settings.limits.for_tenant(tenant)
    own = settings.limits.per_tenant.get(tenant)
    return {
        "max_top_k": limits.max_top_k,
        "max_depth": limits.max_depth,
        "default_depth": limits.default_depth,
        "max_query_chars": limits.max_query_chars,
        "max_batch_docs": limits.max_batch_docs,
        "max_text_bytes": limits.max_text_bytes,
        "max_id_chars": limits.max_id_chars,
        "max_metadata_keys": limits.max_metadata_keys,
        "max_metadata_bytes": limits.max_metadata_bytes,
        "max_metadata_value_bytes": limits.max_metadata_value_bytes,
        "max_filter_clauses": limits.max_filter_clauses,
        "max_filter_values": limits.max_filter_values,
        "max_rerank_documents": settings.rerank.max_documents,
        "max_message_bytes": settings.server.max_message_bytes,
        "max_concurrent": (own.max_concurrent if own and own.max_concurrent else None)
        or settings.limits.max_concurrent_per_tenant,
    }


def service_info(service, tenant: str, role: str, health_services: list[str]) -> dict[str, Any]:
    """GetInfo's answer for one caller, as plain values (engine.wire.replies makes the message)."""
    settings = service.settings
    stage = service.rerank_stage
    budget = stage.budgets.effective(tenant) if stage is not None else None
    limits = limits_info(settings, tenant)
    fusion = FusionSettings()
    return {
        "version": component_versions().get("hybridsearch", ""),
        "api": API,
        "components": component_versions(),
        "store": "milvus-lite" if service.store.is_lite else "milvus",
        "default_profile": settings.default_profile,
        "profiles": [
            profile_info(n, settings.profiles[n], service.profiles.loaded(n)) for n in service.profiles.names()
        ],
        "default_rerank_backend": settings.rerank.default_backend if stage is not None else "",
        "rerank_backends": [backend_info(r) for _, r in sorted(stage.rerankers.items())] if stage is not None else [],
        "limits": limits,
        # The values validation fills in (engine.wire.requests), from the same source.
        "defaults": {
            "fusion_method": fusion.method,
            "rrf_k": fusion.rrf_k,
            "dense_weight": fusion.dense_weight,
            "sparse_weight": fusion.sparse_weight,
            "normalizer": fusion.normalizer,
            "candidate_depth": limits["default_depth"],
            "rerank_mode": budget.default_mode if budget is not None else "off",
        },
        "health_services": health_services,
        "tenant": tenant,
        "role": role,
        "budget": budget,
    }
