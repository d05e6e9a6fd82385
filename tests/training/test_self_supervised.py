"""Self-supervised training pairs (training/self_supervised.py): sentence splitting, title and
inverse-cloze pairs on English, Chinese and mixed corpora, what is kept out (the evaluated
split, a title's own article), determinism, and `train-reranker --self-supervised` through
the real mining service on a tiny BEIR folder."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from hybridsearch.training.beir import BeirDoc, load_beir
from hybridsearch.training.self_supervised import (
    Exclusion,
    corpus_from_jsonl,
    examples_from,
    normalized,
    parse_kinds,
    pseudo_queries,
    split_sentences,
    units,
)
from tests.conftest import TINY_BM25_PROFILE, make_settings
from tests.tiny_models import WORDS

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


# ---------------------------------------------------------------- sentences
def test_english_sentences_keep_abbreviations_numbers_and_quotes():
    text = 'Smith et al. showed it in 2019. The p-value was 0.05, e.g. small. Fig. 2 shows why! Does it? "Yes." Ok'
    assert split_sentences(text) == [
        "Smith et al. showed it in 2019.",
        "The p-value was 0.05, e.g. small.",
        "Fig. 2 shows why!",
        "Does it?",
        '"Yes." Ok',  # "Ok" is shorter than a sentence: joined to the one before
    ]


def test_chinese_and_mixed_sentences():
    assert split_sentences("吊钟是一种落叶灌木，可高约7米。花朵通常是粉红色的！为什么叫吊钟？因为花形似钟。") == [
        "吊钟是一种落叶灌木，可高约7米。",
        "花朵通常是粉红色的！",
        "为什么叫吊钟？",
        "因为花形似钟。",
    ]
    # Closing quotes stay with their sentence; a short tail joins the one before.
    assert split_sentences("取其「金钟一响，黄金万两」的吉兆。」他后来这样说过。好") == [
        "取其「金钟一响，黄金万两」的吉兆。」",
        "他后来这样说过。好",
    ]
    assert split_sentences("取其吉兆。他说。") == ["取其吉兆。他说。"]
    assert split_sentences(
        "iPhone 15 的电池续航比上一代更长。It lasts 20 hours on video. 视频播放最长可达 20 小时。"
    ) == [
        "iPhone 15 的电池续航比上一代更长。",
        "It lasts 20 hours on video.",
        "视频播放最长可达 20 小时。",
    ]
    # No full stop inside a number or a Latin word glued to Chinese.
    assert split_sentences("版本3.5发布于2020年。共8卷") == ["版本3.5发布于2020年。共8卷"]


def test_units_count_words_and_half_a_word_per_cjk_character():
    assert units("Hello world 2020") == 3
    assert units("吊钟花") == 1.5
    assert units("iPhone 15 的电池") == 3.5


# ---------------------------------------------------------------- corpora
def english_corpus(n: int = 30, seed: int = 5) -> dict[str, BeirDoc]:
    rng = random.Random(seed)

    def sentence(k: int) -> str:
        return " ".join(rng.sample(WORDS, k)).capitalize() + "."

    docs = {}
    for i in range(n):
        title = " ".join(rng.sample(WORDS, 5)).capitalize()
        docs[f"en{i}"] = BeirDoc(f"en{i}", title, " ".join(sentence(rng.randint(6, 12)) for _ in range(4)))
    docs["short-title"] = BeirDoc("short-title", "Aging", " ".join(sentence(8) for _ in range(3)))
    docs["one-sentence"] = BeirDoc("one-sentence", "A title of five words", sentence(9))
    return docs


def chinese_corpus() -> dict[str, BeirDoc]:
    """cmrc2018's shape: one sentence per document, every sentence of an article under its title."""
    articles = {
        "吊钟": [
            "因花朵在农历新年前后开花，故英文又名为中国新年花。",
            "吊钟是一种落叶或半常绿灌木，可高约7米。",
            "树皮呈灰黄色，多分枝，小枝呈淡褐色。",
            "吊钟花的花朵通常是粉红色或红色的。",
        ],
        "几内亚法郎": [
            "几内亚法郎是几内亚的法定货币。",
            "一九五八年起由几内亚中央银行发行。",
            "后来由于几内亚和法国断交，货币改革了。",
        ],
        "澳门行政区划": [
            "澳门在葡属时期划分为两个市。",
            "现时澳门的堂区只具有象征意义。",
            "澳门人日常生活更倾向以建筑物来分区。",
        ],
        "无名": [
            "这一篇文章的句子都没有提到自己的标题。",
            "所以它没有公平的标题正例可以用。",
            "但它仍然可以给出句子查询的训练对。",
        ],
    }
    docs = {}
    for a, (title, sentences) in enumerate(articles.items()):
        for s, text in enumerate(sentences):
            docs[f"zh{a}-s{s:02d}"] = BeirDoc(f"zh{a}-s{s:02d}", title, text)
    return docs


