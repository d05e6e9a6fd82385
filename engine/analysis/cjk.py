"""The ``cjk`` analyzer: CJK runs become overlapping character bigrams (optionally plus
unigrams), as Lucene's ``CJKAnalyzer`` and Elasticsearch's ``cjk`` analyzer do; words in
other scripts go through the standard path (stemmed, stop words).

Bigrams need no dictionary and work the same for Chinese, Japanese and Korean. Unigrams
add recall for one-character words and for queries that split a word differently (on
cmrc2018 unigrams + bigrams beat bigrams alone: benchmarks/README.md).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from itertools import repeat
from typing import NamedTuple

import numpy as np

from hybridsearch.engine.analysis.base import _TERM_HASHES, TermAnalyzer, normalize, term_hash
from hybridsearch.engine.analysis.cjk_counts import build_counters, run_hashes
from hybridsearch.engine.analysis.scripts import CJK_OR_WORD, bigrams, cjk_words
from hybridsearch.engine.analysis.standard import StandardAnalyzer


class Cut(NamedTuple):
    """One text cut by script: what each part becomes is the analyzer's choice."""

    words: list[str]  # non-CJK word tokens, for the standard path
    strings: list[str]  # CJK terms already cut as strings (jieba's words)
    bigram_runs: list[str]  # CJK runs cut into bigrams (+ unigrams if the analyzer says so)
    char_runs: list[str]  # CJK runs whose every character is a term


def _is_bmp(text: str) -> bool:
    # Supplementary-plane characters (Han extensions B-H) are four UTF-8 bytes: cjk_counts
    # hashes three-byte characters only, so a (rare) run with one is cut into strings instead.
    return not text or max(text) <= "\uffff"


class MixedScriptAnalyzer(TermAnalyzer):
    """What the CJK analyzers share: CJK runs cut their own way, every other word through
    the standard path, stop words applied to both. Subclasses say how a text is cut
    (:meth:`_cut`); the terms and the batch counting follow from it."""

    def __init__(self, words: StandardAnalyzer, unigrams: bool) -> None:
        self.words = words
        self.unigrams = unigrams
        # Only stop words in CJK scripts can match a CJK term: an English list costs a set
        # lookup per term for nothing (about 10 % of the cjk analyzer's time on Chinese).
        self._cjk_stopwords = cjk_words(words.stopwords)
        # Character and bigram terms are counted as hashes: their stop words are dropped by hash.
        self._stop_hashes = np.array(sorted({term_hash(w) for w in self._cjk_stopwords if len(w) <= 2}), dtype=np.int64)

    def _cut(self, text: str) -> Cut:
        raise NotImplementedError

    def _strings(self, cut: Cut) -> list[str]:
        """The standard path's terms of the words and the stop-filtered CJK strings."""
        strings = cut.strings
        if self._cjk_stopwords and strings:
            strings = [t for t in strings if t not in self._cjk_stopwords]
        return self.words.word_terms(cut.words) + strings

    def terms(self, text: str | None) -> list[str]:
        if not text:
            return []
        cut = self._cut(normalize(text))
        terms = self._strings(cut)
        grams: list[str] = []
        for run in cut.bigram_runs:
            grams.extend(bigrams(run, self.unigrams))
        for run in cut.char_runs:
            grams.extend(run)
        if self._cjk_stopwords:
            grams = [t for t in grams if t not in self._cjk_stopwords]
        return terms + grams

    def term_counts_many(self, texts: Iterable[str | None]) -> list[Counter[int]]:
        """Counts of every text, the CJK characters and bigrams of the whole batch hashed
        together in numpy (engine/analysis/cjk_counts.py): the same counts as
        :meth:`term_counts` text by text (tests check it), 1.6-3x faster on Chinese from
        about 30 texts up (benchmarks/README.md, "Analyzer speed"). One text, as a query,
        is faster through :meth:`term_counts` (no numpy set-up)."""
        hashes: list[int] = []
        owners: list[int] = []
        bigram_runs: list[str] = []
        bigram_owners: list[int] = []
        char_runs: list[str] = []
        char_owners: list[int] = []
        n = 0
        for n, text in enumerate(texts, 1):
            if not text:
                continue
            cut = self._cut(normalize(text))
            strings = self._strings(cut)
            if strings:
                hashes.extend(map(_TERM_HASHES.__getitem__, strings))
                owners.extend(repeat(n - 1, len(strings)))
            if cut.bigram_runs:
                bigram_runs.extend(cut.bigram_runs)
                bigram_owners.extend(repeat(n - 1, len(cut.bigram_runs)))
            if cut.char_runs:
                char_runs.extend(cut.char_runs)
                char_owners.extend(repeat(n - 1, len(cut.char_runs)))
        bh, bo = run_hashes(bigram_runs, bigram_owners, bigrams=True, unigrams=self.unigrams)
        ch, co = run_hashes(char_runs, char_owners, bigrams=False, unigrams=True)
        return build_counters(n, hashes, owners, (bh, ch), (bo, co), drop=self._stop_hashes)


class CjkAnalyzer(MixedScriptAnalyzer):
    """``iPhone 15 的电池续航`` -> ``iphon, 15, 的电, 电池, 池续, 续航`` (+ ``的, 电, 池, 续, 航``
    with ``unigrams``). Stop words apply to every term, CJK ones included."""

    type = "cjk"

    def __init__(self, words: StandardAnalyzer, *, unigrams: bool = True) -> None:
        super().__init__(words, unigrams)
        self.fingerprint = f"cjk;unigrams={int(unigrams)};words=[{words.fingerprint}]"

    def _cut(self, text: str) -> Cut:
        words: list[str] = []
        runs: list[str] = []
        strings: list[str] = []
        bmp = _is_bmp(text)
        for run, word in CJK_OR_WORD.findall(text):
            if not run:
                words.append(word)
            elif bmp or _is_bmp(run):
                runs.append(run)
            else:
                strings.extend(bigrams(run, self.unigrams))
        return Cut(words, strings, runs, [])
