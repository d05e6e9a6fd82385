"""The interface every cross-encoder backend shares, and the scoring path they all use.

A backend loads a model and a tokenizer and implements one method, ``_forward``
(padded token ids -> one logit per pair). Tokenising, counting tokens (the cost
unit), length-sorting to cut padding, and batching live here, once.
"""
from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class EncodedPairs:
    """Tokenised (query, document) pairs, truncated to the model's limit."""

    input_ids: list[list[int]]
    truncated: np.ndarray  # bool per pair: the document was cut to fit max_length

    @property
    def tokens(self) -> np.ndarray:
        """Token count per pair: what a pair costs (query + document + special tokens)."""
        return np.fromiter((len(ids) for ids in self.input_ids), dtype=np.int64, count=len(self.input_ids))

    def subset(self, indices: Sequence[int]) -> "EncodedPairs":
        return EncodedPairs([self.input_ids[i] for i in indices], self.truncated[list(indices)])

    @staticmethod
    def empty() -> "EncodedPairs":
        return EncodedPairs([], np.zeros(0, dtype=bool))

    def __add__(self, other: "EncodedPairs") -> "EncodedPairs":
        return EncodedPairs(self.input_ids + other.input_ids, np.concatenate([self.truncated, other.truncated]))

    def __len__(self) -> int:
        return len(self.input_ids)


def normalize(raw) -> np.ndarray:
    """Logits to scores in [0, 1]: the sigmoid (as FlagReranker's normalize=True)."""
    return 1.0 / (1.0 + np.exp(-np.asarray(raw, dtype=np.float64)))


@dataclass(frozen=True)
class Scores:
    raw: np.ndarray  # logits, float64
    tokens: np.ndarray  # per pair

    @property
    def normalized(self) -> np.ndarray:
        return normalize(self.raw)


class RerankBackend(ABC):
    """A cross-encoder: (query, document) pairs to relevance logits."""

    kind: str = ""

    def __init__(self, name: str, model_path: str, *, max_length: int = 512, batch_size: int = 32):
        self.name = name
        self.model_path = model_path
        self.max_length = max_length
        self.batch_size = batch_size
        self.tokenizer = None  # set by the subclass
        self.pad_id = 0
        # One forward pass at a time: concurrent torch/ORT calls on a few cores only
        # fight over the same threads. Concurrency is handled by the batcher.
        self._lock = threading.Lock()
        # One tokenizer call at a time: transformers sets truncation on the shared Rust
        # tokenizer before every call, so a concurrent call without truncation could undo
        # ours and hand back pairs longer than max_length (seen: 867 tokens at 256, which
        # BERT refuses past 512 positions and which opened the circuit breaker under load).
        self._tokenizer_lock = threading.Lock()

    @abstractmethod
    def _forward(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Logits for one padded batch: (batch, seq) int64 arrays -> (batch,) float."""

    def encode(self, query: str, documents: Sequence[str]) -> EncodedPairs:
        """Tokenise pairs once; the ids are reused for scoring and the lengths for cost."""
        if not documents:
            return EncodedPairs.empty()
        queries = [query] * len(documents)
        fast = self.tokenizer.backend_tokenizer if getattr(self.tokenizer, "is_fast", False) else None
        with self._tokenizer_lock:
            if fast is not None:
                # One pass: the Rust tokenizer truncates and keeps what it cut (`overflowing`),
                # which says which pairs were truncated. The two-pass path below tokenised
                # every document whole first: twice the time for SciFact's long abstracts.
                fast.enable_truncation(self.max_length, strategy="longest_first")
                fast.no_padding()
                try:
                    encodings = fast.encode_batch(list(zip(queries, documents)), add_special_tokens=True)
                finally:
                    # The tokenizer is shared; leave no truncation behind for other callers.
                    fast.no_truncation()
                full = [e.ids for e in encodings]
                truncated = np.fromiter((bool(e.overflowing) for e in encodings), dtype=bool, count=len(encodings))
                return self._checked(full, truncated)
            full = self.tokenizer(queries, list(documents), truncation=False, add_special_tokens=True, verbose=False)["input_ids"]
            truncated = np.array([len(ids) > self.max_length for ids in full], dtype=bool)
            if truncated.any():
                idx = np.flatnonzero(truncated).tolist()
                cut = self.tokenizer(
                    [query] * len(idx),
                    [documents[i] for i in idx],
                    truncation="longest_first",
                    max_length=self.max_length,
                    add_special_tokens=True,
                )["input_ids"]
                for i, ids in zip(idx, cut):
                    full[i] = ids
        return self._checked(full, truncated)

    def _checked(self, input_ids: list[list[int]], truncated: np.ndarray) -> EncodedPairs:
        longest = max(len(ids) for ids in input_ids)
        if longest > self.max_length:
            # Never hand the model more positions than it was told to take.
            raise RuntimeError(f"reranker {self.name!r}: tokenizer returned a pair of {longest} tokens over max_length {self.max_length}")
        return EncodedPairs(input_ids, truncated)

    def score_encoded(self, pairs: EncodedPairs, *, sort_by_length: bool = True) -> Scores:
        """Score pre-tokenised pairs: sorted by length, padded per batch, in batches.

        ``sort_by_length=False`` batches them in arrival order instead (more padding: what
        the sort saves, measured by benchmarks/bench_rerank.py); the scores are the same."""
        n = len(pairs)
        raw = np.zeros(n, dtype=np.float64)
        if n == 0:
            return Scores(raw, pairs.tokens)
        lengths = pairs.tokens
        order = np.argsort(lengths, kind="stable") if sort_by_length else np.arange(n)
        with self._lock:
            for start in range(0, n, self.batch_size):
                chunk = order[start : start + self.batch_size]
                width = int(lengths[chunk].max())
                ids = np.full((len(chunk), width), self.pad_id, dtype=np.int64)
                mask = np.zeros((len(chunk), width), dtype=np.int64)
                for row, i in enumerate(chunk):
                    seq = pairs.input_ids[i]
                    ids[row, : len(seq)] = seq
                    mask[row, : len(seq)] = 1
                raw[chunk] = self._forward(ids, mask)
        return Scores(raw, lengths)

    def score(self, query: str, documents: Sequence[str]) -> Scores:
        return self.score_encoded(self.encode(query, documents))

    def close(self) -> None:
        """Release resources (subclasses with sessions or pools override)."""
