"""Per-tenant rerank budgets, persisted in the state database (atomic writes, survive a crash mid-write)."""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Optional

from engine.statedb import StateDB, open_target

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


class BudgetStore:
    """Budgets by tenant in the state database (engine/statedb.py). Each write is one
    transaction: after a crash a budget is either the old one or the new one.

    Another replica may change a budget: a cached one is trusted for ``CACHE_S``, so a change
    made anywhere is in force everywhere within that, and searches read the store once per
    tenant and ``CACHE_S``, not once each."""

    CACHE_S = 2.0

    def __init__(self, target: "str | Path | StateDB", default: RerankBudget):
        self.db, self._owns_db = open_target(target)
        self.default = replace(default, tenant="")
        self._cache: dict[str, tuple[float, Optional[RerankBudget]]] = {}
        self.db.write(lambda tx: tx.create_tables("CREATE TABLE IF NOT EXISTS rerank_budgets (tenant TEXT PRIMARY KEY, budget TEXT NOT NULL) WITHOUT ROWID"))

    def close(self) -> None:
        if self._owns_db:
            self.db.close()

    def set(self, budget: RerankBudget) -> RerankBudget:
        self.db.execute(
            "INSERT INTO rerank_budgets (tenant, budget) VALUES (?, ?) ON CONFLICT (tenant) DO UPDATE SET budget = excluded.budget",
            (budget.tenant, json.dumps(asdict(budget), sort_keys=True)),
        )
        self._cache[budget.tenant] = (time.monotonic(), budget)
        return budget

    def get(self, tenant: str) -> Optional[RerankBudget]:
        """The tenant's own budget, or None."""
        now = time.monotonic()
        cached = self._cache.get(tenant)
        if cached is not None and now - cached[0] <= self.CACHE_S:
            return cached[1]
        row = self.db.query_one("SELECT budget FROM rerank_budgets WHERE tenant = ?", (tenant,))
        budget = RerankBudget(**json.loads(row[0])) if row else None
        self._cache[tenant] = (now, budget)
        return budget

    def effective(self, tenant: str) -> RerankBudget:
        """The tenant's budget, or the default one."""
        return self.get(tenant) or self.default

    def list(self) -> list[RerankBudget]:
        rows = self.db.query("SELECT budget FROM rerank_budgets ORDER BY tenant")
        return [RerankBudget(**json.loads(r[0])) for r in rows]

    def delete(self, tenant: str) -> bool:
        deleted = self.db.execute("DELETE FROM rerank_budgets WHERE tenant = ?", (tenant,))
        self._cache.pop(tenant, None)
        return deleted > 0
