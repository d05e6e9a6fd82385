import math
import os
import sqlite3
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest

from hybridsearch.engine.bm25 import (
    LUCENE_ENGLISH_STOP_WORDS,
    Analyzer,
    Bm25Encoder,
    Bm25Params,
    Bm25Stats,
    CorpusStats,
    idf,
    term_hash,
)

C, A, B = "docs", "tenant-a", "tenant-b"

CORPUS = [
    "Aspirin reduces the risk of heart attacks in older patients.",
    "The heart pumps blood; heart disease is common. Heart failure kills.",
    "Vitamin D supplementation and bone density in older women.",
    "Running improves cardiovascular health and reduces blood pressure.",
    "Patients with kidney disease were studied for ten years.",
]


@pytest.fixture
def stats(tmp_path):
    s = Bm25Stats(tmp_path / "bm25.sqlite")
    yield s
    s.close()


@pytest.fixture
def enc(stats):
    return Bm25Encoder(Analyzer(), Bm25Params(), stats)


def dot(q, d):
    return sum(w * d.get(t, 0.0) for t, w in q.items())


def direct_bm25(analyzer, corpus, query, k1=1.2, b=0.75):
    """Textbook (Lucene-variant) BM25 over analysed string terms, no hashing involved."""
    docs = [Counter(analyzer.terms(t)) for t in corpus]
    n = len(docs)
    avgdl = sum(sum(d.values()) for d in docs) / n
    df = Counter(t for d in docs for t in d)
    q = Counter(analyzer.terms(query))
    scores = []
    for d in docs:
        dl = sum(d.values())
        s = 0.0
        for t, qtf in q.items():
            tf = d.get(t, 0)
            if tf:
                term_idf = math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5))
                s += qtf * term_idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl))
        scores.append(s)
    return scores


# ---------------------------------------------------------------- analyzer


def test_analyzer_lowercases_stems_and_drops_stop_words():
    terms = Analyzer().terms("The Patients were RUNNING studies of the heart")
    assert terms == ["patient", "were", "run", "studi", "heart"]
    assert not set(terms) & LUCENE_ENGLISH_STOP_WORDS


def test_analyzer_stop_words_and_stemming_can_be_switched_off_or_chosen():
    text = "The patients were running"
    assert Analyzer(stopwords=False).terms(text) == ["the", "patient", "were", "run"]
    assert Analyzer(stem=False).terms(text) == ["patients", "were", "running"]
    assert Analyzer(stopwords="sklearn").terms(text) == ["patient", "run"]
    assert Analyzer(stopwords=["patients"], stem=False).terms(text) == ["the", "were", "running"]


def test_analyzer_tokenises_unicode_words_and_strips_possessives():
    terms = Analyzer().terms("Café ÜBER naïve ＡＢＣ patient’s IL-6")
    assert terms == ["café", "über", "naïv", "abc", "patient", "il", "6"]


def test_analyzer_rejects_unknown_language_or_stop_word_list():
    with pytest.raises(ValueError):
        Analyzer("klingon")
    with pytest.raises(ValueError, match="no built-in stop words"):
        Analyzer("german", stopwords=True)  # asked for a built-in list German does not have
    # By default a language without a built-in list keeps every word.
    assert Analyzer("german").terms("Die Häuser") == ["die", "haus"]
    assert Analyzer("german", stopwords=False).terms("Häuser") == ["haus"]
    with pytest.raises(ValueError):
        Analyzer(stopwords="nope")


def test_analyzer_fingerprint_changes_with_settings():
    assert Analyzer().fingerprint == Analyzer().fingerprint
    assert Analyzer().fingerprint != Analyzer(stem=False).fingerprint
    assert Analyzer().fingerprint != Analyzer(stopwords="sklearn").fingerprint