def mixed_corpus() -> dict[str, BeirDoc]:
    return {
        "mx0": BeirDoc(
            "mx0",
            "Milvus 向量数据库",
            "Milvus 是一个开源的向量数据库。它支持 dense 和 sparse 向量的混合检索。Hybrid search fuses both routes. 查询可以按租户隔离。",
        ),
        "mx1": BeirDoc(
            "mx1",
            "BGE-M3 模型的两种向量",
            "BGE-M3 模型一次前向计算即可得到稠密向量。It also gives sparse lexical weights. 这对混合检索很方便。",
        ),
        **{k: v for k, v in english_corpus(6, seed=9).items() if k.startswith("en")},
    }


# ---------------------------------------------------------------- pairs
def test_english_title_and_ict_pairs():
    corpus = english_corpus()
    pseudo = pseudo_queries(corpus, ("title", "ict"), max_pairs=1000, seed=1)
    titles = [p for p in pseudo if p.kind == "title"]
    icts = [p for p in pseudo if p.kind == "ict"]
    assert {p.source for p in titles} == {f"en{i}" for i in range(30)} | {"one-sentence"}  # "Aging": too short a title
    for p in titles:
        doc = corpus[p.source]
        assert p.text == doc.title and p.positive == doc.text and p.positive_docs == (p.source,)
    # ICT: documents of at least three sentences; the query sentence is cut out of the rest.
    assert {p.source for p in icts} == {f"en{i}" for i in range(30)} | {"short-title"}
    for p in icts:
        doc = corpus[p.source]
        assert p.text in split_sentences(doc.text) and p.text not in p.positive
        assert p.positive.startswith(doc.title)
        rest = [s for s in split_sentences(doc.text) if s != p.text]
        assert all(s in p.positive for s in rest)


def test_chinese_pairs_use_a_sentence_naming_the_shared_title_and_neighbours():
    corpus = chinese_corpus()
    pseudo = pseudo_queries(corpus, ("title", "ict"), max_pairs=1000, seed=1)
    by_text = {p.text: p for p in pseudo if p.kind == "title"}
    # A shared title: the first sentence of its article that names it (not the lead sentence).
    assert by_text["吊钟"].positive_docs == ("zh0-s01",)
    assert by_text["几内亚法郎"].positive_docs == ("zh1-s00",)
    assert "澳门行政区划" not in by_text  # no sentence of the article names it: no fair positive
    assert "无名" not in by_text
    # ICT on one-sentence documents: the query is the sentence, the positive its neighbours in the article.
    icts = {p.source: p for p in pseudo if p.kind == "ict"}
    assert icts["zh0-s01"].text == corpus["zh0-s01"].text
    assert icts["zh0-s01"].positive_docs == ("zh0-s00", "zh0-s02")
    assert icts["zh0-s01"].positive == "吊钟 " + corpus["zh0-s00"].text + corpus["zh0-s02"].text
    assert icts["zh0-s00"].positive_docs == ("zh0-s01",)  # first sentence: one neighbour
    assert all(corpus[p.source].text not in p.positive for p in icts.values())


def test_mixed_pairs():
    corpus = mixed_corpus()
    pseudo = pseudo_queries(corpus, ("title", "ict"), max_pairs=1000, seed=2)
    mx = [p for p in pseudo if p.source.startswith("mx")]
    assert {(p.kind, p.source) for p in mx} == {("title", "mx0"), ("title", "mx1"), ("ict", "mx0"), ("ict", "mx1")}
    for p in mx:
        if p.kind == "ict":
            assert p.text in split_sentences(corpus[p.source].text) and p.text not in p.positive


