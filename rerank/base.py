"""The interface every cross-encoder backend shares, and the scoring path they all use.

A backend loads a model and a tokenizer and implements one method, ``_forward``
(padded token ids -> one logit per pair). Tokenising, counting tokens (the cost
unit), length-sorting to cut padding, and batching live here, once.

Long documents (the backend's ``long_documents``): ``"truncate"`` (the default) scores the
first ``max_length`` tokens of each pair; ``"chunks"`` scores a document longer than the
window as overlapping windows of its tokens, each paired with the query (the query's tokens
repeated in every window, the special tokens placed by the tokenizer's pair template), and
keeps the best window's logit (``chunk_aggregate "max"``, as Jina Reranker v2) or
``w * first + (1 - w) * max`` (``"first_max"``, ``w = chunk_first_weight``). Every window is a
pair the model scores: it counts in the tokens (the cost), in the pairs the latency model
predicts from, and in the batcher's queue. Rules, per document:

- window: ``max_length - specials - query tokens`` document tokens; consecutive windows
  share ``min(chunk_overlap, window // 2)`` tokens; the last window ends at the document's
  end (it may be shorter);
- at most ``max_chunks`` windows, the first ones: a document with more is scored on those
  and flagged ``truncated`` (as a pair cut to ``max_length`` is in truncate mode);
- the query keeps at most half of ``max_length - specials`` tokens (a longer query is cut,
  and every pair of the call is flagged truncated), so a window always holds document text;
- an empty document (no tokens) is one window: the query with the empty document, scored as
  truncate mode scores it;
- a document that fits one window gives exactly the ids of truncate mode, so its score is
  the same in both modes.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class EncodedPairs:
    """Tokenised (query, document) pairs: one sequence of ids per window (chunk) the model
    scores, and which document each window belongs to.

    Truncate mode has one window per document (``offsets`` None: document i is window i).
    Chunks mode: document i's windows are ``input_ids[offsets[i]:offsets[i + 1]]``, at least
    one each. ``len()`` counts documents; ``n_chunks`` counts the sequences (pairs) scored.
    """

    input_ids: list[list[int]]  # per window
    truncated: np.ndarray  # bool per document: part of it was not scored
    offsets: np.ndarray | None = None  # int64, documents + 1; None: one window per document

    def __post_init__(self) -> None:
        if self.offsets is None:
            return
        offsets = np.asarray(self.offsets, dtype=np.int64)
        if (
            offsets.ndim != 1
            or len(offsets) != len(self.truncated) + 1
            or offsets[0] != 0
            or offsets[-1] != len(self.input_ids)
            or np.any(np.diff(offsets) < 1)
        ):
            raise ValueError(
                "EncodedPairs.offsets must run from 0 to the number of windows, at least one window per document"
            )
        if len(offsets) - 1 == len(self.input_ids):
            offsets = None  # one window each: the plain layout
        object.__setattr__(self, "offsets", offsets)

    @property
    def n_chunks(self) -> int:
        """Sequences the model scores (windows; = documents in truncate mode)."""
        return len(self.input_ids)

    @property
    def chunks(self) -> np.ndarray:
        """Windows per document (all 1 in truncate mode)."""
        if self.offsets is None:
            return np.ones(len(self.input_ids), dtype=np.int64)
        return np.diff(self.offsets)

    @property
    def chunk_tokens(self) -> np.ndarray:
        """Token count per window (query + window + special tokens)."""
        return np.fromiter((len(ids) for ids in self.input_ids), dtype=np.int64, count=len(self.input_ids))

    @property
    def tokens(self) -> np.ndarray:
        """Token count per document: what it costs, the sum over its windows (truncate mode:
        query + document + special tokens of its one pair)."""
        per_chunk = self.chunk_tokens
        if self.offsets is None:
            return per_chunk
        return np.add.reduceat(per_chunk, self.offsets[:-1]).astype(np.int64)

    def subset(self, indices: Sequence[int]) -> EncodedPairs:
        """The documents ``indices`` (each with all its windows), in that order."""
        indices = list(indices)
        if self.offsets is None:
            return EncodedPairs([self.input_ids[i] for i in indices], self.truncated[indices])
        ids: list[list[int]] = []
        counts = []
        for i in indices:
            a, b = int(self.offsets[i]), int(self.offsets[i + 1])
            ids.extend(self.input_ids[a:b])
            counts.append(b - a)
        return EncodedPairs(ids, self.truncated[indices], _offsets(counts))

    @staticmethod
    def empty() -> EncodedPairs:
        return EncodedPairs([], np.zeros(0, dtype=bool))

    @staticmethod
    def concat(parts: Sequence[EncodedPairs]) -> EncodedPairs:
        """The documents of ``parts``, in order (the batcher merges requests with it)."""
        if not parts:
            return EncodedPairs.empty()
        ids = [seq for p in parts for seq in p.input_ids]
        truncated = np.concatenate([p.truncated for p in parts])
        if all(p.offsets is None for p in parts):
            return EncodedPairs(ids, truncated)
        return EncodedPairs(ids, truncated, _offsets(np.concatenate([p.chunks for p in parts])))

    def __add__(self, other: EncodedPairs) -> EncodedPairs:
        return EncodedPairs.concat([self, other])

    def __len__(self) -> int:
        return len(self.truncated)


def _offsets(counts) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(np.asarray(counts, dtype=np.int64))]).astype(np.int64)


def normalize(raw) -> np.ndarray:
    """Logits to scores in [0, 1]: the sigmoid (as FlagReranker's normalize=True)."""
    return 1.0 / (1.0 + np.exp(-np.asarray(raw, dtype=np.float64)))


@dataclass(frozen=True)
class Scores:
    raw: np.ndarray  # logits per document, float64 (chunks mode: aggregated over its windows)
    tokens: np.ndarray  # per document (the sum over its windows)
    chunks: np.ndarray | None = None  # windows scored per document; None: one each

    @property
    def normalized(self) -> np.ndarray:
        return normalize(self.raw)

    def slice(self, start: int, stop: int) -> Scores:
        """The scores of documents start..stop-1."""
        chunks = None if self.chunks is None else self.chunks[start:stop]
        return Scores(self.raw[start:stop], self.tokens[start:stop], chunks)


LONG_DOCUMENTS = ("truncate", "chunks")
CHUNK_AGGREGATES = ("max", "first_max")


class RerankBackend(ABC):
    """A cross-encoder: (query, document) pairs to relevance logits."""

    kind: str = ""

    def __init__(
        self,
        name: str,
        model_path: str,
        *,
        max_length: int = 512,
        batch_size: int = 32,
        long_documents: str = "truncate",
        chunk_overlap: int = 32,
        max_chunks: int = 8,
        chunk_aggregate: str = "max",
        chunk_first_weight: float = 0.5,
        **_ignored,
    ):
        self.name = name
        self.model_path = model_path
        self.max_length = max_length
        self.batch_size = batch_size
        # Long documents (the module's docstring): truncate, or windows of the model's length.
        if long_documents not in LONG_DOCUMENTS:
            raise ValueError(f"long_documents must be one of {', '.join(LONG_DOCUMENTS)}, got {long_documents!r}")
        if chunk_aggregate not in CHUNK_AGGREGATES:
            raise ValueError(f"chunk_aggregate must be one of {', '.join(CHUNK_AGGREGATES)}, got {chunk_aggregate!r}")
        if max_chunks < 1 or chunk_overlap < 0 or not 0.0 <= chunk_first_weight <= 1.0:
            raise ValueError(
                f"max_chunks must be >= 1, chunk_overlap >= 0 and chunk_first_weight in [0, 1] (got {max_chunks}, {chunk_overlap}, {chunk_first_weight})"
            )
        self.long_documents = long_documents
        self.chunk_overlap = int(chunk_overlap)
        self.max_chunks = int(max_chunks)
        self.chunk_aggregate = chunk_aggregate
        self.chunk_first_weight = float(chunk_first_weight)
        self._template: tuple[list[int], list[int], list[int]] | None = None
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
        if self.long_documents == "chunks":
            return self.encode_chunks(query, documents)
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
                    encodings = fast.encode_batch(list(zip(queries, documents, strict=True)), add_special_tokens=True)
                finally:
                    # The tokenizer is shared; leave no truncation behind for other callers.
                    fast.no_truncation()
                full = [e.ids for e in encodings]
                truncated = np.fromiter((bool(e.overflowing) for e in encodings), dtype=bool, count=len(encodings))
                return self._checked(full, truncated)
            full = self.tokenizer(queries, list(documents), truncation=False, add_special_tokens=True, verbose=False)[
                "input_ids"
            ]
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
                for i, ids in zip(idx, cut, strict=True):
                    full[i] = ids
        return self._checked(full, truncated)

    def _checked(
        self, input_ids: list[list[int]], truncated: np.ndarray, offsets: np.ndarray | None = None
    ) -> EncodedPairs:
        longest = max(len(ids) for ids in input_ids)
        if longest > self.max_length:
            # Never hand the model more positions than it was told to take.
            raise RuntimeError(
                f"reranker {self.name!r}: tokenizer returned a pair of {longest} tokens over max_length {self.max_length}"
            )
        return EncodedPairs(input_ids, truncated, offsets)

    # ------------------------------------------------------------ long documents in windows
    def pair_template(self) -> tuple[list[int], list[int], list[int]]:
        """The special tokens the tokenizer's pair template puts before the query, between
        query and document, and after the document (XLM-R: ``<s>``, ``</s></s>``, ``</s>``;
        BERT: ``[CLS]``, ``[SEP]``, ``[SEP]``). Read once from the tokenizer itself."""
        if self._template is None:
            with self._tokenizer_lock:
                self._template = self._read_template()
        return self._template

    def _read_template(self) -> tuple[list[int], list[int], list[int]]:
        """pair_template() with the tokenizer lock held."""
        if self._template is None:
            self._template = _pair_template(self.tokenizer)
        return self._template

    def chunk_layout(self, query_tokens: int) -> tuple[int, int, int]:
        """(query tokens kept, window, step) in document tokens for a query of ``query_tokens``."""
        prefix, middle, suffix = self.pair_template()
        room = self.max_length - len(prefix) - len(middle) - len(suffix)
        if room < 2:
            raise ValueError(
                f"reranker {self.name!r}: max_length {self.max_length} leaves no room for a query and a document"
            )
        kept = min(query_tokens, room // 2)
        window = room - kept
        step = window - min(self.chunk_overlap, window // 2)
        return kept, window, step

    def encode_chunks(self, query: str, documents: Sequence[str]) -> EncodedPairs:
        """Chunks mode: every document as windows of its tokens, each paired with the query.

        Query and documents are tokenised once without special tokens (one batch of the Rust
        tokenizer when there is one), the windows are cut from the ids, and each window gets
        the query and the tokenizer's own pair template around them."""
        fast = self.tokenizer.backend_tokenizer if getattr(self.tokenizer, "is_fast", False) else None
        with self._tokenizer_lock:
            if fast is not None:
                # The tokenizer is shared: no truncation or padding left by another caller.
                fast.no_truncation()
                fast.no_padding()
                query_ids = fast.encode(query, add_special_tokens=False).ids
                doc_ids = [e.ids for e in fast.encode_batch(list(documents), add_special_tokens=False)]
            else:
                query_ids = self.tokenizer(query, add_special_tokens=False, verbose=False)["input_ids"]
                doc_ids = self.tokenizer(list(documents), add_special_tokens=False, verbose=False)["input_ids"]
            prefix, middle, suffix = self._read_template()
        kept, window, step = self.chunk_layout(len(query_ids))
        head = prefix + list(query_ids[:kept]) + middle
        query_cut = kept < len(query_ids)
        input_ids: list[list[int]] = []
        counts = np.zeros(len(doc_ids), dtype=np.int64)
        truncated = np.zeros(len(doc_ids), dtype=bool)
        for i, ids in enumerate(doc_ids):
            starts = chunk_starts(len(ids), window, step)
            truncated[i] = query_cut or len(starts) > self.max_chunks
            for start in starts[: self.max_chunks]:
                input_ids.append(head + list(ids[start : start + window]) + suffix)
            counts[i] = min(len(starts), self.max_chunks)
        return self._checked(input_ids, truncated, _offsets(counts))

    def aggregate(self, chunk_raw: np.ndarray, pairs: EncodedPairs) -> np.ndarray:
        """Per-document logits from per-window logits: max, or first/max mix (first_max)."""
        if pairs.offsets is None:
            return chunk_raw
        starts = pairs.offsets[:-1]
        best = np.maximum.reduceat(chunk_raw, starts)
        if self.chunk_aggregate == "first_max":
            w = self.chunk_first_weight
            mixed = w * chunk_raw[starts] + (1.0 - w) * best
            # One window: its own logit, exactly (the mix of x with x can be 1 ulp off).
            best = np.where(pairs.chunks > 1, mixed, best)
        return best

    def score_encoded(self, pairs: EncodedPairs, *, sort_by_length: bool = True) -> Scores:
        """Score pre-tokenised pairs: sorted by length, padded per batch, in batches.

        ``sort_by_length=False`` batches them in arrival order instead (more padding: what
        the sort saves, measured by benchmarks/bench_rerank.py); the scores are the same."""
        n = pairs.n_chunks
        raw = np.zeros(n, dtype=np.float64)
        if n == 0:
            return Scores(raw, pairs.tokens)
        lengths = pairs.chunk_tokens
        order = np.argsort(lengths, kind="stable") if sort_by_length else np.arange(n)
        with self._lock:
            for start in range(0, n, self.batch_size):
                chunk = order[start : start + self.batch_size]
                ids, mask = self.padded(pairs.input_ids, chunk, int(lengths[chunk].max()))
                raw[chunk] = self._forward(ids, mask)
        if pairs.offsets is None:
            return Scores(raw, lengths)
        return Scores(self.aggregate(raw, pairs), pairs.tokens, pairs.chunks)

    def padded(self, input_ids: Sequence[Sequence[int]], rows, width: int) -> tuple[np.ndarray, np.ndarray]:
        """The sequences ``rows`` of ``input_ids`` as one batch: (ids, attention mask), both
        (len(rows), width) int64, padded on the right with the tokenizer's pad id."""
        ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for row, i in enumerate(rows):
            seq = input_ids[i]
            ids[row, : len(seq)] = seq
            mask[row, : len(seq)] = 1
        return ids, mask

    def score(self, query: str, documents: Sequence[str]) -> Scores:
        return self.score_encoded(self.encode(query, documents))

    def close(self) -> None:  # noqa: B027 (optional hook)
        """Release resources (subclasses with sessions or pools override)."""


def chunk_starts(n_tokens: int, window: int, step: int) -> list[int]:
    """Where the windows of a document of ``n_tokens`` start: 0, step, 2 step, ... until one
    reaches the end (the Rust tokenizer's overflow with ``stride = window - step`` cuts the
    same windows). An empty document is one (empty) window."""
    starts = [0]
    while starts[-1] + window < n_tokens:
        starts.append(starts[-1] + step)
    return starts


def _pair_template(tokenizer) -> tuple[list[int], list[int], list[int]]:
    """(before query, between, after document): the special ids of the tokenizer's pair template."""
    fast = tokenizer.backend_tokenizer if getattr(tokenizer, "is_fast", False) else None
    if fast is not None:
        # A tokenizer.json may come with padding (all-MiniLM-L6-v2's pads to 128) or
        # truncation switched on: neither belongs in the template.
        fast.no_truncation()
        fast.no_padding()
        pair = fast.encode("a", "b", add_special_tokens=True)
        sequence = pair.sequence_ids
        ids = pair.ids
    else:
        # A Python tokenizer concatenates lists: sentinels show where the two texts go.
        ids = list(tokenizer.build_inputs_with_special_tokens([-1], [-2]))
        sequence = [0 if t == -1 else 1 if t == -2 else None for t in ids]
    first = [i for i, s in enumerate(sequence) if s == 0]
    second = [i for i, s in enumerate(sequence) if s == 1]
    if not first or not second or first[-1] >= second[0]:
        raise ValueError(
            f"tokenizer {type(tokenizer).__name__}: its pair template is not <specials> query <specials> document <specials>"
        )
    return list(ids[: first[0]]), list(ids[first[-1] + 1 : second[0]]), list(ids[second[-1] + 1 :])
