"""The search service core: collections, writes and the hybrid search pipeline.

Transport-agnostic: the gRPC servicer validates requests, resolves the tenant and
calls these methods with domain types; everything here raises ServiceError for
anything a caller should see.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from hybridsearch import fusion
from hybridsearch.engine import tracing
from hybridsearch.engine.collections import LEGACY_SPARSE_ANALYZER, CollectionSpec, check_metadata_types, column_of
from hybridsearch.engine.config import Settings
from hybridsearch.engine.encoders.base import Scope
from hybridsearch.engine.encoders.query_batcher import EncodeCancelled, EncodeTimeout, QueueFull
from hybridsearch.engine.encoders.registry import ProfileRegistry
from hybridsearch.engine.errors import (
    ServiceError,
    already_exists,
    cancelled,
    deadline_exceeded,
    exhausted,
    failed_precondition,
    invalid,
)
from hybridsearch.engine.filters import compile_filter
from hybridsearch.engine.search_types import (
    Document,
    HeadScore,
    RerankDecision,
    RerankOutcome,
    RouteDetail,
    SearchHit,
    SearchOutcome,
    SearchQuery,
    StageTimings,
    WriteOutcome,
)
from hybridsearch.engine.store import MilvusStore, RouteHit, StoredDoc
from hybridsearch.engine.tenancy import doc_id_of, primary_key

if TYPE_CHECKING:  # the rerank stage loads only where reranking is enabled
    from hybridsearch.engine.rerank_stage import RerankPlan

log = logging.getLogger(__name__)
ROUTES = ("dense", "sparse")


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


class SearchService:
    def __init__(self, settings: Settings, store: MilvusStore | None = None, profiles: ProfileRegistry | None = None):
        self.settings = settings
        self.store = store or MilvusStore(settings.milvus_uri, settings.milvus)
        self.profiles = profiles or ProfileRegistry(settings)
        self._search_pool = ThreadPoolExecutor(max_workers=settings.search_threads, thread_name_prefix="route")
        # Writes to one collection are serialised: an upsert reads the documents it
        # replaces (their texts leave the BM25 statistics) before writing.
        self._write_locks: dict[str, threading.Lock] = {}
        self._write_locks_guard = threading.Lock()
        from hybridsearch.engine.metrics import Metrics

        self.metrics = Metrics()
        # OpenTelemetry spans per search stage (a no-op unless tracing.enabled).
        self.tracer = tracing.tracer_for(settings.tracing)
        self.rerank_stage = None
        if settings.rerank.enabled:
            from hybridsearch.engine.rerank_stage import RerankStage

            self.rerank_stage = RerankStage(settings)

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Connect, load the profiles existing collections use, and warm their indexes."""
        import torch

        torch.set_num_threads(self.settings.torch_threads)
        try:
            specs = self.store.list_specs()
        except ServiceError as exc:
            # Serve anyway: calls answer UNAVAILABLE until Milvus is back, then
            # recover without a restart (the store reconnects on the next call).
            log.warning("starting without Milvus: %s", exc.message)
            specs = []
        for spec in specs:
            try:
                self.profiles.get(spec.profile)
            except Exception as exc:  # a missing model must not stop the other collections
                log.warning("collection %s: profile %s not loaded: %s", spec.name, spec.profile, exc)
            self.store.warm(spec.name)
        if self.rerank_stage is not None:
            self.rerank_stage.start()

    def close(self) -> None:
        if self.rerank_stage is not None:
            self.rerank_stage.close()
        self._search_pool.shutdown(wait=False, cancel_futures=True)
        self.profiles.close()
        self.store.close()

    def _write_lock(self, collection: str) -> threading.Lock:
        with self._write_locks_guard:
            return self._write_locks.setdefault(collection, threading.Lock())

    # ------------------------------------------------------------ collections
    def create_collection(self, spec: CollectionSpec) -> CollectionSpec:
        profile = self.profiles.get(spec.profile)
        if spec.dimension == 0:
            spec = replace(spec, dimension=profile.dimension)
        elif spec.dimension != profile.dimension:
            raise invalid(
                "dimension",
                f"{spec.dimension} does not match profile {spec.profile!r}, whose model gives {profile.dimension}",
            )
        if self.store.has_collection(spec.name):
            raise already_exists(f"collection {spec.name!r} already exists")
        spec = replace(
            spec,
            sparse_kind=profile.sparse_kind,
            sparse_analyzer=profile.sparse_analyzer,
            milvus_bm25=dict(profile.milvus_bm25),
            dense_index=self.store.dense_index,
            layout=self.store.layout,
        )
        self.store.create_collection(spec)
        self.store.warm(spec.name)
        return spec

    def describe(self, name: str, tenant: str) -> tuple[CollectionSpec, int]:
        spec = self.store.spec(name)
        return spec, self.store.count(name, compile_filter(spec, tenant, (), max_clauses=0, max_values=1))

    def list_collections(self) -> list[CollectionSpec]:
        return self.store.list_specs()

    def drop_collection(self, name: str) -> None:
        spec = self.store.spec(name)
        with self._write_lock(name):
            self.store.drop_collection(name)
            self.profiles.get(spec.profile).drop(name)

    def profile_for(self, spec: CollectionSpec):
        """The collection's embedding profile, if it still analyses text as the collection
        was built; FAILED_PRECONDITION otherwise (its sparse terms would not match: scores
        silently wrong)."""
        profile = self.profiles.get(spec.profile)
        built = spec.sparse_analyzer
        if built is None:  # made before the analyzer was persisted
            built = LEGACY_SPARSE_ANALYZER if profile.kind == "dense-bm25" else ""
        if spec.sparse_kind != profile.sparse_kind or built != profile.sparse_analyzer:
            raise failed_precondition(
                f"collection {spec.name!r} was built with sparse route {spec.sparse_kind} [{built}], "
                f"but profile {spec.profile!r} is now configured as {profile.sparse_kind} [{profile.sparse_analyzer}]; "
                "its terms would not match the stored ones. Restore the profile's analyzer settings "
                "(analyzer, bm25_k1, bm25_b, sparse), or create a new collection and ingest again"
            )
        return profile

    # ------------------------------------------------------------ documents
    def _tenant_expr(self, spec: CollectionSpec, tenant: str) -> str:
        return compile_filter(spec, tenant, (), max_clauses=0, max_values=1)

    def upsert(
        self, tenant: str, collection: str, documents: Sequence[Document], call_ended: threading.Event | None = None
    ) -> WriteOutcome:
        """Write a validated batch; durable (flushed) when this returns.

        ``call_ended``: set when the caller's call ends (cancelled, deadline passed). Checked
        between the slices of the encoding (the long part; the work stops at the next slice)
        and again right before the write: a batch whose caller is gone
        is not written (CANCELLED). Once the write has started it completes: Milvus has no
        transaction to roll back, so a call cut during the write may have been applied."""
        spec = self.store.spec(collection)
        self.check_metadata(spec, documents)
        self.store.check_writable_ids([d.id for d in documents])
        if not documents:
            return WriteOutcome(0)
        profile = self.profile_for(spec)
        scope = Scope(collection, tenant)
        pks = [primary_key(tenant, d.id) for d in documents]
        with self._write_lock(collection):
            existing = self.store.get(spec, pks, self._tenant_expr(spec, tenant))
            replaced = [existing[pk].text for pk in pks if pk in existing]
            encode_start = time.perf_counter()
            try:
                # Slice by slice: a cancelled call stops at the next slice, not after its batch.
                vectors = profile.encode_documents(scope, [d.text for d in documents], replaced, call_ended)
            except EncodeCancelled as exc:
                raise cancelled(f"{exc}; nothing of the batch was written") from exc
            encode_ms = (time.perf_counter() - encode_start) * 1000
            if call_ended is not None and call_ended.is_set():
                raise cancelled("the call ended while its batch was being encoded; nothing of it was written")
            rows = [
                self._row(spec, tenant, pk, doc, vectors.dense[i], vectors.sparse[i])
                for i, (pk, doc) in enumerate(zip(pks, documents, strict=True))
            ]
            self.store.upsert(spec, rows)
            self.store.flush(spec)
            # Corpus statistics change only once the documents are durable.
            vectors.commit()
        return WriteOutcome(len(documents), encode_ms, vectors.truncated)

    def check_metadata(self, spec: CollectionSpec, documents: Sequence[Document]) -> None:
        for i, doc in enumerate(documents):
            check_metadata_types(spec, doc.metadata, f"documents[{i}].metadata")

    def _row(
        self, spec: CollectionSpec, tenant: str, pk: str, doc: Document, dense: np.ndarray, sparse: dict
    ) -> dict[str, Any]:
        row: dict[str, Any] = {
            "pk": pk,
            "tenant": tenant,
            "text": doc.text,
            "metadata": {k: v for k, v in doc.metadata.items() if spec.json_metadata or k not in spec.metadata_fields},
            "dense": dense.tolist(),
            "sparse": sparse,
        }
        for name in spec.metadata_fields:
            value = doc.metadata.get(name)
            # A declared double given as an int is stored as a double.
            if value is not None and spec.metadata_fields[name].value == "double":
                value = float(value)
            if spec.json_metadata:
                if value is not None:
                    row["metadata"][name] = value
            else:
                row[column_of(name)] = value
        return row

    def delete(self, tenant: str, collection: str, ids: Sequence[str]) -> int:
        spec = self.store.spec(collection)
        pks = [primary_key(tenant, i) for i in ids]
        expr = self._tenant_expr(spec, tenant)
        profile = self.profile_for(spec)
        with self._write_lock(collection):
            existing = self.store.get(spec, pks, expr)
            if not existing:
                return 0
            self.store.delete(spec, list(existing), expr)
            self.store.flush(spec)
            profile.forget_documents(Scope(collection, tenant), [d.text for d in existing.values()])
        return len(existing)

    def get(self, tenant: str, collection: str, ids: Sequence[str]) -> list[Document]:
        spec = self.store.spec(collection)
        found = self.store.get(spec, [primary_key(tenant, i) for i in ids], self._tenant_expr(spec, tenant))
        docs = []
        for doc_id in ids:
            stored = found.get(primary_key(tenant, doc_id))
            if stored is not None:
                docs.append(Document(id=doc_id, text=stored.text, metadata=stored.metadata))
        return docs

    # ------------------------------------------------------------ search
    def search(
        self, tenant: str, query: SearchQuery, deadline: float | None = None, call_ended: threading.Event | None = None
    ) -> SearchOutcome:
        """Encode, search both routes concurrently, fuse, and (optionally) rerank: _search,
        inside the search's span (engine/tracing.py; its stages' spans are children)."""
        with self.tracer.span(tracing.SEARCH, tracing.search_attributes(tenant, query)) as span:
            outcome = self._search(tenant, query, deadline, call_ended)
            span.set_attributes(tracing.outcome_attributes(outcome))
            return outcome

    def _search(
        self, tenant: str, query: SearchQuery, deadline: float | None = None, call_ended: threading.Event | None = None
    ) -> SearchOutcome:
        """Encode, search both routes concurrently, fuse, and (optionally) rerank.

        ``deadline`` is an absolute ``time.monotonic()`` value, or None for no deadline.
        ``call_ended`` is set when the caller's call ends (gRPC: cancelled included): a query
        still queued for encoding is then dropped, not encoded for nobody.
        """
        started = time.perf_counter()
        timings = StageTimings()
        spec = self.store.spec(query.collection)
        expr = compile_filter(
            spec,
            tenant,
            query.clauses,
            max_clauses=self.settings.limits.max_filter_clauses,
            max_values=self.settings.limits.max_filter_values,
            dialect=self.store.literal_dialect,
        )
        vectors = self._encode_query(self.profile_for(spec), tenant, query, deadline, call_ended, timings)
        dense_hits, sparse_hits = self._search_routes(spec, query, vectors, expr, timings)

        t = time.perf_counter()
        fused = self.tracer.traced(tracing.FUSION, self._fuse)(spec, query, dense_hits, sparse_hits)
        timings.fusion_ms = _ms(t)

        t = time.perf_counter()
        # The rerank stage decides once per search: the documents fetched here and the head it
        # reranks come from the same budget (RerankPlan).
        plan = self.rerank_stage.plan(tenant, query) if self.rerank_stage is not None else None
        head_cap = plan.cap if plan is not None else 0
        fused, docs = self.tracer.traced(tracing.FETCH, self._fetch_docs)(spec, fused, max(query.top_k, head_cap), expr)
        timings.fetch_ms = _ms(t)

        order, rerank_scores, decision = self._rerank(
            tenant, query, fused, docs, started, deadline, timings, plan, call_ended
        )

        t = time.perf_counter()
        hits = self._hits(tenant, query, fused, order, docs, rerank_scores)
        timings.hits_ms = _ms(t)
        timings.total_ms = _ms(started)
        outcome = SearchOutcome(
            hits=hits,
            timings=timings,
            decision=decision,
            dense_candidates=len(dense_hits),
            sparse_candidates=len(sparse_hits),
            query_truncated=vectors.truncated,
        )
        self.metrics.observe_search(tenant, outcome)
        return outcome

    def _encode_query(self, profile, tenant: str, query: SearchQuery, deadline, call_ended, timings: StageTimings):
        """The query's vectors (from the query cache, or encoded with other waiting queries);
        the encoder queue's refusals as the call's status."""
        t = time.perf_counter()
        try:
            vectors = self.tracer.traced(tracing.ENCODE, profile.encode_query)(
                Scope(query.collection, tenant), query.text, deadline, call_ended
            )
        except QueueFull as exc:
            raise exhausted(f"{exc}; retry shortly") from exc
        except EncodeTimeout as exc:
            raise deadline_exceeded(f"deadline passed while encoding the query: {exc}") from exc
        except EncodeCancelled as exc:
            raise cancelled(str(exc)) from exc
        timings.encode_ms = _ms(t)
        timings.query_cache_hit = vectors.cache_hit
        return vectors

    def _search_routes(
        self, spec: CollectionSpec, query: SearchQuery, vectors, expr: str, timings: StageTimings
    ) -> tuple[list[RouteHit], list[RouteHit]]:
        """The dense and sparse candidates, searched at the same time (sparse on the pool)."""

        def timed(fn, *args):
            t0 = time.perf_counter()
            out = fn(*args)
            return out, _ms(t0)

        # The routes return ids and scores only; text and metadata are fetched after fusion for
        # the few answered (and the rerank head). Shipping and parsing 100 + 100 candidates'
        # text (pymilvus, under the GIL) cost more: 8 clients, 5k, warm: 164-167 against
        # 120-139 queries/s (benchmarks/README.md, "Concurrency").
        # bind: the sparse route's span, on a pool thread, is a child of this search's.
        sparse = self.tracer.traced(tracing.SPARSE, self.store.search_sparse, tracing.candidates)
        dense = self.tracer.traced(tracing.DENSE, self.store.search_dense, tracing.candidates)
        sparse_future = self._search_pool.submit(
            self.tracer.bind(timed), sparse, spec, vectors.sparse, query.sparse_k, expr, False
        )
        dense_hits, timings.dense_search_ms = timed(dense, spec, vectors.dense, query.dense_k, expr, False)
        sparse_hits, timings.sparse_search_ms = sparse_future.result()
        return dense_hits, sparse_hits

    def _rerank(
        self,
        tenant: str,
        query: SearchQuery,
        fused,
        docs: dict,
        started: float,
        deadline,
        timings: StageTimings,
        plan: RerankPlan | None,
        call_ended: threading.Event | None = None,
    ) -> RerankOutcome:
        """The rerank stage's order, scores and decision; fusion order when it is off."""
        if self.rerank_stage is None:
            decision = RerankDecision(mode=query.rerank_mode or "off", reason="fusion only")
            if query.rerank_mode in ("fixed", "auto"):
                decision.degraded = True
                decision.degraded_reason = "reranking is disabled on this server (rerank.enabled = false)"
            return RerankOutcome(fused.ids, {}, decision)
        t = time.perf_counter()
        outcome = self.tracer.traced(tracing.RERANK, self.rerank_stage.run, tracing.rerank_attributes)(
            tenant=tenant,
            query=query,
            fused=fused,
            docs=docs,
            started=started,
            deadline=deadline,
            plan=plan,
            call_ended=call_ended,
        )
        timings.rerank_ms = _ms(t)
        return outcome

    def _fetch_docs(
        self, spec: CollectionSpec, fused: fusion.FusionResult, want: int, expr: str
    ) -> tuple[fusion.FusionResult, dict[str, StoredDoc]]:
        """Text and metadata of the first ``want`` fused candidates, read with the routes'
        own expression. A candidate deleted (or changed to fail the filter) since the route
        searches is dropped from the ranking and the next one takes its place."""
        docs: dict[str, StoredDoc] = {}
        while True:
            window = [pk for pk in fused.ids[:want] if pk not in docs]
            if not window:
                return fused, docs
            found = self.store.get(spec, window, expr)
            docs.update(found)
            gone = set(window) - found.keys()
            if gone:
                fused = fused.without(gone)

    def _fuse(
        self, spec: CollectionSpec, query: SearchQuery, dense_hits: list[RouteHit], sparse_hits: list[RouteHit]
    ) -> fusion.FusionResult:
        routes = [
            fusion.RouteList(
                "dense", [h.pk for h in dense_hits], np.array([h.score for h in dense_hits], dtype=np.float64)
            ),
            fusion.RouteList(
                "sparse", [h.pk for h in sparse_hits], np.array([h.score for h in sparse_hits], dtype=np.float64)
            ),
        ]
        f = query.fusion
        return fusion.fuse(
            f.method,
            routes,
            k=f.rrf_k,
            weights=[f.dense_weight, f.sparse_weight],
            normalizer=f.normalizer,
            metrics={"dense": spec.dense_metric, "sparse": "IP"},
        )

    def _hits(
        self,
        tenant: str,
        query: SearchQuery,
        fused: fusion.FusionResult,
        order: Sequence[str],
        docs: dict[str, StoredDoc],
        rerank_scores: dict[str, HeadScore],
    ) -> list[SearchHit]:
        position = {pk: i for i, pk in enumerate(fused.ids)}
        hits = []
        for pk in order[: query.top_k]:
            i = position[pk]
            details = {}
            for route in ROUTES:
                rank = int(fused.route_ranks[route][i])
                details[route] = (
                    RouteDetail(
                        raw_score=float(fused.route_raw[route][i]),
                        normalized_score=float(fused.route_norm[route][i]),
                        rank=rank,
                    )
                    if rank > 0
                    else None
                )
            fused_score = float(fused.scores[i])
            head = rerank_scores.get(pk)
            doc = docs[pk]
            hit = SearchHit(
                id=doc_id_of(tenant, pk),
                text=doc.text,
                metadata=doc.metadata,
                score=head.order if head is not None else fused_score,
                fused_score=fused_score,
                fused_rank=i + 1,
                dense=details["dense"],
                sparse=details["sparse"],
                reranked=head is not None,
                rerank_score=head.rerank if head is not None else None,
            )
            if query.explain:
                hit.explanation = _explain(query, details, fused_score)
            hits.append(hit)
        return hits


def _explain(query: SearchQuery, details: dict[str, RouteDetail | None], fused_score: float) -> str:
    f = query.fusion
    weights = {"dense": f.dense_weight, "sparse": f.sparse_weight}
    parts = []
    for route, d in details.items():
        if d is None:
            parts.append(f"{route}: absent")
        elif f.method == "rrf":
            parts.append(
                f"{route}: rank {d.rank} -> {weights[route]:g}/({f.rrf_k:g}+{d.rank}) = {d.normalized_score:.6f}"
            )
        else:
            parts.append(
                f"{route}: raw {d.raw_score:.6f} -> {f.normalizer if f.method == 'weighted' else 'dbsf'} {d.normalized_score:.6f} x {weights[route]:g}"
            )
    method = f.method if f.method != "weighted" else f"weighted[{f.normalizer}]"
    if not math.isfinite(fused_score):
        fused_score = 0.0
    return f"{method}: " + "; ".join(parts) + f"; fused {fused_score:.6f}"
