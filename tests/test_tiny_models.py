"""The tiny real-format models load and behave through the real library code paths.

Properties only (never golden numbers): weights differ between library versions.
"""

from __future__ import annotations

import math
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import numpy as np
import pytest

from tests.tiny_models import (
    HIDDEN_SIZE,
    WORDS,
    build_tiny_bge_m3,
    build_tiny_reranker,
    build_tokenizer,
    export_reranker_onnx,
)

TEXTS = [
    "protein expression in cancer cells",
    "the immune response to viral infection",
    "deep learning for document retrieval",
    "Insulin resistance and obesity in adults",
    "gene mutations drive tumor growth",
    "water temperature and pressure",
    "cells expression cancer in protein",  # same words, other order
    "zyxw 123 qqq",  # nothing but characters
]
SPECIAL_IDS = {0, 1, 2, 3}  # <s> <pad> </s> <unk>


@pytest.fixture(scope="session")
def tiny_model_root(tmp_path_factory):
    return tmp_path_factory.mktemp("tiny_models")


@pytest.fixture(scope="session")
def tiny_bge_m3_dir(tiny_model_root):
    return build_tiny_bge_m3(tiny_model_root / "bge-m3")


@pytest.fixture(scope="session")
def tiny_reranker_dir(tiny_model_root):
    return build_tiny_reranker(tiny_model_root / "reranker")


@pytest.fixture(scope="session")
def m3(tiny_bge_m3_dir):
    from FlagEmbedding import BGEM3FlagModel

    return BGEM3FlagModel(str(tiny_bge_m3_dir), use_fp16=False, devices="cpu")


@pytest.fixture(scope="session")
def reranker(tiny_reranker_dir):
    from FlagEmbedding import FlagReranker

    return FlagReranker(str(tiny_reranker_dir), use_fp16=False, devices="cpu")


# --------------------------------------------------------------------------- tokenizer


def test_word_list_is_a_few_hundred_words():
    assert 200 <= len(WORDS) <= 2000
    assert len(set(WORDS)) == len(WORDS)
    for w in ("protein", "expression", "cancer", "cells", "gene", "immune"):
        assert w in WORDS


