"""Read and validate a BEIR-layout collection: corpus, queries and relevance judgements.

Layout (as https://github.com/beir-cellar/beir writes it)::

    <root>/corpus.jsonl[.gz]     {"_id": "...", "title": "...", "text": "..."} per line
    <root>/queries.jsonl[.gz]    {"_id": "...", "text": "..."} per line
    <root>/qrels/<split>.tsv     header "query-id<TAB>corpus-id<TAB>score", then one judgement per line

Everything wrong with the input raises :class:`BeirError` with a message that names the
file (and the line, where there is one): a missing file, a line that is not JSON or not
three tab-separated fields, a duplicate id, a judgement naming a query or document that
does not exist, a split with no relevant judgements.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

QRELS_HEADER = ("query-id", "corpus-id", "score")


class BeirError(ValueError):
    """The collection folder is not a valid BEIR collection; the message names the file and line."""


@dataclass(frozen=True)
class BeirDoc:
    id: str
    title: str
    text: str

    @property
    def full_text(self) -> str:
        """What gets indexed and reranked: title and abstract (as the benchmarks index SciFact)."""
        return f"{self.title} {self.text}".strip()


@dataclass
class BeirCollection:
    root: Path
    corpus: dict[str, BeirDoc]
    queries: dict[str, str]
    # split -> query id -> document id -> graded relevance (> 0 is relevant)
    qrels: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)
    # Queries whose text is empty: left out of `queries` and of every split's judgements.
    empty_queries: set[str] = field(default_factory=set)

    @property
    def name(self) -> str:
        return self.root.name

    def without_titles(self) -> BeirCollection:
        """The same collection with every title dropped: ``full_text`` is then the text
        alone (how cmrc2018's sentences are indexed for its reference figures)."""
        corpus = {doc_id: BeirDoc(doc.id, "", doc.text) for doc_id, doc in self.corpus.items()}
        return BeirCollection(self.root, corpus, self.queries, self.qrels, self.files, self.empty_queries)

    def split_queries(self, split: str) -> dict[str, str]:
        """The queries judged in ``split`` (text by id), in qrels order."""
        return {qid: self.queries[qid] for qid in self.qrels[split]}

    def positives(self, split: str) -> dict[str, list[str]]:
        """Relevant documents (score > 0) per query of ``split``; queries with none are left out."""
        out = {}
        for qid, judged in self.qrels[split].items():
            relevant = [did for did, score in judged.items() if score > 0]
            if relevant:
                out[qid] = relevant
        return out

    def fingerprint(self, splits: Sequence[str] = ()) -> str:
        """SHA-256 (16 hex digits) of the corpus, queries and the named splits' qrels files."""
        h = hashlib.sha256()
        for key in ["corpus", "queries", *(f"qrels/{s}" for s in splits)]:
            path = self.files[key]
            h.update(key.encode() + b"\0")
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
        return h.hexdigest()[:16]


# ---------------------------------------------------------------- files
def _find(root: Path, stem: str, what: str) -> Path:
    candidates = [root / f"{stem}.jsonl", root / f"{stem}.jsonl.gz"]
    for path in candidates:
        if path.is_file():
            return path
    raise BeirError(
        f"{candidates[0]}: missing (nor {candidates[1].name}): a BEIR collection needs the {what} file {stem}.jsonl or {stem}.jsonl.gz"
    )


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line) of a text file, gzip-compressed when it ends in .gz."""
    opener = gzip.open if path.suffix == ".gz" else open
    line_no = 0
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for line_no, line in enumerate(f, 1):
                yield line_no, line.rstrip("\r\n")
    except UnicodeDecodeError as exc:
        raise BeirError(f"{path}:{line_no + 1}: not valid UTF-8 ({exc.reason})") from exc
    except (OSError, EOFError, zlib.error) as exc:
        raise BeirError(f"{path}:{line_no + 1}: cannot read the file ({exc})") from exc


def _json_rows(path: Path) -> Iterator[tuple[int, dict]]:
    for line_no, line in _lines(path):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BeirError(f"{path}:{line_no}: not valid JSON ({exc.msg} at column {exc.colno})") from exc
        if not isinstance(row, dict):
            raise BeirError(f"{path}:{line_no}: expected a JSON object, got {type(row).__name__}")
        yield line_no, row


def _id_of(path: Path, line_no: int, row: dict) -> str:
    value = row.get("_id")
    if value is None:
        raise BeirError(f'{path}:{line_no}: missing "_id"')
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise BeirError(f'{path}:{line_no}: "_id" must be a string or an integer, got {type(value).__name__}')
    value = str(value).strip()
    if not value:
        raise BeirError(f'{path}:{line_no}: "_id" is empty')
    return value


def _text_of(path: Path, line_no: int, row: dict, key: str, required: bool) -> str:
    value = row.get(key)
    if value is None:
        if required:
            raise BeirError(f'{path}:{line_no}: missing "{key}"')
        return ""
    if not isinstance(value, str):
        raise BeirError(f'{path}:{line_no}: "{key}" must be a string, got {type(value).__name__}')
    return value.strip()


def load_corpus(path: Path) -> dict[str, BeirDoc]:
    corpus: dict[str, BeirDoc] = {}
    first_line: dict[str, int] = {}
    for line_no, row in _json_rows(path):
        doc_id = _id_of(path, line_no, row)
        if doc_id in corpus:
            raise BeirError(f"{path}:{line_no}: duplicate document id {doc_id!r} (first on line {first_line[doc_id]})")
        title = _text_of(path, line_no, row, "title", required=False)
        text = _text_of(path, line_no, row, "text", required=True)
        if not title and not text:
            raise BeirError(f"{path}:{line_no}: document {doc_id!r} has neither title nor text")
        corpus[doc_id] = BeirDoc(doc_id, title, text)
        first_line[doc_id] = line_no
    if not corpus:
        raise BeirError(f"{path}: the corpus holds no documents")
    return corpus


def load_queries(path: Path) -> tuple[dict[str, str], set[str]]:
    """(text by query id, ids of queries whose text is empty).

    An empty question cannot be searched (the service refuses it), but published sets
    hold a few (cmrc2018's train split has two): such a query is left out, and so are its
    judgements (:func:`load_qrels`), rather than rejecting the whole collection."""
    queries: dict[str, str] = {}
    empty: set[str] = set()
    first_line: dict[str, int] = {}
    for line_no, row in _json_rows(path):
        qid = _id_of(path, line_no, row)
        if qid in queries or qid in empty:
            raise BeirError(f"{path}:{line_no}: duplicate query id {qid!r} (first on line {first_line[qid]})")
        text = _text_of(path, line_no, row, "text", required=True)
        first_line[qid] = line_no
        if not text:
            empty.add(qid)
            continue
        queries[qid] = text
    if not queries:
        raise BeirError(f"{path}: holds no queries" + (f" with text ({len(empty)} have empty text)" if empty else ""))
    return queries, empty


def load_qrels(
    path: Path,
    corpus: dict[str, BeirDoc],
    queries: dict[str, str],
    empty_queries: frozenset[str] | set[str] = frozenset(),
) -> dict[str, dict[str, int]]:
    """Judgements of one split, checked against the corpus and the queries; judgements of
    queries with empty text are skipped."""
    qrels: dict[str, dict[str, int]] = {}
    seen_header = False
    judged_line: dict[tuple[str, str], int] = {}
    for line_no, line in _lines(path):
        if not line.strip():
            continue
        cells = [c.strip() for c in line.split("\t")]
        if not seen_header:
            seen_header = True
            if tuple(c.lower() for c in cells) != QRELS_HEADER:
                raise BeirError(
                    f"{path}:{line_no}: expected the header line {chr(9).join(QRELS_HEADER)!r} (tab-separated), got {line[:80]!r}"
                )
            continue
        if len(cells) != 3:
            raise BeirError(
                f"{path}:{line_no}: expected 3 tab-separated fields (query-id, corpus-id, score), got {len(cells)}: {line[:80]!r}"
            )
        qid, did, raw_score = cells
        try:
            score = int(raw_score)
        except ValueError:
            raise BeirError(f"{path}:{line_no}: score {raw_score!r} is not an integer") from None
        if qid in empty_queries:
            continue
        if qid not in queries:
            raise BeirError(f"{path}:{line_no}: query id {qid!r} is not in the queries file")
        if did not in corpus:
            raise BeirError(f"{path}:{line_no}: corpus id {did!r} is not in the corpus")
        if (qid, did) in judged_line:
            raise BeirError(
                f"{path}:{line_no}: duplicate judgement for query {qid!r} and document {did!r} (first on line {judged_line[qid, did]})"
            )
        judged_line[qid, did] = line_no
        qrels.setdefault(qid, {})[did] = score
    if not seen_header:
        raise BeirError(f"{path}: the split is empty (no header, no judgements)")
    if not qrels:
        raise BeirError(f"{path}: the split is empty (a header but no judgements)")
    if not any(score > 0 for judged in qrels.values() for score in judged.values()):
        raise BeirError(f"{path}: the split has no relevant judgement (every score is <= 0)")
    return qrels


def available_splits(root: Path) -> list[str]:
    qrels = Path(root) / "qrels"
    return sorted(p.stem for p in qrels.glob("*.tsv")) if qrels.is_dir() else []


def load_beir(root: str | Path, splits: Sequence[str] = ("test",)) -> BeirCollection:
    """Load and validate ``root``; ``splits`` name the qrels files to read (qrels/<split>.tsv)."""
    root = Path(root)
    if not root.is_dir():
        raise BeirError(
            f"{root}: not a directory; expected a BEIR collection folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv)"
        )
    files = {"corpus": _find(root, "corpus", "corpus"), "queries": _find(root, "queries", "queries")}
    for split in splits:
        path = root / "qrels" / f"{split}.tsv"
        if not path.is_file():
            have = available_splits(root)
            raise BeirError(
                f"{path}: missing: no qrels for split {split!r}"
                + (f" (splits here: {', '.join(have)})" if have else " (no qrels/*.tsv here)")
            )
        files[f"qrels/{split}"] = path
    corpus = load_corpus(files["corpus"])
    queries, empty = load_queries(files["queries"])
    qrels = {split: load_qrels(files[f"qrels/{split}"], corpus, queries, empty) for split in splits}
    return BeirCollection(root=root, corpus=corpus, queries=queries, qrels=qrels, files=files, empty_queries=empty)
