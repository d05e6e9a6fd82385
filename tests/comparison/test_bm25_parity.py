"""The service's BM25 (engine.bm25) against reference libraries, on the same tokens.

For every analyzer type, a small Chinese / mixed / English corpus is analysed once; the
*same* token lists go to the service's encoder (hashed terms, statistics in SQLite, scores
= sparse dot product of ``query_vector`` and ``document_vectors``, exactly as Milvus
computes them with metric IP) and to the reference libraries. Every (query, document)
score must agree to 1e-5 relative, for Lucene's default k1/b and for others.

Reference-library facts this relies on (read in their sources):

* bm25s 0.3.x, ``method="lucene"``: idf ``ln(1 + (N - df + 0.5) / (df + 0.5))`` (ours) and
  term part ``tf / (tf + k1 * (1 - b + b * |d| / avgdl))``, i.e. *without* the ``(k1 + 1)``
  factor (as Lucene >= 8 dropped it): a constant factor per k1 that never changes a
  ranking, so ours == ``(k1 + 1) * bm25s``. A query token given twice is scored twice
  (``qtf * idf``, as ours). Its own tokenizer is bypassed: ``index`` gets lists of token
  strings and ``get_scores`` a list of token strings, looked up in its ``vocab_dict``.
  Documents with no tokens count in N and in avgdl (length 0), as ours.
* rank_bm25 0.2.2 ``BM25Okapi``: the term part is ours, ``(k1 + 1)`` included, but its idf
  is ``ln((N - df + 0.5) / (df + 0.5))`` with negative values floored at
  ``epsilon * mean idf``: not Lucene's, and the rankings differ too (a term in more than
  half of the documents gets the floor, and the idf ratio between rare and common terms
  is not the same), so raw Okapi scores are not compared. Instead (1) its tf/length part
  is checked exactly by giving it Lucene idf through its ``idf`` dict, and (2) the idf
  difference itself is pinned: ``lucene_idf == log1p(exp(okapi_idf))`` for every
  unfloored term.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from hybridsearch.engine.analysis import build_analyzer, term_hash
from hybridsearch.engine.bm25 import Bm25Encoder, Bm25Params, Bm25Stats

bm25s = pytest.importorskip("bm25s")
rank_bm25 = pytest.importorskip("rank_bm25")

RTOL = 1e-5
ATOL = 1e-9  # scores that are 0 (no shared term) must be 0 on both sides

DOCS = [
    # Chinese
    "苹果公司发布了新款手机，电池续航明显提升。",
    "华为手机的电池容量更大，但是续航时间与苹果相近。",
    "北京是中华人民共和国的首都，也是政治和文化中心。",
    "上海是中国最大的城市之一，经济发达。",
    "长江是中国最长的河流，全长约六千三百公里。",
    "黄河被称为中华民族的母亲河。",
    "电池技术的进步让电动汽车的续航里程不断增加。",
    "今天天气很好，我们去公园散步吧。",
    "熊猫是中国的国宝，主要生活在四川。",
    "中国的高铁网络是世界上最大的高速铁路网。",
    "人工智能正在改变医疗、教育和交通等行业。",
    "深度学习模型需要大量的数据和计算资源进行训练。",
    # mixed Chinese / English
    "iPhone 15 的电池续航比 iPhone 14 更长。",
    "iPhone 15 Pro 使用了钛金属边框和 USB-C 接口。",
    "Android 手机的电池续航差异很大，取决于厂商的优化。",
    "我用 Python 写了一个 BM25 检索系统，支持中文分词。",
    "Milvus 是一个向量数据库，支持稀疏向量和稠密向量的混合检索。",
    "ChatGPT 和其他大型语言模型在中文问答上表现不错。",
    "MacBook Air 的续航可以达到 18 小时，电池很耐用。",
    "特斯拉 Model 3 的电池由松下和宁德时代供应。",
    # English
    "The battery life of the new phone is much better than the old one.",
    "Battery batteries battery: a long document about battery chemistry, lithium ion cells, "
    "charge cycles, degradation of capacity over time and the many ways engineers try to "
    "extend the life of a battery in phones, laptops and electric cars.",
    "Beijing is the capital of China.",
    "The Yangtze is the longest river in Asia.",
    "Deep learning models need large amounts of training data.",
    "Vector databases such as Milvus support hybrid search with sparse and dense vectors.",
    "Pandas live in the mountains of Sichuan and eat bamboo.",
    "High-speed rail connects most large cities in China.",
    # Japanese and Korean: kana and Hangul runs are character bigrams in both CJK analyzers
    # (jieba's ``unigrams`` only adds single kana / Hangul characters, never Han ones)
    "東京タワーはとても高いです。",
    "서울특별시는 대한민국의 수도입니다.",
    # only stop words / punctuation: no terms for the standard analyzer, still counted in N
    "the of and to a in",
    "。，！？",
]

QUERIES = [
    "iPhone 15 的电池续航",
    "电池续航",
    "电池 电池 续航",  # a repeated query term counts twice (qtf)
    "中国最长的河流",
    "中华人民共和国的首都是哪里",
    "熊猫生活在哪里",
    "向量数据库 Milvus 混合检索",
    "Python BM25 中文分词",
    "battery life of phones",
    "battery battery",
    "capital of China",
    "where do pandas live",
    "hybrid search sparse dense vectors",
    "タワーの高さ",
    "대한민국의 수도",
    "完全无关的词语 xylophone",  # nothing or almost nothing in the corpus
]

ANALYZERS = {
    "standard": dict(type="standard"),
    "cjk": dict(type="cjk", unigrams=True),
    "cjk-bigrams": dict(type="cjk", unigrams=False),
    "jieba": dict(type="jieba"),  # words + every Han character (the default)
    "jieba-words": dict(type="jieba", unigrams=False),
}

PARAMS = [(1.2, 0.75), (0.9, 0.4), (2.0, 1.0), (1.5, 0.0), (0.5, 0.3)]


@pytest.fixture(scope="module")
def analysed():
    """name -> (analyzer, document token lists, query token lists), analysed once."""
    out = {}
    for name, cfg in ANALYZERS.items():
        cfg = dict(cfg)
        analyzer = build_analyzer(cfg.pop("type"), **cfg)
        doc_terms = [analyzer.terms(d) for d in DOCS]
        query_terms = [analyzer.terms(q) for q in QUERIES]
        out[name] = (analyzer, doc_terms, query_terms)
    return out


def service_scores(analyzer, params: Bm25Params, path) -> np.ndarray:
    """Queries x documents, computed as the service computes them."""
    with Bm25Stats(path, synchronous="OFF") as stats:
        enc = Bm25Encoder(analyzer, params, stats)
        doc_vectors = enc.document_vectors("parity", "t0", DOCS)  # one batch: the final avgdl
        scores = np.zeros((len(QUERIES), len(DOCS)))
        for i, q in enumerate(QUERIES):
            qv = enc.query_vector("parity", "t0", q)
            for j, dv in enumerate(doc_vectors):
                scores[i, j] = sum(w * dv[t] for t, w in qv.items() if t in dv)
    return scores


def bm25s_scores(doc_terms, query_terms, k1: float, b: float) -> np.ndarray:
    retriever = bm25s.BM25(k1=k1, b=b, method="lucene", dtype="float64")
    retriever.index(doc_terms, show_progress=False)
    # Its tokenizer really is bypassed: the vocabulary is exactly our terms (+ its "" token).
    assert set(retriever.vocab_dict) == set().union(*doc_terms) | {""}
    scores = np.zeros((len(query_terms), len(doc_terms)))
    for i, terms in enumerate(query_terms):
        if terms:  # get_scores refuses an empty list
            scores[i] = retriever.get_scores(list(terms))
    return scores


def lucene_idf(n_docs: int, df: int) -> float:
    return math.log(1.0 + (n_docs - df + 0.5) / (df + 0.5))


def test_corpus_exercises_what_it_should(analysed):
    for name, (_, doc_terms, query_terms) in analysed.items():
        lengths = [len(t) for t in doc_terms]
        assert len(set(lengths)) > 6, name  # varied lengths: a wrong b or avgdl shows
        assert any(Counter(t).most_common(1)[0][1] > 1 for t in doc_terms if t), name  # tf > 1
        assert any(Counter(t).most_common(1)[0][1] > 1 for t in query_terms if t), name  # qtf > 1
        # The service indexes CRC-32 hashes; the libraries strings. No collision here, so
        # both see the same vocabulary (a collision would merge two terms on our side only).
        vocab = set().union(*doc_terms, *query_terms)
        assert len({term_hash(t) for t in vocab}) == len(vocab), name
    assert [] in analysed["standard"][1]  # an empty document, which still counts in N
    assert analysed["cjk"][1] != analysed["cjk-bigrams"][1]
    assert analysed["jieba"][1] != analysed["jieba-words"][1]


@pytest.mark.parametrize("k1,b", PARAMS)
@pytest.mark.parametrize("name", list(ANALYZERS))
def test_service_equals_bm25s_lucene(analysed, tmp_path, name, k1, b):
    analyzer, doc_terms, query_terms = analysed[name]
    ours = service_scores(analyzer, Bm25Params(k1=k1, b=b), tmp_path / "bm25.sqlite")
    theirs = (k1 + 1.0) * bm25s_scores(doc_terms, query_terms, k1, b)
    # plenty of non-trivial pairs (standard: a Chinese clause is one "word", hence fewer)
    assert (ours > 0).sum() > (10 if name == "standard" else 40)
    np.testing.assert_allclose(ours, theirs, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("k1,b", PARAMS)
@pytest.mark.parametrize("name", list(ANALYZERS))
def test_service_equals_rank_bm25_term_part(analysed, tmp_path, name, k1, b):
    analyzer, doc_terms, query_terms = analysed[name]
    ours = service_scores(analyzer, Bm25Params(k1=k1, b=b), tmp_path / "bm25.sqlite")
    okapi = rank_bm25.BM25Okapi(doc_terms, k1=k1, b=b)
    # Okapi's idf is not Lucene's (module docstring): give it Lucene's, from its own counts.
    df = Counter(t for freqs in okapi.doc_freqs for t in freqs)
    okapi.idf = {t: lucene_idf(okapi.corpus_size, n) for t, n in df.items()}
    with np.errstate(invalid="ignore"):
        theirs = np.array([okapi.get_scores(terms) for terms in query_terms])
    # With b = 1 an empty document gives rank_bm25 0/0 = nan for every query term; it has
    # no vector on our side (it matches nothing), i.e. 0.
    empty = np.array([len(t) == 0 for t in doc_terms])
    assert not np.isnan(theirs[:, ~empty]).any()
    theirs[:, empty] = np.nan_to_num(theirs[:, empty], nan=0.0)
    np.testing.assert_allclose(ours, theirs, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name", list(ANALYZERS))
def test_okapi_idf_differs_from_lucene_as_documented(analysed, name):
    _, doc_terms, _ = analysed[name]
    okapi = rank_bm25.BM25Okapi(doc_terms)
    n = okapi.corpus_size
    df = Counter(t for freqs in okapi.doc_freqs for t in freqs)
    checked = 0
    for t, d in df.items():
        if d < n / 2:  # not floored by epsilon
            assert lucene_idf(n, d) == pytest.approx(math.log1p(math.exp(okapi.idf[t])), rel=1e-12)
            assert lucene_idf(n, d) > okapi.idf[t]
            checked += 1
    assert checked > 50
