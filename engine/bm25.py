"""BM25 computed by the service, for the "dense model + BM25 sparse" embedding profile.

The sparse route of that profile is a Milvus ``SPARSE_FLOAT_VECTOR`` field searched with
metric ``IP`` over a ``SPARSE_INVERTED_INDEX``. The vectors are built so that the inner
product of a query vector and a document vector *is* the document's BM25 score:

* document vector, for each term ``t`` of document ``d`` (``tf`` = count of ``t`` in ``d``)::

      w(t, d) = tf * (k1 + 1) / (tf + k1 * (1 - b + b * |d| / avgdl))

  ``|d|`` is the number of analysed terms of ``d`` (after stop-word removal) and ``avgdl``
  the average of that over the (collection, tenant) corpus *at ingest time*, including the
  batch being ingested;

* query vector, for each distinct query term ``t`` known to the corpus::

      q(t) = qtf(t) * idf(t),   idf(t) = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))

  (Lucene's idf, always positive) from the (collection, tenant) statistics *at query time*.

So ``sum_t q(t) * w(t, d)`` is Lucene-style BM25. The one approximation is that a stored
document keeps the ``avgdl`` of the moment it was ingested; ``idf`` is always current.
Statistics live per (collection, tenant): one tenant's documents never move another
tenant's scores.

Term index: :func:`term_hash`, CRC-32 of the analysed term's UTF-8 bytes masked to 31 bits.
It is stable across processes, platforms and Python versions (unlike ``hash()``), fits
Milvus's uint32 sparse index (and a signed int32, for tools that assume one), and the
chance that two terms of a 30k-term vocabulary share an index is about 0.2 (a colliding
pair simply behaves as one term, consistently in documents, queries and statistics).

Milvus facts (measured with pymilvus 3.0.2 / milvus-lite 3.2.2):

* an **empty** sparse vector, or one whose weights are all zero, is **rejected on insert**
  (``sparse vector must contain at least one nonzero float32 weight``), and so are negative
  weights. Every weight made here is > 0, but a document that is empty or consists only of
  stop words gets an empty vector: **the caller must handle it** (skip the sparse field /
  store a placeholder dimension). Such a document still counts in N and avgdl (length 0):
  it is part of the tenant's corpus.
* an **empty query** vector is accepted by ``search`` and returns no hits.
* weights are stored as float32, so the Milvus inner product equals BM25 to ~1e-7 relative.

Everything here is thread-safe: a gRPC server calls it from its worker threads.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import dataclass
from itertools import chain
from typing import Iterable, Mapping, Sequence

import numpy as np

from engine.analysis import TERM_HASH_NAME, TermAnalyzer, term_hash
from engine.analysis.standard import StandardAnalyzer as Analyzer
from engine.analysis.stopwords import LUCENE_ENGLISH_STOP_WORDS, SKLEARN_ENGLISH_STOP_WORDS
from engine.statedb import StateDB, Tx, open_target

__all__ = [
    "LUCENE_ENGLISH_STOP_WORDS",
    "SKLEARN_ENGLISH_STOP_WORDS",
    "TERM_HASH_NAME",
    "term_hash",
    "idf",
    "Analyzer",
    "Bm25Params",
    "CorpusStats",
    "Bm25Stats",
    "Bm25Encoder",
]

# --------------------------------------------------------------------------- idf


def idf(n_docs: int, df: int) -> float:
    """Lucene's BM25 idf: ``ln(1 + (N - df + 0.5) / (df + 0.5))``, always > 0 for df <= N."""
    return math.log1p((n_docs - df + 0.5) / (df + 0.5))


# --------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class Bm25Params:
    """BM25 parameters: ``k1`` (term-frequency saturation, >= 0) and ``b`` (length
    normalisation, in [0, 1]). Defaults are Lucene's."""

    k1: float = 1.2
    b: float = 0.75

    def __post_init__(self) -> None:
        for name in ("k1", "b"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"BM25 {name} must be a finite number, got {v!r}")
        if self.k1 < 0:
            raise ValueError(f"BM25 k1 must be >= 0, got {self.k1}")
        if not 0.0 <= self.b <= 1.0:
            raise ValueError(f"BM25 b must be in [0, 1], got {self.b}")


# --------------------------------------------------------------------------- statistics


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
        target: "str | os.PathLike[str] | StateDB",
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
                tx.execute("INSERT INTO bm25_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING", (key, value))
            elif meta[key] != value:
                raise RuntimeError(
                    f"{self.path}: BM25 statistics written with {key}={meta[key]!r}, "
                    f"this code uses {value!r}"
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

    def __enter__(self) -> "Bm25Stats":
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
                tx.executemany(
                    "DELETE FROM bm25_df WHERE collection=? AND tenant=? AND term=?", deletes
                )
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
                    f"SELECT term, df FROM bm25_df WHERE collection=? AND tenant=? "
                    f"AND term IN ({marks})",
                    (collection, tenant, *chunk),
                )
            )
        return out


# --------------------------------------------------------------------------- encoder


