"""Backends that score to a chosen layer and continue the survivors: layer depth as a knob.

:class:`LayeredBackend` is what a cascade calls, whatever the model:

* ``score_to(pairs, layer)`` scores every document of an :class:`~rerank.base.EncodedPairs`
  to exit ``layer`` and returns an :class:`ExitHandle`: the logits per document, its tokens,
  the timing of every batch, and the hidden states each pair stopped at;
* ``continue_to(handle, indices, layer)`` takes the documents ``indices`` (positions in the
  handle) from where they stopped up to a deeper exit, without running the lower layers
  again, and returns a new handle for those documents only. Survivors are re-batched by
  length (``batch_size`` per batch), whichever batches they came from.

In chunks mode (``long_documents: chunks``, rerank/base.py) a document is several windows:
each is a pair the model runs (and a ``pairs`` count in the timings), a document's score at
an exit is the aggregate of its windows' (as ``score_encoded`` aggregates them), and a
surviving document continues with all its windows.

The plain ``RerankBackend`` path (``score``, ``score_encoded``, ``_forward``) scores at full
depth, so a layered backend works anywhere a backend does.

Every batch is timed (:class:`ExitBatchTiming`: from which layer to which, pairs, real and
padded tokens, ms): the observations a latency model per (layers run, tokens) learns from.

:class:`EarlyExitBackend` (kind ``early-exit``) runs :class:`rerank.early_exit.EarlyExitCrossEncoder`
on a transformers cross-encoder directory; ``rerank.backends.layerwise`` (kind ``layerwise``)
runs FlagEmbedding's layerwise MiniCPM reranker behind the same interface.
"""

from __future__ import annotations

import time
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from hybridsearch.rerank.base import EncodedPairs, RerankBackend, normalize


@dataclass(frozen=True)
class ExitBatchTiming:
    """One batch run from ``start_layer`` (0: the embeddings) to ``end_layer``."""

    start_layer: int
    end_layer: int
    pairs: int
    tokens: int  # real tokens of the pairs
    padded_tokens: int  # pairs x the batch's width: what the layers compute on
    ms: float

    @property
    def layers(self) -> int:
        return self.end_layer - self.start_layer


@dataclass
class _Slot:
    """Where one window's hidden states are: row ``row`` of a batch's state."""

    state: object  # the backend's batch state (rerank.early_exit.ExitState or the layerwise one)
    row: int
    length: int


@dataclass
class ExitHandle:
    """Documents scored to :attr:`layer`, resumable from there.

    ``raw[i]`` is document ``i``'s logit at :attr:`layer` (in chunks mode, aggregated over its
    windows as ``score`` aggregates them); ``source[i]`` its position in the
    ``EncodedPairs`` given to ``score_to`` (a continued handle holds the survivors in the
    order they were asked for); ``tokens[i]`` its tokens (all its windows); ``chunks[i]``
    its windows. ``timings`` are the batches of the call that made this handle, ``history``
    those of every call that led to it.
    """

    layer: int
    raw: np.ndarray  # float64 logits at `layer`, per document
    tokens: np.ndarray  # int64 tokens per document
    chunks: np.ndarray  # int64 windows per document (1 each unless chunks mode)
    source: np.ndarray  # int64 positions in the scored EncodedPairs
    timings: list[ExitBatchTiming]
    history: list[ExitBatchTiming]
    max_layer: int
    pairs: EncodedPairs = field(repr=False, default=None)  # what score_to was given
    _slots: list[list[_Slot]] = field(repr=False, default_factory=list)  # per document, per window

    def __len__(self) -> int:
        return len(self.raw)

    @property
    def normalized(self) -> np.ndarray:
        return normalize(self.raw)

    @property
    def ms(self) -> float:
        """Time of the call that made this handle."""
        return float(sum(t.ms for t in self.timings))

    @property
    def resumable(self) -> bool:
        return self.layer < self.max_layer and bool(self._slots)

    def release(self) -> None:
        """Drop the hidden states (the scores stay); the handle can no longer be continued."""
        self._slots = []


def _windows_per_document(pairs: EncodedPairs) -> np.ndarray:
    offsets = getattr(pairs, "offsets", None)
    return np.ones(len(pairs), dtype=np.int64) if offsets is None else np.diff(offsets).astype(np.int64)


