"""The ``cjk`` analyzer: CJK runs become overlapping character bigrams (optionally plus
unigrams), as Lucene's ``CJKAnalyzer`` and Elasticsearch's ``cjk`` analyzer do; words in
other scripts go through the standard path (stemmed, stop words).

Bigrams need no dictionary and work the same for Chinese, Japanese and Korean. Unigrams
add recall for one-character words and for queries that split a word differently (on
cmrc2018 unigrams + bigrams beat bigrams alone: benchmarks/README.md).
"""
from __future__ import annotations

from engine.analysis.base import TermAnalyzer, normalize
from engine.analysis.scripts import CJK_OR_WORD, bigrams, cjk_words
from engine.analysis.standard import StandardAnalyzer


class MixedScriptAnalyzer(TermAnalyzer):
    """What the CJK analyzers share: CJK runs cut their own way, every other word through
    the standard path, stop words applied to both."""

    def __init__(self, words: StandardAnalyzer, unigrams: bool) -> None:
        self.words = words
        self.unigrams = unigrams
        # Only stop words in CJK scripts can match a CJK term: an English list costs a set
        # lookup per term for nothing (about 10 % of the cjk analyzer's time on Chinese).
        self._cjk_stopwords = cjk_words(words.stopwords)

    def _join(self, words: list[str], cjk_terms: list[str]) -> list[str]:
        """The standard path's terms of ``words`` and the stop-filtered ``cjk_terms``."""
        stop = self._cjk_stopwords
        if stop:
            cjk_terms = [t for t in cjk_terms if t not in stop]
        return self.words.word_terms(words) + cjk_terms


class CjkAnalyzer(MixedScriptAnalyzer):
    """``iPhone 15 的电池续航`` -> ``iphon, 15, 的电, 电池, 池续, 续航`` (+ ``的, 电, 池, 续, 航``
    with ``unigrams``). Stop words apply to every term, CJK ones included."""

    type = "cjk"

    def __init__(self, words: StandardAnalyzer, *, unigrams: bool = True) -> None:
        super().__init__(words, unigrams)
        self.fingerprint = f"cjk;unigrams={int(unigrams)};words=[{words.fingerprint}]"

    def terms(self, text: str | None) -> list[str]:
        if not text:
            return []
        cjk_terms: list[str] = []
        words: list[str] = []
        for m in CJK_OR_WORD.finditer(normalize(text)):
            run = m.group("cjk")
            if run is None:
                words.append(m.group("word"))
            else:
                cjk_terms.extend(bigrams(run, self.unigrams))
        return self._join(words, cjk_terms)
