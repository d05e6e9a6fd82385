"""gRPC servicers: resolve the tenant, validate, call the service, build replies."""
from __future__ import annotations

import functools
import inspect
import logging
import threading
import time
from typing import Callable, Iterator

import grpc

from engine import validation
from engine.api_keys import ROLE_RANK, ApiKeyStore
from engine.errors import ServiceError, exhausted, failed_precondition, invalid, permission_denied, unauthenticated
from engine.search_types import RouteDetail, SearchOutcome
from engine.service import SearchService
from engine.tenancy import TENANT_HEADER, check_tenant_name, tenant_from_metadata
from rerank.budgets import RerankBudget
from hybridsearch.v1 import hybridsearch_pb2 as pb
from hybridsearch.v1 import hybridsearch_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)


# The status message travels percent-encoded in the grpc-message trailer (a byte outside
# printable ASCII takes 3, so up to 12 per character); gRPC clients start refusing
# trailers over 8 KiB and then see a transport error instead of the status. Messages that
# echo a caller's huge value are cut to fit.
MAX_STATUS_MESSAGE_BYTES = 4096


def status_message(text: str) -> str:
    size = 0
    for i, ch in enumerate(text):
        size += 1 if " " <= ch <= "~" and ch != "%" else 3 * len(ch.encode("utf-8", "surrogatepass"))
        if size > MAX_STATUS_MESSAGE_BYTES - 64:
            return text[:i] + f"... ({len(text)} characters, cut)"
    return text


def _aborted(context: grpc.ServicerContext) -> bool:
    """Whether ``context.abort()`` already set the call's status: grpcio's sync server then
    raises a bare Exception, which must pass through (not be turned into INTERNAL)."""
    try:
        return context.code() is not None
    except (AttributeError, NotImplementedError):
        return False


def rpc(method: Callable) -> Callable:
    """Turn ServiceError into its status; anything unexpected into INTERNAL, and keep serving.
    Works for unary handlers and for handlers that stream their replies (generators)."""

    def fail(self, exc: Exception, context: grpc.ServicerContext) -> None:
        if isinstance(exc, ServiceError):
            self.service.metrics.rpc_errors.labels(method.__name__, exc.code.name).inc()
            context.abort(exc.code, status_message(exc.message))
        if isinstance(exc, grpc.RpcError) or _aborted(context):
            raise exc
        log.exception("%s failed", method.__name__)
        context.abort(grpc.StatusCode.INTERNAL, status_message(f"{method.__name__} failed: {type(exc).__name__}: {exc}"))

    if inspect.isgeneratorfunction(method):

        @functools.wraps(method)
        def streaming(self, request, context: grpc.ServicerContext):
            try:
                yield from method(self, request, context)
            except Exception as exc:  # the server must survive any request
                if not isinstance(exc, ServiceError) and not context.is_active():
                    raise  # the caller is gone: nobody to answer
                fail(self, exc, context)

        return streaming

    @functools.wraps(method)
    def wrapper(self, request, context: grpc.ServicerContext):
        try:
            return method(self, request, context)
        except Exception as exc:  # the server must survive any request
            fail(self, exc, context)

    return wrapper


def call_ended(context: grpc.ServicerContext) -> threading.Event:
    """An event set when the call ends, however (cancelled, deadline, done)."""
    ended = threading.Event()
    context.add_callback(ended.set)
    return ended


def deadline_of(context: grpc.ServicerContext) -> float | None:
    remaining = context.time_remaining()
    if remaining is None or remaining > 1e8:
        return None
    return time.monotonic() + remaining


def collection_message(spec, count: int = 0) -> pb.Collection:
    return pb.Collection(
        name=spec.name,
        profile=spec.profile,
        dimension=spec.dimension,
        dense_metric=spec.dense_metric,
        metadata_fields=[pb.MetadataField(name=n, type=validation.FIELD_TYPES_BACK[t]) for n, t in spec.metadata_fields.items()],
        tenant_document_count=count,
        sparse_kind=spec.sparse_kind,
        sparse_analyzer=spec.sparse_analyzer or "",
    )


