"""Texts -> sparse BM25 vectors for Milvus (see :mod:`engine.bm25` for the formulas and
what Milvus accepts), reading and updating :class:`~engine.bm25.statistics.Bm25Stats`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from itertools import chain

import numpy as np

from hybridsearch.engine.analysis import TermAnalyzer
from hybridsearch.engine.analysis.standard import StandardAnalyzer as Analyzer
from hybridsearch.engine.bm25.scoring import Bm25Params
from hybridsearch.engine.bm25.statistics import Bm25Stats

__all__ = ["Bm25Encoder"]


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

    def document_weights(self, counts: Sequence[Mapping[int, int]], avgdl: float) -> list[dict[int, float]]:
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
        tf = np.fromiter(chain.from_iterable(c.values() for c in counts), dtype=np.float64, count=total)
        doc_of = np.repeat(np.arange(len(counts)), sizes)
        dl = np.bincount(doc_of, weights=tf, minlength=len(counts))[doc_of]
        w = (tf * (k1 + 1.0) / (tf + k1 * (1.0 - b + b * dl / avgdl))).tolist()
        out: list[dict[int, float]] = []
        pos = 0
        for n in sizes.tolist():
            out.append(dict(zip(keys[pos : pos + n], w[pos : pos + n], strict=True)))
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
        self._require_stats().apply(collection, tenant, self.term_counts(replaced_texts), self.term_counts(texts))

    def query_vector(self, collection: str, tenant: str, text: str | None) -> dict[int, float]:
        """BM25 query vector against (collection, tenant) statistics now; ``{}`` when no
        query term occurs in the corpus (or the text is empty / only stop words)."""
        counts = self.analyzer.term_counts(text)
        if not counts:
            return {}
        return self.query_weights(counts, self._require_stats().idf(collection, tenant, counts))

    def query_vectors(self, collection: str, tenant: str, texts: Sequence[str | None]) -> list[dict[int, float]]:
        """:meth:`query_vector` for several texts with one statistics read."""
        counts = self.term_counts(texts)
        idfs = self._require_stats().idf(collection, tenant, chain.from_iterable(counts))
        return [self.query_weights(c, idfs) for c in counts]