def test_deterministic_capped_and_shared_between_kinds():
    corpus = {**english_corpus(), **chinese_corpus()}
    a = pseudo_queries(corpus, ("title", "ict"), max_pairs=20, seed=3)
    assert a == pseudo_queries(corpus, ("title", "ict"), max_pairs=20, seed=3)
    assert len(a) == 20 and sum(p.kind == "title" for p in a) == 10
    assert a != pseudo_queries(corpus, ("title", "ict"), max_pairs=20, seed=4)
    # A kind that runs short leaves its share to the other.
    only_zh = chinese_corpus()
    b = pseudo_queries(only_zh, ("title", "ict"), max_pairs=12, seed=3)
    assert sum(p.kind == "title" for p in b) == 2 and sum(p.kind == "ict" for p in b) == 10
    assert pseudo_queries(corpus, ("ict",), max_pairs=0) == []
    assert len({normalized(p.text) for p in pseudo_queries(corpus, max_pairs=10_000)}) == len(
        pseudo_queries(corpus, max_pairs=10_000)
    )
    with pytest.raises(ValueError, match="unknown self-supervised kind 'cloze'"):
        pseudo_queries(corpus, ("cloze",))
    assert parse_kinds("title, ICT,title") == ["title", "ict"]
    with pytest.raises(ValueError, match="choose from title, ict"):
        parse_kinds("title,body")


def test_excluded_documents_and_queries_never_appear():
    corpus = {**english_corpus(), **chinese_corpus()}
    everything = pseudo_queries(corpus, max_pairs=10_000, seed=1)
    excluded_docs = {"en0", "en1", "zh0-s01", "zh0-s02"}
    excluded_query = corpus["en2"].title
    exclusion = Exclusion.of(excluded_docs, [excluded_query.upper() + "."])
    pseudo = pseudo_queries(corpus, max_pairs=10_000, seed=1, exclusion=exclusion)
    assert pseudo and len(pseudo) < len(everything)
    for p in pseudo:
        assert p.source not in excluded_docs and not set(p.positive_docs) & excluded_docs
        assert normalized(p.text) != normalized(excluded_query)
        for doc_id in excluded_docs:
            assert corpus[doc_id].text not in p.positive and corpus[doc_id].text != p.text
    # 吊钟's naming sentence is excluded: the next one naming it takes its place.
    assert next(p for p in pseudo if p.text == "吊钟").positive_docs == ("zh0-s03",)
    # Negatives: an excluded document is never one, even when retrieval ranks it first.
    ranked = {p.qid: list(excluded_docs) + [d for d in corpus if d not in excluded_docs] for p in pseudo}
    examples = examples_from(pseudo, ranked, corpus, exclusion=exclusion)
    assert examples
    banned_texts = {corpus[d].text for d in excluded_docs} | {corpus[d].full_text for d in excluded_docs}
    for ex in examples:
        assert not banned_texts & set(ex.negatives)
        assert all(corpus[d].text not in ex.positive for d in excluded_docs)


def test_a_title_is_never_its_own_negative():
    corpus = {**english_corpus(), **chinese_corpus()}
    pseudo = pseudo_queries(corpus, max_pairs=10_000, seed=1)
    everything = list(corpus)
    examples = examples_from(pseudo, {p.qid: everything for p in pseudo}, corpus)
    assert len(examples) == len(pseudo)
    for p, ex in zip(pseudo, examples, strict=True):
        assert ex.query == p.text and ex.positive == p.positive
        same_title = {d for d, doc in corpus.items() if normalized(doc.title) == normalized(corpus[p.source].title)}
        for d in same_title | {p.source, *p.positive_docs}:
            assert corpus[d].text not in ex.negatives and corpus[d].full_text not in ex.negatives
        assert all(normalized(p.text) not in normalized(n) for n in ex.negatives)
        if p.kind == "title":  # matched without titles, positive and negatives alike
            assert all(n in {doc.text for doc in corpus.values()} for n in ex.negatives)
    # A query whose only hits are its own article gives no example.
    zh = chinese_corpus()
    title = next(p for p in pseudo_queries(zh, ("title",), seed=1) if p.text == "吊钟")
    assert examples_from([title], {title.qid: [d for d in zh if d.startswith("zh0")]}, zh) == []