def _route(detail: RouteDetail | None) -> pb.RouteScore | None:
    if detail is None:
        return None
    return pb.RouteScore(raw_score=detail.raw_score, normalized_score=detail.normalized_score, rank=detail.rank)


def search_response(outcome: SearchOutcome) -> pb.SearchResponse:
    hits = []
    for h in outcome.hits:
        hit = pb.Hit(
            id=h.id,
            text=h.text,
            metadata={k: validation.to_metadata_value(v) for k, v in h.metadata.items()},
            score=h.score,
            fused_score=h.fused_score,
            fused_rank=h.fused_rank,
            dense=_route(h.dense),
            sparse=_route(h.sparse),
            reranked=h.reranked,
            explanation=h.explanation,
        )
        if h.rerank_score is not None:
            hit.rerank_score = h.rerank_score
        hits.append(hit)
    t, d = outcome.timings, outcome.decision
    return pb.SearchResponse(
        hits=hits,
        timings=pb.StageTimings(
            encode_ms=t.encode_ms,
            dense_search_ms=t.dense_search_ms,
            sparse_search_ms=t.sparse_search_ms,
            fusion_ms=t.fusion_ms,
            rerank_ms=t.rerank_ms,
            total_ms=t.total_ms,
            query_cache_hit=t.query_cache_hit,
            fetch_ms=t.fetch_ms,
        ),
        rerank=pb.RerankDecision(
            mode=validation.RERANK_MODES_BACK.get(d.mode, pb.OFF),
            depth_chosen=d.depth_chosen,
            reason=d.reason,
            predicted_ms=d.predicted_ms,
            actual_ms=d.actual_ms,
            cost_units=d.cost_units,
            cost_money=d.cost_money,
            budget_left_units=d.budget_left_units,
            partial=d.partial,
            depth_scored=d.depth_scored,
            degraded=d.degraded,
            degraded_reason=d.degraded_reason,
            backend=d.backend,
        ),
        dense_candidates=outcome.dense_candidates,
        sparse_candidates=outcome.sparse_candidates,
    )


# Room left under the message limit for the reply's framing and the fields after the hits.
REPLY_HEADROOM_BYTES = 16 * 1024


def fit_reply(reply: pb.SearchResponse, max_bytes: int) -> pb.SearchResponse:
    """Keep a search reply under the gRPC message limit: cut the stored text of the last
    hits first (``text_truncated``), so the best hits stay whole. With the write limits
    (text 64 KiB, metadata 16 KiB per document) only a large top_k can get there."""
    budget = max_bytes - REPLY_HEADROOM_BYTES
    size = reply.ByteSize()
    for _ in range(3):  # each pass estimates the saving; the next measures it again
        if size <= budget:
            return reply
        over = size - budget
        for hit in reversed(reply.hits):
            if over <= 0:
                break
            raw = hit.text.encode("utf-8")
            if not raw:
                continue
            keep = max(0, len(raw) - over - 8)  # 8: the flag and shorter length prefixes
            hit.text = raw[:keep].decode("utf-8", "ignore")
            hit.text_truncated = True
            over -= len(raw) - keep - 2
        size = reply.ByteSize()
    if size > budget:
        raise exhausted(f"the reply would be {size} bytes even without hit texts; server.max_message_bytes is {max_bytes}: ask for a smaller top_k")
    return reply


