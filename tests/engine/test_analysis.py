"""Analyzers per language and script, with the exact terms they must give."""

from __future__ import annotations

import random
import re
import threading
from collections import Counter

import pytest

from hybridsearch.engine.analysis import AnalyzerError, build_analyzer, term_hash
from hybridsearch.engine.analysis.cjk_counts import run_hashes
from hybridsearch.engine.config import AnalyzerConfig, ProfileConfig

MIXED = "iPhone 15 的电池续航"


@pytest.fixture(scope="module")
def cjk():
    return build_analyzer("cjk")


@pytest.fixture(scope="module")
def jieba():
    return build_analyzer("jieba")


@pytest.fixture(scope="module")
def jieba_words():
    return build_analyzer("jieba", unigrams=False)


def test_standard_keeps_a_chinese_clause_as_one_word_which_is_why_cjk_exists():
    assert build_analyzer("standard").terms("黑豹队的防守丢了多少分？") == ["黑豹队的防守丢了多少分"]


def test_cjk_cuts_chinese_into_overlapping_bigrams_plus_unigrams(cjk):
    assert cjk.terms("黑豹队的防守") == ["黑豹", "豹队", "队的", "的防", "防守", "黑", "豹", "队", "的", "防", "守"]


def test_cjk_without_unigrams_gives_bigrams_and_keeps_a_lone_character():
    a = build_analyzer("cjk", unigrams=False)
    assert a.terms("防守丢了") == ["防守", "守丢", "丢了"]
    assert a.terms("分 数") == ["分", "数"]


def test_mixed_chinese_english_text_gives_terms_for_both_scripts(cjk, jieba, jieba_words):
    assert cjk.terms(MIXED) == ["iphon", "15", "的电", "电池", "池续", "续航", "的", "电", "池", "续", "航"]
    assert jieba_words.terms(MIXED) == ["iphon", "15", "的", "电池", "续航"]
    # By default every Han character too (single-character words then count twice).
    assert jieba.terms(MIXED) == ["iphon", "15", "的", "电池", "续航", "的", "电", "池", "续", "航"]


def test_latin_words_inside_chinese_are_stemmed_and_stop_worded(cjk):
    assert cjk.terms("The running shoes在北京") == ["run", "shoe", "在北", "北京", "在", "北", "京"]


def test_jieba_search_mode_adds_the_words_inside_long_words(jieba_words):
    assert jieba_words.terms("中华人民共和国") == ["中华", "华人", "人民", "共和", "共和国", "中华人民共和国"]
    assert jieba_words.terms("黑豹队的防守丢了多少分？") == ["黑豹", "队", "的", "防守", "丢", "了", "多少", "分"]


def test_japanese_kana_and_kanji_become_bigrams(cjk):
    assert cjk.terms("東京タワー") == ["東京", "京タ", "タワ", "ワー", "東", "京", "タ", "ワ", "ー"]


def test_half_width_katakana_is_folded_to_full_width(cjk):
    assert cjk.terms("ﾀﾜｰ") == cjk.terms("タワー")


def test_korean_hangul_becomes_syllable_bigrams():
    assert build_analyzer("cjk", unigrams=False).terms("한국어 분석") == ["한국", "국어", "분석"]


def test_jieba_cuts_kana_and_hangul_as_bigrams(jieba_words):
    assert jieba_words.terms("タワー 한국어") == ["タワ", "ワー", "한국", "국어"]


def test_english_is_unchanged_by_the_cjk_analyzers(cjk, jieba):
    text = "The Patients were RUNNING studies of the heart"
    expected = build_analyzer("standard").terms(text)
    assert expected == ["patient", "were", "run", "studi", "heart"]
    assert cjk.terms(text) == expected and jieba.terms(text) == expected


def test_full_width_latin_and_digits_fold_to_ascii(cjk):
    assert cjk.terms("ｉＰｈｏｎｅ１５") == ["iphone15"]


def test_traditional_and_simplified_chinese_stay_different_terms(cjk):
    # Documented: NFKC does not map 臺灣 to 台湾; the dense route bridges the two.
    assert cjk.terms("臺灣") == ["臺灣", "臺", "灣"]
    assert set(cjk.terms("臺灣")).isdisjoint(cjk.terms("台湾"))