class LayeredBackend(RerankBackend):
    """A backend with exits after several layers; subclasses provide the model steps."""

    #: Layers a pair can be scored at, ascending; the last is full depth.
    exit_layers: list[int]

    @abstractmethod
    def _start(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, layer: int):
        """Run a padded batch to ``layer``: (logits (batch,), the batch's state)."""

    @abstractmethod
    def _resume(self, states: list, rows: list[int], width: int, layer: int):
        """Gather ``rows[i]`` of ``states[i]`` (padded to ``width``) and run them on to
        ``layer``: (logits, the new batch's state)."""

    def check_layer(self, layer) -> int:
        if (
            isinstance(layer, (bool, np.bool_))
            or not isinstance(layer, (int, np.integer))
            or int(layer) not in self.exit_layers
        ):
            raise ValueError(self._bad_layer_message(layer))
        return int(layer)

    def _bad_layer_message(self, layer) -> str:
        return f"reranker {self.name!r} has no exit at layer {layer!r}; its exit layers are {self.exit_layers}"

    @property
    def max_layer(self) -> int:
        return self.exit_layers[-1]

    def _per_document(self, window_raw: np.ndarray, pairs: EncodedPairs) -> np.ndarray:
        """Window logits -> document logits, as ``score_encoded`` aggregates them."""
        if getattr(pairs, "offsets", None) is None:
            return window_raw
        return self.aggregate(window_raw, pairs)

    def _run_windows(
        self, start_layer: int, layer: int, lengths: np.ndarray, run_batch
    ) -> tuple[np.ndarray, list[_Slot], list[ExitBatchTiming]]:
        """Length-sorted batches of windows; ``run_batch(chunk) -> (logits, state, width)``."""
        n = len(lengths)
        raw = np.zeros(n, dtype=np.float64)
        slots: list[_Slot | None] = [None] * n
        timings: list[ExitBatchTiming] = []
        order = np.argsort(lengths, kind="stable")
        with self._lock, torch.inference_mode():
            for start in range(0, n, self.batch_size):
                chunk = order[start : start + self.batch_size]
                began = time.perf_counter()
                logits, state, width = run_batch(chunk)
                raw[chunk] = logits.float().cpu().numpy()
                ms = (time.perf_counter() - began) * 1000.0
                timings.append(
                    ExitBatchTiming(start_layer, layer, len(chunk), int(lengths[chunk].sum()), len(chunk) * width, ms)
                )
                for row, i in enumerate(chunk):
                    slots[i] = _Slot(state, row, int(lengths[i]))
        return raw, slots, timings

    @staticmethod
    def _group(slots: list[_Slot], chunks: np.ndarray) -> list[list[_Slot]]:
        out, at = [], 0
        for count in chunks:
            out.append(slots[at : at + int(count)])
            at += int(count)
        return out

    def score_to(self, pairs: EncodedPairs, layer: int) -> ExitHandle:
        """Score every document of ``pairs`` (every window, in chunks mode) to exit ``layer``,
        in length-sorted batches of ``batch_size``."""
        layer = self.check_layer(layer)
        lengths = np.fromiter((len(ids) for ids in pairs.input_ids), dtype=np.int64, count=len(pairs.input_ids))

        def run_batch(chunk):
            width = int(lengths[chunk].max())
            ids, mask = self.padded(pairs.input_ids, chunk, width)
            logits, state = self._start(
                torch.from_numpy(ids).to(self.device), torch.from_numpy(mask).to(self.device), layer
            )
            return logits, state, width

        window_raw, slots, timings = self._run_windows(0, layer, lengths, run_batch)
        chunks = _windows_per_document(pairs)
        keep = layer < self.max_layer and len(pairs) > 0
        return ExitHandle(
            layer,
            self._per_document(window_raw, pairs),
            pairs.tokens.copy(),
            chunks,
            np.arange(len(pairs), dtype=np.int64),
            timings,
            list(timings),
            self.max_layer,
            pairs,
            self._group(slots, chunks) if keep else [],
        )

    def continue_to(self, handle: ExitHandle, indices: Sequence[int], layer: int) -> ExitHandle:
        """Continue the documents ``indices`` (positions in ``handle``) from ``handle.layer`` to
        exit ``layer``; the layers below ``handle.layer`` are not run again."""
        layer = self.check_layer(layer)
        indices = np.asarray(list(indices), dtype=np.int64)
        if layer < handle.layer:
            raise ValueError(
                f"cannot continue from layer {handle.layer} down to layer {layer}; exits at or above it: "
                f"{[x for x in self.exit_layers if x >= handle.layer]}"
            )
        if len(indices) and (indices.min() < 0 or indices.max() >= len(handle)):
            raise IndexError(f"indices must be positions in the handle (0..{len(handle) - 1}); got {indices.tolist()}")
        if len(np.unique(indices)) != len(indices):
            raise ValueError("indices must not repeat a document")
        source = handle.source[indices]
        if layer == handle.layer or len(indices) == 0:
            # Nothing to run: the scores are the ones already there.
            return ExitHandle(
                handle.layer,
                handle.raw[indices].copy(),
                handle.tokens[indices],
                handle.chunks[indices],
                source,
                [],
                list(handle.history),
                handle.max_layer,
                handle.pairs,
                [handle._slots[i] for i in indices] if handle._slots else [],
            )
        if not handle._slots:
            raise ValueError(
                "this handle holds no hidden states (released, or scored at the last exit); score the pairs again"
            )
        taken = [slot for i in indices for slot in handle._slots[i]]
        lengths = np.array([s.length for s in taken], dtype=np.int64)

        def run_batch(chunk):
            chosen = [taken[j] for j in chunk]
            width = int(lengths[chunk].max())
            logits, state = self._resume([s.state for s in chosen], [s.row for s in chosen], width, layer)
            return logits, state, width

        window_raw, slots, timings = self._run_windows(handle.layer, layer, lengths, run_batch)
        survivors = handle.pairs.subset(source)
        chunks = handle.chunks[indices]
        return ExitHandle(
            layer,
            self._per_document(window_raw, survivors),
            handle.tokens[indices],
            chunks,
            source,
            timings,
            handle.history + timings,
            self.max_layer,
            handle.pairs,
            self._group(slots, chunks) if layer < self.max_layer else [],
        )


