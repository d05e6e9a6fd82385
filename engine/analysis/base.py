"""What every analyzer shares: text normalisation, the term index, the analyzer interface."""

from __future__ import annotations

import unicodedata
import zlib
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable

#: Name of the term-index function; recorded in the statistics database and in every
#: analyzer fingerprint, so that data written with another function is refused instead
#: of silently mixing indexes.
TERM_HASH_NAME = "crc32-utf8-31bit"
_HASH_MASK = 0x7FFFFFFF
_APOSTROPHES = ("\u2019", "\u02bc", "\uff07")


class AnalyzerError(ValueError):
    """An analyzer cannot be built as configured; the message names the setting."""


def term_hash(term: str) -> int:
    """Stable 31-bit index of an analysed term (CRC-32 of its UTF-8 bytes & 0x7FFFFFFF).

    Stable across processes, platforms and Python versions (unlike ``hash()``), it fits
    Milvus's uint32 sparse index (and a signed int32). A colliding pair of terms simply
    behaves as one term, consistently in documents, queries and statistics.
    """
    return zlib.crc32(term.encode("utf-8")) & _HASH_MASK


class _TermHashes(dict):
    """term -> :func:`term_hash`, remembered: counting a document's terms is then one C-level
    pass (``Counter(map(hashes.__getitem__, terms))``) instead of a Python call per term,
    which made hashing 60 % of the cjk analyzer's time (benchmarks/results/cmrc2018/reference.md).
    Bounded: emptied when full (a CJK vocabulary of bigrams runs to millions of terms).
    Thread-safe under the GIL: a lookup racing a clear just computes the hash again."""

    MAX_TERMS = 300_000

    def __missing__(self, term: str) -> int:
        if len(self) >= self.MAX_TERMS:
            self.clear()
        value = self[term] = term_hash(term)
        return value


_TERM_HASHES = _TermHashes()


def normalize(text: str) -> str:
    """NFKC + lowercase, typographic apostrophes as ``'``.

    NFKC folds full-width Latin letters and digits (``ｉＰｈｏｎｅ１５`` -> ``iphone15``),
    full-width punctuation and half-width katakana, so both widths give the same terms.
    It does not map Traditional to Simplified Chinese: ``臺灣`` and ``台湾`` stay different
    (see README, "Chinese text").
    """
    # The quick check first: normalize() itself runs at ~10 M chars/s on Chinese text even
    # when there is nothing to change, is_normalized() at ~600 M (and str.replace beats
    # str.translate 30x), which made normalising 25 % of the cjk analyzer's time.
    if not unicodedata.is_normalized("NFKC", text):
        text = unicodedata.normalize("NFKC", text)
    text = text.lower()
    if not text.isascii():
        for apostrophe in _APOSTROPHES:
            text = text.replace(apostrophe, "'")
    return text


class TermAnalyzer(ABC):
    """Text -> terms. Instances are thread-safe and immutable once built.

    ``fingerprint`` names every setting that changes the terms. An index built with one
    analyzer must be searched with the same one, so collections persist it and the service
    refuses a mismatch.
    """

    #: The analyzer type as configured: ``standard``, ``cjk``, ``jieba``.
    type: str
    fingerprint: str

    @abstractmethod
    def terms(self, text: str | None) -> list[str]:
        """The analysed terms of ``text`` (with repeats); ``[]`` for empty text."""

    def term_counts(self, text: str | None) -> Counter[int]:
        """``Counter`` of :func:`term_hash` -> occurrences in ``text`` (terms that share a
        hash count as one)."""
        return Counter(map(_TERM_HASHES.__getitem__, self.terms(text)))

    def term_counts_many(self, texts: Iterable[str | None]) -> list[Counter[int]]:
        """:meth:`term_counts` of each text (what ingest calls: an analyzer may count a
        batch faster than text by text)."""
        return [self.term_counts(t) for t in texts]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.fingerprint})"
