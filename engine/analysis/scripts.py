"""Script runs: which characters are Han, kana or Hangul, and how text splits into runs.

Chinese and Japanese are written without spaces and Korean words are long syllable runs,
so a Unicode-word regex keeps a whole clause (``黑豹队的防守丢了多少分``) as one "word".
The CJK analyzers split normalised text into CJK runs, which they cut into terms their own
way, and everything else, which goes through the standard word path.
"""

from __future__ import annotations

import re

# Han ideographs: the URO, extension A, compatibility ideographs and the supplementary
# planes (extensions B-H), plus the iteration mark 々 that only occurs inside Han words.
HAN = "\u3005\u3007\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
# Hiragana and katakana (with the prolonged-sound mark and the small extension block).
# Half-width katakana never reaches here: NFKC turns it into these.
KANA = "\u3041-\u309f\u30a0-\u30ff\u31f0-\u31ff"
# Hangul syllables and jamo (conjoining and compatibility).
HANGUL = "\uac00-\ud7af\u1100-\u11ff\u3130-\u318f"
CJK = HAN + KANA + HANGUL

# A word character that is not CJK: `[^\W<cjk>]` is "\w minus CJK".
_WORD = rf"[^\W{CJK}]+(?:'[^\W{CJK}]+)*"

#: One CJK run or one non-CJK word, in order of appearance.
CJK_OR_WORD = re.compile(rf"(?P<cjk>[{CJK}]+)|(?P<word>{_WORD})")
#: One Han run, one kana/Hangul run, or one non-CJK word.
HAN_OR_OTHER_CJK_OR_WORD = re.compile(rf"(?P<han>[{HAN}]+)|(?P<cjk>[{KANA}{HANGUL}]+)|(?P<word>{_WORD})")


def bigrams(run: str, unigrams: bool) -> list[str]:
    """Overlapping character bigrams of one CJK run, as Lucene's ``CJKBigramFilter``: a
    run of one character stays a unigram; with ``unigrams`` every character is also a term."""
    n = len(run)
    if n == 1:
        return [run]
    grams = [run[i : i + 2] for i in range(n - 1)]
    if unigrams:
        grams.extend(run)
    return grams


_HAS_CJK = re.compile(f"[{CJK}]")


def cjk_words(words: frozenset[str]) -> frozenset[str]:
    """The words of a stop list that contain a CJK character (the only ones a CJK term can equal)."""
    return frozenset(w for w in words if _HAS_CJK.search(w))