def gather_rows(
    hiddens: list[torch.Tensor], masks: list[torch.Tensor], rows: list[int], width: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of several batches' (hidden, mask), zero-padded to ``width``: one new batch.

    The padding positions' hidden values differ from a fresh pass's, which is harmless: the
    attention mask keeps real tokens from reading them, and no head reads them."""
    first = hiddens[0]
    hidden = first.new_zeros((len(rows), width, first.shape[-1]))
    mask = masks[0].new_zeros((len(rows), width))
    for out, (h, m, row) in enumerate(zip(hiddens, masks, rows, strict=True)):
        w = min(width, h.shape[1])
        hidden[out, :w] = h[row, :w]
        mask[out, :w] = m[row, :w]
    return hidden, mask


class EarlyExitBackend(LayeredBackend):
    """A transformers cross-encoder directory with exits (``early_exit.json``, see
    :mod:`rerank.early_exit`); a directory without them has one exit, its last layer."""

    kind = "early-exit"

    def __init__(
        self, name: str, model_path: str, *, max_length: int = 512, batch_size: int = 32, device: str = "cpu", **options
    ):
        # options: the long-document settings of RerankBackend (others are ignored there).
        super().__init__(name, model_path, max_length=max_length, batch_size=batch_size, **options)
        from transformers import AutoTokenizer

        from hybridsearch.rerank.early_exit import EarlyExitCrossEncoder

        self.device = torch.device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.model = EarlyExitCrossEncoder.from_pretrained(model_path, device=device)
        self.exit_layers = list(self.model.exit_layers)
        self.pad_id = self.tokenizer.pad_token_id or 0

    def _bad_layer_message(self, layer) -> str:
        hint = "" if len(self.exit_layers) > 1 else " (train exits with `hsearch train-reranker --exits 2,4,6`)"
        return f"reranker {self.name!r} has no exit at layer {layer!r}; its exit layers are {self.exit_layers}{hint}"

    def _forward(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Full depth through the model's own forward: the scores of the cross-encoder backend."""
        from hybridsearch.rerank.backends.cross_encoder import classification_logits

        return classification_logits(self.model.model, self.device, input_ids, attention_mask)

    def _start(self, input_ids, attention_mask, layer):
        return self.model.forward_to(layer, input_ids, attention_mask)

    def _resume(self, states, rows, width, layer):
        from hybridsearch.rerank.early_exit import ExitState

        hidden, mask = gather_rows([s.hidden for s in states], [s.mask for s in states], rows, width)
        return self.model.continue_to(layer, ExitState(states[0].layer, hidden, mask))
