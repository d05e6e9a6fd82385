"""BEIR folder loading: the happy path and every kind of bad input, with file and line in the error."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from hybridsearch.training.beir import BeirError, load_beir

DOCS = [
    {"_id": "d1", "title": "Vitamin D", "text": "Vitamin D lowers the risk of fractures."},
    {"_id": "d2", "title": "", "text": "Insulin resistance in obesity."},
    {"_id": 3, "title": "Integer id", "text": "BEIR ids may be written as numbers."},
]
QUERIES = [
    {"_id": "q1", "text": "does vitamin d prevent fractures"},
    {"_id": "q2", "text": "insulin and obesity"},
    {"_id": "q3", "text": "numbers as ids"},
]
QRELS = {
    "train": [("q1", "d1", 1), ("q2", "d2", 1), ("q2", "d1", 0)],
    "test": [("q3", "3", 1)],
}


def write_lines(path: Path, lines: list[str], gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(line + "\n" for line in lines)
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def make_folder(root: Path, *, docs=DOCS, queries=QUERIES, qrels=QRELS, gz: bool = False) -> Path:
    write_lines(root / ("corpus.jsonl.gz" if gz else "corpus.jsonl"), [json.dumps(d) for d in docs], gz=gz)
    write_lines(root / "queries.jsonl", [json.dumps(q) for q in queries])
    for split, rows in qrels.items():
        write_lines(
            root / "qrels" / f"{split}.tsv", ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t{s}" for q, d, s in rows]
        )
    return root


def error_of(root: Path, splits=("train",)) -> str:
    with pytest.raises(BeirError) as info:
        load_beir(root, splits)
    return str(info.value)


@pytest.mark.parametrize("gz", [False, True])
def test_loads_a_valid_folder(tmp_path, gz):
    root = make_folder(tmp_path / "col", gz=gz)
    c = load_beir(root, ("train", "test"))
    assert c.name == "col"
    assert set(c.corpus) == {"d1", "d2", "3"}
    assert c.corpus["d1"].full_text == "Vitamin D Vitamin D lowers the risk of fractures."
    assert c.corpus["d2"].full_text == "Insulin resistance in obesity."
    assert c.queries["q1"] == "does vitamin d prevent fractures"
    assert c.qrels["train"] == {"q1": {"d1": 1}, "q2": {"d2": 1, "d1": 0}}
    assert c.positives("train") == {"q1": ["d1"], "q2": ["d2"]}
    assert list(c.split_queries("test")) == ["q3"]
    assert len(c.fingerprint(["train"])) == 16


def test_fingerprint_follows_the_content(tmp_path):
    a = load_beir(make_folder(tmp_path / "a"), ("train",))
    b = load_beir(make_folder(tmp_path / "b"), ("train",))
    assert a.fingerprint(["train"]) == b.fingerprint(["train"])
    c = load_beir(make_folder(tmp_path / "c", queries=QUERIES[:2] + [{"_id": "q3", "text": "other"}]), ("train",))
    assert c.fingerprint(["train"]) != a.fingerprint(["train"])


def test_missing_folder(tmp_path):
    assert "not a directory" in error_of(tmp_path / "nope")


def test_missing_corpus_names_the_expected_file(tmp_path):
    root = make_folder(tmp_path / "col")
    (root / "corpus.jsonl").unlink()
    msg = error_of(root)
    assert str(root / "corpus.jsonl") in msg and "corpus.jsonl.gz" in msg and "missing" in msg


def test_missing_queries(tmp_path):
    root = make_folder(tmp_path / "col")
    (root / "queries.jsonl").unlink()
    assert str(root / "queries.jsonl") in error_of(root)


def test_missing_split_lists_the_available_ones(tmp_path):
    root = make_folder(tmp_path / "col")
    msg = error_of(root, ("dev",))
    assert str(root / "qrels" / "dev.tsv") in msg and "test, train" in msg


def test_malformed_json_names_file_and_line(tmp_path):
    root = make_folder(tmp_path / "col")
    write_lines(root / "corpus.jsonl", [json.dumps(DOCS[0]), '{"_id": "d2", "text": broken', json.dumps(DOCS[2])])
    msg = error_of(root)
    assert f"{root / 'corpus.jsonl'}:2:" in msg and "not valid JSON" in msg


def test_malformed_gzip_json_names_file_and_line(tmp_path):
    root = make_folder(tmp_path / "col", gz=True)
    write_lines(root / "corpus.jsonl.gz", [json.dumps(DOCS[0]), "", "[1, 2]"], gz=True)
    msg = error_of(root)
    assert f"{root / 'corpus.jsonl.gz'}:3:" in msg and "JSON object" in msg


def test_corrupt_gzip(tmp_path):
    root = make_folder(tmp_path / "col")
    (root / "corpus.jsonl").unlink()
    (root / "corpus.jsonl.gz").write_bytes(b"not gzip at all")
    msg = error_of(root)
    assert str(root / "corpus.jsonl.gz") in msg and "cannot read" in msg


@pytest.mark.parametrize(
    "row, expected",
    [
        ({"title": "t", "text": "x"}, 'missing "_id"'),
        ({"_id": "", "text": "x"}, '"_id" is empty'),
        ({"_id": ["a"], "text": "x"}, '"_id" must be a string'),
        ({"_id": "d9"}, 'missing "text"'),
        ({"_id": "d9", "text": 5}, '"text" must be a string'),
        ({"_id": "d9", "title": "", "text": "  "}, "neither title nor text"),
    ],
)
def test_bad_documents(tmp_path, row, expected):
    root = make_folder(tmp_path / "col", docs=DOCS + [row])
    msg = error_of(root)
    assert f"{root / 'corpus.jsonl'}:4:" in msg and expected in msg


def test_duplicate_document_id(tmp_path):
    root = make_folder(tmp_path / "col", docs=DOCS + [{"_id": "d2", "text": "again"}])
    msg = error_of(root)
    assert f"{root / 'corpus.jsonl'}:4:" in msg and "duplicate document id 'd2'" in msg and "line 2" in msg


def test_duplicate_query_id(tmp_path):
    root = make_folder(tmp_path / "col", queries=QUERIES + [{"_id": "q1", "text": "again"}])
    msg = error_of(root)
    assert f"{root / 'queries.jsonl'}:4:" in msg and "duplicate query id 'q1'" in msg


def test_a_query_with_empty_text_is_left_out_with_its_judgements(tmp_path):
    # cmrc2018's train split holds two; the service could not search it anyway.
    qrels = {"train": QRELS["train"] + [("q9", "d1", 1)], "test": QRELS["test"]}
    root = make_folder(tmp_path / "col", queries=QUERIES + [{"_id": "q9", "text": " "}], qrels=qrels)
    c = load_beir(root, ("train",))
    assert "q9" not in c.queries and c.empty_queries == {"q9"}
    assert set(c.qrels["train"]) == {"q1", "q2"}


def test_only_empty_queries_is_an_error(tmp_path):
    root = make_folder(tmp_path / "col", queries=[{"_id": "q1", "text": ""}], qrels={"train": [("q1", "d1", 1)]})
    assert "holds no queries with text (1 have empty text)" in error_of(root)


def test_without_titles_indexes_the_text_alone(tmp_path):
    c = load_beir(make_folder(tmp_path / "col"), ("train",)).without_titles()
    assert c.corpus["d1"].full_text == "Vitamin D lowers the risk of fractures."
    assert set(c.qrels["train"]) == {"q1", "q2"}


def test_empty_corpus(tmp_path):
    root = make_folder(tmp_path / "col")
    write_lines(root / "corpus.jsonl", [])
    assert "no documents" in error_of(root)


def test_qrels_unknown_document(tmp_path):
    root = make_folder(tmp_path / "col", qrels={"train": [("q1", "d1", 1), ("q2", "d77", 1)]})
    msg = error_of(root)
    assert f"{root / 'qrels' / 'train.tsv'}:3:" in msg and "corpus id 'd77' is not in the corpus" in msg


def test_qrels_unknown_query(tmp_path):
    root = make_folder(tmp_path / "col", qrels={"train": [("q42", "d1", 1)]})
    msg = error_of(root)
    assert f"{root / 'qrels' / 'train.tsv'}:2:" in msg and "query id 'q42'" in msg


def test_qrels_bad_header(tmp_path):
    root = make_folder(tmp_path / "col")
    write_lines(root / "qrels" / "train.tsv", ["q1\td1\t1"])
    msg = error_of(root)
    assert f"{root / 'qrels' / 'train.tsv'}:1:" in msg and "header" in msg


def test_qrels_wrong_field_count_and_score(tmp_path):
    root = make_folder(tmp_path / "col")
    write_lines(root / "qrels" / "train.tsv", ["query-id\tcorpus-id\tscore", "q1\td1\t1", "q2 d2 1"])
    msg = error_of(root)
    assert f"{root / 'qrels' / 'train.tsv'}:3:" in msg and "3 tab-separated fields" in msg
    write_lines(root / "qrels" / "train.tsv", ["query-id\tcorpus-id\tscore", "q1\td1\thigh"])
    msg = error_of(root)
    assert f"{root / 'qrels' / 'train.tsv'}:2:" in msg and "not an integer" in msg


def test_qrels_duplicate_judgement(tmp_path):
    root = make_folder(tmp_path / "col", qrels={"train": [("q1", "d1", 1), ("q1", "d1", 2)]})
    msg = error_of(root)
    assert f"{root / 'qrels' / 'train.tsv'}:3:" in msg and "duplicate judgement" in msg


@pytest.mark.parametrize(
    "lines, expected",
    [
        ([], "empty (no header"),
        (["query-id\tcorpus-id\tscore"], "empty (a header but no judgements)"),
        (["query-id\tcorpus-id\tscore", "q1\td1\t0"], "no relevant judgement"),
    ],
)
def test_empty_split(tmp_path, lines, expected):
    root = make_folder(tmp_path / "col")
    write_lines(root / "qrels" / "train.tsv", lines)
    msg = error_of(root)
    assert str(root / "qrels" / "train.tsv") in msg and expected in msg


def test_only_named_splits_are_checked(tmp_path):
    root = make_folder(tmp_path / "col")
    write_lines(root / "qrels" / "test.tsv", ["garbage"])
    assert set(load_beir(root, ("train",)).qrels) == {"train"}
