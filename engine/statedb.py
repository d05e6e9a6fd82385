"""The service's state database: API keys, rerank budgets, BM25 statistics, rate buckets.

``state_uri`` empty: the SQLite file ``data_dir/state.sqlite3`` (WAL, synchronous=FULL, one
connection per thread): zero setup, one node. ``state_uri: postgresql://...``: PostgreSQL
through psycopg 3, shared by every replica behind a load balancer, so that they enforce one
set of keys, budgets and statistics.

The stores write their SQL once, with ``?`` placeholders and portable statements
(``INSERT ... ON CONFLICT ... DO UPDATE``); :class:`Tx` translates what differs. Writers
lock what they read-modify-write with ``SELECT ... {tx.for_update}``: on SQLite a write
transaction (``BEGIN IMMEDIATE``) already holds the whole file, on PostgreSQL the row lock
serialises replicas.
"""

from __future__ import annotations

import functools
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar, Union
from urllib.parse import urlsplit, urlunsplit

import grpc

from hybridsearch.engine.errors import ServiceError

T = TypeVar("T")
Target = Union[str, Path, "StateDB"]

POSTGRES_SCHEMES = ("postgresql://", "postgres://")
# Per process and database: two replicas of 16 workers stay well inside PostgreSQL's default
# max_connections (100); a caller waits for a free connection rather than opening more.
PG_POOL_SIZE = 16
PG_CONNECT_TIMEOUT_S = 5
PG_CHECKOUT_TIMEOUT_S = 30.0
# A deadlock or serialisation failure rolls the whole transaction back: safe to run again.
_RETRIES = 3


class CachedRows:
    """Rows of the state database read through a cache trusted for ``seconds``: another
    replica may change them, so a change anywhere holds everywhere within that, while a hot
    path (every call's key, every search's budget) reads the database once per key and period."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic):
        self.seconds = seconds
        self.clock = clock
        self._entries: dict[Any, tuple[float, Any]] = {}

    def get(self, key: Any, load: Callable[[], T]) -> T:
        now = self.clock()
        hit = self._entries.get(key)
        if hit is not None and now - hit[0] <= self.seconds:
            return hit[1]
        value = load()
        self._entries[key] = (now, value)
        return value

    def put(self, key: Any, value: Any) -> None:
        self._entries[key] = (self.clock(), value)

    def drop(self, key: Any) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()


class StateDBError(ServiceError):
    """The state database cannot be reached or used; callers get UNAVAILABLE naming the setting."""

    def __init__(self, message: str):
        super().__init__(grpc.StatusCode.UNAVAILABLE, message)


def is_postgres(target: str) -> bool:
    return target.startswith(POSTGRES_SCHEMES)


def redact(uri: str) -> str:
    """The URI without its password, for logs and error messages."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def settings_target(settings) -> str:
    """Where a service's state lives: ``state_uri``, or else the SQLite file ``state_path``."""
    return settings.state_uri or str(settings.state_path)


_shared: weakref.WeakValueDictionary[str, StateDB] = weakref.WeakValueDictionary()
_shared_lock = threading.Lock()


def shared(target: Target) -> StateDB:
    """One StateDB per database in this process, so every store of a replica draws on one
    connection pool. ``target`` is a path, a ``postgresql://`` URI or settings."""
    if isinstance(target, StateDB):
        return target
    if not isinstance(target, (str, Path)):
        target = settings_target(target)
    key = str(target)
    with _shared_lock:
        db = _shared.get(key)
        if db is None:
            db = _shared[key] = StateDB(key)
        return db


def open_target(target: Target, **sqlite_options) -> tuple[StateDB, bool]:
    """(the database, whether the caller owns it and should close it)."""
    if isinstance(target, StateDB):
        return target, False
    return StateDB(target, **sqlite_options), True


class Tx:
    """One transaction (or one autocommit statement) on either backend."""

    __slots__ = ("conn", "postgres")

    def __init__(self, conn, postgres: bool):
        self.conn, self.postgres = conn, postgres

    @property
    def for_update(self) -> str:
        # SQLite has no row locks and needs none: its write transaction holds the file.
        return " FOR UPDATE" if self.postgres else ""

    def execute(self, sql: str, params: Sequence[Any] = ()):
        if self.postgres:
            return self.conn.execute(_pg_sql(sql), params) if params else self.conn.execute(sql)
        return self.conn.execute(sql, params)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        if self.postgres:
            with self.conn.cursor() as cur:
                cur.executemany(_pg_sql(sql), list(rows))
        else:
            self.conn.executemany(sql, rows)

    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple | None:
        return self.execute(sql, params).fetchone()

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        return self.execute(sql, params).fetchall()

    def now(self) -> float:
        """Unix time by the database's clock: one clock for every replica."""
        if self.postgres:
            return float(self.one("SELECT EXTRACT(EPOCH FROM clock_timestamp())::double precision")[0])
        return float(self.one("SELECT (julianday('now') - 2440587.5) * 86400.0")[0])

    def create_tables(self, ddl: str) -> None:
        """``CREATE TABLE IF NOT EXISTS ...`` statements separated by ``;``."""
        if self.postgres:
            # Two replicas starting at once would race on the catalog (unique violation).
            self.execute("SELECT pg_advisory_xact_lock(?)", (_SCHEMA_LOCK,))
            ddl = ddl.replace("WITHOUT ROWID", "")
        for statement in ddl.split(";"):
            if statement.strip():
                self.execute(statement)


