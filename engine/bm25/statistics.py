"""Persistent BM25 corpus statistics per (collection, tenant), in the state database
(engine/statedb.py: a SQLite file, or PostgreSQL shared by replicas).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from hybridsearch.engine.analysis import TERM_HASH_NAME
from hybridsearch.engine.bm25.scoring import idf
from hybridsearch.engine.statedb import StateDB, Tx, open_target

__all__ = ["CorpusStats", "Bm25Stats"]


@dataclass(frozen=True)
class CorpusStats:
    """Size of one (collection, tenant) corpus: document count and total analysed length."""

    n_docs: int = 0
    total_len: int = 0

    @property
    def avgdl(self) -> float:
        return self.total_len / self.n_docs if self.n_docs > 0 else 0.0


_SCHEMA_VERSION = "1"
# BIGINT: term indexes are uint32, and total lengths outgrow 32 bits on a large corpus
# (SQLite stores either as INTEGER).
_SCHEMA = """
CREATE TABLE IF NOT EXISTS bm25_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS bm25_corpus (
    collection TEXT   NOT NULL,
    tenant     TEXT   NOT NULL,
    n_docs     BIGINT NOT NULL,
    total_len  BIGINT NOT NULL,
    PRIMARY KEY (collection, tenant)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS bm25_df (
    collection TEXT   NOT NULL,
    tenant     TEXT   NOT NULL,
    term       BIGINT NOT NULL,
    df         BIGINT NOT NULL,
    PRIMARY KEY (collection, tenant, term)
) WITHOUT ROWID;
"""
_IN_CHUNK = 900  # below SQLite's default host-parameter limit, with room for the others


class Bm25Stats:
    """Persistent BM25 corpus statistics per (collection, tenant), in the state database
    (engine/statedb.py): a SQLite file, or PostgreSQL shared by replicas, so that what one
    replica ingests moves the idf another's queries use.

    Tables: ``bm25_corpus(collection, tenant) -> n_docs, total_len`` and
    ``bm25_df(collection, tenant, term) -> df`` (rows with df = 0 are deleted).

    * Every :meth:`apply` is one transaction, either fully durable or not at all, also
      across a crash (SQLite: WAL, ``synchronous=FULL`` by default).
    * Writers of one (collection, tenant) queue on its corpus row (on SQLite: on the file's
      write lock), so concurrent ingests through several replicas keep exact counts.
    * Reads that combine tables (:meth:`idf`) run in one read transaction: one snapshot.
    """

    def __init__(
        self,
        target: str | os.PathLike[str] | StateDB,
        *,
        timeout_s: float = 30.0,
        synchronous: str = "FULL",
    ) -> None:
        self._closed = False
        self.db, self._owns_db = open_target(target, timeout_s=timeout_s, synchronous=synchronous)
        self.path = self.db.label  # a file path, or the URI without its password
        try:
            self.db.write(self._create_schema)
        except BaseException:
            self.close()
            raise

    def _create_schema(self, tx: Tx) -> None:
        tx.create_tables(_SCHEMA)
        meta = dict(tx.all("SELECT key, value FROM bm25_meta"))
        want = {"schema_version": _SCHEMA_VERSION, "term_hash": TERM_HASH_NAME}
        for key, value in want.items():
            if key not in meta:
                tx.execute(
                    "INSERT INTO bm25_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING", (key, value)
                )
            elif meta[key] != value:
                raise RuntimeError(
                    f"{self.path}: BM25 statistics written with {key}={meta[key]!r}, this code uses {value!r}"
                )

    def close(self) -> None:
        """Close the database connections, if this object opened them (call when no
        thread uses it)."""
        self._closed = True
        if self._owns_db:
            self.db.close()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"Bm25Stats({self.path!r}) is closed")

    def _read(self, fn):
        self._check_open()
        return self.db.read(fn)

    def _write(self, fn):
        self._check_open()
        return self.db.write(fn)

    def __enter__(self) -> Bm25Stats:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- writes

    def apply(
        self,
        collection: str,
        tenant: str,
        added: Sequence[Mapping[int, int]] = (),
        removed: Sequence[Mapping[int, int]] = (),
    ) -> CorpusStats:
        """Add documents ``added`` and take away documents ``removed`` (each a term-hash ->
        count mapping) in one transaction; returns the corpus size after the change, read
        inside that transaction (so ``.avgdl`` includes this batch).

        A replacement is ``added=[new]``, ``removed=[old]``; a deletion ``removed=[old]``.
        The inverse call (swap the arguments) undoes a call, e.g. when the Milvus write that
        it accompanied failed. Removing more than was added clamps at zero.
        """
        df_delta: Counter[int] = Counter()
        len_delta = 0
        for counts in added:
            df_delta.update(counts.keys())
            len_delta += sum(counts.values())
        for counts in removed:
            df_delta.subtract(counts.keys())
            len_delta -= sum(counts.values())
        n_delta = len(added) - len(removed)
        terms = [t for t, d in df_delta.items() if d != 0]
        for t in terms:
            if not 0 <= t <= 0xFFFFFFFF:
                raise ValueError(f"term index {t!r} outside uint32")

        def write(tx: Tx) -> CorpusStats:
            # The corpus row is the lock of its (collection, tenant): made first if new, so
            # that a concurrent first ingest waits on it instead of overwriting it.
            tx.execute(
                "INSERT INTO bm25_corpus (collection, tenant, n_docs, total_len) VALUES (?, ?, 0, 0) "
                "ON CONFLICT (collection, tenant) DO NOTHING",
                (collection, tenant),
            )
            n_docs, total_len = tx.one(
                "SELECT n_docs, total_len FROM bm25_corpus WHERE collection=? AND tenant=?" + tx.for_update,
                (collection, tenant),
            ) or (0, 0)
            n_docs = max(0, n_docs + n_delta)
            total_len = max(0, total_len + len_delta) if n_docs else 0
            tx.execute(
                "INSERT INTO bm25_corpus (collection, tenant, n_docs, total_len) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (collection, tenant) DO UPDATE SET "
                "n_docs=excluded.n_docs, total_len=excluded.total_len",
                (collection, tenant, n_docs, total_len),
            )
            current = self._df_in(tx, collection, tenant, terms)
            upserts = []
            deletes = []
            for t in terms:
                new = current.get(t, 0) + df_delta[t]
                if new > 0:
                    upserts.append((collection, tenant, t, new))
                elif t in current:
                    deletes.append((collection, tenant, t))
            if upserts:
                tx.executemany(
                    "INSERT INTO bm25_df (collection, tenant, term, df) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (collection, tenant, term) DO UPDATE SET df=excluded.df",
                    upserts,
                )
            if deletes:
                tx.executemany("DELETE FROM bm25_df WHERE collection=? AND tenant=? AND term=?", deletes)
            return CorpusStats(n_docs, total_len)

        return self._write(write)

    def drop(self, collection: str) -> None:
        """Forget every tenant's statistics of ``collection``."""
        self._forget("collection=?", (collection,))

    def drop_tenant(self, collection: str, tenant: str) -> None:
        """Forget one tenant's statistics of ``collection``."""
        self._forget("collection=? AND tenant=?", (collection, tenant))

    def _forget(self, where: str, params: tuple) -> None:
        def write(tx: Tx) -> None:
            # Corpus rows first: writers lock them before their df rows, so no deadlock.
            tx.execute(f"DELETE FROM bm25_corpus WHERE {where}", params)
            tx.execute(f"DELETE FROM bm25_df WHERE {where}", params)

        self._write(write)

    # ---- reads

    def corpus(self, collection: str, tenant: str) -> CorpusStats:
        """Document count and total length of (collection, tenant); zeros if unknown."""
        self._check_open()
        row = self.db.query_one(
            "SELECT n_docs, total_len FROM bm25_corpus WHERE collection=? AND tenant=?",
            (collection, tenant),
        )
        return CorpusStats(*row) if row else CorpusStats()

    def avgdl(self, collection: str, tenant: str) -> float:
        """Average analysed document length of (collection, tenant); 0.0 when empty."""
        return self.corpus(collection, tenant).avgdl

    def df(self, collection: str, tenant: str, term_hashes: Iterable[int]) -> dict[int, int]:
        """Document frequencies of the given terms; terms no document has are left out."""
        terms = list(set(term_hashes))
        return self._read(lambda tx: self._df_in(tx, collection, tenant, terms))

    def idf(self, collection: str, tenant: str, term_hashes: Iterable[int]) -> dict[int, float]:
        """Lucene idf of each term that occurs in (collection, tenant) (see :func:`idf`).

        Terms absent from the corpus are left out (no document can match them), so an
        empty corpus gives ``{}``. N and df come from one consistent snapshot.
        """
        terms = list(set(term_hashes))

        def read(tx: Tx) -> tuple[int, dict[int, int]]:
            row = tx.one(
                "SELECT n_docs FROM bm25_corpus WHERE collection=? AND tenant=?",
                (collection, tenant),
            )
            n_docs = row[0] if row else 0
            if n_docs <= 0 or not terms:
                return 0, {}
            return n_docs, self._df_in(tx, collection, tenant, terms)

        n_docs, dfs = self._read(read)
        return {t: idf(n_docs, min(d, n_docs)) for t, d in dfs.items()}

    @staticmethod
    def _df_in(tx: Tx, collection: str, tenant: str, terms: Sequence[int]) -> dict[int, int]:
        out: dict[int, int] = {}
        for i in range(0, len(terms), _IN_CHUNK):
            chunk = terms[i : i + _IN_CHUNK]
            marks = ",".join("?" * len(chunk))
            out.update(
                tx.all(
                    f"SELECT term, df FROM bm25_df WHERE collection=? AND tenant=? AND term IN ({marks})",
                    (collection, tenant, *chunk),
                )
            )
        return out
