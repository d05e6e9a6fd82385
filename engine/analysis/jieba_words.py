"""The ``jieba`` analyzer: Chinese word segmentation in search mode, for Han text.

Han runs are cut by jieba's search mode (``cut_for_search``: every word, plus the shorter
dictionary words inside long ones, so ``中华人民共和国`` also matches ``中华``, ``人民``),
plus, with ``unigrams`` (the default), every Han character: a question that words its
subject differently from the answer still shares characters with it (cmrc2018 text only,
nDCG@10: words 0.717, words + characters 0.747; benchmarks/results/cmrc2018/reference.md).
Kana and Hangul runs, which jieba's dictionary does not cover, become character bigrams
as in the ``cjk`` analyzer; other words go through the standard path.

Segmenter: rjieba (jieba-rs, the Rust port), not the pure-Python jieba. Measured on the
12,955 cmrc2018 sentences (565,845 characters, 2 cores): jieba 0.42.1 236k chars/s,
rjieba 0.2.2 2,400k chars/s, the same dictionary, and the same words on every Han run
(the two differ only in how they cut hyphens and digits, which never reach the segmenter
here). A user dictionary (jieba's format: ``word [freq] [tag]`` per line) adds words.
"""

from __future__ import annotations

import zlib
from importlib import metadata
from pathlib import Path

from hybridsearch.engine.analysis.base import AnalyzerError, normalize
from hybridsearch.engine.analysis.cjk import Cut, MixedScriptAnalyzer, _is_bmp
from hybridsearch.engine.analysis.scripts import HAN_OR_OTHER_CJK_OR_WORD, bigrams
from hybridsearch.engine.analysis.standard import StandardAnalyzer


def _segmenter_version() -> str:
    # major.minor: a new release may ship a new dictionary, which changes the terms;
    # patch releases are assumed not to (the fingerprint would otherwise refuse every
    # collection after a routine upgrade).
    version = metadata.version("rjieba")
    return ".".join(version.split(".")[:2])


def read_user_dict(path: str | Path) -> list[tuple[str, int | None, str | None]]:
    """Entries of a jieba user dictionary; AnalyzerError naming the file and line."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise AnalyzerError(f"analyzer.user_dict: {p} does not exist or is not a file")
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise AnalyzerError(f"analyzer.user_dict: cannot read {p}: {exc.strerror}") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise AnalyzerError(f"analyzer.user_dict: {p} is not UTF-8 (byte {exc.start})") from exc
    entries = []
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        if len(parts) > 3:
            raise AnalyzerError(f"analyzer.user_dict: {p}:{lineno}: expected 'word [freq] [tag]', got {line!r}")
        word, freq, tag = parts[0], None, None
        rest = parts[1:]
        if rest and rest[0].isdigit():
            freq = int(rest.pop(0))
        if rest:
            tag = rest.pop(0)
        if rest:
            raise AnalyzerError(f"analyzer.user_dict: {p}:{lineno}: frequency must be a whole number, got {parts[1]!r}")
        entries.append((normalize(word), freq, tag))
    return entries


class JiebaAnalyzer(MixedScriptAnalyzer):
    """``iPhone 15 的电池续航`` -> ``iphon, 15, 的, 电池, 续航`` (+ ``的, 电, 池, 续, 航``
    with ``unigrams``; + ``的电, 电池, 池续, 续航`` with ``bigrams``)."""

    type = "jieba"

    def __init__(
        self,
        words: StandardAnalyzer,
        *,
        user_dict: str | Path | None = None,
        unigrams: bool = True,
        bigrams: bool = False,
    ) -> None:
        try:
            import rjieba
        except ImportError as exc:  # a dependency of the project; missing only in a broken install
            raise AnalyzerError("the jieba analyzer needs the rjieba package: pip install rjieba") from exc
        super().__init__(words, unigrams)
        self._segmenter = rjieba.Jieba()
        dict_id = "default"
        if user_dict is not None:
            entries = read_user_dict(user_dict)
            for word, freq, tag in entries:
                self._segmenter.add_word(word, freq, tag)
            # The content, not the path: the same words give the same terms wherever the file lives.
            dict_id = "user-{:08x}".format(zlib.crc32(repr(entries).encode("utf-8")))
        self.user_dict = None if user_dict is None else str(user_dict)
        self.bigrams = bigrams
        # From here on the segmenter is only read (cut_for_search borrows it shared), so
        # gRPC worker threads call it concurrently; add_word after this point would not be safe.
        self.fingerprint = (
            f"jieba;seg=rjieba-{_segmenter_version()};mode=search;hmm=1;dict={dict_id};"
            f"unigrams={int(unigrams)};{'bigrams=1;' if bigrams else ''}words=[{words.fingerprint}]"
        )

    def _cut(self, text: str) -> Cut:
        words: list[str] = []
        strings: list[str] = []
        bigram_runs: list[str] = []
        char_runs: list[str] = []
        cut = self._segmenter.cut_for_search
        bmp = _is_bmp(text)
        for han, other, word in HAN_OR_OTHER_CJK_OR_WORD.findall(text):
            if han:
                strings.extend(cut(han, True))
                if not (self.bigrams or self.unigrams):
                    continue
                if not (bmp or _is_bmp(han)):  # four-byte characters: cut as strings
                    strings.extend(bigrams(han, self.unigrams) if self.bigrams else han)
                elif self.bigrams:
                    # Bigrams (+ every character with unigrams), as the cjk analyzer cuts a run.
                    bigram_runs.append(han)
                else:
                    # Every character as well, single-character words included (counted
                    # twice then): measured so, +0.030 nDCG@10 on cmrc2018.
                    char_runs.append(han)
            elif other:
                bigram_runs.append(other)  # kana and Hangul are BMP
            else:
                words.append(word)
        return Cut(words, strings, bigram_runs, char_runs)
