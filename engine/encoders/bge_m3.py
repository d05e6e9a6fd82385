"""BGE-M3 profile: dense and sparse (lexical weights) from one BGEM3FlagModel pass."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hybridsearch.engine.config import ProfileConfig
from hybridsearch.engine.encoders.base import DocumentVectors, EmbeddingProfile, QueryVectors, Scope
from hybridsearch.engine.encoders.query_cache import QueryCache


def lexical_to_sparse(weights: dict) -> dict[int, float]:
    """FlagEmbedding gives {token id as str: weight}; Milvus wants {int: float} with no zeros."""
    return {int(token): float(w) for token, w in weights.items() if w > 0}


class BgeM3Profile(EmbeddingProfile):
    kind = "bge-m3"

    def __init__(self, name: str, model_path: str, config: ProfileConfig, cache: QueryCache):
        super().__init__(name, model_path, cache)
        from FlagEmbedding import BGEM3FlagModel

        self.config = config
        # devices as a one-element list: FlagEmbedding starts a process pool when
        # it sees several devices, which a gRPC server must not do.
        self.model = BGEM3FlagModel(model_path, use_fp16=config.use_fp16, devices=[config.device])
        self._dimension = int(self.model.model.config.hidden_size)
        # Concurrent queries in one forward pass: (dense, sparse) per query.
        self._batch_queries(lambda texts: list(zip(*self._encode(texts), strict=True)))

    @property
    def dimension(self) -> int:
        return self._dimension

    def _encode(self, texts: Sequence[str]) -> tuple[np.ndarray, list[dict[int, float]]]:
        with self._model_lock:
            out = self.model.encode(
                list(texts),
                batch_size=self.config.batch_size,
                max_length=self.config.max_length,
                return_dense=True,
                return_sparse=True,
                return_colbert_vecs=False,
            )
        dense = np.asarray(out["dense_vecs"], dtype=np.float32).reshape(len(texts), -1)
        return dense, [lexical_to_sparse(w) for w in out["lexical_weights"]]

    def encode_documents(self, scope: Scope, texts: Sequence[str], replaced: Sequence[str] = ()) -> DocumentVectors:
        dense, sparse = self._encode(texts)
        return DocumentVectors(dense=dense, sparse=sparse)

    def encode_query(self, scope: Scope, text: str, deadline: float | None = None, call_ended=None) -> QueryVectors:
        key = (self.kind, self.model_path, scope.tenant, text)
        cached = self.cache.get(key)
        if cached is not None:
            return QueryVectors(dense=cached[0], sparse=cached[1], cache_hit=True)
        dense, sparse = self._encode_query_batched(text, deadline, call_ended)
        self.cache.put(key, (dense, sparse))
        return QueryVectors(dense=dense, sparse=sparse, cache_hit=False)
