"""Every backend scores like FlagReranker.compute_score; tokens and truncation are counted once."""

from __future__ import annotations

import numpy as np
import pytest

from hybridsearch.rerank.backends import BACKENDS, load_backend
from tests.rerank.conftest import MAX_LENGTH

QUERY = "protein expression in cancer cells"
DOCS = [
    "protein expression in cancer cells",
    "gene regulation of stem cells during development",
    "the of and",
    "immune response to viral infection in mice and humans",
    " ".join(["cell protein gene study effect patients treatment analysis"] * 20),  # far over MAX_LENGTH tokens
    "brain",
    "cancer risk and diet in a large cohort study of women",
]
LONG = 4
# The cross-encoder backends, which all load the tiny XLM-R reranker and score it alike. The
# layerwise backend runs a decoder with its own prompt format: tests/rerank/test_layerwise.py.
ENCODER_KINDS = sorted(k for k in BACKENDS if k != "layerwise")


@pytest.fixture(scope="module")
def backends(flag_backend, tiny_reranker_dir):
    out = {"flag": flag_backend}
    for kind in ("cross-encoder", "onnx", "early-exit"):
        out[kind] = load_backend(
            kind, f"tiny-{kind}", str(tiny_reranker_dir), max_length=MAX_LENGTH, batch_size=4, threads=1
        )
    yield out
    for kind in ("cross-encoder", "onnx", "early-exit"):
        out[kind].close()


@pytest.fixture(scope="module")
def reference(flag_backend):
    return flag_backend.compute_score_plain(QUERY, DOCS)


def test_unknown_backend_kind_is_refused_naming_the_choices(tiny_reranker_dir):
    with pytest.raises(ValueError, match="unknown rerank backend 'nope'.*flag"):
        load_backend("nope", "x", str(tiny_reranker_dir))


@pytest.mark.parametrize("kind", ENCODER_KINDS)
def test_backend_raw_scores_match_flag_reranker_compute_score(backends, reference, kind):
    scores = backends[kind].score(QUERY, DOCS)
    assert scores.raw.shape == (len(DOCS),)
    np.testing.assert_allclose(scores.raw, reference, atol=1e-4, rtol=0)


@pytest.mark.parametrize("kind", ENCODER_KINDS)
def test_backend_counts_tokens_per_pair_and_flags_truncated_documents(backends, kind):
    backend = backends[kind]
    pairs = backend.encode(QUERY, DOCS)
    assert pairs.truncated.tolist() == [i == LONG for i in range(len(DOCS))]
    tokens = pairs.tokens
    assert tokens[LONG] == MAX_LENGTH
    for i, doc in enumerate(DOCS):
        if i != LONG:
            # query + document + the pair's special tokens (<s> q </s></s> d </s>)
            full = backend.tokenizer(QUERY, doc, add_special_tokens=True)["input_ids"]
            assert tokens[i] == len(full) < MAX_LENGTH
    assert backend.score_encoded(pairs).tokens.tolist() == tokens.tolist()


@pytest.mark.parametrize("kind", ENCODER_KINDS)
def test_one_pass_encoding_gives_the_ids_transformers_gives(backends, kind):
    """encode() truncates in one pass of the Rust tokenizer; the pairs are exactly those of
    the tokenizer's own truncating call, and the next plain call is not truncated."""
    backend = backends[kind]
    assert backend.tokenizer.is_fast  # else encode() takes the two-pass path, tested above too
    pairs = backend.encode(QUERY, DOCS)
    expected = backend.tokenizer([QUERY] * len(DOCS), DOCS, truncation="longest_first", max_length=MAX_LENGTH)[
        "input_ids"
    ]
    assert pairs.input_ids == expected
    whole = backend.tokenizer(QUERY, DOCS[LONG], add_special_tokens=True)["input_ids"]
    assert len(whole) > MAX_LENGTH


def test_encoded_pairs_concatenate_in_order(flag_backend):
    first, second = flag_backend.encode(QUERY, DOCS[:3]), flag_backend.encode(QUERY, DOCS[3:])
    joined = first + second
    whole = flag_backend.encode(QUERY, DOCS)
    assert joined.input_ids == whole.input_ids and joined.truncated.tolist() == whole.truncated.tolist()


@pytest.mark.parametrize("kind", ENCODER_KINDS)
def test_normalized_score_is_the_sigmoid_of_the_raw_score_in_unit_range(backends, kind):
    scores = backends[kind].score(QUERY, DOCS)
    normalized = scores.normalized
    np.testing.assert_allclose(normalized, 1.0 / (1.0 + np.exp(-scores.raw)), rtol=0, atol=1e-12)
    assert np.all((normalized >= 0.0) & (normalized <= 1.0))
    # a monotone map: the order of documents is the same either way
    assert np.argsort(-normalized, kind="stable").tolist() == np.argsort(-scores.raw, kind="stable").tolist()


def test_batching_and_length_sorting_do_not_change_scores(flag_backend, reference):
    one_by_one = np.array([flag_backend.score(QUERY, [d]).raw[0] for d in DOCS])
    np.testing.assert_allclose(one_by_one, reference, atol=1e-4, rtol=0)


def test_no_documents_score_to_empty_arrays(flag_backend):
    scores = flag_backend.score(QUERY, [])
    assert scores.raw.shape == (0,) and scores.tokens.shape == (0,)


@pytest.mark.parametrize("kind", ENCODER_KINDS)
def test_concurrent_encodes_never_return_pairs_over_max_length(backends, kind):
    # Concurrent searches share one tokenizer whose truncation setting transformers changes
    # per call; untruncated calls racing truncated ones used to leak over-long pairs.
    import threading

    backend = backends[kind]
    errors: list[BaseException] = []
    longest: list[int] = []
    start = threading.Barrier(6)

    def work(seed: int) -> None:
        try:
            start.wait()
            for round_ in range(40):
                docs = DOCS if (seed + round_) % 2 else [DOCS[LONG]] * 3
                pairs = backend.encode(QUERY, docs)
                longest.append(int(pairs.tokens.max()))
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(longest) == 6 * 40
    assert max(longest) == MAX_LENGTH


@pytest.mark.parametrize("kind", ENCODER_KINDS)
def test_scoring_in_arrival_order_gives_the_same_scores(backends, reference, kind):
    """score_encoded(sort_by_length=False) batches the pairs as they come (what the length
    sort saves is measured by benchmarks/bench_rerank.py): same scores, same order."""
    backend = backends[kind]
    pairs = backend.encode(QUERY, DOCS)
    unsorted = backend.score_encoded(pairs, sort_by_length=False)
    np.testing.assert_allclose(unsorted.raw, backend.score_encoded(pairs).raw, atol=1e-5, rtol=0)
    np.testing.assert_allclose(unsorted.raw, reference, atol=1e-4, rtol=0)
    assert unsorted.tokens.tolist() == pairs.tokens.tolist()
