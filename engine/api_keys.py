"""API keys: each maps to one tenant and one role; only a hash of the secret is stored.

A key reads ``hsk_<key_id>_<secret>``. The key id finds the row; the secret's
SHA-256 is compared in constant time. Secrets are 256 random bits, so a fast hash
is enough (no password stretching needed), as with other services' API tokens.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from hybridsearch.engine import statedb
from hybridsearch.engine.statedb import CachedRows, StateDB, Tx, open_target

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


def parse_key(key: str) -> tuple[str, str] | None:
    """(key id, secret) of a well-formed key, else None."""
    if not key.startswith(PREFIX):
        return None
    parts = key[len(PREFIX) :].split("_", 1)
    if len(parts) != 2 or not parts[0] or not parts[1]:
        return None
    return parts[0], parts[1]


class ApiKeyStore:
    """Keys in the state database (engine/statedb.py): the SQLite state file, or PostgreSQL
    shared by every replica (``state_uri``)."""

    # Another replica may revoke a key: a cached lookup is trusted this long, so that a
    # revocation anywhere holds everywhere within 5 s (README, "Several replicas").
    CACHE_S = 2.0
    _COLUMNS = "key_id, tenant, role, description, created_unix, revoked"

    def __init__(self, target: str | Path | StateDB):
        self.db, self._owns_db = open_target(target)
        self._lock = threading.Lock()
        self._cache = CachedRows(self.CACHE_S)  # key id -> (secret hash, record), or None
        for (old, new), moved in self.db.write(self._create_and_migrate).items():
            if moved:
                log.warning(
                    "%d API key(s) of the old role %r are now %r (their own tenant only); "
                    "create an operator key for budgets and other tenants",
                    moved,
                    old,
                    new,
                )

    @classmethod
    def from_settings(cls, settings) -> ApiKeyStore:
        """The keys of the service these settings configure (``state_uri`` or ``state_path``)."""
        return cls(statedb.shared(settings))

    @staticmethod
    def _create_and_migrate(tx: Tx) -> dict[tuple[str, str], int]:
        tx.create_tables(
            "CREATE TABLE IF NOT EXISTS api_keys (key_id TEXT PRIMARY KEY, key_hash TEXT NOT NULL, tenant TEXT NOT NULL,"
            " role TEXT NOT NULL, description TEXT NOT NULL, created_unix DOUBLE PRECISION NOT NULL,"
            " revoked INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID"
        )
        return {
            (old, new): tx.execute("UPDATE api_keys SET role = ? WHERE role = ?", (new, old)).rowcount
            for old, new in LEGACY_ROLES.items()
        }

    def close(self) -> None:
        if self._owns_db:
            self.db.close()

    def create(self, tenant: str, role: str, description: str = "") -> tuple[ApiKeyRecord, str]:
        """A new key; returns the record and the full key (shown once)."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32).replace("_", "-")
        record = ApiKeyRecord(key_id, tenant, role, description, time.time(), False)
        self.db.execute(
            "INSERT INTO api_keys (key_id, key_hash, tenant, role, description, created_unix, revoked) VALUES (?, ?, ?, ?, ?, ?, 0)",
            (key_id, _hash(secret), tenant, role, description, record.created_unix),
        )
        return record, f"{PREFIX}{key_id}_{secret}"

    def verify(self, key: str) -> ApiKeyRecord | None:
        """The record of a valid, unrevoked key, else None."""
        parsed = parse_key(key)
        if parsed is None:
            return None
        key_id, secret = parsed

        def load() -> tuple[str, ApiKeyRecord] | None:
            row = self.db.query_one(f"SELECT key_hash, {self._COLUMNS} FROM api_keys WHERE key_id = ?", (key_id,))
            return (row[0], _record(row[1:])) if row is not None else None

        entry = self._cache.get(key_id, load)
        # Compare even for unknown ids so timing does not tell which ids exist.
        expected = entry[0] if entry else _hash("")
        if not hmac.compare_digest(expected, _hash(secret)) or entry is None or entry[1].revoked:
            return None
        return entry[1]

    def get(self, key_id: str) -> ApiKeyRecord | None:
        """The record of a key id (revoked or not), else None."""
        row = self.db.query_one(f"SELECT {self._COLUMNS} FROM api_keys WHERE key_id = ?", (key_id,))
        return _record(row) if row else None

    def list(self, tenant: str = "") -> list[ApiKeyRecord]:
        sql = f"SELECT {self._COLUMNS} FROM api_keys"
        if tenant:
            rows = self.db.query(sql + " WHERE tenant = ? ORDER BY created_unix, key_id", (tenant,))
        else:
            rows = self.db.query(sql + " ORDER BY tenant, created_unix, key_id")
        return [_record(r) for r in rows]

    def revoke(self, key_id: str) -> bool:
        with self._lock:
            revoked = self.db.execute("UPDATE api_keys SET revoked = 1 WHERE key_id = ? AND revoked = 0", (key_id,))
            self._cache.drop(key_id)
        return revoked > 0


def _record(row) -> ApiKeyRecord:
    return ApiKeyRecord(row[0], row[1], row[2], row[3], float(row[4]), bool(row[5]))