class Bm25Encoder:
    """Sparse BM25 vectors for Milvus (``{uint32 index: float weight}``, metric IP).

    Two layers:

    * pure functions, no statistics touched: :meth:`term_counts`,
      :meth:`document_weights` (counts + avgdl -> vectors), :meth:`query_weights`
      (counts + idf -> vector);
    * per-(collection, tenant) operations that read or update :class:`Bm25Stats`:
      :meth:`document_vectors` (ingest / replace, updates the statistics),
      :meth:`remove_documents` (delete), :meth:`revert_documents` (undo an ingest whose
      Milvus write failed), :meth:`query_vector`.

    Empty or stop-word-only texts give ``{}``; Milvus refuses an empty sparse vector on
    insert (the caller must handle it), an empty query vector simply matches nothing.
    """

    def __init__(
        self,
        analyzer: TermAnalyzer | None = None,
        params: Bm25Params | None = None,
        stats: Bm25Stats | None = None,
    ) -> None:
        self.analyzer: TermAnalyzer = analyzer if analyzer is not None else Analyzer()
        self.params = params if params is not None else Bm25Params()
        self.stats = stats

    # ---- pure

    def term_counts(self, texts: Iterable[str | None]) -> list[Counter[int]]:
        """Term-hash counts of each text."""
        return self.analyzer.term_counts_many(texts)

    def document_weights(
        self, counts: Sequence[Mapping[int, int]], avgdl: float
    ) -> list[dict[int, float]]:
        """BM25 document vectors ``tf*(k1+1)/(tf + k1*(1-b+b*|d|/avgdl))`` (vectorised)."""
        if not counts:
            return []
        sizes = np.fromiter((len(c) for c in counts), dtype=np.int64, count=len(counts))
        total = int(sizes.sum())
        if total == 0:
            return [{} for _ in counts]
        if not (avgdl > 0 and math.isfinite(avgdl)):
            raise ValueError(f"avgdl must be > 0 for non-empty documents, got {avgdl!r}")
        k1, b = self.params.k1, self.params.b
        keys = list(chain.from_iterable(c.keys() for c in counts))
        tf = np.fromiter(
            chain.from_iterable(c.values() for c in counts), dtype=np.float64, count=total
        )
        doc_of = np.repeat(np.arange(len(counts)), sizes)
        dl = np.bincount(doc_of, weights=tf, minlength=len(counts))[doc_of]
        w = (tf * (k1 + 1.0) / (tf + k1 * (1.0 - b + b * dl / avgdl))).tolist()
        out: list[dict[int, float]] = []
        pos = 0
        for n in sizes.tolist():
            out.append(dict(zip(keys[pos : pos + n], w[pos : pos + n])))
            pos += n
        return out

    @staticmethod
    def query_weights(counts: Mapping[int, int], idfs: Mapping[int, float]) -> dict[int, float]:
        """Query vector: ``count * idf`` for each term with an idf (i.e. known to the corpus)."""
        return {t: n * idfs[t] for t, n in counts.items() if t in idfs}

    # ---- with statistics

    def _require_stats(self) -> Bm25Stats:
        if self.stats is None:
            raise RuntimeError("this Bm25Encoder has no Bm25Stats")
        return self.stats

    def document_vectors(
        self,
        collection: str,
        tenant: str,
        texts: Sequence[str | None],
        replaced_texts: Sequence[str | None] = (),
    ) -> list[dict[int, float]]:
        """Vectors for ``texts`` being ingested into (collection, tenant), and the statistics
        update that goes with it (one transaction): ``texts`` are added, ``replaced_texts``
        (the previous texts of documents being overwritten, e.g. upserts) are removed.
        Weights use the tenant's avgdl after this update. If the Milvus write then fails,
        call :meth:`revert_documents` with the same arguments.
        """
        stats = self._require_stats()
        added = self.term_counts(texts)
        removed = self.term_counts(replaced_texts)
        corpus = stats.apply(collection, tenant, added, removed)
        return self.document_weights(added, corpus.avgdl)

    def remove_documents(self, collection: str, tenant: str, texts: Sequence[str | None]) -> None:
        """Statistics update for deleting documents with these texts."""
        self._require_stats().apply(collection, tenant, (), self.term_counts(texts))

    def revert_documents(
        self,
        collection: str,
        tenant: str,
        texts: Sequence[str | None],
        replaced_texts: Sequence[str | None] = (),
    ) -> None:
        """Undo the statistics update of ``document_vectors(collection, tenant, texts,
        replaced_texts)``."""
        self._require_stats().apply(
            collection, tenant, self.term_counts(replaced_texts), self.term_counts(texts)
        )

    def query_vector(self, collection: str, tenant: str, text: str | None) -> dict[int, float]:
        """BM25 query vector against (collection, tenant) statistics now; ``{}`` when no
        query term occurs in the corpus (or the text is empty / only stop words)."""
        counts = self.analyzer.term_counts(text)
        if not counts:
            return {}
        return self.query_weights(counts, self._require_stats().idf(collection, tenant, counts))

    def query_vectors(
        self, collection: str, tenant: str, texts: Sequence[str | None]
    ) -> list[dict[int, float]]:
        """:meth:`query_vector` for several texts with one statistics read."""
        counts = self.term_counts(texts)
        idfs = self._require_stats().idf(collection, tenant, chain.from_iterable(counts))
        return [self.query_weights(c, idfs) for c in counts]

