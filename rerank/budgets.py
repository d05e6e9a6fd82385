"""Per-tenant rerank budgets: what a tenant may spend on reranking (kept in the state
database by engine/budget_store.py)."""

from __future__ import annotations

import math
from dataclasses import dataclass

MODES = ("off", "fixed", "auto")


@dataclass(frozen=True)
class RerankBudget:
    """What one tenant may spend on reranking. Zero means "no limit" for the three limits."""

    tenant: str = ""
    latency_target_ms: float = 0.0  # p95 target for a whole Search
    max_cost_per_query: int = 0  # reranker tokens
    cost_per_minute: float = 0.0  # token bucket, reranker tokens per minute
    min_depth: int = 0
    max_depth: int = 50
    default_mode: str = "off"

    def problems(self, max_depth_limit: int) -> list[tuple[str, str]]:
        """(field, message) for every invalid setting; empty when valid."""
        out = []
        for name in ("latency_target_ms", "cost_per_minute"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                out.append((name, f"must be a finite number >= 0 (0 = no limit), got {value}"))
        if self.max_cost_per_query < 0:
            out.append(("max_cost_per_query", f"must be >= 0 (0 = no cap), got {self.max_cost_per_query}"))
        if self.min_depth < 0:
            out.append(("min_depth", f"must be >= 0, got {self.min_depth}"))
        if not 0 <= self.max_depth <= max_depth_limit:
            out.append(("max_depth", f"must be between 0 and {max_depth_limit}, got {self.max_depth}"))
        if self.min_depth > self.max_depth:
            out.append(("min_depth", f"{self.min_depth} exceeds max_depth {self.max_depth}"))
        if self.default_mode not in MODES:
            out.append(("default_mode", f"{self.default_mode!r} is not one of {', '.join(MODES)}"))
        return out