_SCHEMA_LOCK = 0x68736561  # "hsea": any constant shared by every replica


@functools.lru_cache(maxsize=1024)
def _pg_sql(sql: str) -> str:
    return sql.replace("%", "%%").replace("?", "%s")


class _SqliteConnection(sqlite3.Connection):
    """A subclass only so that connections can be tracked weakly (plain ones refuse it)."""


class StateDB:
    """Read and write transactions on the SQLite file or the PostgreSQL database."""

    def __init__(self, target: str | os.PathLike[str], *, timeout_s: float = 30.0, synchronous: str = "FULL"):
        target = os.fspath(target)
        self.postgres = is_postgres(target)
        self.target = target
        self.label = f"state_uri {redact(target)}" if self.postgres else target
        self._closed = False
        if self.postgres:
            self._pool = _PgPool(target, self.label)
            weakref.finalize(self, self._pool.close)
        else:
            self._sqlite = _SqliteConnections(target, timeout_s, synchronous)
            weakref.finalize(self, self._sqlite.close)

    @property
    def dialect(self) -> str:
        return "postgresql" if self.postgres else "sqlite"

    def read(self, fn: Callable[[Tx], T]) -> T:
        """``fn`` in a read transaction: one consistent snapshot. ``fn`` may run twice (after a
        dropped connection), so it must only read."""
        return self._run(fn, write=False)

    def write(self, fn: Callable[[Tx], T]) -> T:
        """``fn`` in a write transaction, committed when it returns, rolled back if it raises.
        ``fn`` may run again after a deadlock, so it must only touch the database."""
        return self._run(fn, write=True)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        """One read statement, outside a transaction (one round trip)."""
        return self._run(lambda tx: tx.all(sql, params), write=False, single=True)

    def query_one(self, sql: str, params: Sequence[Any] = ()) -> tuple | None:
        rows = self.query(sql, params)
        return rows[0] if rows else None

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """One write statement in its own transaction; the number of rows it touched."""
        return self.write(lambda tx: tx.execute(sql, params).rowcount)

    def close(self) -> None:
        self._closed = True
        (self._pool if self.postgres else self._sqlite).close()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"state database {self.label} is closed")

    def _run(self, fn: Callable[[Tx], T], *, write: bool, single: bool = False) -> T:
        self._check_open()
        if not self.postgres:
            return self._sqlite.run(fn, write, single)
        return self._pg_run(fn, write, single)

    # ---- PostgreSQL

    def _pg_run(self, fn: Callable[[Tx], T], write: bool, single: bool) -> T:
        import psycopg
        from psycopg import errors

        reconnected = False
        for attempt in range(_RETRIES + 1):
            conn = self._pool.get()
            committing = False
            try:
                if single:
                    result = fn(Tx(conn, True))
                else:
                    # Reads see one snapshot (BM25 idf reads N and df in two statements);
                    # writes lock the rows they change, so READ COMMITTED never fails them.
                    conn.execute("BEGIN" if write else "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    result = fn(Tx(conn, True))
                    committing = True
                    conn.execute("COMMIT")
                self._pool.put(conn)
                return result
            except (errors.DeadlockDetected, errors.SerializationFailure):
                self._rollback(conn)
                if attempt == _RETRIES:
                    raise
            except psycopg.OperationalError as exc:
                if not (conn.broken or conn.closed):
                    self._rollback(conn)
                    raise
                self._pool.put(conn, keep=False)
                self._pool.discard_idle()
                # A connection the server dropped (restart, idle timeout) fails on its next
                # statement, and the server rolls back what it had not committed: safe to run
                # once more on a fresh connection. A lost COMMIT may or may not have happened.
                if reconnected or committing:
                    raise StateDBError(f"{self.label}: connection lost: {str(exc).strip()}") from exc
                reconnected = True
            except BaseException:
                self._rollback(conn)
                raise
        raise AssertionError("unreachable")

    def _rollback(self, conn) -> None:
        from psycopg import pq

        try:
            if conn.info.transaction_status != pq.TransactionStatus.IDLE:
                conn.execute("ROLLBACK")
            self._pool.put(conn)
        except Exception:
            self._pool.put(conn, keep=False)


class _SqliteConnections:
    """One SQLite connection per thread (readers run concurrently under WAL); writers in
    this process queue on a lock and take SQLite's write lock up front (BEGIN IMMEDIATE),
    so other processes on the file are safe too."""

    def __init__(self, path: str, timeout_s: float, synchronous: str):
        if path == ":memory:" or path.startswith("file::memory:"):
            raise ValueError("the state database needs a file path (each thread opens its own connection)")
        if synchronous.upper() not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
            raise ValueError(f"bad synchronous mode {synchronous!r}")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._timeout_s = float(timeout_s)
        self._synchronous = synchronous.upper()
        self._local = threading.local()
        self._write_lock = threading.Lock()
        # Weak: a connection goes with its thread; close() reaches those still alive.
        self._conns: weakref.WeakSet[_SqliteConnection] = weakref.WeakSet()
        self._conns_lock = threading.Lock()
        # WAL is a property of the file: set once, kept by every later connection.
        mode = self.conn().execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise RuntimeError(f"could not put {path} in WAL mode (got {mode!r})")

    def conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.path,
                timeout=self._timeout_s,
                isolation_level=None,  # transactions are begun and ended here
                check_same_thread=False,  # each thread has its own; close() runs anywhere
                factory=_SqliteConnection,
            )
            conn.execute(f"PRAGMA busy_timeout={int(self._timeout_s * 1000)}")
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            self._local.conn = conn
            with self._conns_lock:
                self._conns.add(conn)
        return conn

    def run(self, fn: Callable[[Tx], T], write: bool, single: bool) -> T:
        conn = self.conn()
        if single:
            return fn(Tx(conn, False))
        if not write:
            return self._transaction(conn, "BEGIN", fn)
        with self._write_lock:
            return self._transaction(conn, "BEGIN IMMEDIATE", fn)

    @staticmethod
    def _transaction(conn: sqlite3.Connection, begin: str, fn: Callable[[Tx], T]) -> T:
        conn.execute(begin)
        try:
            result = fn(Tx(conn, False))
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    def close(self) -> None:
        with self._conns_lock:
            conns = list(self._conns)
            self._conns = weakref.WeakSet()
        for conn in conns:
            try:
                conn.close()
            except sqlite3.Error:
                pass


