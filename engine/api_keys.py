"""API keys: each maps to one tenant and one role; only a hash of the secret is stored.

A key reads ``hsk_<key_id>_<secret>``. The key id finds the row; the secret's
SHA-256 is compared in constant time. Secrets are 256 random bits, so a fast hash
is enough (no password stretching needed), as with other services' API tokens.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
import threading
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

# Each role can do what the ones before it can (README, "Roles"):
#   search        Search, Get, Rerank, Describe/ListCollections, in its own tenant
#   write         + Upsert, BulkUpsert, Delete
#   tenant-admin  + CreateCollection, its own tenant's keys (up to tenant-admin), its own budget (read)
#   operator      everything, for every tenant: budgets, DropCollection, operator keys
ROLES = ("search", "write", "tenant-admin", "operator")
ROLE_RANK = {role: i for i, role in enumerate(ROLES)}
# Keys made before roles had a scope were "admin", which could act on every tenant. They
# become tenant-admin (their own tenant only); an operator key is made on purpose
# (`hsearch keys create --role operator`).
LEGACY_ROLES = {"admin": "tenant-admin"}
PREFIX = "hsk_"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ApiKeyRecord:
    key_id: str
    tenant: str
    role: str
    description: str
    created_unix: float
    revoked: bool


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def parse_key(key: str) -> Optional[tuple[str, str]]:
    """(key id, secret) of a well-formed key, else None."""
    if not key.startswith(PREFIX):
        return None
    parts = key[len(PREFIX) :].split("_", 1)
    if len(parts) != 2 or not parts[0] or not parts[1]:
        return None
    return parts[0], parts[1]


class ApiKeyStore:
    """Keys in the service's SQLite state file (WAL, synchronous=FULL)."""

    # Other replicas may revoke a key; a cached lookup is trusted this long.
    CACHE_S = 5.0

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, Optional[tuple[str, ApiKeyRecord]]]] = {}
        self._conn().execute(
            "CREATE TABLE IF NOT EXISTS api_keys (key_id TEXT PRIMARY KEY, key_hash TEXT NOT NULL, tenant TEXT NOT NULL,"
            " role TEXT NOT NULL, description TEXT NOT NULL, created_unix REAL NOT NULL, revoked INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID"
        )
        for old, new in LEGACY_ROLES.items():
            moved = self._conn().execute("UPDATE api_keys SET role = ? WHERE role = ?", (new, old)).rowcount
            if moved:
                log.warning("%d API key(s) of the old role %r are now %r (their own tenant only); "
                            "create an operator key for budgets and other tenants", moved, old, new)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(str(self.path), timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            self._local.conn = conn
        return conn

    def create(self, tenant: str, role: str, description: str = "") -> tuple[ApiKeyRecord, str]:
        """A new key; returns the record and the full key (shown once)."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32).replace("_", "-")
        record = ApiKeyRecord(key_id, tenant, role, description, time.time(), False)
        with self._lock:
            self._conn().execute(
                "INSERT INTO api_keys VALUES (?, ?, ?, ?, ?, ?, 0)",
                (key_id, _hash(secret), tenant, role, description, record.created_unix),
            )
        return record, f"{PREFIX}{key_id}_{secret}"

    def verify(self, key: str) -> Optional[ApiKeyRecord]:
        """The record of a valid, unrevoked key, else None."""
        parsed = parse_key(key)
        if parsed is None:
            return None
        key_id, secret = parsed
        now = time.monotonic()
        cached = self._cache.get(key_id)
        if cached is None or now - cached[0] > self.CACHE_S:
            row = self._conn().execute(
                "SELECT key_hash, tenant, role, description, created_unix, revoked FROM api_keys WHERE key_id = ?", (key_id,)
            ).fetchone()
            entry = None
            if row is not None:
                entry = (row[0], ApiKeyRecord(key_id, row[1], row[2], row[3], row[4], bool(row[5])))
            self._cache[key_id] = cached = (now, entry)
        entry = cached[1]
        # Compare even for unknown ids so timing does not tell which ids exist.
        expected = entry[0] if entry else _hash("")
        if not hmac.compare_digest(expected, _hash(secret)) or entry is None or entry[1].revoked:
            return None
        return entry[1]

    def get(self, key_id: str) -> Optional[ApiKeyRecord]:
        """The record of a key id (revoked or not), else None."""
        r = self._conn().execute("SELECT key_id, tenant, role, description, created_unix, revoked FROM api_keys WHERE key_id = ?", (key_id,)).fetchone()
        return ApiKeyRecord(r[0], r[1], r[2], r[3], r[4], bool(r[5])) if r else None

    def list(self, tenant: str = "") -> list[ApiKeyRecord]:
        sql = "SELECT key_id, tenant, role, description, created_unix, revoked FROM api_keys"
        rows = self._conn().execute(sql + (" WHERE tenant = ? ORDER BY created_unix" if tenant else " ORDER BY tenant, created_unix"), (tenant,) if tenant else ()).fetchall()
        return [ApiKeyRecord(r[0], r[1], r[2], r[3], r[4], bool(r[5])) for r in rows]

    def revoke(self, key_id: str) -> bool:
        with self._lock:
            cur = self._conn().execute("UPDATE api_keys SET revoked = 1 WHERE key_id = ? AND revoked = 0", (key_id,))
            self._cache.pop(key_id, None)
        return cur.rowcount > 0
