"""The gRPC server: service wiring, standard health checking, reflection, graceful shutdown."""

from __future__ import annotations

import gc
import logging
import os
import signal
import threading
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from hybridsearch.engine.admin_servicer import TenantAdminServicer
from hybridsearch.engine.admission import AdmissionInterceptor, scheduler_for
from hybridsearch.engine.api_keys import ApiKeyStore
from hybridsearch.engine.auth import Authenticator
from hybridsearch.engine.config import Settings
from hybridsearch.engine.service import SearchService
from hybridsearch.engine.servicer import HybridSearchServicer
from hybridsearch.engine.streams import StreamBoundInterceptor, stream_limiter_for
from hybridsearch.engine.tracing import server_interceptors
from hybridsearch.engine.wire.malformed import MalformedRequestInterceptor
from hybridsearch.v1 import hybridsearch_pb2 as pb
from hybridsearch.v1 import hybridsearch_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)
# Health entry for the rerank stage: NOT_SERVING while the default reranker is
# missing, failing (circuit open) or disabled; searches still work, fusion only.
RERANK_HEALTH = "hybridsearch.v1.Rerank"
SERVICE_NAMES = (
    pb.DESCRIPTOR.services_by_name["HybridSearch"].full_name,
    pb.DESCRIPTOR.services_by_name["TenantAdmin"].full_name,
)


class _LiteUnimplementedFilter(logging.Filter):
    """Milvus Lite runs an in-process gRPC adapter without AllocTimestamp; pymilvus probes it
    on flush and falls back. Drop that one traceback; our own servicers never raise
    NotImplementedError into grpc (they answer with a status)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.exc_info or not isinstance(record.exc_info[1], NotImplementedError):
            return True
        return not any("milvus" in tb.tb_frame.f_code.co_filename for tb in _walk(record.exc_info[2]))


def _walk(tb):
    while tb is not None:
        yield tb
        tb = tb.tb_next


logging.getLogger("grpc._server").addFilter(_LiteUnimplementedFilter())


def offline_model_environment() -> None:
    """Models load from local paths only; make every hub client fail fast instead of hanging."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


class HealthWithList(health.HealthServicer):
    """grpcio-health-checking's servicer, with the List RPC it advertises but leaves
    UNIMPLEMENTED: every service name this server reports on, with its status, so a client
    can discover names such as hybridsearch.v1.Rerank."""

    def List(self, request, context):
        with self._lock:  # the parent class's lock over its status map
            statuses = dict(self._server_status)
        return health_pb2.HealthListResponse(
            statuses={name: health_pb2.HealthCheckResponse(status=status) for name, status in statuses.items()}
        )


