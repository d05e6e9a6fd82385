"""The model gate: queries before document slices, tenants' slices in turn, cancel between slices."""

from __future__ import annotations

import threading
import time

import pytest

from hybridsearch.engine.encoders.model_gate import FIRST_SLICE_CHARS, ModelGate
from hybridsearch.engine.encoders.query_batcher import EncodeCancelled


def _wait_for(predicate, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.002)


def _waiter(gate: ModelGate, order: list, label: str, tenant: str | None = None) -> threading.Thread:
    def run() -> None:
        with gate.query() if tenant is None else gate.documents(tenant, 100):
            order.append(label)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_waiting_query_runs_before_document_slices_that_waited_longer():
    gate, order = ModelGate(), []
    with gate.documents("bulk"):
        first = _waiter(gate, order, "slice", "bulk")
        _wait_for(lambda: gate.snapshot()["slices_waiting"] == 1)
        query = _waiter(gate, order, "query")
        _wait_for(lambda: gate.snapshot()["queries_waiting"] == 1)
    for t in (first, query):
        t.join(10)
    assert order == ["query", "slice"]


def test_tenants_take_turns_by_model_time_used():
    """A has used the model for 10 s; B, arriving later, goes before A's next slice, and
    a tenant's idle time is not credit (C starts at the clock, not at 0)."""
    now = [0.0]
    gate = ModelGate(clock=lambda: now[0])
    with gate.documents("A"):
        now[0] += 10.0  # A's slice took 10 s
    order: list[str] = []
    with gate.documents("A"):
        now[0] += 1.0
        a_next = _waiter(gate, order, "A", "A")
        _wait_for(lambda: gate.snapshot()["slices_waiting"] == 1)
        b = _waiter(gate, order, "B", "B")
        _wait_for(lambda: gate.snapshot()["slices_waiting"] == 2)
    for t in (a_next, b):
        t.join(10)
    assert order == ["B", "A"]
    # C, new, starts at the clock (A's 11 s), not at 0: its idle past is no credit that would
    # give it the model alone for 11 s.
    with gate.documents("C"):
        pass
    assert gate._used["C"] == gate._used["A"] == 11.0


def test_slices_are_sized_by_the_measured_speed_and_never_empty():
    now = [0.0]
    gate = ModelGate(slice_ms=25, clock=lambda: now[0])
    texts = ["x" * 100] * 40
    assert next(gate.slices(texts)) == (0, FIRST_SLICE_CHARS // 100)  # unmeasured: a small first slice
    with gate.documents("t", chars=10_000):
        now[0] += 1.0  # 10,000 characters per second: 25 ms is 250 characters
    assert gate.slice_chars() == 250
    spans = list(gate.slices(texts))
    assert spans[0] == (0, 2) and spans[-1][1] == 40
    assert all(b > a for a, b in spans)
    assert list(gate.slices(["y" * 5000, "z"])) == [(0, 1), (1, 2)]  # a long text is a slice of its own
    assert list(ModelGate(slice_ms=0).slices(texts)) == [(0, 40)]  # slicing off: one pass


def test_encode_documents_stops_at_the_next_slice_once_cancelled():
    gate = ModelGate(slice_ms=25)
    cancelled = threading.Event()
    seen: list[int] = []

    def encode(part):
        seen.append(len(part))
        cancelled.set()  # the caller goes away during the first slice
        return list(part)

    with pytest.raises(EncodeCancelled, match=r"after \d+ of 40 documents"):
        gate.encode_documents("t", ["x" * 600] * 40, encode, cancelled)
    assert len(seen) == 1
    assert gate.snapshot() == {"queries_waiting": 0, "slices_waiting": 0, "chars_per_s": gate._chars_per_s}
    # The gate is free again for others.
    assert gate.encode_documents("t", ["a", "b"], lambda part: len(part)) == [2]


def test_an_exception_in_a_pass_frees_the_gate():
    gate = ModelGate()
    with pytest.raises(ValueError), gate.query():
        raise ValueError("model failed")
    with pytest.raises(RuntimeError), gate.documents("t"):
        raise RuntimeError("model failed")
    done = threading.Event()
    threading.Thread(target=lambda: (gate.query().__enter__(), done.set()), daemon=True).start()
    assert done.wait(5)


def test_a_document_pass_pauses_between_layers_for_a_waiting_query():
    """Inside one slice: a query that arrives during layer 1 of 6 runs before layer 2."""
    gate, order = ModelGate(), []
    in_pass = threading.Event()

    def document_pass() -> None:
        with gate.documents("bulk"):
            for layer in range(6):
                gate.yield_to_queries()  # what hook_layers installs before each layer
                order.append(f"layer {layer}")
                in_pass.set()
                time.sleep(0.02)

    doc = threading.Thread(target=document_pass, daemon=True)
    doc.start()
    in_pass.wait(5)
    query = _waiter(gate, order, "query")
    for t in (doc, query):
        t.join(10)
    assert order.index("query") <= 2 and order[-1] == "layer 5", order
    # Outside a document slice the hook does nothing, even with queries waiting.
    with gate.query():
        gate.yield_to_queries()


def test_hook_layers_reaches_every_transformer_layer_of_a_real_model(tiny_m3_dir):
    from transformers import AutoModel

    from hybridsearch.engine.encoders.model_gate import hook_layers

    model = AutoModel.from_pretrained(str(tiny_m3_dir))
    calls = []
    assert hook_layers(model, lambda: calls.append(1)) == model.config.num_hidden_layers
    import torch

    with torch.inference_mode():
        model(input_ids=torch.tensor([[0, 5, 6, 2]]))
    assert len(calls) == model.config.num_hidden_layers
