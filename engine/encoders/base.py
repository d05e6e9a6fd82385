"""The shared interface of embedding profiles."""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from hybridsearch.engine.config import ProfileConfig
from hybridsearch.engine.encoders.model_gate import ModelGate
from hybridsearch.engine.encoders.query_batcher import QueryBatcher
from hybridsearch.engine.encoders.query_cache import QueryCache


@dataclass(frozen=True)
class Scope:
    """Where text is encoded for: sparse statistics (BM25) are per collection and tenant."""

    collection: str
    tenant: str


# A query of more tokens than this is encoded as its tenant's work, not as a short query: on
# e5-small (2 cores) a 256-token pass takes ~60 ms, four times a short query's, and two tenants
# sending such queries held every other query up for whole passes (benchmarks/README.md, "Work
# isolation"). Everyday queries are well under it (cmrc2018 and SciFact: 10-40 tokens).
LONG_QUERY_TOKENS = 64


def _nothing_to_commit() -> None:
    return None


@dataclass(frozen=True)
class DocumentVectors:
    dense: np.ndarray  # (n, dimension) float32
    # Empty dicts for a profile whose sparse vectors Milvus derives from the text.
    sparse: list[dict[int, float]]
    # Called once the documents are durable in the store: profiles with corpus
    # statistics (BM25) apply their update here, so a failed write changes nothing.
    commit: Callable[[], None] = _nothing_to_commit
    truncated: int = 0  # texts the model did not read whole (ProfileConfig.long_texts)


@dataclass(frozen=True)
class QueryVectors:
    dense: np.ndarray  # (dimension,) float32
    # The query text itself when Milvus computes the sparse side (milvus-bm25).
    sparse: dict[int, float] | str
    cache_hit: bool
    truncated: bool = False  # the model did not read the whole query (ProfileConfig.long_texts)


class EmbeddingProfile(ABC):
    """Turns documents and queries into the two vectors the two routes search with."""

    kind: str
    #: "vector": the profile computes sparse vectors; "milvus-bm25": Milvus does, from text.
    sparse_kind: str = "vector"
    #: What decides the sparse terms and weights, persisted with each collection (the
    #: service refuses a collection built differently); "" when the model alone decides.
    sparse_analyzer: str = ""
    #: milvus-bm25 only: the Milvus analyzer and BM25 parameters (CollectionSpec.milvus_bm25).
    milvus_bm25: dict = {}

    def __init__(self, name: str, model_path: str, cache: QueryCache, config: ProfileConfig):
        self.name = name
        self.model_path = model_path
        self.cache = cache
        # One forward pass at a time (on a few cores, concurrent torch calls only fight over
        # the same threads), queries before document slices, tenants' slices in turn.
        self._gate = ModelGate(config.document_slice_ms)
        # Tokens the model reads of a text at most: one window, or max_windows of them
        # (each window holds max_length - 2 tokens of text, then its two special tokens).
        self.token_limit = (
            config.max_length if config.long_texts == "truncate" else config.max_windows * (config.max_length - 2) + 2
        )
        self.query_token_limit = min(config.max_query_tokens, config.max_length)
        # Encodes cache-missing queries of concurrent searches together; the subclass
        # starts it (_batch_queries) once its model is loaded.
        self._query_batcher: QueryBatcher | None = None

    def _batch_queries(self, encode: Callable[[Sequence[str]], Sequence]) -> None:
        self._query_batcher = QueryBatcher(self.name, encode)

    def _encode_query_batched(self, text: str, deadline: float | None, call_ended: threading.Event | None):
        """``text`` encoded with whatever other queries wait (see encode_query)."""
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        return self._query_batcher.encode(text, timeout, call_ended)

    def _encode_query_by_length(
        self,
        scope: Scope,
        text: str,
        tokens: int,
        deadline: float | None,
        call_ended: threading.Event | None,
        gate: ModelGate,
        encode_alone: Callable[[Sequence[str]], Sequence],
    ):
        """A short query with the other waiting queries (batched); a long one (over
        LONG_QUERY_TOKENS) alone, in its tenant's turn at the model like a slice of documents:
        its pass pauses between layers for short queries instead of holding them up."""
        if tokens <= LONG_QUERY_TOKENS:
            return self._encode_query_batched(text, deadline, call_ended)
        (result,) = gate.encode_documents(scope.tenant, [text], encode_alone, call_ended)
        return result[0]

    def _truncated(self, token_counts: Sequence[int], queries: bool = False) -> int:
        """How many of the texts with these token counts the model does not read whole."""
        limit = self.query_token_limit if queries else self.token_limit
        return sum(n > limit for n in token_counts)

    def close(self) -> None:
        """Stop the query batcher (queued queries fail with QueueFull)."""
        if self._query_batcher is not None:
            self._query_batcher.close()

    @property
    @abstractmethod
    def dimension(self) -> int: ...

    @abstractmethod
    def encode_documents(
        self,
        scope: Scope,
        texts: Sequence[str],
        replaced: Sequence[str] = (),
        cancelled: threading.Event | None = None,
    ) -> DocumentVectors:
        """Vectors for new documents. ``replaced`` holds the texts of documents they overwrite.
        Encoded slice by slice through the model's gate; once ``cancelled`` is set, the next
        slice raises EncodeCancelled instead of running."""

    def forget_documents(self, scope: Scope, texts: Sequence[str]) -> None:  # noqa: B027 (optional hook)
        """Called with the texts of deleted documents (profiles with corpus statistics update
        them; the others keep nothing per document, so doing nothing is right for them)."""

    def drop(self, collection: str) -> None:  # noqa: B027 (optional hook)
        """Called when a collection is dropped (profiles that keep state per collection clear it)."""

    @abstractmethod
    def encode_query(
        self, scope: Scope, text: str, deadline: float | None = None, call_ended: threading.Event | None = None
    ) -> QueryVectors:
        """Query vectors. Cache keys are (kind, model path, tenant, text): two profiles may
        share a model directory but cache different things (BGE-M3: dense + sparse; dense-bm25:
        dense), and a tenant never hits an entry another tenant's search made (a hit is
        visible in `query_cache_hit` and in the latency: it would tell what others searched).
        A cache miss is encoded with other concurrent ones (QueryBatcher); ``deadline``
        (time.monotonic()) bounds the wait: EncodeTimeout, or QueueFull when too many wait; a
        query whose ``call_ended`` is set while queued is dropped (EncodeCancelled)."""