def test_term_hash_is_stable_across_processes_and_fits_31_bits():
    assert term_hash("run") == 1349952704  # golden: must never change (stored indexes)
    out = subprocess.run(
        [sys.executable, "-c", "from hybridsearch.engine.bm25 import term_hash; print(term_hash('studi'))"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "123"},
        cwd=Path(__file__).resolve().parents[2],
    ).stdout
    assert int(out) == term_hash("studi") == 2076739373
    assert all(0 <= term_hash(t) < 2**31 for t in ["", "a", "ü" * 100])


# ---------------------------------------------------------------- params


@pytest.mark.parametrize(
    "kw", [{"k1": -0.1}, {"b": 1.5}, {"b": -0.1}, {"k1": float("nan")}, {"k1": "1.2"}, {"b": True}]
)
def test_params_reject_invalid_values(kw):
    with pytest.raises(ValueError):
        Bm25Params(**kw)


def test_params_default_to_lucene_values():
    assert Bm25Params() == Bm25Params(k1=1.2, b=0.75)


# ---------------------------------------------------------------- scores


@pytest.mark.parametrize("k1,b", [(1.2, 0.75), (0.9, 0.4), (2.0, 1.0), (0.0, 0.5)])
def test_inner_product_of_query_and_document_vectors_equals_direct_bm25(stats, k1, b):
    enc = Bm25Encoder(Analyzer(), Bm25Params(k1, b), stats)
    docs = enc.document_vectors(C, A, CORPUS)
    for query in ["heart disease in older patients", "heart heart blood", "bone running"]:
        q = enc.query_vector(C, A, query)
        got = [dot(q, d) for d in docs]
        want = direct_bm25(enc.analyzer, CORPUS, query, k1, b)
        assert got == pytest.approx(want, rel=1e-12, abs=1e-12)
        assert max(want) > 0


def test_all_weights_are_positive_as_milvus_requires(enc):
    docs = enc.document_vectors(C, A, CORPUS)
    q = enc.query_vector(C, A, "the heart of every patient")
    assert q and all(w > 0 for w in q.values())
    assert all(w > 0 for d in docs for w in d.values())
    assert all(0 <= t < 2**32 for d in docs for t in d)


def test_query_vector_weights_repeated_terms_and_ignores_unknown_terms(enc):
    enc.document_vectors(C, A, CORPUS)
    once = enc.query_vector(C, A, "heart")
    twice = enc.query_vector(C, A, "heart hearts")
    h = term_hash("heart")
    assert twice[h] == pytest.approx(2 * once[h])
    assert enc.query_vector(C, A, "heart xylophone") == once


def test_query_vectors_batch_matches_single_queries(enc):
    enc.document_vectors(C, A, CORPUS)
    texts = ["heart disease", "", "vitamin bone"]
    assert enc.query_vectors(C, A, texts) == [enc.query_vector(C, A, t) for t in texts]


def test_document_weights_handle_empty_documents_anywhere_in_a_batch():
    enc = Bm25Encoder()
    counts = [Counter(), Counter({1: 2, 2: 1}), Counter(), Counter({1: 1}), Counter()]
    vecs = enc.document_weights(counts, avgdl=1.5)
    assert vecs[0] == vecs[2] == vecs[4] == {}
    k1, b = 1.2, 0.75
    assert vecs[1][1] == pytest.approx(2 * 2.2 / (2 + k1 * (1 - b + b * 3 / 1.5)))
    assert vecs[3][1] == pytest.approx(1 * 2.2 / (1 + k1 * (1 - b + b * 1 / 1.5)))
    assert enc.document_weights([], 1.0) == []
    with pytest.raises(ValueError):
        enc.document_weights([Counter({1: 1})], avgdl=0.0)


def test_empty_or_stop_word_only_text_gives_empty_vectors(enc, stats):
    assert enc.analyzer.terms("") == [] and enc.analyzer.terms(None) == []
    assert enc.query_vector(C, A, "anything") == {}  # empty corpus
    vecs = enc.document_vectors(C, A, ["", "the of and", "heart"])
    assert vecs[0] == {} and vecs[1] == {} and vecs[2]
    # empty documents still belong to the corpus (length 0)
    assert stats.corpus(C, A) == CorpusStats(n_docs=3, total_len=1)
    assert enc.query_vector(C, A, "") == {}
    assert enc.query_vector(C, A, "the of and") == {}