def test_exclusion_of_beir_splits(tmp_path):
    root = write_beir(tmp_path / "beir")
    beir = load_beir(root, ("train", "test"))
    ex = Exclusion.of_splits(beir, ["test"])
    assert ex.documents == {d for judged in beir.qrels["test"].values() for d in judged}
    assert ex.query_ids == set(beir.qrels["test"]) and ex.splits == ("test",)
    assert all(not ex.keeps_query(beir.queries[q]) for q in beir.qrels["test"])


def test_sample_corpora_read_with_their_titles():
    scifact = corpus_from_jsonl(SAMPLES / "scifact-300.jsonl")
    rows = [json.loads(line) for line in (SAMPLES / "scifact-300.jsonl").read_text().splitlines()]
    assert len(scifact) == len(rows) == 300
    for row in rows:
        doc = scifact[row["id"]]
        assert row["text"].startswith(doc.title) and row["text"].endswith(doc.text) and not doc.text.startswith(".")
        assert len(doc.title) >= len(row["metadata"]["title"].strip())  # a title cut at 200 characters is found whole
    zh = corpus_from_jsonl(SAMPLES / "cmrc2018-zh.jsonl")
    assert zh["dev-DEV_360-s00"].title == "吊钟" and zh["dev-DEV_360-s00"].text.startswith("因吊钟的花朵")
    pseudo = pseudo_queries(zh, seed=13)
    assert any(p.kind == "title" for p in pseudo) and any(p.kind == "ict" for p in pseudo)


# ---------------------------------------------------------------- through train-reranker
N_DOCS = 36


