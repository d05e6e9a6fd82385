"""BGE-M3 profile: dense and sparse (lexical weights) from one BGEM3FlagModel pass."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hybridsearch.engine.config import ProfileConfig
from hybridsearch.engine.encoders.base import DocumentVectors, EmbeddingProfile, QueryVectors, Scope
from hybridsearch.engine.encoders.model_gate import hook_layers
from hybridsearch.engine.encoders.query_cache import QueryCache


def lexical_to_sparse(weights: dict) -> dict[int, float]:
    """FlagEmbedding gives {token id as str: weight}; Milvus wants {int: float} with no zeros."""
    return {int(token): float(w) for token, w in weights.items() if w > 0}


class BgeM3Profile(EmbeddingProfile):
    kind = "bge-m3"

    def __init__(self, name: str, model_path: str, config: ProfileConfig, cache: QueryCache):
        super().__init__(name, model_path, cache, config)
        from FlagEmbedding import BGEM3FlagModel

        self.config = config
        # devices as a one-element list: FlagEmbedding starts a process pool when
        # it sees several devices, which a gRPC server must not do.
        self.model = BGEM3FlagModel(model_path, use_fp16=config.use_fp16, devices=[config.device])
        self._dimension = int(self.model.model.config.hidden_size)
        # A document pass pauses between layers while queries wait.
        hook_layers(self.model.model, self._gate.yield_to_queries)

        # Concurrent queries in one forward pass.
        self._batch_queries(self._queries_at_gate)

    @property
    def dimension(self) -> int:
        return self._dimension

    def _encode(self, texts: Sequence[str], max_length: int | None = None) -> tuple[np.ndarray, list[dict[int, float]]]:
        """One forward pass; the caller holds the gate."""
        out = self.model.encode(
            list(texts),
            batch_size=self.config.batch_size,
            max_length=max_length or self.config.max_length,
            return_dense=True,
            return_sparse=True,
            return_colbert_vecs=False,
        )
        dense = np.asarray(out["dense_vecs"], dtype=np.float32).reshape(len(texts), -1)
        return dense, [lexical_to_sparse(w) for w in out["lexical_weights"]]

    def _query_pass(self, texts: Sequence[str]) -> list:
        """(dense, sparse) per query, each cut at query_token_limit; the caller holds the gate."""
        return list(zip(*self._encode(texts, self.query_token_limit), strict=True))

    def _queries_at_gate(self, texts: Sequence[str]) -> list:
        with self._gate.query():
            return self._query_pass(texts)

    def encode_documents(
        self, scope: Scope, texts: Sequence[str], replaced: Sequence[str] = (), cancelled=None
    ) -> DocumentVectors:
        parts = self._gate.encode_documents(scope.tenant, texts, self._encode, cancelled)
        if not parts:
            return DocumentVectors(dense=np.zeros((0, self._dimension), np.float32), sparse=[])
        return DocumentVectors(
            dense=np.concatenate([d for d, _ in parts]),
            sparse=[s for _, part in parts for s in part],
            truncated=self._truncated(self._token_counts(texts)),
        )

    def _token_counts(self, texts: Sequence[str]) -> list[int]:
        from hybridsearch.engine.encoders.dense_models import tokens_of

        return tokens_of(self.model.tokenizer, list(texts))

    def encode_query(self, scope: Scope, text: str, deadline: float | None = None, call_ended=None) -> QueryVectors:
        key = (self.kind, self.model_path, scope.tenant, text)
        (tokens,) = self._token_counts([text])
        truncated = self._truncated([tokens], queries=True) > 0
        cached = self.cache.get(key)
        if cached is not None:
            return QueryVectors(dense=cached[0], sparse=cached[1], cache_hit=True, truncated=truncated)
        dense, sparse = self._encode_query_by_length(
            scope,
            text,
            tokens,
            deadline,
            call_ended,
            self._gate,
            self._query_pass,
        )
        self.cache.put(key, (dense, sparse))
        return QueryVectors(dense=dense, sparse=sparse, cache_hit=False, truncated=truncated)
