"""Malformed requests at the wire answer INVALID_ARGUMENT, not INTERNAL.

grpcio deserialises a request before any handler runs; when that fails (bytes that are not
the message, a string field that is not valid UTF-8) it answers INTERNAL with "Exception
deserializing request!", which tells a caller nothing and reads as a server fault. This
interceptor gives every method a deserialiser that turns the failure into a marker, and
aborts the call with INVALID_ARGUMENT naming the method and protobuf's reason. Streamed
requests are checked one message at a time: the messages before a malformed one are
handled as usual (BulkUpsert acknowledges the batches it applied).
"""

from __future__ import annotations

import grpc

from hybridsearch.engine.errors import ServiceError


class _Malformed:
    __slots__ = ("reason",)

    def __init__(self, reason: str):
        self.reason = reason


def _tolerant(deserialize):
    def parse(data: bytes):
        try:
            return deserialize(data)
        except Exception as exc:  # protobuf's DecodeError, and whatever a parser raises
            return _Malformed(str(exc) or type(exc).__name__)

    return parse


def _error(method: str, bad: _Malformed, index: int | None = None) -> ServiceError:
    where = "request" if index is None else f"message {index} of the stream (the {index} before it were handled)"
    return ServiceError(
        grpc.StatusCode.INVALID_ARGUMENT,
        f"{where}: not a valid {method} message ({bad.reason[:200]}); strings must be UTF-8",
    )


class MalformedRequestInterceptor(grpc.ServerInterceptor):
    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        method = handler_call_details.method.rsplit("/", 1)[-1]
        parse = _tolerant(handler.request_deserializer)

        def checked(request, context):
            if isinstance(request, _Malformed):
                error = _error(method, request)
                context.abort(error.code, error.message)
            return request

        def checked_stream(requests, context):
            # Raised inside the handler's own loop over the stream: the servicer maps a
            # ServiceError to its status (context.abort there would read as a failure).
            for i, request in enumerate(requests):
                if isinstance(request, _Malformed):
                    raise _error(method, request, i)
                yield request

        if handler.unary_unary:
            inner = handler.unary_unary
            return grpc.unary_unary_rpc_method_handler(
                lambda req, ctx: inner(checked(req, ctx), ctx), parse, handler.response_serializer
            )
        if handler.unary_stream:
            inner = handler.unary_stream
            return grpc.unary_stream_rpc_method_handler(
                lambda req, ctx: inner(checked(req, ctx), ctx), parse, handler.response_serializer
            )
        if handler.stream_unary:
            inner = handler.stream_unary
            return grpc.stream_unary_rpc_method_handler(
                lambda reqs, ctx: inner(checked_stream(reqs, ctx), ctx), parse, handler.response_serializer
            )
        inner = handler.stream_stream
        return grpc.stream_stream_rpc_method_handler(
            lambda reqs, ctx: inner(checked_stream(reqs, ctx), ctx), parse, handler.response_serializer
        )
