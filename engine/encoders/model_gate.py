"""One forward pass at a time on a model, queries first, documents in fair slices.

Why: a profile's model runs one pass at a time (on a few cores concurrent torch calls only
fight over the same threads), and it used to be a plain lock. A 300-document upsert then held
it for its whole batch, so another tenant's query waited 11.5 s behind it (issue 28). Here:

* a **query** pass goes before any waiting document slice;
* **documents** are encoded in slices sized to take about ``slice_ms`` each (the gate keeps
  the model's characters per second), so a query waits at most about one slice;
* waiting slices of different tenants take turns by the model time each has used (start-time
  fair queueing on seconds), so one tenant's bulk load gets its share, not all of it;
* between slices the caller's ``cancelled`` is checked: a cancelled call stops there
  (EncodeCancelled), not after its whole batch;
* and inside a slice, between two transformer layers (the profile hooks them: ``hook_layers``), a
  document pass pauses while waiting queries run, then resumes: one 220-word document alone
  takes ~50 ms on all-MiniLM-L6-v2 (2 cores), longer than the query it would hold up, so the
  slice alone could not keep a query's wait short (measured: 49 ms median wait with slices
  only, benchmarks/README.md "Work isolation").

When nobody searches a slice follows the next at once: the price is one Python call per
slice, which ``slice_ms`` keeps small against the pass itself (benchmarks/README.md, "Search
before ingest").
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

from hybridsearch.engine.encoders.query_batcher import EncodeCancelled

T = TypeVar("T")

# Until the gate has timed a slice it does not know the model's speed: the first slice is
# this many characters (at least one document), small enough to be harmless on any model.
FIRST_SLICE_CHARS = 512


class ModelGate:
    """Who runs the model next: a waiting query, else the least-served tenant's slice."""

    def __init__(self, slice_ms: float = 25.0, clock: Callable[[], float] = time.perf_counter):
        self.slice_ms = float(slice_ms)
        self._clock = clock
        self._cond = threading.Condition()
        self._busy = False
        self._queries_waiting = 0
        self._waiting: list[tuple[int, str]] = []  # (arrival order, tenant) of waiting slices
        self._order = itertools.count()
        # Model seconds each tenant has used (start-time fair queueing): the waiting slice of
        # the tenant with the least goes next. A tenant's slices waiting or running: _active.
        self._used: dict[str, float] = {}
        self._active: dict[str, int] = {}
        self._vclock = 0.0  # the used time of the tenant whose slice was granted last
        self._paused = 0  # document passes paused between layers for queries (resumed first)
        self._local = threading.local()  # .paused_s: set while this thread runs a document slice
        self._chars_per_s = 0.0  # of document passes, a moving average (0 until measured)

    # ------------------------------------------------------------------ queries
    @contextmanager
    def query(self) -> Iterator[None]:
        """Hold the model for one query pass; it goes before every waiting document slice."""
        with self._cond:
            self._queries_waiting += 1
            try:
                while self._busy:
                    self._cond.wait()
            finally:
                self._queries_waiting -= 1
            self._busy = True
        try:
            yield
        finally:
            self._release()

    # ------------------------------------------------------------------ documents
    @contextmanager
    def documents(self, tenant: str, chars: int = 0) -> Iterator[None]:
        """Hold the model for one slice of ``tenant``'s documents (``chars`` characters, for
        the speed estimate): after every waiting query and in fair order among tenants."""
        with self._cond:
            if not self._active.get(tenant):
                # A tenant that was idle starts at the clock, not with credit for its idle time.
                self._used[tenant] = max(self._used.get(tenant, 0.0), self._vclock)
            self._active[tenant] = self._active.get(tenant, 0) + 1
            me = (next(self._order), tenant)
            self._waiting.append(me)
            try:
                while self._busy or self._paused or self._queries_waiting or self._next() is not me:
                    self._cond.wait()
            except BaseException:  # interrupted while waiting: the next slice may now be another's
                self._active[tenant] -= 1
                self._cond.notify_all()
                raise
            finally:
                self._waiting.remove(me)
            self._busy = True
            self._vclock = self._used[tenant]
        began = self._clock()
        self._local.paused_s = 0.0
        try:
            yield
        finally:
            # Time paused for queries is not this tenant's use of the model.
            spent = self._clock() - began - self._local.paused_s
            del self._local.paused_s
            with self._cond:
                self._used[tenant] += spent
                self._active[tenant] -= 1
                if chars > 0 and spent > 0:
                    rate = chars / spent
                    self._chars_per_s = rate if self._chars_per_s == 0 else 0.8 * self._chars_per_s + 0.2 * rate
                if len(self._used) > 4096:  # forget idle tenants: they restart at the clock anyway
                    self._used = {t: v for t, v in self._used.items() if self._active.get(t)}
                    self._active = {t: n for t, n in self._active.items() if n}
            self._release()

    def yield_to_queries(self) -> None:
        """A preemption point: called between the layers of a forward pass. In a document slice
        with queries waiting, hand the model to them and resume once they are done; anywhere
        else (a query pass, no query waiting) return at once."""
        if not self._queries_waiting or getattr(self._local, "paused_s", None) is None:
            return
        began = self._clock()
        with self._cond:
            self._busy = False
            self._paused += 1
            self._cond.notify_all()
            while self._busy or self._queries_waiting:
                self._cond.wait()
            self._paused -= 1
            self._busy = True
        self._local.paused_s += self._clock() - began

    def _next(self) -> tuple[int, str]:
        """The waiting slice to run next: its tenant has used the model least (then: first come)."""
        return min(self._waiting, key=lambda w: (self._used[w[1]], w[0]))

    def slice_chars(self) -> int:
        """Characters of documents that take about ``slice_ms`` on this model."""
        if self._chars_per_s <= 0:
            return FIRST_SLICE_CHARS
        return max(1, int(self._chars_per_s * self.slice_ms / 1000.0))

    def slices(self, texts: Sequence[str]) -> Iterator[tuple[int, int]]:
        """(start, end) of consecutive slices of ``texts``, each of about ``slice_chars``
        characters and at least one text (sized as they are taken: the speed estimate moves)."""
        start = 0
        while start < len(texts):
            if self.slice_ms <= 0:  # slicing off: one pass for the batch, as a plain lock
                yield start, len(texts)
                return
            budget, end = self.slice_chars(), start + 1
            size = len(texts[start])
            while end < len(texts) and size + len(texts[end]) <= budget:
                size += len(texts[end])
                end += 1
            yield start, end
            start = end

    def encode_documents(
        self,
        tenant: str,
        texts: Sequence[str],
        encode: Callable[[Sequence[str]], T],
        cancelled: threading.Event | None = None,
    ) -> list[T]:
        """``encode`` over ``texts`` slice by slice, each slice holding the model on its own;
        EncodeCancelled before the next slice once ``cancelled`` is set. One result per slice."""
        out = []
        for start, end in self.slices(texts):
            if cancelled is not None and cancelled.is_set():
                raise EncodeCancelled(f"the call ended after {start} of {len(texts)} documents were encoded")
            part = texts[start:end]
            with self.documents(tenant, sum(len(t) for t in part)):
                out.append(encode(part))
        return out

    # ------------------------------------------------------------------ common
    def _release(self) -> None:
        with self._cond:
            self._busy = False
            self._cond.notify_all()

    def snapshot(self) -> dict[str, float]:
        """For tests and /metrics: queries and slices waiting, and the speed estimate."""
        with self._cond:
            return {
                "queries_waiting": self._queries_waiting,
                "slices_waiting": len(self._waiting),
                "chars_per_s": self._chars_per_s,
            }


def hook_layers(module, callback: Callable[[], None]) -> int:
    """Call ``callback`` before every transformer layer of a torch ``module`` (BERT/XLM-R
    ``encoder.layer``, or any ModuleList named ``layers``); how many layers were hooked."""
    import torch

    hooked = 0
    for name, child in module.named_modules():
        if isinstance(child, torch.nn.ModuleList) and name.rsplit(".", 1)[-1] in ("layer", "layers"):
            for layer in child:
                layer.register_forward_pre_hook(lambda *_: callback())
                hooked += 1
    return hooked