@pytest.mark.parametrize("kind", ["standard", "cjk", "jieba"])
@pytest.mark.parametrize("text", ["", "？！。…", "🎉🎉!!", "   ", None])
def test_text_with_no_terms_gives_none(kind, text):
    assert build_analyzer(kind).terms(text) == []
    assert build_analyzer(kind).term_counts(text) == {}


@pytest.mark.parametrize("kind", ["standard", "cjk", "jieba"])
def test_lone_surrogates_and_control_characters_are_dropped_not_raised(kind):
    a = build_analyzer(kind)
    assert a.terms("\ud800abc\x00 中文\udfff") == ["abc"] + a.terms("中文")
    assert all(isinstance(t, int) for t in a.term_counts("\ud800abc 中文"))


def test_emoji_between_chinese_characters_splits_the_run(cjk):
    assert cjk.terms("电池🔋续航") == cjk.terms("电池") + cjk.terms("续航")


def test_term_counts_hash_terms_stably(cjk):
    counts = cjk.term_counts("电池电池")
    assert counts[term_hash("电池")] == 2 and counts[term_hash("池电")] == 1


def test_chinese_stop_words_can_be_given(cjk):
    a = build_analyzer("jieba", stopwords=["的", "了"], unigrams=False)
    assert a.terms("黑豹队的防守丢了") == ["黑豹", "队", "防守", "丢"]


def test_jieba_user_dictionary_adds_words(tmp_path):
    before = build_analyzer("jieba", unigrams=False).terms("黑豹队防守")
    user = tmp_path / "user.txt"
    user.write_text("# team names\n黑豹队 1000 nz\n", encoding="utf-8")
    after = build_analyzer("jieba", user_dict=user)
    assert "黑豹队" not in before and "黑豹队" in after.terms("黑豹队防守")
    assert after.fingerprint != build_analyzer("jieba").fingerprint


@pytest.mark.parametrize(
    "content, message",
    [
        (b"\xff\xfe bad", "is not UTF-8"),
        (b"ok\na b c d\n", ":2: expected 'word [freq] [tag]'"),
        ("词 often n\n".encode(), ":1: frequency must be a whole number"),
    ],
)
def test_a_bad_user_dictionary_is_refused_with_file_and_line(tmp_path, content, message):
    user = tmp_path / "user.txt"
    user.write_bytes(content)
    with pytest.raises(AnalyzerError, match=re.escape(message)):
        build_analyzer("jieba", user_dict=user)


def test_a_missing_user_dictionary_is_refused(tmp_path):
    with pytest.raises(AnalyzerError, match="does not exist"):
        build_analyzer("jieba", user_dict=tmp_path / "nope.txt")


def test_every_setting_that_changes_terms_changes_the_fingerprint():
    prints = {
        build_analyzer("standard").fingerprint,
        build_analyzer("standard", stem=False).fingerprint,
        build_analyzer("cjk").fingerprint,
        build_analyzer("cjk", unigrams=False).fingerprint,
        build_analyzer("jieba").fingerprint,
        build_analyzer("jieba", unigrams=False).fingerprint,
        build_analyzer("cjk", language="german").fingerprint,
    }
    assert len(prints) == 7


def test_any_language_works_without_a_stemmer_or_a_built_in_stop_list():
    assert build_analyzer("standard", language="danish").terms("Husene") == ["hus"]
    assert build_analyzer("standard", language="chinese").terms("Hello World") == ["hello", "world"]
    with pytest.raises(AnalyzerError, match="no Snowball stemmer"):
        build_analyzer("standard", language="chinese", stem=True)


@pytest.mark.parametrize(
    "settings, field",
    [
        ({"type": "kuromoji"}, "analyzer.type"),
        ({"language": "klingon"}, "unknown language 'klingon'"),
        ({"type": "jieba", "user_dict": "/no/such/dict.txt"}, "does not exist"),
        ({"type": "cjk", "user_dict": "/etc/hostname"}, "for the jieba analyzer only"),
        ({"type": "standard", "unigrams": True}, "for the cjk and jieba analyzers only"),
        ({"tokenizer": "jieba"}, "analyzer.tokenizer"),
    ],
)
def test_config_refuses_a_bad_analyzer_naming_the_setting(settings, field):
    with pytest.raises(ValueError, match=field.replace(".", r"\.").replace("(", r"\(")):
        ProfileConfig(kind="dense-bm25", model="x", analyzer=settings)