class Authenticator:
    """Who is calling: an API key (``authorization: Bearer <key>``) names the tenant and role.

    In development mode (``auth_mode: dev_header``, off by default) the tenant comes
    from the ``x-tenant`` header and every caller is an operator. How many calls of a
    tenant run at once is admission's business (engine/admission.py), decided on arrival.
    """

    def __init__(self, settings, keys: ApiKeyStore | None = None):
        self.dev_mode = settings.auth_mode == "dev_header"
        self.keys = keys

    def identify(self, metadata) -> str | None:
        """The caller's tenant for admission, or None when its credentials do not hold (the
        handler then answers why)."""
        try:
            return self.principal(metadata)[0]
        except ServiceError:
            return None

    def principal(self, metadata) -> tuple[str, str]:
        """(tenant, role) of the caller."""
        if self.dev_mode:
            return tenant_from_metadata(metadata), "operator"
        values = [v for k, v in metadata if k == "authorization"]
        if not values:
            raise unauthenticated("missing `authorization: Bearer <API key>` metadata")
        if len(values) > 1 or not isinstance(values[0], str) or not values[0].startswith("Bearer "):
            raise unauthenticated("authorization metadata must be one `Bearer <API key>` value")
        record = self.keys.verify(values[0].removeprefix("Bearer ").strip()) if self.keys else None
        if record is None:
            raise unauthenticated("invalid or revoked API key")
        claimed = [v for k, v in metadata if k == TENANT_HEADER]
        if claimed and claimed != [record.tenant]:
            # The key decides the tenant; a header naming another one is a forgery, not a hint.
            raise permission_denied(f"{TENANT_HEADER} metadata does not match the API key's tenant")
        return record.tenant, record.role

    def require(self, context: grpc.ServicerContext, role: str) -> str:
        """The caller's tenant, if its role is at least ``role``."""
        return self.caller(context, role)[0]

    def caller(self, context: grpc.ServicerContext, role: str) -> tuple[str, str]:
        """(tenant, role) of a caller whose role is at least ``role``."""
        tenant, granted = self.principal(context.invocation_metadata() or ())
        if ROLE_RANK[granted] < ROLE_RANK[role]:
            raise permission_denied(f"this API key has role {granted!r}; the call needs {role!r}")
        return tenant, granted

    @staticmethod
    def target_tenant(own: str, granted: str, requested: str, field: str = "tenant") -> str:
        """The tenant a TenantAdmin call acts on: ``requested`` (empty: the caller's own),
        which only an operator may set to another tenant."""
        target = check_tenant_name(requested, field) if requested else own
        if target != own and granted != "operator":
            raise permission_denied(f"{field}: a {granted} key acts on its own tenant {own!r} only, not {target!r}")
        return target