# ---------------------------------------------------------------- statistics


def test_stats_count_documents_lengths_and_document_frequencies_on_add(enc, stats):
    enc.document_vectors(C, A, ["heart heart blood", "heart kidney"])
    assert stats.corpus(C, A) == CorpusStats(2, 5)
    assert stats.avgdl(C, A) == 2.5
    h, bl, k = term_hash("heart"), term_hash("blood"), term_hash("kidney")
    assert stats.df(C, A, [h, bl, k, term_hash("absent")]) == {h: 2, bl: 1, k: 1}
    assert stats.idf(C, A, [h, bl]) == pytest.approx({h: idf(2, 2), bl: idf(2, 1)})


def test_document_vectors_use_avgdl_including_the_batch_being_ingested(enc):
    enc.document_vectors(C, A, ["heart"])  # avgdl 1
    (vec,) = enc.document_vectors(C, A, ["blood blood blood"])  # avgdl now 2
    tf, dl, avgdl, k1, b = 3, 3, 2.0, 1.2, 0.75
    assert vec[term_hash("blood")] == pytest.approx(tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl)))


def test_stats_update_on_replace_and_delete(enc, stats):
    enc.document_vectors(C, A, ["heart heart blood", "heart kidney"])
    h, bl, k, bone = (term_hash(t) for t in ["heart", "blood", "kidney", "bone"])
    # replace doc 2 ("heart kidney") by "bone bone bone"
    enc.document_vectors(C, A, ["bone bone bone"], replaced_texts=["heart kidney"])
    assert stats.corpus(C, A) == CorpusStats(2, 6)
    assert stats.df(C, A, [h, bl, k, bone]) == {h: 1, bl: 1, bone: 1}
    # delete doc 1
    enc.remove_documents(C, A, ["heart heart blood"])
    assert stats.corpus(C, A) == CorpusStats(1, 3)
    assert stats.df(C, A, [h, bl, k, bone]) == {bone: 1}
    assert enc.query_vector(C, A, "heart blood") == {}
    # delete the last one: corpus empty again
    enc.remove_documents(C, A, ["bone bone bone"])
    assert stats.corpus(C, A) == CorpusStats(0, 0)
    assert stats.df(C, A, [bone]) == {}


def test_revert_documents_undoes_an_ingest(enc, stats):
    enc.document_vectors(C, A, ["heart blood", "kidney"])
    before = (stats.corpus(C, A), stats.df(C, A, [term_hash(t) for t in ["heart", "kidney", "bone"]]))
    args = (C, A, ["bone heart"], ["kidney"])
    enc.document_vectors(*args)
    assert stats.corpus(C, A) != before[0]
    enc.revert_documents(*args)
    after = (stats.corpus(C, A), stats.df(C, A, [term_hash(t) for t in ["heart", "kidney", "bone"]]))
    assert after == before


def test_removing_unknown_documents_clamps_at_zero(stats):
    stats.apply(C, A, [Counter({1: 1})])
    st = stats.apply(C, A, (), [Counter({1: 1}), Counter({1: 5, 2: 1})])
    assert st == CorpusStats(0, 0)
    assert stats.df(C, A, [1, 2]) == {}


