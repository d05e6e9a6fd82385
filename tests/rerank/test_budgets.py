"""Tenant budgets in SQLite: set, get, list, delete, survive a reopen, default for unknown tenants."""

from __future__ import annotations

import math

import pytest

from hybridsearch.engine.budget_store import BudgetStore
from hybridsearch.rerank.budgets import RerankBudget

DEFAULT = RerankBudget(tenant="ignored", max_depth=50, default_mode="off")


def test_budget_store_set_get_list_delete(tmp_path):
    store = BudgetStore(tmp_path / "state.sqlite3", DEFAULT)
    assert store.get("acme") is None and store.list() == []
    acme = RerankBudget(
        tenant="acme",
        latency_target_ms=120.0,
        max_cost_per_query=5000,
        cost_per_minute=1e6,
        min_depth=5,
        max_depth=80,
        default_mode="auto",
    )
    other = RerankBudget(tenant="beta", max_depth=10, default_mode="fixed")
    assert store.set(acme) == acme
    store.set(other)
    assert store.get("acme") == acme
    assert store.list() == [acme, other]  # ordered by tenant
    updated = RerankBudget(tenant="acme", max_depth=20)
    store.set(updated)
    assert store.get("acme") == updated and len(store.list()) == 2
    assert store.delete("acme") is True
    assert store.get("acme") is None and store.list() == [other]
    assert store.delete("acme") is False


def test_budget_store_persists_across_reopen(tmp_path):
    path = tmp_path / "nested" / "state.sqlite3"
    first = BudgetStore(path, DEFAULT)
    budget = RerankBudget(
        tenant="acme",
        latency_target_ms=55.5,
        max_cost_per_query=7,
        cost_per_minute=30.0,
        min_depth=1,
        max_depth=9,
        default_mode="auto",
    )
    first.set(budget)
    first.set(RerankBudget(tenant="gone"))
    first.delete("gone")
    second = BudgetStore(path, DEFAULT)
    assert second.get("acme") == budget
    assert second.get("gone") is None
    assert second.list() == [budget]


def test_unknown_tenant_gets_the_default_budget(tmp_path):
    store = BudgetStore(tmp_path / "s.sqlite3", DEFAULT)
    effective = store.effective("nobody")
    assert effective.tenant == "" and effective.max_depth == 50 and effective.default_mode == "off"
    own = store.set(RerankBudget(tenant="somebody", max_depth=3))
    assert store.effective("somebody") == own


@pytest.mark.parametrize(
    "changes,field",
    [
        ({"latency_target_ms": -1.0}, "latency_target_ms"),
        ({"latency_target_ms": math.nan}, "latency_target_ms"),
        ({"cost_per_minute": math.inf}, "cost_per_minute"),
        ({"max_cost_per_query": -5}, "max_cost_per_query"),
        ({"min_depth": -1}, "min_depth"),
        ({"max_depth": 201}, "max_depth"),
        ({"min_depth": 10, "max_depth": 5}, "min_depth"),
        ({"default_mode": "sometimes"}, "default_mode"),
    ],
)
def test_budget_problems_name_the_field(changes, field):
    budget = RerankBudget(tenant="t", **changes)
    assert field in [name for name, _ in budget.problems(200)]


def test_valid_budget_has_no_problems():
    assert (
        RerankBudget(
            tenant="t",
            latency_target_ms=10,
            max_cost_per_query=1,
            cost_per_minute=1,
            min_depth=2,
            max_depth=200,
            default_mode="auto",
        ).problems(200)
        == []
    )