class _PgPool:
    """A few PostgreSQL connections shared by the threads of a process (LIFO, so that idle
    ones stay idle and a burst does not keep every connection warm)."""

    def __init__(self, uri: str, label: str, size: int = PG_POOL_SIZE):
        self.uri, self.label, self.size = uri, label, size
        self._idle: list = []
        self._open = 0
        self._closed = False
        self._cond = threading.Condition()

    def get(self):
        with self._cond:
            deadline = time.monotonic() + PG_CHECKOUT_TIMEOUT_S
            while not self._idle and self._open >= self.size:
                if self._closed:
                    raise RuntimeError(f"state database {self.label} is closed")
                left = deadline - time.monotonic()
                if left <= 0 or not self._cond.wait(left):
                    raise StateDBError(
                        f"{self.label}: all {self.size} connections busy for {PG_CHECKOUT_TIMEOUT_S:g} s"
                    )
            if self._idle:
                return self._idle.pop()
            self._open += 1
        try:
            return self._connect()
        except BaseException:
            with self._cond:
                self._open -= 1
                self._cond.notify()
            raise

    def _connect(self):
        import psycopg

        try:
            return psycopg.connect(
                self.uri, autocommit=True, connect_timeout=PG_CONNECT_TIMEOUT_S, application_name="hsearch"
            )
        except psycopg.Error as exc:
            # psycopg's message names host and port; the URI may hold a password.
            raise StateDBError(f"{self.label}: cannot connect to PostgreSQL: {str(exc).strip()}") from exc

    def put(self, conn, keep: bool = True) -> None:
        with self._cond:
            if keep and not self._closed and not conn.closed:
                self._idle.append(conn)
                self._cond.notify()
                return
            self._open -= 1
            self._cond.notify()
        _quietly_close(conn)

    def discard_idle(self) -> None:
        """After one dropped connection the others, idle since the same restart, are likely dead."""
        with self._cond:
            idle, self._idle = self._idle, []
            self._open -= len(idle)
            self._cond.notify_all()
        for conn in idle:
            _quietly_close(conn)

    def close(self) -> None:
        with self._cond:
            self._closed = True
        self.discard_idle()


def _quietly_close(conn) -> None:
    try:
        conn.close()
    except Exception:
        pass


__all__ = ["StateDB", "StateDBError", "Tx", "shared", "open_target", "settings_target", "is_postgres", "redact"]
