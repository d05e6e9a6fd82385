"""Fault injection around a real backend: the real model scores, the wrapper fails or stalls on demand."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

import numpy as np

from hybridsearch.rerank.base import RerankBackend
from hybridsearch.rerank.circuit import CircuitBreaker
from hybridsearch.rerank.latency_model import LatencyModel


class FaultyBackend(RerankBackend):
    """Delegates tokenising and ``_forward`` to a real backend; can raise, sleep or block per batch."""

    def __init__(
        self,
        real: RerankBackend,
        *,
        delay_s: float = 0.0,
        delay_per_pair_s: float = 0.0,
        error: BaseException | None = None,
    ):
        chunking = {
            k: getattr(real, k)
            for k in ("long_documents", "chunk_overlap", "max_chunks", "chunk_aggregate", "chunk_first_weight")
            if hasattr(real, k)
        }
        super().__init__(real.name, real.model_path, max_length=real.max_length, batch_size=real.batch_size, **chunking)
        self.kind = real.kind
        self.real = real
        self.tokenizer = real.tokenizer
        self.pad_id = real.pad_id
        self.delay_s = delay_s  # per batch (per _forward call)
        self.delay_per_pair_s = delay_per_pair_s  # per pair: slower the way a real model is
        self.error = error
        self.gate: threading.Event | None = None  # when set, each batch waits for it
        self.started = threading.Event()  # set when a batch reaches _forward
        self.calls = 0
        self.pairs_scored = 0
        self.batch_sizes: list[int] = []  # pairs per score_encoded call (one batcher batch)
        self.batch_windows: list[int] = []  # sequences per call: documents' windows in chunks mode
        self.docs_encoded = 0  # documents tokenised

    def encode(self, query, documents):
        self.docs_encoded += len(documents)
        return super().encode(query, documents)

    def score_encoded(self, pairs):
        self.batch_sizes.append(len(pairs))
        self.batch_windows.append(pairs.n_chunks)
        return super().score_encoded(pairs)

    def _forward(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        self.calls += 1
        self.started.set()
        if self.gate is not None:
            self.gate.wait(30)
        if self.delay_s or self.delay_per_pair_s:
            time.sleep(self.delay_s + self.delay_per_pair_s * len(input_ids))
        if self.error is not None:
            raise self.error
        self.pairs_scored += len(input_ids)
        return self.real._forward(input_ids, attention_mask)


@contextlib.contextmanager
def swapped_backend(running_server, backend_factory, name: str = "tiny") -> Iterator[FaultyBackend]:
    """Swap a FaultyBackend into a running server's reranker; restore the real one afterwards.

    The reranker also gets a fresh latency model and circuit breaker for the duration,
    so what the fault teaches them does not leak into other tests.
    """
    reranker = running_server.server.service.rerank_stage.rerankers[name]
    real, model, breaker = reranker.backend, reranker.model, reranker.breaker
    fake = backend_factory(real)
    fresh_model = LatencyModel()
    settings = running_server.settings.rerank
    reranker.breaker = CircuitBreaker(settings.failure_threshold, settings.cooldown_s)
    reranker.model = reranker.batcher.model = fresh_model
    reranker.backend = reranker.batcher.backend = fake
    try:
        yield fake
    finally:
        if fake.gate is not None:
            fake.gate.set()
        reranker.backend = reranker.batcher.backend = real
        reranker.model = reranker.batcher.model = model
        reranker.breaker = breaker
