"""Per-tenant rate budgets: token buckets counted in reranker tokens, on an injected clock."""

from __future__ import annotations

import pytest

from hybridsearch.rerank.token_bucket import BucketRegistry, TokenBucket
from tests.conftest import FakeClock


def test_token_bucket_starts_full_runs_out_and_refills_with_the_clock():
    clock = FakeClock()
    bucket = TokenBucket(600, clock)  # 10 tokens per second
    assert bucket.available() == 600
    assert bucket.spend(400) == 200
    assert bucket.spend(200) == 0
    assert bucket.available() == 0
    clock.advance(6)
    assert bucket.available() == pytest.approx(60)
    clock.advance(30)
    assert bucket.available() == pytest.approx(360)


def test_token_bucket_never_holds_more_than_one_minute_of_budget():
    clock = FakeClock()
    bucket = TokenBucket(120, clock)
    bucket.spend(50)
    clock.advance(3600)
    assert bucket.available() == 120


def test_token_bucket_overspend_goes_negative_and_is_paid_back_by_refill():
    clock = FakeClock()
    bucket = TokenBucket(60, clock)  # 1 token per second
    assert bucket.spend(90) == pytest.approx(-30)
    clock.advance(20)
    assert bucket.available() == pytest.approx(-10)
    clock.advance(15)
    assert bucket.available() == pytest.approx(5)


def test_token_bucket_without_time_passing_does_not_refill():
    clock = FakeClock()
    bucket = TokenBucket(60, clock)
    bucket.spend(60)
    for _ in range(5):
        assert bucket.available() == 0


def test_token_bucket_resize_keeps_the_level_within_the_new_size():
    clock = FakeClock()
    bucket = TokenBucket(600, clock)
    bucket.spend(100)
    bucket.resize(60)
    assert bucket.available() == 60
    clock.advance(60)
    assert bucket.available() == 60


def test_bucket_registry_gives_one_bucket_per_tenant_and_resizes_on_budget_change():
    clock = FakeClock()
    registry = BucketRegistry(clock)
    a = registry.bucket("a", 100)
    a.spend(80)
    assert registry.bucket("a", 100) is a and a.available() == pytest.approx(20)
    assert registry.bucket("b", 100).available() == 100  # tenants do not share
    resized = registry.bucket("a", 10)
    assert resized is a and a.per_minute == 10 and a.available() == pytest.approx(10)
    clock.advance(30)
    assert registry.bucket("a", 10).available() == pytest.approx(10)