class HybridSearchServicer(pb_grpc.HybridSearchServicer):
    def __init__(self, service: SearchService, auth: Authenticator):
        self.service = service
        self.auth = auth
        self.limits = service.settings.limits

    # ------------------------------------------------------------ collections
    @rpc
    def CreateCollection(self, request, context):
        self.auth.require(context, "tenant-admin")
        spec = validation.collection_spec(request, self.service.settings.default_profile)
        return collection_message(self.service.create_collection(spec))

    @rpc
    def DescribeCollection(self, request, context):
        tenant = self.auth.require(context, "search")
        spec, count = self.service.describe(validation.check_collection_name(request.name, "name"), tenant)
        return collection_message(spec, count)

    @rpc
    def ListCollections(self, request, context):
        self.auth.require(context, "search")
        return pb.ListCollectionsResponse(collections=[collection_message(s) for s in self.service.list_collections()])

    @rpc
    def DropCollection(self, request, context):
        # A collection holds every tenant's documents: dropping it is no tenant's decision.
        self.auth.require(context, "operator")
        self.service.drop_collection(validation.check_collection_name(request.name, "name"))
        return pb.DropCollectionResponse(dropped=True)

    # ------------------------------------------------------------ documents
    @rpc
    def Upsert(self, request, context):
        tenant = self.auth.require(context, "write")
        start = time.perf_counter()
        collection = validation.check_collection_name(request.collection)
        docs = validation.documents(request.documents, self.limits)
        n = self.service.upsert(tenant, collection, docs, call_ended(context))
        return pb.UpsertResponse(upserted=n, batches=1, elapsed_ms=(time.perf_counter() - start) * 1000)

    def _stream_batches(self, request_iterator: Iterator[pb.UpsertRequest], context, tenant: str):
        """(batch index, documents written, total so far, ms) per stream message, each written
        and durable before the next message is read. A batch whose call has ended by the
        time it is encoded is not written."""
        ended = call_ended(context)
        collection = None
        total = 0
        for i, request in enumerate(request_iterator):
            start = time.perf_counter()
            where = f"batch {i} (after {total} documents written)"
            name = request.collection or collection
            if collection is None:
                if not name:
                    raise invalid(f"{where}: collection", "the first message must name the collection")
                collection = validation.check_collection_name(name)
            elif name != collection:
                raise invalid(f"{where}: collection", f"{name!r} differs from the stream's collection {collection!r}")
            docs = validation.documents(request.documents, self.limits, where=f"{where}: documents")
            try:
                n = self.service.upsert(tenant, collection, docs, ended)
            except ServiceError as exc:
                # The service checks declared metadata types; say which batch failed.
                if exc.code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.CANCELLED):
                    raise ServiceError(exc.code, f"{where}: {exc.message}") from exc
                raise
            total += n
            yield i, n, total, (time.perf_counter() - start) * 1000

    @rpc
    def BulkUpsert(self, request_iterator: Iterator[pb.UpsertRequest], context):
        """Each stream message is validated and written as one batch.

        Batches acknowledged by earlier messages stay written if a later one is
        rejected; the error names the batch so the client can resume from it.
        """
        tenant = self.auth.require(context, "write")
        start = time.perf_counter()
        total = batches = 0
        for _, _, total, _ in self._stream_batches(request_iterator, context, tenant):
            batches += 1
        return pb.UpsertResponse(upserted=total, batches=batches, elapsed_ms=(time.perf_counter() - start) * 1000)

    @rpc
    def BulkUpsertAcked(self, request_iterator: Iterator[pb.UpsertRequest], context):
        """BulkUpsert with one UpsertAck per batch, sent once the batch is durable."""
        tenant = self.auth.require(context, "write")
        for i, n, total, ms in self._stream_batches(request_iterator, context, tenant):
            yield pb.UpsertAck(batch=i, upserted=n, total=total, elapsed_ms=ms)

    @rpc
    def Delete(self, request, context):
        tenant = self.auth.require(context, "write")
        collection = validation.check_collection_name(request.collection)
        ids = validation.doc_ids(request.ids, self.limits)
        return pb.DeleteResponse(deleted=self.service.delete(tenant, collection, ids))

    @rpc
    def Get(self, request, context):
        tenant = self.auth.require(context, "search")
        collection = validation.check_collection_name(request.collection)
        ids = validation.doc_ids(request.ids, self.limits)
        docs = self.service.get(tenant, collection, ids)
        return pb.GetResponse(
            documents=[
                pb.Document(id=d.id, text=d.text, metadata={k: validation.to_metadata_value(v) for k, v in d.metadata.items()})
                for d in docs
            ]
        )

    # ------------------------------------------------------------ search
    @rpc
    def Search(self, request, context):
        tenant = self.auth.require(context, "search")
        query = validation.search_query(request, self.limits.for_tenant(tenant))
        # Set when the call ends, cancelled included: a query still queued for encoding is
        # then dropped instead of encoded for nobody.
        ended = call_ended(context)
        return fit_reply(search_response(self.service.search(tenant, query, deadline_of(context), ended)), self.service.settings.server.max_message_bytes)

    @rpc
    def Rerank(self, request, context):
        self.auth.require(context, "search")
        stage = self.service.rerank_stage
        if stage is None:
            raise failed_precondition("reranking is disabled on this server (rerank.enabled = false)")
        query, documents, top_n = validation.rerank_request(request, self.service.settings)
        result = stage.standalone(query, documents, request.model, deadline_of(context))
        results = []
        for i in result.order[:top_n]:
            item = pb.RerankResult(index=i, relevance_score=float(result.scores.normalized[i]), raw_score=float(result.scores.raw[i]))
            if request.return_documents:
                item.document = documents[i]
            results.append(item)
        return pb.RerankResponse(
            results=results,
            usage=pb.RerankUsage(tokens=int(result.scores.tokens.sum()), truncated_documents=result.truncated),
            model=result.model,
            elapsed_ms=result.elapsed_ms,
        )


def budget_message(budget: RerankBudget) -> pb.RerankBudget:
    return pb.RerankBudget(
        tenant=budget.tenant,
        latency_target_ms=budget.latency_target_ms,
        max_cost_per_query=budget.max_cost_per_query,
        cost_per_minute=budget.cost_per_minute,
        min_depth=budget.min_depth,
        max_depth=budget.max_depth,
        default_mode=validation.RERANK_MODES_BACK[budget.default_mode],
    )