def test_tokenizer_is_xlm_roberta_compatible(tmp_path):
    from transformers import AutoTokenizer

    path = build_tokenizer(tmp_path / "tok")
    tok = AutoTokenizer.from_pretrained(str(path))
    assert "XLMRoberta" in type(tok).__name__
    assert (tok.cls_token_id, tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    assert tok.bos_token_id == 0 and tok.sep_token_id == 2
    assert tok.mask_token_id == len(tok) - 1

    enc = tok("protein expression in cancer cells")
    pieces = tok.convert_ids_to_tokens(enc["input_ids"])
    assert pieces == ["<s>", "\u2581protein", "\u2581expression", "\u2581in", "\u2581cancer", "\u2581cells", "</s>"]
    assert tok.decode(enc["input_ids"], skip_special_tokens=True) == "protein expression in cancer cells"

    # Any ASCII text tokenizes without <unk>; capitalised words stay one piece.
    enc = tok("Protein X-ray #42 at 3.5 GHz; qzv!")
    assert tok.unk_token_id not in enc["input_ids"]
    assert "\u2581Protein" in tok.convert_ids_to_tokens(enc["input_ids"])

    # Pairs use XLM-R's template: <s> A </s></s> B </s>.
    ids = tok("cancer", "cells")["input_ids"]
    assert ids[0] == 0 and ids[-1] == 2 and ids.count(2) == 3

    # Idempotent: a second call leaves the files alone.
    mtime = (path / "tokenizer.json").stat().st_mtime_ns
    assert build_tokenizer(path) == path
    assert (path / "tokenizer.json").stat().st_mtime_ns == mtime


# --------------------------------------------------------------------------- BGE-M3


def test_bge_m3_layout_and_idempotent_build(tiny_bge_m3_dir):
    for name in ("config.json", "model.safetensors", "tokenizer.json", "sparse_linear.pt", "colbert_linear.pt"):
        assert (tiny_bge_m3_dir / name).is_file(), name
    mtimes = {p.name: p.stat().st_mtime_ns for p in tiny_bge_m3_dir.iterdir()}
    t0 = time.perf_counter()
    assert build_tiny_bge_m3(tiny_bge_m3_dir) == tiny_bge_m3_dir
    assert time.perf_counter() - t0 < 0.5
    assert {p.name: p.stat().st_mtime_ns for p in tiny_bge_m3_dir.iterdir()} == mtimes
    # No leftovers from the atomic build.
    assert not [p for p in tiny_bge_m3_dir.parent.iterdir() if p.name.startswith(".")]


def test_bge_m3_dense_vectors(m3):
    out = m3.encode(TEXTS, return_dense=True, return_sparse=False)
    dense = out["dense_vecs"]
    assert isinstance(dense, np.ndarray)
    assert dense.shape == (len(TEXTS), HIDDEN_SIZE)
    assert np.all(np.isfinite(dense))
    np.testing.assert_allclose(np.linalg.norm(dense, axis=1), 1.0, atol=1e-5)
    # Different texts, different vectors (also for the same words in another order).
    sims = dense @ dense.T
    off_diagonal = sims[~np.eye(len(TEXTS), dtype=bool)]
    assert off_diagonal.max() < 0.999
    # Deterministic, and independent of the batch a text is encoded in.
    again = m3.encode(TEXTS[::-1], return_dense=True)["dense_vecs"][::-1]
    np.testing.assert_allclose(again, dense, atol=1e-5)
    single = m3.encode(TEXTS[0], return_dense=True)["dense_vecs"]
    assert single.shape == (HIDDEN_SIZE,)
    np.testing.assert_allclose(single, dense[0], atol=1e-5)


def test_bge_m3_lexical_weights(m3):
    out = m3.encode(TEXTS, return_dense=True, return_sparse=True)
    weights = out["lexical_weights"]
    assert len(weights) == len(TEXTS)
    for text, lw in zip(TEXTS, weights, strict=True):
        assert lw, f"empty lexical weights for {text!r}"
        token_ids = set(m3.tokenizer(text)["input_ids"]) - SPECIAL_IDS
        assert all(isinstance(k, str) for k in lw)
        assert {int(k) for k in lw} <= token_ids
        assert all(float(v) > 0 and math.isfinite(float(v)) for v in lw.values())
    # Whole-word pieces show up for normal text.
    as_tokens = m3.convert_id_to_token(weights[0])
    assert {"protein", "cancer", "cells"} <= {t.strip() for t in as_tokens}
    # Shared words give a positive lexical match, disjoint texts none.
    assert m3.compute_lexical_matching_score(weights[0], weights[6]) > 0
    assert m3.compute_lexical_matching_score(weights[0], weights[5]) == 0


def test_bge_m3_colbert_vectors(m3):
    out = m3.encode(TEXTS[:2], return_dense=False, return_colbert_vecs=True)
    for text, vecs in zip(TEXTS[:2], out["colbert_vecs"], strict=True):
        n_tokens = len(m3.tokenizer(text)["input_ids"])
        assert vecs.shape == (n_tokens - 1, HIDDEN_SIZE)


# --------------------------------------------------------------------------- reranker


def _pairs():
    return [[q, d] for q in TEXTS[:3] for d in TEXTS[:4]]


def test_flag_reranker_scores(reranker):
    pairs = _pairs()
    raw = reranker.compute_score(pairs)
    assert len(raw) == len(pairs)
    assert all(isinstance(s, float) and math.isfinite(s) for s in raw)
    assert len({round(s, 6) for s in raw}) == len(pairs)  # non-constant, no ties
    norm = reranker.compute_score(pairs, normalize=True)
    assert all(0.0 < s < 1.0 for s in norm)
    np.testing.assert_allclose(norm, 1 / (1 + np.exp(-np.asarray(raw))), rtol=1e-6)
    # Deterministic and independent of batch composition.
    np.testing.assert_allclose(reranker.compute_score(pairs[::-1])[::-1], raw, atol=1e-5)


def test_cross_encoder_loads_same_directory(tiny_reranker_dir, reranker):
    from sentence_transformers import CrossEncoder

    pairs = _pairs()
    ce = CrossEncoder(str(tiny_reranker_dir), device="cpu")
    probs = np.asarray(ce.predict(pairs))
    assert probs.shape == (len(pairs),)
    # CrossEncoder applies a sigmoid for one label: same numbers as normalize=True.
    np.testing.assert_allclose(probs, reranker.compute_score(pairs, normalize=True), atol=1e-5)


def test_reranker_exports_to_onnx(tiny_reranker_dir, reranker, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from transformers import AutoTokenizer

    path = export_reranker_onnx(tiny_reranker_dir, tmp_path / "model.onnx")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    tok = AutoTokenizer.from_pretrained(str(tiny_reranker_dir))
    pairs = _pairs()
    # Another batch size and sequence length than the export used, with padding.
    enc = tok([q for q, _ in pairs], [d for _, d in pairs], padding=True, return_tensors="np")
    (logits,) = sess.run(
        ["logits"],
        {"input_ids": enc["input_ids"].astype(np.int64), "attention_mask": enc["attention_mask"].astype(np.int64)},
    )
    assert logits.shape == (len(pairs), 1)
    np.testing.assert_allclose(logits[:, 0], reranker.compute_score(pairs), atol=1e-4)
