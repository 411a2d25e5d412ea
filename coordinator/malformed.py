"""Requests whose bytes do not parse end INVALID_ARGUMENT, the sender's fault; grpcio's own answer
is INTERNAL ("Exception deserializing request!"), which reads as a coordinator bug.

A server interceptor swaps each method's parser for one that turns undecodable bytes into a marker
and wraps the method so the marker aborts the call before the service sees it."""

from __future__ import annotations

from collections.abc import Callable

import grpc
from google.protobuf.message import DecodeError

MALFORMED = object()


def _lenient(parse: Callable[[bytes], object]) -> Callable[[bytes], object]:
    def deserialize(data: bytes) -> object:
        try:
            return parse(data)
        except DecodeError:
            return MALFORMED

    return deserialize


def _parsed(request, context: grpc.ServicerContext):
    if request is MALFORMED:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the message does not parse as this call's protobuf type")
    return request


class RejectMalformed(grpc.ServerInterceptor):
    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        kind = ("stream_" if handler.request_streaming else "unary_") + (
            "stream" if handler.response_streaming else "unary"
        )
        behaviour = getattr(handler, kind)
        if handler.request_streaming:

            def method(requests, context):
                return behaviour((_parsed(request, context) for request in requests), context)
        else:

            def method(request, context):
                return behaviour(_parsed(request, context), context)

        return handler._replace(request_deserializer=_lenient(handler.request_deserializer), **{kind: method})
