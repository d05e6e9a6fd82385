"""The @rpc wrapper: statuses a handler sets itself pass through; surprises become INTERNAL."""

from __future__ import annotations

from concurrent import futures
from types import SimpleNamespace

import grpc
import pytest

from hybridsearch.engine.errors import not_found
from hybridsearch.engine.metrics import Metrics
from hybridsearch.engine.rpc import rpc


class Probe:
    service = SimpleNamespace(metrics=Metrics())

    @rpc
    def Abort(self, request, context):
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, "set by the handler")

    @rpc
    def Raise(self, request, context):
        raise not_found("no such thing")

    @rpc
    def Crash(self, request, context):
        raise ZeroDivisionError("boom")


@pytest.fixture(scope="module")
def call():
    server = grpc.server(futures.ThreadPoolExecutor(2))
    probe = Probe()
    handlers = {name: grpc.unary_unary_rpc_method_handler(getattr(probe, name)) for name in ("Abort", "Raise", "Crash")}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("probe.Probe", handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")

    def invoke(name):
        with pytest.raises(grpc.RpcError) as info:
            channel.unary_unary(f"/probe.Probe/{name}")(b"", timeout=10)
        return info.value.code(), info.value.details()

    yield invoke
    channel.close()
    server.stop(0)


def test_an_abort_inside_a_handler_keeps_its_own_status(call):
    # grpcio's sync server raises a bare Exception from abort(); it once became INTERNAL.
    assert call("Abort") == (grpc.StatusCode.FAILED_PRECONDITION, "set by the handler")


def test_a_service_error_becomes_its_status_and_anything_else_internal(call):
    assert call("Raise") == (grpc.StatusCode.NOT_FOUND, "no such thing")
    code, details = call("Crash")
    assert code == grpc.StatusCode.INTERNAL and "ZeroDivisionError: boom" in details
