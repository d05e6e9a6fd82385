"""The analyzer settings of a profile as Milvus ``analyzer_params``, for the milvus-bm25
sparse kind (Milvus computes BM25 from the text field with its own analyzer).

What Milvus Lite 3.2.2 offers (measured, pymilvus 3.0.2): the tokenizers ``standard`` and
``jieba`` (the latter needs the ``jieba`` package), and of the filters only ``stop``;
``lowercase`` and ``stemmer`` are accepted and ignored there (a Milvus server applies
them; its standard tokenizer lowercases on Lite anyway). There is no CJK bigram analyzer,
so ``cjk`` is refused. jieba keeps punctuation as terms, so a stop filter drops it (on
cmrc2018 that took nDCG@10 of that route from 0.644 to 0.692, 300 queries).
"""

from __future__ import annotations

from hybridsearch.engine.analysis.base import AnalyzerError
from hybridsearch.engine.analysis.standard import StandardAnalyzer

# Punctuation jieba returns as terms (full- and half-width), and whitespace.
PUNCTUATION = sorted(set("？，。、！：；“”‘’（）《》〈〉【】「」『』—…·～?,.!:;()[]{}<>\"'-/\\|~`@#$%^&*+=_ \t\n"))


def milvus_analyzer_params(
    type: str,
    *,
    language: str = "english",
    stopwords="auto",
    stem: bool | None = None,
    unigrams: bool | None = None,
    bigrams: bool | None = None,
    user_dict=None,
) -> dict:
    """``analyzer_params`` for a Milvus VARCHAR field that feeds a BM25 function. Milvus's
    jieba tokenizer gives words only: ``unigrams`` and ``bigrams`` have no Milvus equivalent
    and are ignored."""
    if type == "cjk":
        raise AnalyzerError(
            "analyzer.type cjk: Milvus has no CJK bigram analyzer; with sparse milvus-bm25 use analyzer type jieba "
            "(or keep cjk with sparse service-bm25)"
        )
    if user_dict is not None:
        raise AnalyzerError(
            "analyzer.user_dict: a user dictionary works with sparse service-bm25 only (Milvus's jieba tokenizer does not read it)"
        )
    words = StandardAnalyzer(language, stopwords=stopwords, stem=stem)
    stop = sorted(words.stopwords)
    if type == "jieba":
        return {"tokenizer": "jieba", "filter": [{"type": "stop", "stop_words": sorted(set(PUNCTUATION) | set(stop))}]}
    filters: list = ["lowercase"]
    if stop:
        filters.append({"type": "stop", "stop_words": stop})
    if words.stem:
        filters.append({"type": "stemmer", "language": language})
    return {"tokenizer": "standard", "filter": filters}
