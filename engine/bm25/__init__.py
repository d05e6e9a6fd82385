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

Modules, by job:

* :mod:`engine.bm25.scoring`: the formula's pieces, :func:`idf` and :class:`Bm25Params`;
* :mod:`engine.bm25.statistics`: :class:`CorpusStats` and :class:`Bm25Stats`, the
  per-(collection, tenant) statistics in the state database (SQLite or PostgreSQL);
* :mod:`engine.bm25.encoding`: :class:`Bm25Encoder`, texts -> sparse vectors;
* text analysis (analyzers, stop words, :func:`term_hash`) lives in :mod:`engine.analysis`;
  the names BM25 callers use are re-exported here (``Analyzer`` is the standard analyzer).
"""

from __future__ import annotations

from hybridsearch.engine.analysis import TERM_HASH_NAME, term_hash
from hybridsearch.engine.analysis.standard import StandardAnalyzer as Analyzer
from hybridsearch.engine.analysis.stopwords import LUCENE_ENGLISH_STOP_WORDS, SKLEARN_ENGLISH_STOP_WORDS
from hybridsearch.engine.bm25.encoding import Bm25Encoder
from hybridsearch.engine.bm25.scoring import Bm25Params, idf
from hybridsearch.engine.bm25.statistics import Bm25Stats, CorpusStats

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
