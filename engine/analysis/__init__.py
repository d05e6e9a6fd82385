"""Analyzers: text -> the terms of the service-computed BM25 route.

``standard`` (Unicode words, stop words, Snowball), ``cjk`` (CJK character bigrams) and
``jieba`` (Chinese word segmentation, search mode); the last two send words of other
scripts through the standard path, so mixed Chinese/English text works with either.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hybridsearch.engine.analysis.base import TERM_HASH_NAME, AnalyzerError, TermAnalyzer, normalize, term_hash
from hybridsearch.engine.analysis.cjk import CjkAnalyzer
from hybridsearch.engine.analysis.jieba_words import JiebaAnalyzer, read_user_dict
from hybridsearch.engine.analysis.standard import StandardAnalyzer

ANALYZER_TYPES = ("standard", "cjk", "jieba")

__all__ = [
    "ANALYZER_TYPES",
    "TERM_HASH_NAME",
    "AnalyzerError",
    "CjkAnalyzer",
    "JiebaAnalyzer",
    "StandardAnalyzer",
    "TermAnalyzer",
    "build_analyzer",
    "check_settings",
    "normalize",
    "term_hash",
]


def check_settings(
    type: str,
    *,
    language: str = "english",
    stopwords: bool | str | Iterable[str] | None = "auto",
    stem: bool | None = None,
    unigrams: bool | None = None,
    bigrams: bool | None = None,
    user_dict: str | Path | None = None,
) -> StandardAnalyzer:
    """Everything about these settings that can be checked without loading a segmenter
    (a user dictionary is read and parsed); AnalyzerError naming the setting. Returns the
    standard word path they describe."""
    if type not in ANALYZER_TYPES:
        raise AnalyzerError(f"unknown analyzer type {type!r}; known: {', '.join(ANALYZER_TYPES)}")
    if user_dict is not None:
        if type != "jieba":
            raise AnalyzerError(f"analyzer.user_dict is for the jieba analyzer only, not {type!r}")
        read_user_dict(user_dict)
    if unigrams and type == "standard":
        raise AnalyzerError("analyzer.unigrams is for the cjk and jieba analyzers only")
    if bigrams and type != "jieba":
        raise AnalyzerError(f"analyzer.bigrams is for the jieba analyzer only (cjk always gives bigrams), not {type!r}")
    return StandardAnalyzer(language, stopwords=stopwords, stem=stem)


def build_analyzer(type: str = "standard", **settings: Any) -> TermAnalyzer:
    """An analyzer from its settings (the ``analyzer`` block of a profile's config), named
    and checked as in :func:`check_settings`.

    ``language``, ``stopwords`` and ``stem`` configure the standard word path, which the
    CJK analyzers use for text in other scripts. ``unigrams`` (CJK runs also give single
    characters) defaults to on for both CJK analyzers, as measured on cmrc2018 (nDCG@10:
    cjk 0.719 -> 0.744, jieba 0.717 -> 0.747); ``bigrams`` (Han runs also give character
    bigrams) and ``user_dict`` are for ``jieba`` only.
    """
    words = check_settings(type, **settings)
    if type == "standard":
        return words
    unigrams = settings.get("unigrams")
    unigrams = True if unigrams is None else unigrams
    if type == "cjk":
        return CjkAnalyzer(words, unigrams=unigrams)
    return JiebaAnalyzer(
        words, user_dict=settings.get("user_dict"), unigrams=unigrams, bigrams=bool(settings.get("bigrams"))
    )