def write_beir(root: Path, seed: int = 11) -> Path:
    """English documents of titled multi-sentence abstracts and a few Chinese ones; a query is
    three words of its relevant document; train, dev and test splits."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    docs = []
    for i in range(N_DOCS):
        sentences = [" ".join(rng.sample(WORDS, rng.randint(5, 9))).capitalize() + "." for _ in range(3)]
        docs.append({"_id": f"doc{i}", "title": " ".join(rng.sample(WORDS, 4)), "text": " ".join(sentences)})
    for a, (title, sentences) in enumerate(chinese_articles().items()):
        docs += [{"_id": f"zh{a}-s{s}", "title": title, "text": text} for s, text in enumerate(sentences)]
    queries, qrels = [], {"train": [], "dev": [], "test": []}
    for i in range(24):
        doc = docs[i]
        queries.append({"_id": f"q{i}", "text": " ".join(rng.sample(doc["text"].rstrip(".").split(), 3))})
        qrels["train" if i < 14 else "dev" if i < 19 else "test"].append((f"q{i}", doc["_id"], 1))
    (root / "corpus.jsonl").write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs))
    (root / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (root / "qrels").mkdir(exist_ok=True)
    for split, rows in qrels.items():
        (root / "qrels" / f"{split}.tsv").write_text(
            "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{s}\n" for q, d, s in rows)
        )
    return root


def chinese_articles() -> dict[str, list[str]]:
    return {
        "吊钟": ["吊钟是一种落叶或半常绿灌木。", "树皮呈灰黄色，多分枝。", "花朵通常是粉红色的。"],
        "几内亚法郎": ["几内亚法郎是几内亚的法定货币。", "由中央银行发行。", "后来货币改革了。"],
    }


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_m3_dir, tiny_reranker_dir):
    root = tmp_path_factory.mktemp("selfsup")
    return {
        "root": root,
        "beir": write_beir(root / "tinybeir"),
        "cache": root / "cache",
        "settings": make_settings(root / "unused", tiny_m3_dir),
        "base": tiny_reranker_dir,
    }


def run(ws, monkeypatch, **overrides):
    """train_from_beir with training replaced by a recorder: the examples it would train on."""
    from types import SimpleNamespace

    from hybridsearch.training import cross_encoder
    from hybridsearch.training.hard_negatives import train_from_beir

    seen = {}

    def record(base_dir, examples, out, config, **kwargs):
        seen["examples"] = list(examples)
        return SimpleNamespace(cached=False, info={}, seconds=0.0)

    monkeypatch.setattr(cross_encoder, "train_cross_encoder", record)
    kwargs = dict(
        split="train",
        base=str(ws["base"]),
        cache_dir=ws["cache"],
        settings=ws["settings"],
        profile=TINY_BM25_PROFILE,
        mine_depth=12,
        progress=False,
    )
    kwargs.update(overrides)
    report = train_from_beir(ws["beir"], **kwargs)
    return report, seen["examples"]


def test_train_from_beir_adds_pairs_and_keeps_the_evaluated_splits_out(workspace, monkeypatch):
    judged_report, judged = run(workspace, monkeypatch)
    assert judged_report.sources == {"judged": len(judged)}
    # Without the option the examples are exactly the judged ones (today's run: same data hash).
    beir = load_beir(workspace["beir"], ("train", "dev", "test"))
    assert judged and all(ex.query in beir.queries.values() for ex in judged)

    report, examples = run(workspace, monkeypatch, self_supervised=("title", "ict"), self_supervised_max=60)
    assert examples[: len(judged)] == judged
    extra = examples[len(judged) :]
    assert report.sources["judged"] == len(judged) and report.sources["title"] > 0 and report.sources["ict"] > 0
    assert report.sources["title"] + report.sources["ict"] == len(extra)
    assert report.sources["excluded_splits"] == ["dev", "test"]
    # Nothing judged in dev or test is a query's source, a positive or a negative.
    held_out = {d for split in ("dev", "test") for judged_docs in beir.qrels[split].values() for d in judged_docs}
    assert report.sources["excluded_documents"] == len(held_out)
    held_texts = {t for d in held_out for t in (beir.corpus[d].text, beir.corpus[d].full_text)}
    held_sentences = {s for d in held_out for s in split_sentences(beir.corpus[d].text)}
    for ex in extra:
        assert ex.query not in held_sentences and ex.query not in {beir.corpus[d].title for d in held_out}
        assert not held_texts & {ex.positive, *ex.negatives}
        assert not any(s in ex.positive for s in held_sentences)
    # Chinese titles take part too, and never have their own article as a negative.
    zh = [ex for ex in extra if ex.query in chinese_articles()]
    assert zh and all(not any(s in n for s in chinese_articles()[ex.query] for n in ex.negatives) for ex in zh)
    # Deterministic: the same run again gives the same examples (from the cached ranked lists).
    assert run(workspace, monkeypatch, self_supervised=("title", "ict"), self_supervised_max=60)[1] == examples
    # Told to exclude only test, dev documents may be used.
    report_t, _ = run(
        workspace, monkeypatch, self_supervised=("ict",), self_supervised_max=60, self_supervised_exclude=["test"]
    )
    assert report_t.sources["excluded_splits"] == ["test"] and "title" not in report_t.sources
    # Self-supervised pairs alone.
    report_s, only = run(workspace, monkeypatch, self_supervised=("title", "ict"), self_supervised_max=60, judged=False)
    assert report_s.sources["judged"] == 0 and only == extra
    with pytest.raises(ValueError, match="judged=False needs self-supervised kinds"):
        run(workspace, monkeypatch, judged=False)


def test_cli_self_supervised_option(workspace, tmp_path, capsys):
    """A real (tiny) training run through `hsearch train-reranker --self-supervised title,ict`."""
    import yaml

    from hybridsearch.engine.cli import main

    config = tmp_path / "hsearch.yaml"
    profiles = {name: p.model_dump() for name, p in workspace["settings"].profiles.items()}
    config.write_text(yaml.safe_dump({"profiles": profiles, "default_profile": TINY_BM25_PROFILE}))
    common = [
        "train-reranker",
        "--beir",
        str(workspace["beir"]),
        "--base",
        str(workspace["base"]),
        "--cache-dir",
        str(workspace["cache"]),
        "--config",
        str(config),
        "--profile",
        TINY_BM25_PROFILE,
        "--mine-depth",
        "12",
        "--epochs",
        "1",
        "--batch-groups",
        "8",
        "--max-length",
        "48",
        "--quiet",
        "--out",
        str(tmp_path / "model"),
    ]
    assert main(common + ["--self-supervised", "title,ict", "--self-supervised-max", "30"]) == 0
    err = capsys.readouterr().err
    assert (
        "examples per source: judged 14, title" in err
        and "kept out of the self-supervised pairs: splits dev, test" in err
    )
    assert main(common + ["--self-supervised", "title,body"]) == 2
    assert "unknown kind 'body'" in capsys.readouterr().err
    assert main(common + ["--no-judged"]) == 2
    assert "--no-judged needs --self-supervised" in capsys.readouterr().err
