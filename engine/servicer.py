"""The HybridSearch servicer: who is calling, the request to domain values, the service,
the reply. Each handler is a few lines; the work is in engine.service."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace

import grpc

from hybridsearch.engine.auth import Authenticator
from hybridsearch.engine.errors import ServiceError, failed_precondition, invalid
from hybridsearch.engine.info import service_info
from hybridsearch.engine.rpc import CallClock, call_ended, deadline_of, rpc
from hybridsearch.engine.service import SearchService
from hybridsearch.engine.wire import requests as wire_in
from hybridsearch.engine.wire.replies import (
    collection_message,
    document_message,
    fit_reply,
    info_message,
    rerank_response,
    search_response,
    usage_message,
)
from hybridsearch.v1 import hybridsearch_pb2 as pb
from hybridsearch.v1 import hybridsearch_pb2_grpc as pb_grpc


class HybridSearchServicer(pb_grpc.HybridSearchServicer):
    def __init__(self, service: SearchService, auth: Authenticator, health_services: Sequence[str] = ()):
        self.service = service
        self.auth = auth
        self.health_services = list(health_services)
        self.limits = service.settings.limits

    # ------------------------------------------------------------ collections
    @rpc
    def CreateCollection(self, request, context):
        self.auth.require(context, "tenant-admin")
        spec = wire_in.collection_spec(request, self.service.settings.default_profile)
        return collection_message(self.service.create_collection(spec))

    @rpc
    def DescribeCollection(self, request, context):
        tenant = self.auth.require(context, "search")
        spec, count = self.service.describe(wire_in.check_collection_name(request.name, "name"), tenant)
        return collection_message(spec, count)

    @rpc
    def ListCollections(self, request, context):
        self.auth.require(context, "search")
        return pb.ListCollectionsResponse(collections=[collection_message(s) for s in self.service.list_collections()])

    @rpc
    def DropCollection(self, request, context):
        # A collection holds every tenant's documents: dropping it is no tenant's decision.
        self.auth.require(context, "operator")
        self.service.drop_collection(wire_in.check_collection_name(request.name, "name"))
        return pb.DropCollectionResponse(dropped=True)

    # ------------------------------------------------------------ documents
    @rpc
    def Upsert(self, request, context):
        clock = CallClock()
        tenant = self.auth.require(context, "write")
        collection = wire_in.check_collection_name(request.collection)
        docs = wire_in.documents(request.documents, self.limits)
        written = self.service.upsert(tenant, collection, docs, call_ended(context))
        usage = clock.usage(
            encoded_texts=written.written, encode_ms=written.encode_ms, truncated_texts=written.truncated
        )
        return pb.UpsertResponse(
            upserted=written.written, batches=1, elapsed_ms=usage.total_ms - usage.queue_ms, usage=usage_message(usage)
        )

    def _stream_batches(self, request_iterator: Iterator[pb.UpsertRequest], context, tenant: str, clock: CallClock):
        """(batch index, WriteOutcome, total so far, the batch's Usage) per stream message,
        each written and durable before the next message is read. A batch whose call has
        ended by the time it is encoded is not written."""
        ended = call_ended(context)
        collection = None
        total = 0
        for i, request in enumerate(request_iterator):
            batch_clock = CallClock()
            where = f"batch {i} (after {total} documents written)"
            name = request.collection or collection
            if collection is None:
                if not name:
                    raise invalid(f"{where}: collection", "the first message must name the collection")
                collection = wire_in.check_collection_name(name)
            elif name != collection:
                raise invalid(f"{where}: collection", f"{name!r} differs from the stream's collection {collection!r}")
            docs = wire_in.documents(request.documents, self.limits, where=f"{where}: documents")
            try:
                written = self.service.upsert(tenant, collection, docs, ended)
            except ServiceError as exc:
                # The service checks declared metadata types; say which batch failed.
                if exc.code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.CANCELLED):
                    raise ServiceError(exc.code, f"{where}: {exc.message}") from exc
                raise
            total += written.written
            usage = batch_clock.usage(
                queued=False,
                encoded_texts=written.written,
                encode_ms=written.encode_ms,
                truncated_texts=written.truncated,
            )
            if i == 0:
                usage = replace(usage, queue_ms=clock.queue_ms, total_ms=usage.total_ms + clock.queue_ms)
            yield i, written, total, usage

    @rpc
    def BulkUpsert(self, request_iterator: Iterator[pb.UpsertRequest], context):
        """Each stream message is validated and written as one batch.

        Batches acknowledged by earlier messages stay written if a later one is
        rejected; the error names the batch so the client can resume from it.
        """
        clock = CallClock()
        tenant = self.auth.require(context, "write")
        total = batches = encoded = truncated = 0
        encode_ms = 0.0
        for _, written, seen, _ in self._stream_batches(request_iterator, context, tenant, clock):
            total = seen  # documents received so far: the reply reports the last count
            batches += 1
            encoded += written.written
            encode_ms += written.encode_ms
            truncated += written.truncated
        usage = clock.usage(encoded_texts=encoded, encode_ms=encode_ms, truncated_texts=truncated)
        return pb.UpsertResponse(
            upserted=total, batches=batches, elapsed_ms=usage.total_ms - usage.queue_ms, usage=usage_message(usage)
        )

    @rpc
    def BulkUpsertAcked(self, request_iterator: Iterator[pb.UpsertRequest], context):
        """BulkUpsert with one UpsertAck per batch, sent once the batch is durable."""
        clock = CallClock()
        tenant = self.auth.require(context, "write")
        for i, written, total, usage in self._stream_batches(request_iterator, context, tenant, clock):
            yield pb.UpsertAck(
                batch=i,
                upserted=written.written,
                total=total,
                elapsed_ms=usage.total_ms - usage.queue_ms,
                usage=usage_message(usage),
            )

    @rpc
    def Delete(self, request, context):
        clock = CallClock()
        tenant = self.auth.require(context, "write")
        collection = wire_in.check_collection_name(request.collection)
        ids = wire_in.doc_ids(request.ids, self.limits)
        deleted = self.service.delete(tenant, collection, ids)
        return pb.DeleteResponse(deleted=deleted, usage=usage_message(clock.usage()))

    @rpc
    def Get(self, request, context):
        clock = CallClock()
        tenant = self.auth.require(context, "search")
        collection = wire_in.check_collection_name(request.collection)
        ids = wire_in.doc_ids(request.ids, self.limits)
        documents = [document_message(d) for d in self.service.get(tenant, collection, ids)]
        return pb.GetResponse(documents=documents, usage=usage_message(clock.usage()))

    # ------------------------------------------------------------ search
    @rpc
    def Search(self, request, context):
        clock = CallClock()
        tenant = self.auth.require(context, "search")
        query = wire_in.search_query(request, self.limits.for_tenant(tenant))
        # Set when the call ends, cancelled included: a query still queued for encoding is
        # then dropped instead of encoded for nobody.
        ended = call_ended(context)
        outcome = self.service.search(tenant, query, deadline_of(context), ended)
        t = outcome.timings
        usage = clock.usage(
            tokens=outcome.decision.cost_units,
            chunks=outcome.decision.chunks_scored,
            encoded_texts=0 if t.query_cache_hit else 1,
            truncated_texts=int(outcome.query_truncated),
            encode_ms=t.encode_ms,
            # OFF never reaches the reranker: the stage's microseconds of bookkeeping are not its time.
            rerank_ms=t.rerank_ms if outcome.decision.mode != "off" else 0.0,
        )
        return fit_reply(search_response(outcome, usage), self.service.settings.server.max_message_bytes)

    @rpc
    def Rerank(self, request, context):
        clock = CallClock()
        self.auth.require(context, "search")
        stage = self.service.rerank_stage
        if stage is None:
            raise failed_precondition("reranking is disabled on this server (rerank.enabled = false)")
        query, documents, top_n = wire_in.rerank_request(request, self.service.settings)
        result = stage.standalone(query, documents, request.model, deadline_of(context))
        usage = clock.usage(
            tokens=int(result.scores.tokens.sum()),
            truncated_documents=result.truncated,
            chunks=result.chunks,
            rerank_ms=result.elapsed_ms,
        )
        return rerank_response(result, documents, top_n, request.return_documents, usage)

    # ------------------------------------------------------------ about the server
    @rpc
    def GetInfo(self, request, context):
        tenant, role = self.auth.caller(context, "search")
        return info_message(service_info(self.service, tenant, role, self.health_services))
