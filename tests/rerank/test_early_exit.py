"""The early-exit cross-encoder and its backend: scores at a chosen layer, survivors continued.

A tiny 6-layer BERT (the layout of the project's MiniLM-L6 reranker, with a tokenizer that
splits Chinese into characters) gets exits at 2, 4 and 6; the tiny 2-layer XLM-R reranker
(RoBERTa's head) gets an exit at 1. Heads are untrained copies of the model's own head:
what is tested is arithmetic, not quality.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from hybridsearch.rerank.backends import load_backend
from tests.rerank.tiny_layered import build_tiny_bert_reranker, tiny_bert_with_exits

QUERY = "protein expression in cancer cells"
DOCS = [
    "protein expression in cancer cells",
    "gene regulation of stem cells during development",
    "the of and",
    "immune response to viral infection in mice and humans",
    " ".join(["cell protein gene study effect patients treatment analysis"] * 20),  # over max_length
    "brain",
    "cancer risk and diet in a large cohort study of women",
    "water carbon oxygen",
]
ZH_QUERY = "蛋白质在癌细胞中的表达"
ZH_DOCS = [
    "癌细胞中蛋白质表达的研究",
    "疫苗对病毒感染的免疫反应",
    "protein 表达 in 癌症 cells",  # mixed Chinese and English
    "蛋白质 expression 与 tumor growth 有关",
    "天气很好，我们去公园",
]
MAX_LENGTH = 48
EXITS = [2, 4, 6]


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    """The tiny BERT with untrained exits at 2, 4 and 6."""
    return tiny_bert_with_exits(tmp_path_factory.getbasetemp(), tmp_path_factory.mktemp("bert-exits") / "model", EXITS)


@pytest.fixture(scope="module")
def plain_bert_dir(tmp_path_factory):
    return build_tiny_bert_reranker(tmp_path_factory.getbasetemp() / "tiny-bert-reranker")


@pytest.fixture(scope="module")
def exit_backend(bert_dir):
    backend = load_backend("early-exit", "tiny-exit", str(bert_dir), max_length=MAX_LENGTH, batch_size=3)
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def ce_backend(bert_dir):
    backend = load_backend("cross-encoder", "tiny-ce", str(bert_dir), max_length=MAX_LENGTH, batch_size=3)
    yield backend
    backend.close()


def test_the_directory_keeps_loading_as_a_plain_cross_encoder_and_names_its_exits(bert_dir, exit_backend):
    import json

    spec = json.loads((bert_dir / "early_exit.json").read_text())
    assert spec["exit_layers"] == EXITS and spec["num_hidden_layers"] == 6 and spec["trained"] is False
    assert (bert_dir / "exit_heads.safetensors").is_file()
    assert exit_backend.exit_layers == EXITS and exit_backend.max_layer == 6
    flag = load_backend("flag", "tiny-flag", str(bert_dir), max_length=MAX_LENGTH, batch_size=3)
    try:
        np.testing.assert_allclose(flag.score(QUERY, DOCS).raw, exit_backend.score(QUERY, DOCS).raw, atol=1e-5, rtol=0)
    finally:
        flag.close()


@pytest.mark.parametrize("texts", [(QUERY, DOCS), (ZH_QUERY, ZH_DOCS)], ids=["english", "chinese-and-mixed"])
def test_last_exit_equals_a_full_forward_pass(exit_backend, ce_backend, texts):
    query, docs = texts
    pairs = exit_backend.encode(query, docs)
    handle = exit_backend.score_to(pairs, 6)
    full = ce_backend.score(query, docs).raw  # sentence-transformers' CrossEncoder model, full depth
    np.testing.assert_allclose(handle.raw, full, atol=1e-4, rtol=0)
    np.testing.assert_allclose(exit_backend.score_encoded(pairs).raw, full, atol=1e-4, rtol=0)
    assert handle.tokens.tolist() == pairs.tokens.tolist() and handle.layer == 6 and not handle.resumable


def test_chinese_text_is_scored_from_real_tokens_not_unknowns(exit_backend):
    pairs = exit_backend.encode(ZH_QUERY, ZH_DOCS)
    unk = exit_backend.tokenizer.unk_token_id
    assert all(unk not in ids for ids in pairs.input_ids)
    # BERT splits Chinese into characters: the query's 11 characters are 11 tokens of every pair.
    assert all(len(ids) > len(ZH_QUERY) for ids in pairs.input_ids)


@pytest.mark.parametrize("texts", [(QUERY, DOCS), (ZH_QUERY, ZH_DOCS)], ids=["english", "chinese-and-mixed"])
def test_intermediate_exits_give_finite_scores_that_differ_by_layer(exit_backend, texts):
    query, docs = texts
    pairs = exit_backend.encode(query, docs)
    by_layer = {layer: exit_backend.score_to(pairs, layer).raw for layer in EXITS}
    for layer, raw in by_layer.items():
        assert raw.shape == (len(docs),) and np.isfinite(raw).all(), layer
        assert np.ptp(raw) > 0, layer  # the documents get different scores
    assert not np.allclose(by_layer[2], by_layer[4], atol=1e-3)
    assert not np.allclose(by_layer[4], by_layer[6], atol=1e-3)


@pytest.mark.parametrize("texts", [(QUERY, DOCS), (ZH_QUERY, ZH_DOCS)], ids=["english", "chinese-and-mixed"])
def test_continuing_survivors_equals_scoring_them_from_scratch(exit_backend, texts):
    query, docs = texts
    pairs = exit_backend.encode(query, docs)
    first = exit_backend.score_to(pairs, 2)
    # Survivors from different batches (batch_size 3, length-sorted), asked for in any order.
    survivors = [int(i) for i in np.argsort(-first.raw)[: max(2, len(docs) // 2 + 1)]][::-1]
    middle = exit_backend.continue_to(first, survivors, 4)
    assert middle.source.tolist() == survivors and middle.layer == 4
    fresh = exit_backend.score_to(pairs.subset(survivors), 4)
    np.testing.assert_allclose(middle.raw, fresh.raw, atol=1e-4, rtol=0)
    # ... and on to the last layer, two of them, from the continued handle.
    last = exit_backend.continue_to(middle, [1, 0], 6)
    assert last.source.tolist() == [survivors[1], survivors[0]]
    full = exit_backend.score_encoded(pairs.subset(last.source.tolist())).raw
    np.testing.assert_allclose(last.raw, full, atol=1e-4, rtol=0)
    assert last.tokens.tolist() == pairs.tokens[last.source].tolist()
    # Straight from layer 2 to 6 too.
    np.testing.assert_allclose(
        exit_backend.continue_to(first, survivors, 6).raw,
        exit_backend.score_encoded(pairs.subset(survivors)).raw,
        atol=1e-4,
        rtol=0,
    )


def test_continuing_does_not_run_the_lower_layers_again(exit_backend):
    layers = exit_backend.model.model.base_model.encoder.layer
    calls = [0] * len(layers)
    hooks = [
        layer.register_forward_hook(lambda *_a, i=i: calls.__setitem__(i, calls[i] + 1))
        for i, layer in enumerate(layers)
    ]
    try:
        pairs = exit_backend.encode(QUERY, DOCS)
        handle = exit_backend.score_to(pairs, 2)
        batches = len(handle.timings)
        assert calls == [batches, batches, 0, 0, 0, 0]
        calls[:] = [0] * len(layers)
        survivors = exit_backend.continue_to(handle, [0, 3, 6], 4)
        assert calls == [0, 0, 1, 1, 0, 0]  # three survivors: one batch, layers 3 and 4 only
        calls[:] = [0] * len(layers)
        exit_backend.continue_to(survivors, [0], 6)
        assert calls == [0, 0, 0, 0, 1, 1]
    finally:
        for hook in hooks:
            hook.remove()


def test_every_batch_is_timed_with_its_layers_pairs_and_tokens(exit_backend):
    pairs = exit_backend.encode(QUERY, DOCS)
    handle = exit_backend.score_to(pairs, 2)
    assert [t.pairs for t in handle.timings] == [3, 3, 2]  # batch_size 3
    assert sum(t.tokens for t in handle.timings) == int(pairs.tokens.sum())
    assert all(t.start_layer == 0 and t.end_layer == 2 and t.layers == 2 and t.ms > 0 for t in handle.timings)
    assert all(t.padded_tokens >= t.tokens for t in handle.timings)
    survivors = [0, 4, 7]
    more = exit_backend.continue_to(handle, survivors, 6)
    assert [(t.start_layer, t.end_layer, t.pairs) for t in more.timings] == [(2, 6, 3)]
    assert more.timings[0].tokens == int(pairs.tokens[survivors].sum())
    assert more.history == handle.timings + more.timings and more.ms == pytest.approx(more.timings[0].ms)


def test_a_layer_without_an_exit_is_refused_naming_the_allowed_ones(exit_backend, plain_bert_dir):
    pairs = exit_backend.encode(QUERY, DOCS[:2])
    for bad in (3, 0, 7, -1, "2", 2.0, True):
        with pytest.raises(ValueError, match=r"no exit at layer .*exit layers are \[2, 4, 6\]"):
            exit_backend.score_to(pairs, bad)
    handle = exit_backend.score_to(pairs, 4)
    with pytest.raises(ValueError, match="no exit at layer 5"):
        exit_backend.continue_to(handle, [0], 5)
    with pytest.raises(ValueError, match="cannot continue from layer 4 down to layer 2"):
        exit_backend.continue_to(handle, [0], 2)
    with pytest.raises(IndexError, match="positions in the handle"):
        exit_backend.continue_to(handle, [2], 6)
    with pytest.raises(ValueError, match="must not repeat"):
        exit_backend.continue_to(handle, [0, 0], 6)
    handle.release()
    with pytest.raises(ValueError, match="holds no hidden states"):
        exit_backend.continue_to(handle, [0], 6)
    # A plain cross-encoder directory has one exit, its last layer, and says how to get more.
    plain = load_backend("early-exit", "plain", str(plain_bert_dir), max_length=MAX_LENGTH)
    assert plain.exit_layers == [6]
    with pytest.raises(ValueError, match=r"exit layers are \[6\].*--exits"):
        plain.score_to(plain.encode(QUERY, DOCS[:2]), 2)


def test_same_layer_or_no_survivors_runs_nothing(exit_backend):
    pairs = exit_backend.encode(QUERY, DOCS)
    handle = exit_backend.score_to(pairs, 4)
    same = exit_backend.continue_to(handle, [5, 1], 4)
    assert same.raw.tolist() == handle.raw[[5, 1]].tolist() and same.timings == []
    assert len(exit_backend.continue_to(handle, [], 6)) == 0
    assert len(exit_backend.score_to(exit_backend.encode(QUERY, []), 2)) == 0


def test_roberta_head_models_get_exits_too(tiny_reranker_dir, tmp_path, flag_backend):
    """The tiny XLM-R reranker (RoBERTa's dense + out_proj head), exit at layer 1 of 2."""
    from hybridsearch.rerank.early_exit import add_exit_heads

    model_dir = tmp_path / "xlmr"
    shutil.copytree(tiny_reranker_dir, model_dir)
    add_exit_heads(model_dir, [1])
    backend = load_backend("early-exit", "xlmr-exit", str(model_dir), max_length=64, batch_size=4)
    pairs = backend.encode(QUERY, DOCS)
    np.testing.assert_allclose(
        backend.score_to(pairs, 2).raw, flag_backend.compute_score_plain(QUERY, DOCS), atol=1e-4, rtol=0
    )
    first = backend.score_to(pairs, 1)
    assert np.isfinite(first.raw).all() and not np.allclose(first.raw, backend.score_to(pairs, 2).raw, atol=1e-3)
    np.testing.assert_allclose(
        backend.continue_to(first, [6, 2], 2).raw, backend.score_encoded(pairs.subset([6, 2])).raw, atol=1e-4, rtol=0
    )


def test_model_api_forward_to_and_continue_to(bert_dir):
    """rerank.early_exit directly: forward_to(last) is the model's own forward; continue_to
    resumes chosen rows; forward_all gives every exit at once."""
    from transformers import AutoTokenizer

    from hybridsearch.rerank.early_exit import EarlyExitCrossEncoder

    model = EarlyExitCrossEncoder.from_pretrained(bert_dir)
    tok = AutoTokenizer.from_pretrained(str(bert_dir))
    enc = tok(
        [QUERY] * 4,
        DOCS[:4],
        padding=True,
        truncation=True,
        max_length=MAX_LENGTH,
        return_tensors="pt",
        return_token_type_ids=False,
    )
    with torch.inference_mode():
        own = model.model(**enc).logits[:, 0]
        last, _ = model.forward_to(6, enc["input_ids"], enc["attention_mask"])
        torch.testing.assert_close(last, own, atol=1e-5, rtol=0)
        at2, state = model.forward_to(2, enc["input_ids"], enc["attention_mask"])
        assert state.layer == 2 and state.hidden.shape[:2] == enc["input_ids"].shape
        resumed, state6 = model.continue_to(6, state, [3, 1])
        torch.testing.assert_close(resumed, own[[3, 1]], atol=1e-4, rtol=0)
        assert state6.layer == 6 and state6.hidden.shape[0] == 2
        every = model.forward_all(enc["input_ids"], enc["attention_mask"])
        assert every.shape == (4, 3)
        torch.testing.assert_close(every[:, 0], at2, atol=1e-5, rtol=0)
        torch.testing.assert_close(every[:, 2], own, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match=r"no exit at layer 5: this model's exit layers are \[2, 4, 6\]"):
        model.forward_to(5, enc["input_ids"], enc["attention_mask"])
    with pytest.raises(ValueError, match=r"exit layers must be in 1\.\.6"):
        EarlyExitCrossEncoder.from_model(model.model, [2, 9])


def test_chunked_long_documents_continue_like_they_score(bert_dir):
    """In chunks mode every window of a surviving document continues; the document's score
    at each exit is the aggregate of its windows', as score_encoded gives it at full depth."""
    backend = load_backend(
        "early-exit",
        "tiny-exit-chunks",
        str(bert_dir),
        max_length=24,
        batch_size=4,
        long_documents="chunks",
        max_chunks=4,
    )
    if getattr(backend, "long_documents", "truncate") != "chunks":
        pytest.skip("this checkout's rerank.base has no chunks mode")
    pairs = backend.encode(QUERY, DOCS)
    assert pairs.n_chunks > len(pairs)
    np.testing.assert_allclose(backend.score_to(pairs, 6).raw, backend.score_encoded(pairs).raw, atol=1e-4, rtol=0)
    first = backend.score_to(pairs, 2)
    assert first.chunks.tolist() == pairs.chunks.tolist() and first.tokens.tolist() == pairs.tokens.tolist()
    picked = [4, 0, 3]  # the long document (several windows) among them
    done = backend.continue_to(first, picked, 6)
    np.testing.assert_allclose(done.raw, backend.score_encoded(pairs.subset(picked)).raw, atol=1e-4, rtol=0)
    assert sum(t.pairs for t in done.timings) == int(pairs.chunks[picked].sum())