class Server:
    """A running service. ``start()`` binds and serves; ``stop()`` drains and closes."""

    def __init__(self, settings: Settings, service: SearchService | None = None):
        offline_model_environment()
        self.settings = settings
        self.service = service or SearchService(settings)
        opts = [
            ("grpc.max_receive_message_length", settings.server.max_message_bytes),
            ("grpc.max_send_message_length", settings.server.max_message_bytes),
        ]
        self.keys = ApiKeyStore.from_settings(settings)
        self.auth = Authenticator(settings, self.keys)
        self.scheduler = scheduler_for(settings.limits, settings.server.max_workers)
        admission = AdmissionInterceptor(self.scheduler, self.auth.identify, self.service.metrics)
        self.streams = stream_limiter_for(settings.limits)
        bound = StreamBoundInterceptor(self.streams, self.auth.identify, self.service.metrics)
        # Open streams get threads of their own, above the max_workers that admission shares out.
        threads = settings.server.max_workers + settings.limits.max_streams
        self.grpc_server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="rpc"),
            options=opts,
            # Streams are counted, and admission counts the call, on arrival, before the pool
            # (the tracing interceptor, when enabled, is outside them so that its span covers
            # the wait for admission).
            interceptors=[*server_interceptors(self.service.tracer), bound, admission, MalformedRequestInterceptor()],
        )
        self.health = HealthWithList(experimental_non_blocking=True)
        if settings.auth_mode == "dev_header":
            log.warning(
                "auth_mode dev_header: the tenant is taken from x-tenant metadata, unauthenticated (development only)"
            )
        self.port: int = 0
        self._stopped = threading.Event()
        self._closed = threading.Event()
        self.extra_servicers: list = []

    def start(self) -> int:
        self.service.start()
        # Everything loaded so far (models, tokenizers, their module trees) lives as long as
        # the process: move it out of the collector's view, so that a full collection does
        # not walk it during a request (a 650 ms gen-2 pause was seen at 50k documents).
        gc.collect()
        gc.freeze()
        health_names = ["", *SERVICE_NAMES, RERANK_HEALTH]
        pb_grpc.add_HybridSearchServicer_to_server(
            HybridSearchServicer(self.service, self.auth, health_names), self.grpc_server
        )
        pb_grpc.add_TenantAdminServicer_to_server(
            TenantAdminServicer(self.service, self.auth, self.keys), self.grpc_server
        )
        for add in self.extra_servicers:
            add(self.grpc_server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.grpc_server)
        reflection.enable_server_reflection(
            SERVICE_NAMES + (health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
            self.grpc_server,
        )
        address = f"{self.settings.server.host}:{self.settings.server.port}"
        tls = self.settings.server
        if tls.tls_cert_file is not None:
            credentials = grpc.ssl_server_credentials([(tls.tls_key_file.read_bytes(), tls.tls_cert_file.read_bytes())])
            self.port = self.grpc_server.add_secure_port(address, credentials)
        else:
            self.port = self.grpc_server.add_insecure_port(address)
        if self.port == 0:
            raise RuntimeError(f"could not bind {address}")
        self.grpc_server.start()
        if self.settings.server.metrics_port:
            self.service.metrics.serve(self.settings.server.host, self.settings.server.metrics_port)
        self._set_serving(True)
        threading.Thread(target=self._watch, name="health", daemon=True).start()
        log.info("serving on %s:%d (Milvus %s)", self.settings.server.host, self.port, self.settings.milvus_uri)
        return self.port

    def _set_serving(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        self.health.set("", status)
        for name in SERVICE_NAMES:
            self.health.set(name, status)

    def reranker_serving(self) -> bool:
        stage = self.service.rerank_stage
        return stage is not None and stage.health()[0]

    def _watch(self) -> None:
        """Keep health current: the service follows Milvus, the Rerank entry the reranker."""
        last_store = last_rerank = None
        while not self._stopped.is_set():
            store_ok = self.service.store.ping()
            if store_ok != last_store and not self._stopped.is_set():
                self._set_serving(store_ok)
                if last_store is not None or not store_ok:
                    log.warning(
                        "Milvus at %s: %s",
                        self.settings.milvus_uri,
                        "reachable again" if store_ok else "unreachable; answering UNAVAILABLE",
                    )
                last_store = store_ok
            rerank_ok = self.reranker_serving()
            if rerank_ok != last_rerank and not self._stopped.is_set():
                status = (
                    health_pb2.HealthCheckResponse.SERVING if rerank_ok else health_pb2.HealthCheckResponse.NOT_SERVING
                )
                self.health.set(RERANK_HEALTH, status)
                if last_rerank is not None:
                    log.warning(
                        "reranker health: %s (%s)",
                        "SERVING" if rerank_ok else "NOT_SERVING",
                        self.service.rerank_stage.health()[1] if self.service.rerank_stage else "disabled",
                    )
                last_rerank = rerank_ok
            self._stopped.wait(self.settings.server.health_interval_s)

    def stop(self, grace: float | None = None) -> None:
        """Health turns NOT_SERVING first, new calls are refused, in-flight calls get ``grace`` seconds."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        # Every entry NOT_SERVING, and later sets ignored, so the health watcher
        # cannot flip it back while calls drain.
        self.health.enter_graceful_shutdown()
        grace = self.settings.server.grace_s if grace is None else grace
        self.grpc_server.stop(grace).wait()
        self.service.close()
        self._closed.set()
        log.info("stopped")

    def wait(self) -> None:
        self.grpc_server.wait_for_termination()

    def install_signal_handlers(self) -> None:
        def handle(signum, _frame):
            log.info("signal %d: draining (grace %.1fs)", signum, self.settings.server.grace_s)
            threading.Thread(target=self.stop, name="shutdown", daemon=True).start()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)


def serve(settings: Settings) -> None:
    server = Server(settings)
    server.install_signal_handlers()
    server.start()
    server.wait()
    # gRPC has stopped; let the shutdown thread finish closing the store and reranker.
    server._closed.wait(settings.server.grace_s + 30)
