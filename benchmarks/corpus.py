"""Benchmark corpora built from SciFact (BEIR layout), with cached dense encodings.

Used by the latency benchmarks. A corpus of N documents is the first N documents of this
sequence:

* replica 0: the 5,183 SciFact documents as they are (text = ``title + " " + abstract``,
  id = the SciFact id);
* replica r >= 1: every SciFact document again, in the same order, as a *textual
  variation*: each word is dropped with probability ``WORD_DROP`` (10 %), decided by a
  generator seeded with (seed, replica, document index), so the variation is the same on
  every run and machine; id = ``"<SciFact id>~r<r>"``.

So 50,000 documents = 9 full copies (replicas 0-8) + the first 3,353 documents of
replica 9. ``size == 5000`` is special: it means the whole of SciFact (5,183 documents),
the "5k" corpus of the issue.

Dense vectors are not computed per variation (50k MiniLM encodings take ~50 min on two
cores). The 5,183 originals are encoded once with the service's own profile and cached
as ``.npy``; a variation's vector is its original's vector plus Gaussian noise, then
re-normalised. The noise scale is calibrated on the real thing: encoding 48 random SciFact
documents with 10 % of their words dropped moves the MiniLM vector by ||delta|| = 0.215 on
average (cosine 0.974 to the original); ``DENSE_NOISE_NORM`` gives the same expected
distance (per-dimension sigma = 0.215 / sqrt(dim)). Sparse (BM25) vectors are always
computed from the actual text of each document, variations included.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.harness import CACHE as CACHE_DIR
from benchmarks.harness import DEFAULT_DATA

WORD_DROP = 0.10
DENSE_NOISE_NORM = 0.215
FULL_SCIFACT_ALIAS = 5000


@dataclass(frozen=True)
class SourceDoc:
    id: str
    text: str


@dataclass(frozen=True)
class CorpusDoc:
    id: str
    text: str
    source: int  # index into the SciFact documents
    replica: int


def load_scifact_docs(data: Path = DEFAULT_DATA) -> list[SourceDoc]:
    docs = []
    with gzip.open(data / "corpus.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            title, text = (d.get("title") or "").strip(), (d.get("text") or "").strip()
            docs.append(SourceDoc(str(d["_id"]), f"{title} {text}".strip()))
    return docs


def load_test_queries(data: Path = DEFAULT_DATA, split: str = "test") -> list[tuple[str, str]]:
    """(query id, text) of the queries in ``qrels/<split>.tsv``, in qrels order."""
    texts = {}
    with open(data / "queries.jsonl", encoding="utf-8") as f:
        for line in f:
            q = json.loads(line)
            texts[str(q["_id"])] = q["text"]
    ids: list[str] = []
    seen = set()
    with open(data / "qrels" / f"{split}.tsv", encoding="utf-8") as f:
        next(f)  # header
        for line in f:
            qid = line.split("\t", 1)[0]
            if qid not in seen:
                seen.add(qid)
                ids.append(qid)
    return [(qid, texts[qid]) for qid in ids]


def load_qrels(data: Path = DEFAULT_DATA, split: str = "test") -> dict[str, dict[str, int]]:
    """query id -> {doc id: grade} from ``qrels/<split>.tsv``."""
    qrels: dict[str, dict[str, int]] = {}
    with open(data / "qrels" / f"{split}.tsv", encoding="utf-8") as f:
        next(f)  # header
        for line in f:
            qid, did, score = line.rstrip("\n").split("\t")
            qrels.setdefault(qid, {})[did] = int(score)
    return qrels


def load_other_queries(data: Path = DEFAULT_DATA, exclude: set[str] = frozenset(), n: int = 20) -> list[str]:
    """Queries not in ``exclude`` (for warm-up, so the measured queries stay uncached)."""
    out = []
    with open(data / "queries.jsonl", encoding="utf-8") as f:
        for line in f:
            q = json.loads(line)
            if str(q["_id"]) not in exclude:
                out.append(q["text"])
                if len(out) == n:
                    break
    return out


def corpus_size(requested: int, n_source: int) -> int:
    return n_source if requested == FULL_SCIFACT_ALIAS and n_source >= requested else requested


def variant_text(text: str, replica: int, source: int, seed: int = 0) -> str:
    if replica == 0:
        return text
    words = text.split()
    rng = np.random.default_rng([seed, replica, source])
    keep = rng.random(len(words)) >= WORD_DROP
    if not keep.any():
        return text
    return " ".join(w for w, k in zip(words, keep, strict=True) if k)


def iter_corpus(source: Sequence[SourceDoc], n: int, seed: int = 0) -> Iterator[CorpusDoc]:
    for i in range(n):
        replica, s = divmod(i, len(source))
        doc = source[s]
        doc_id = doc.id if replica == 0 else f"{doc.id}~r{replica}"
        yield CorpusDoc(doc_id, variant_text(doc.text, replica, s, seed), s, replica)


def replica_vectors(base: np.ndarray, docs: Sequence[CorpusDoc], seed: int = 0) -> np.ndarray:
    """Dense vectors of ``docs``: the original's vector, plus calibrated noise for replicas."""
    out = base[[d.source for d in docs]].astype(np.float32, copy=True)
    sigma = DENSE_NOISE_NORM / math.sqrt(base.shape[1])
    for j, d in enumerate(docs):
        if d.replica:
            rng = np.random.default_rng([seed, d.replica, d.source, 1])
            v = out[j] + rng.normal(0.0, sigma, base.shape[1]).astype(np.float32)
            out[j] = v / np.linalg.norm(v)
    return out


def cached_dense(
    texts: Sequence[str],
    encode: Callable[[Sequence[str]], np.ndarray],
    key_parts: Sequence[str],
    cache_dir: Path = CACHE_DIR,
    chunk: int = 256,
    log: Callable[[str], None] = print,
    only_if_cached: bool = False,
) -> tuple[np.ndarray | None, dict]:
    """Dense vectors of ``texts``, from ``cache_dir`` when a cache for the same texts and
    encoder (``key_parts``: model path, max length, ...) exists, else encoded in chunks
    (with progress) and saved. Returns the matrix and a dict describing where it came from;
    with ``only_if_cached``, ``(None, {})`` when there is no cache."""
    h = hashlib.sha256()
    for part in key_parts:
        h.update(str(part).encode())
        h.update(b"\0")
    for t in texts:
        h.update(t.encode())
        h.update(b"\0")
    key = h.hexdigest()[:16]
    path = cache_dir / f"dense-{key}.npy"
    meta_path = path.with_suffix(".json")
    if path.exists() and meta_path.exists():
        vectors = np.load(path)
        meta = json.loads(meta_path.read_text())
        if vectors.shape[0] == len(texts):
            meta["from_cache"] = True
            return vectors, meta
    if only_if_cached:
        return None, {}
    cache_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    parts = []
    for i in range(0, len(texts), chunk):
        parts.append(np.asarray(encode(texts[i : i + chunk]), dtype=np.float32))
        done = min(i + chunk, len(texts))
        elapsed = time.perf_counter() - started
        log(f"  encoded {done}/{len(texts)} documents ({elapsed:.0f} s, {done / elapsed:.1f} docs/s)")
    vectors = np.concatenate(parts)
    seconds = time.perf_counter() - started
    meta = {
        "key_parts": list(map(str, key_parts)),
        "n": len(texts),
        "dim": int(vectors.shape[1]),
        "encode_s": round(seconds, 1),
    }
    np.save(path, vectors)
    meta_path.write_text(json.dumps(meta, indent=1))
    meta["from_cache"] = False
    return vectors, meta
