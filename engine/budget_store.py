"""Per-tenant rerank budgets persisted in the state database (atomic writes, survive a crash mid-write)."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

from hybridsearch.engine.statedb import CachedRows, StateDB, open_target
from hybridsearch.rerank.budgets import RerankBudget


class BudgetStore:
    """Budgets by tenant in the state database (engine/statedb.py). Each write is one
    transaction: after a crash a budget is either the old one or the new one.

    Another replica may change a budget: a cached one is trusted for ``CACHE_S``, so a change
    made anywhere is in force everywhere within that, and searches read the store once per
    tenant and ``CACHE_S``, not once each."""

    CACHE_S = 2.0

    def __init__(self, target: str | Path | StateDB, default: RerankBudget):
        self.db, self._owns_db = open_target(target)
        self.default = replace(default, tenant="")
        self._cache = CachedRows(self.CACHE_S)
        self.db.write(
            lambda tx: tx.create_tables(
                "CREATE TABLE IF NOT EXISTS rerank_budgets (tenant TEXT PRIMARY KEY, budget TEXT NOT NULL) WITHOUT ROWID"
            )
        )

    def close(self) -> None:
        if self._owns_db:
            self.db.close()

    def set(self, budget: RerankBudget) -> RerankBudget:
        self.db.execute(
            "INSERT INTO rerank_budgets (tenant, budget) VALUES (?, ?) ON CONFLICT (tenant) DO UPDATE SET budget = excluded.budget",
            (budget.tenant, json.dumps(asdict(budget), sort_keys=True)),
        )
        self._cache.put(budget.tenant, budget)
        return budget

    def get(self, tenant: str) -> RerankBudget | None:
        """The tenant's own budget, or None."""

        def load() -> RerankBudget | None:
            row = self.db.query_one("SELECT budget FROM rerank_budgets WHERE tenant = ?", (tenant,))
            return RerankBudget(**json.loads(row[0])) if row else None

        return self._cache.get(tenant, load)

    def effective(self, tenant: str) -> RerankBudget:
        """The tenant's budget, or the default one."""
        return self.get(tenant) or self.default

    def list(self) -> list[RerankBudget]:
        rows = self.db.query("SELECT budget FROM rerank_budgets ORDER BY tenant")
        return [RerankBudget(**json.loads(r[0])) for r in rows]

    def delete(self, tenant: str) -> bool:
        deleted = self.db.execute("DELETE FROM rerank_budgets WHERE tenant = ?", (tenant,))
        self._cache.drop(tenant)
        return deleted > 0
