"""Per-tenant rerank budgets, persisted in SQLite (atomic writes, survive a crash mid-write)."""
from __future__ import annotations

import json
import math
import sqlite3
import threading
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Optional

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
    """Budgets by tenant. Each write is one SQLite transaction in WAL mode with
    synchronous=FULL: after a crash a budget is either the old one or the new one."""

    def __init__(self, path: str | Path, default: RerankBudget):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.default = replace(default, tenant="")
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._cache: dict[str, Optional[RerankBudget]] = {}
        with self._conn() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS rerank_budgets (tenant TEXT PRIMARY KEY, budget TEXT NOT NULL) WITHOUT ROWID")

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(str(self.path), timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            self._local.conn = conn
        return conn

    def set(self, budget: RerankBudget) -> RerankBudget:
        with self._write_lock:
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(
                    "INSERT INTO rerank_budgets (tenant, budget) VALUES (?, ?) ON CONFLICT(tenant) DO UPDATE SET budget = excluded.budget",
                    (budget.tenant, json.dumps(asdict(budget), sort_keys=True)),
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            self._cache[budget.tenant] = budget
        return budget

    def get(self, tenant: str) -> Optional[RerankBudget]:
        """The tenant's own budget, or None."""
        if tenant in self._cache:
            return self._cache[tenant]
        row = self._conn().execute("SELECT budget FROM rerank_budgets WHERE tenant = ?", (tenant,)).fetchone()
        budget = RerankBudget(**json.loads(row[0])) if row else None
        self._cache[tenant] = budget
        return budget

    def effective(self, tenant: str) -> RerankBudget:
        """The tenant's budget, or the default one."""
        return self.get(tenant) or self.default

    def list(self) -> list[RerankBudget]:
        rows = self._conn().execute("SELECT budget FROM rerank_budgets ORDER BY tenant").fetchall()
        return [RerankBudget(**json.loads(r[0])) for r in rows]

    def delete(self, tenant: str) -> bool:
        with self._write_lock:
            cur = self._conn().execute("DELETE FROM rerank_budgets WHERE tenant = ?", (tenant,))
            self._cache.pop(tenant, None)
        return cur.rowcount > 0
