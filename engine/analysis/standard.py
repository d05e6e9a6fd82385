"""The ``standard`` analyzer: Unicode words, stop words, Snowball stemming.

Also the Latin-script path of the ``cjk`` and ``jieba`` analyzers: words, numbers and codes
inside Chinese, Japanese or Korean text go through :meth:`StandardAnalyzer.word_terms`.
"""

from __future__ import annotations

import re
import threading
import zlib
from collections.abc import Iterable

from hybridsearch.engine.analysis.base import TERM_HASH_NAME, AnalyzerError, TermAnalyzer, normalize
from hybridsearch.engine.analysis.stopwords import BUILT_IN_STOP_WORDS, NAMED_STOP_WORDS

# A word: a run of Unicode word characters, with inner apostrophes kept ("patient's" is
# one token; the Snowball stemmer strips the possessive).
DEFAULT_TOKEN_PATTERN = r"\w+(?:'\w+)*"

#: Languages without a Snowball stemmer that are still valid names: their words are kept
#: unstemmed. ``none`` means no language-specific processing at all.
UNSTEMMED_LANGUAGES = frozenset({"none", "chinese", "japanese", "korean", "thai", "vietnamese"})


def snowball_languages() -> list[str]:
    import Stemmer  # PyStemmer

    return sorted(Stemmer.algorithms())


class StandardAnalyzer(TermAnalyzer):
    """Text -> terms: NFKC + lowercase, Unicode word tokens, stop words, Snowball.

    Args:
        language: a Snowball algorithm name (``english``, ``german``, ``danish`` ...; see
            :func:`snowball_languages`) or one of :data:`UNSTEMMED_LANGUAGES`.
        stopwords: ``"auto"`` (default) = the built-in list of ``language`` when there is
            one (English: Lucene's 33 words), else none; ``True`` = the built-in list, an
            error when there is none; ``False``/``None`` = keep every word; a list name
            (``"lucene"``, ``"sklearn"``); or an iterable of words (lowercased).
        stem: ``None`` (default) = stem when Snowball has ``language``; ``True`` = stem, an
            error when it has not; ``False`` = never.
        min_token_len, max_token_len: tokens outside this length range (in characters,
            before stemming) are dropped.
        token_pattern: regex for one token (applied to the normalised, lowercased text).

    Thread-safe: a Snowball stemmer object is not, so each thread gets its own.
    """

    type = "standard"

    def __init__(
        self,
        language: str = "english",
        *,
        stopwords: bool | str | Iterable[str] | None = "auto",
        stem: bool | None = None,
        min_token_len: int = 1,
        max_token_len: int = 64,
        token_pattern: str = DEFAULT_TOKEN_PATTERN,
    ) -> None:
        import Stemmer  # PyStemmer

        if min_token_len < 1 or max_token_len < min_token_len:
            raise AnalyzerError(f"need 1 <= min_token_len <= max_token_len, got {min_token_len}, {max_token_len}")
        has_stemmer = language in Stemmer.algorithms()
        if not has_stemmer and language not in UNSTEMMED_LANGUAGES:
            raise AnalyzerError(
                f"unknown language {language!r}: use a Snowball language "
                f"({', '.join(snowball_languages())}) or one without stemming "
                f"({', '.join(sorted(UNSTEMMED_LANGUAGES))}); for Chinese, Japanese or Korean text "
                "use the analyzer type 'cjk' or 'jieba'"
            )
        if stem is None:
            stem = has_stemmer
        elif stem and not has_stemmer:
            raise AnalyzerError(
                f"no Snowball stemmer for language {language!r}; set stem to false "
                f"or use one of: {', '.join(snowball_languages())}"
            )
        stop, stop_name = self._stop_words(language, stopwords)

        self.language = language
        self.stopwords: frozenset[str] = stop
        self.stem = bool(stem)
        self.min_token_len = min_token_len
        self.max_token_len = max_token_len
        self.token_pattern = token_pattern
        self._token_re = re.compile(token_pattern)
        self._length_filter = not (min_token_len == 1 and max_token_len >= 1 << 30)
        self._local = threading.local()
        self._stemmer_cls = Stemmer.Stemmer
        self.fingerprint = (
            f"lang={language};stop={stop_name};stem={'snowball' if stem else 'none'};"
            f"len={min_token_len}-{max_token_len};re={token_pattern};hash={TERM_HASH_NAME}"
        )

    @staticmethod
    def _stop_words(language: str, stopwords) -> tuple[frozenset[str], str]:
        if stopwords == "auto":
            if language in BUILT_IN_STOP_WORDS:
                return BUILT_IN_STOP_WORDS[language], "lucene"
            return frozenset(), "none"
        if stopwords is True:
            if language not in BUILT_IN_STOP_WORDS:
                raise AnalyzerError(
                    f"no built-in stop words for language {language!r}: give a list of words, or set stopwords to false"
                )
            return BUILT_IN_STOP_WORDS[language], "lucene"
        if stopwords is False or stopwords is None:
            return frozenset(), "none"
        if isinstance(stopwords, str):
            if stopwords not in NAMED_STOP_WORDS:
                raise AnalyzerError(
                    f"unknown stop-word list {stopwords!r}; known: {sorted(NAMED_STOP_WORDS)}, or give a list of words"
                )
            return NAMED_STOP_WORDS[stopwords], "lucene" if stopwords == "english" else stopwords
        stop = frozenset(w.lower() for w in stopwords)
        return stop, "custom-{:08x}".format(zlib.crc32("\n".join(sorted(stop)).encode("utf-8")))

    def _stemmer(self):
        s = getattr(self._local, "stemmer", None)
        if s is None:
            s = self._stemmer_cls(self.language)
            s.maxCacheSize = 100_000
            self._local.stemmer = s
        return s

    def word_terms(self, tokens: list[str]) -> list[str]:
        """Length filter, stop words and stemming of already-normalised word tokens."""
        lo, hi, stop = self.min_token_len, self.max_token_len, self.stopwords
        if self._length_filter:
            tokens = [t for t in tokens if lo <= len(t) <= hi and t not in stop]
        elif stop:
            tokens = [t for t in tokens if t not in stop]
        if self.stem and tokens:
            tokens = self._stemmer().stemWords(tokens)
        return tokens

    def terms(self, text: str | None) -> list[str]:
        if not text:
            return []
        return self.word_terms(self._token_re.findall(normalize(text)))
