"""FlagEmbedding's layerwise reranker behind the layered interface.

A tiny ``LayerWiseMiniCPMForCausalLM`` (4 layers, heads from layer 2) built at test time in
the layout of ``BAAI/bge-reranker-v2-minicpm-layerwise`` loads through the library's own
``LayerWiseFlagLLMReranker`` (with the transformers 5 adaptations of
rerank/backends/layerwise.py); its ``compute_score(cutoff_layers=[L])`` is the reference.
"""

from __future__ import annotations

import numpy as np
import pytest

from hybridsearch.rerank.backends import load_backend
from tests.rerank.tiny_layered import LAYERWISE_LAYERS, LAYERWISE_START, build_tiny_layerwise

QUERY = "protein expression in cancer cells"
DOCS = [
    "protein expression cancer cells tumor",
    "water carbon oxygen pressure",
    " ".join(["cells of the immune system"] * 12),  # over max_length
    "蛋白质 表达 in 癌症 cells",  # Chinese and mixed (the tiny XLM-R vocabulary has no CJK: <unk>s)
    "brain",
    "gene regulation of stem cells during development",
]
MAX_LENGTH = 32
LAYERS = list(range(LAYERWISE_START, LAYERWISE_LAYERS + 1))


@pytest.fixture(scope="module")
def layerwise(tmp_path_factory):
    model_dir = build_tiny_layerwise(tmp_path_factory.getbasetemp() / "tiny-layerwise")
    backend = load_backend("layerwise", "tiny-layerwise", str(model_dir), max_length=MAX_LENGTH, batch_size=2)
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def library_scores(layerwise):
    """compute_score of LayerWiseFlagLLMReranker per cutoff layer (raw logits)."""
    return {layer: layerwise.compute_score_plain(QUERY, DOCS, layer) for layer in LAYERS}


def test_cutoff_layers_are_the_exit_layers(layerwise):
    assert layerwise.exit_layers == LAYERS and layerwise.max_layer == LAYERWISE_LAYERS


@pytest.mark.parametrize("layer", LAYERS)
def test_score_to_a_cutoff_layer_equals_the_librarys_compute_score(layerwise, library_scores, layer):
    pairs = layerwise.encode(QUERY, DOCS)
    handle = layerwise.score_to(pairs, layer)
    assert np.isfinite(handle.raw).all()
    np.testing.assert_allclose(handle.raw, library_scores[layer], atol=1e-4, rtol=0)


def test_full_depth_path_is_the_last_cutoff(layerwise, library_scores):
    np.testing.assert_allclose(layerwise.score(QUERY, DOCS).raw, library_scores[LAYERWISE_LAYERS], atol=1e-4, rtol=0)


def test_cutoff_layers_give_different_scores(library_scores):
    assert not np.allclose(library_scores[2], library_scores[3], atol=1e-3)
    assert not np.allclose(library_scores[3], library_scores[4], atol=1e-3)


def test_continuing_survivors_equals_scoring_them_from_scratch(layerwise, library_scores):
    pairs = layerwise.encode(QUERY, DOCS)
    first = layerwise.score_to(pairs, 2)
    survivors = [5, 0, 3, 2]  # from different batches (batch_size 2, length-sorted)
    middle = layerwise.continue_to(first, survivors, 3)
    np.testing.assert_allclose(middle.raw, library_scores[3][survivors], atol=1e-4, rtol=0)
    last = layerwise.continue_to(middle, [2, 1], 4)
    assert last.source.tolist() == [3, 0]
    np.testing.assert_allclose(last.raw, library_scores[4][[3, 0]], atol=1e-4, rtol=0)
    assert [(t.start_layer, t.end_layer) for t in last.history] == [(0, 2)] * 3 + [(2, 3)] * 2 + [(3, 4)]


def test_continuing_runs_only_the_layers_above(layerwise):
    layers = layerwise.model.model.layers
    calls = [0] * len(layers)
    hooks = [
        layer.register_forward_hook(lambda *_a, i=i: calls.__setitem__(i, calls[i] + 1))
        for i, layer in enumerate(layers)
    ]
    try:
        handle = layerwise.score_to(layerwise.encode(QUERY, DOCS[:2]), 2)
        assert calls == [1, 1, 0, 0]
        layerwise.continue_to(handle, [0, 1], 4)
        assert calls == [1, 1, 1, 1]
    finally:
        for hook in hooks:
            hook.remove()


def test_tokens_are_counted_in_the_librarys_input_format(layerwise):
    pairs = layerwise.encode(QUERY, DOCS)
    assert pairs.truncated.tolist() == [i == 2 for i in range(len(DOCS))]
    bos = layerwise.tokenizer.bos_token_id
    assert all(ids[0] == bos for ids in pairs.input_ids)
    # Passage at most max_length tokens: the pair at most that plus bos, query, separators, prompt.
    query = layerwise.tokenizer("A: " + QUERY, add_special_tokens=False)["input_ids"]
    tail = len(layerwise._sep_ids) * 2 + len(layerwise._prompt_ids)
    assert max(pairs.tokens) <= 1 + len(query) + MAX_LENGTH + tail
    assert pairs.tokens[2] == 1 + len(query) + MAX_LENGTH + tail


def test_a_cutoff_layer_the_model_does_not_have_is_refused(layerwise):
    pairs = layerwise.encode(QUERY, DOCS[:2])
    for bad in (1, 5, 0):
        with pytest.raises(ValueError, match=rf"no cutoff layer {bad}; its cutoff layers are 2\.\.4"):
            layerwise.score_to(pairs, bad)
    with pytest.raises(ValueError, match="no cutoff layer 7"):
        layerwise.compute_score_plain(QUERY, DOCS[:1], 7)


def test_chunks_mode_is_refused_with_a_reason(tmp_path_factory):
    model_dir = build_tiny_layerwise(tmp_path_factory.getbasetemp() / "tiny-layerwise")
    try:
        backend = load_backend("layerwise", "x", str(model_dir), max_length=MAX_LENGTH, long_documents="chunks")
    except ValueError as exc:
        assert "truncates long documents" in str(exc)
    else:  # a rerank.base without chunks mode ignores the option
        assert getattr(backend, "long_documents", "truncate") == "truncate"