class TenantAdminServicer(pb_grpc.TenantAdminServicer):
    """Operators set per-tenant rerank budgets; they persist across restarts."""

    def __init__(self, service: SearchService, auth: Authenticator, keys: ApiKeyStore):
        self.service = service
        self.auth = auth
        self.keys = keys

    def _budgets(self):
        if self.service.rerank_stage is None:
            raise failed_precondition("reranking is disabled on this server (rerank.enabled = false)")
        return self.service.rerank_stage.budgets

    @rpc
    def SetBudget(self, request, context):
        # Operators only: a tenant must not raise its own rerank budget.
        self.auth.require(context, "operator")
        budget = validation.rerank_budget(request.budget, self.service.settings.limits.max_depth)
        return budget_message(self._budgets().set(budget))

    @rpc
    def GetBudget(self, request, context):
        tenant = self.auth.target_tenant(*self.auth.caller(context, "tenant-admin"), request.tenant)
        return budget_message(self._budgets().effective(tenant))

    @rpc
    def ListBudgets(self, request, context):
        self.auth.require(context, "operator")
        store = self._budgets()
        return pb.ListBudgetsResponse(budgets=[budget_message(b) for b in store.list()], default_budget=budget_message(store.default))

    @rpc
    def DeleteBudget(self, request, context):
        self.auth.require(context, "operator")
        tenant = check_tenant_name(request.tenant, "tenant")
        return pb.DeleteBudgetResponse(deleted=self._budgets().delete(tenant))

    @rpc
    def CreateApiKey(self, request, context):
        own, granted = self.auth.caller(context, "tenant-admin")
        tenant = self.auth.target_tenant(own, granted, request.tenant)
        if request.role not in ROLE_NAMES:
            raise invalid("role", f"must be one of {', '.join(pb.Role.Name(r) for r in ROLE_NAMES if r != pb.ADMIN)}, got {request.role}")
        role = ROLE_NAMES[request.role]
        if ROLE_RANK[role] > ROLE_RANK[granted]:
            raise permission_denied(f"role: a {granted} key cannot create a {role} key")
        if len(request.description) > 256:
            raise invalid("description", f"{len(request.description)} characters; at most 256 allowed")
        record, secret = self.keys.create(tenant, role, request.description)
        return pb.CreateApiKeyResponse(key=api_key_message(record), secret=secret)

    @rpc
    def ListApiKeys(self, request, context):
        own, granted = self.auth.caller(context, "tenant-admin")
        # An operator's empty tenant lists every tenant's keys; anyone else's, their own.
        tenant = "" if granted == "operator" and not request.tenant else self.auth.target_tenant(own, granted, request.tenant)
        return pb.ListApiKeysResponse(keys=[api_key_message(r) for r in self.keys.list(tenant)])

    @rpc
    def RevokeApiKey(self, request, context):
        own, granted = self.auth.caller(context, "tenant-admin")
        if not request.key_id:
            raise invalid("key_id", "must not be empty")
        if granted != "operator":
            record = self.keys.get(request.key_id)
            # Another tenant's key answers as an unknown one: no probing of key ids.
            if record is None or record.tenant != own:
                return pb.RevokeApiKeyResponse(revoked=False)
            if ROLE_RANK[record.role] > ROLE_RANK[granted]:
                raise permission_denied(f"key_id: a {granted} key cannot revoke a {record.role} key")
        return pb.RevokeApiKeyResponse(revoked=self.keys.revoke(request.key_id))


ROLE_NAMES = {pb.SEARCH: "search", pb.WRITE: "write", pb.ADMIN: "tenant-admin", pb.TENANT_ADMIN: "tenant-admin", pb.OPERATOR: "operator"}
ROLE_VALUES = {"search": pb.SEARCH, "write": pb.WRITE, "tenant-admin": pb.TENANT_ADMIN, "operator": pb.OPERATOR}


def api_key_message(record) -> pb.ApiKey:
    return pb.ApiKey(
        key_id=record.key_id,
        tenant=record.tenant,
        role=ROLE_VALUES[record.role],
        description=record.description,
        created_unix=record.created_unix,
        revoked=record.revoked,
    )
