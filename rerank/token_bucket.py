"""Per-tenant cost rate budgets: token buckets counted in reranker tokens, in memory.

The service spends through engine/rate_ledger.py, whose buckets live in the state database
so that replicas share them; this one process's bucket stays for unit use."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    """Holds at most ``per_minute`` units; refills continuously at per_minute / 60 per second."""

    def __init__(self, per_minute: float, clock: Callable[[], float] = time.monotonic):
        self.per_minute = per_minute
        self.clock = clock
        self.level = per_minute
        self.updated = clock()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = self.clock()
        self.level = min(self.per_minute, self.level + (now - self.updated) * self.per_minute / 60.0)
        self.updated = now

    def available(self) -> float:
        with self._lock:
            self._refill()
            return self.level

    def spend(self, units: float) -> float:
        """Take ``units`` (may go negative if actual cost exceeded the estimate); the level after."""
        with self._lock:
            self._refill()
            self.level -= units
            return self.level

    def resize(self, per_minute: float) -> None:
        with self._lock:
            self._refill()
            self.per_minute = per_minute
            self.level = min(self.level, per_minute)


class BucketRegistry:
    """One bucket per tenant, resized when the tenant's budget changes."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()

    def bucket(self, tenant: str, per_minute: float) -> TokenBucket:
        with self._lock:
            bucket = self._buckets.get(tenant)
            if bucket is None:
                bucket = self._buckets[tenant] = TokenBucket(per_minute, self.clock)
            elif bucket.per_minute != per_minute:
                bucket.resize(per_minute)
            return bucket