def test_the_old_language_setting_still_configures_the_standard_analyzer():
    assert ProfileConfig(kind="dense-bm25", model="x", language="german").analyzer.language == "german"
    assert AnalyzerConfig().build().fingerprint == build_analyzer("standard").fingerprint


def test_analyzers_are_thread_safe(jieba):
    texts = ["黑豹队的防守丢了多少分", MIXED, "The patients' running shoes", "東京タワー"] * 50
    expected = [jieba.terms(t) for t in texts]
    errors: list[str] = []

    def work():
        for t, e in zip(texts, expected, strict=True):
            if jieba.terms(t) != e:
                errors.append(t)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


BATCH = [
    MIXED,
    "",
    None,
    "黑豹队的防守丢了多少分？",
    "𠀀𠀁中文𠀂 and 𠀃",
    "日本語のテキストｶﾀｶﾅ",
    "한국어 텍스트",
    "的",
    "电池电池",
    "English only, nothing else",
    "臺灣 台湾",
    "中😀文",
    "！！",
    "ＡＢＣ１２３ 的了",
]


@pytest.mark.parametrize(
    "settings",
    [
        {"type": "cjk"},
        {"type": "cjk", "unigrams": False},
        {"type": "jieba"},
        {"type": "jieba", "unigrams": False},
        {"type": "cjk", "language": "chinese", "stem": False, "stopwords": ["的", "电池", "了", "的电"]},
        {"type": "jieba", "language": "chinese", "stem": False, "stopwords": ["的", "电池", "了"]},
        {"type": "jieba", "bigrams": True},
        {"type": "jieba", "bigrams": True, "unigrams": False},
    ],
)
def test_counting_a_batch_gives_each_text_its_own_counts(settings):
    a = build_analyzer(**settings)
    want = [Counter(map(term_hash, a.terms(t))) for t in BATCH]
    assert a.term_counts_many(BATCH) == want
    assert [a.term_counts(t) for t in BATCH] == want
    assert a.term_counts_many([]) == []


def test_batch_hashes_of_every_three_byte_character_and_of_bigrams_equal_term_hash():
    # cjk_counts computes CRC-32 from per-code-point tables; any table error shows here.
    chars = [chr(c) for c in range(0x800, 0x10000) if not 0xD800 <= c <= 0xDFFF]
    hashes, owners = run_hashes(["".join(chars)], [0], bigrams=False, unigrams=True)
    assert hashes.tolist() == [term_hash(c) for c in chars] and set(owners.tolist()) == {0}
    rng = random.Random(7)
    runs = ["".join(rng.choice(chars) for _ in range(rng.randint(1, 6))) for _ in range(3000)]
    hashes, owners = run_hashes(runs, range(len(runs)), bigrams=True, unigrams=False)
    want = sorted(
        (i, term_hash(g))
        for i, run in enumerate(runs)
        for g in ([run] if len(run) == 1 else [run[j : j + 2] for j in range(len(run) - 1)])
    )
    assert sorted(zip(owners.tolist(), hashes.tolist(), strict=True)) == want


def test_jieba_with_bigrams_adds_the_cjk_bigrams_of_han_runs_to_the_words():
    a = build_analyzer("jieba", bigrams=True)
    assert sorted(a.terms(MIXED)) == sorted(
        ["iphon", "15", "的", "电池", "续航", "的", "电", "池", "续", "航", "的电", "电池", "池续", "续航"]
    )
    no_chars = build_analyzer("jieba", bigrams=True, unigrams=False)
    assert sorted(no_chars.terms("电池")) == ["电池", "电池"]  # the word and the bigram
    assert "bigrams=1" in a.fingerprint and "bigrams" not in build_analyzer("jieba").fingerprint
    with pytest.raises(AnalyzerError, match="analyzer.bigrams is for the jieba analyzer only"):
        build_analyzer("cjk", bigrams=True)