def test_stats_are_per_tenant_and_per_collection(enc, stats):
    enc.document_vectors(C, A, CORPUS)
    query = "heart disease in older patients"
    q_before = enc.query_vector(C, A, query)
    corpus_before = stats.corpus(C, A)
    # tenant B (and another collection) get very different corpora
    enc.document_vectors(C, B, ["heart heart heart"] * 50 + ["disease"] * 10)
    enc.document_vectors("other", A, ["patients"] * 30)
    assert enc.query_vector(C, A, query) == q_before
    assert stats.corpus(C, A) == corpus_before
    assert stats.corpus(C, B) == CorpusStats(60, 160)
    # dropping B leaves A alone; dropping the collection removes every tenant of it only
    stats.drop_tenant(C, B)
    assert stats.corpus(C, B) == CorpusStats()
    assert enc.query_vector(C, A, query) == q_before
    stats.drop(C)
    assert stats.corpus(C, A) == CorpusStats()
    assert enc.query_vector(C, A, query) == {}
    assert stats.corpus("other", A) == CorpusStats(30, 30)


def test_stats_persist_across_reopening_the_file(tmp_path):
    path = tmp_path / "stats.sqlite"
    with Bm25Stats(path) as s1:
        e1 = Bm25Encoder(stats=s1)
        e1.document_vectors(C, A, CORPUS)
        q1 = e1.query_vector(C, A, "heart disease")
        c1 = s1.corpus(C, A)
    with Bm25Stats(path) as s2:
        e2 = Bm25Encoder(stats=s2)
        assert s2.corpus(C, A) == c1
        assert e2.query_vector(C, A, "heart disease") == q1
        mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"


def test_failed_apply_leaves_statistics_unchanged(stats, monkeypatch):
    stats.apply(C, A, [Counter({1: 2})])
    before = (stats.corpus(C, A), stats.df(C, A, [1, 2]))

    def boom(*a, **k):
        raise RuntimeError("crash in the middle of the transaction")

    # the corpus row has been written when the df lookup blows up
    monkeypatch.setattr(Bm25Stats, "_df_in", staticmethod(boom))
    with pytest.raises(RuntimeError):
        stats.apply(C, A, [Counter({1: 1, 2: 3})])
    monkeypatch.undo()
    assert (stats.corpus(C, A), stats.df(C, A, [1, 2])) == before
    stats.apply(C, A, [Counter({2: 1})])  # the lock and connection are still usable
    assert stats.corpus(C, A) == CorpusStats(2, 3)


def test_file_written_with_another_term_hash_is_refused(tmp_path):
    path = tmp_path / "stats.sqlite"
    Bm25Stats(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE bm25_meta SET value='other' WHERE key='term_hash'")
    with pytest.raises(RuntimeError, match="term_hash"):
        Bm25Stats(path)


def test_closed_stats_refuse_use(tmp_path):
    s = Bm25Stats(tmp_path / "x.sqlite")
    s.close()
    with pytest.raises(RuntimeError):
        s.corpus(C, A)
    with pytest.raises(ValueError):
        Bm25Stats(":memory:")


def test_concurrent_ingests_and_queries_from_threads_keep_exact_counts(tmp_path):
    stats = Bm25Stats(tmp_path / "mt.sqlite")
    enc = Bm25Encoder(stats=stats)
    n_threads, n_batches, batch = 6, 15, 4
    errors = []
    barrier = threading.Barrier(n_threads * 2)

    def writer(i):
        try:
            barrier.wait()
            tenant = A if i % 2 == 0 else B
            for j in range(n_batches):
                vecs = enc.document_vectors(C, tenant, [f"heart thread{i} batch{j} doc{k}" for k in range(batch)])
                assert all(len(v) == 4 for v in vecs)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    def reader():
        try:
            barrier.wait()
            for _ in range(n_batches * 3):
                q = enc.query_vector(C, A, "heart doc1")
                assert all(w > 0 for w in q.values())
                enc.analyzer.terms("running studies of patients")
        except Exception as e:  # pragma: no cover
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(n_threads)]
    threads += [threading.Thread(target=reader) for _ in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    per_tenant = n_threads // 2 * n_batches * batch
    for tenant in (A, B):
        assert stats.corpus(C, tenant) == CorpusStats(per_tenant, 4 * per_tenant)
        assert stats.df(C, tenant, [term_hash("heart")]) == {term_hash("heart"): per_tenant}
    stats.close()
