"""gRPC interceptor plumbing: a server method handler rewrapped, a client call's details with other metadata."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

Behaviour = Callable[..., Any]


def rewrap(
    handler: grpc.RpcMethodHandler,
    wrap_unary: Callable[[Behaviour], Behaviour],
    wrap_stream: Callable[[Behaviour], Behaviour],
) -> grpc.RpcMethodHandler:
    """`handler` with its behaviour wrapped: `wrap_unary` for methods answering once, `wrap_stream` for
    methods answering with a stream."""
    de, ser = handler.request_deserializer, handler.response_serializer
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(wrap_unary(handler.unary_unary), de, ser)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(wrap_stream(handler.unary_stream), de, ser)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(wrap_unary(handler.stream_unary), de, ser)
    return grpc.stream_stream_rpc_method_handler(wrap_stream(handler.stream_stream), de, ser)


class CallDetails(grpc.ClientCallDetails):
    """A sync client call's details with other metadata (grpc's own details are not always a namedtuple)."""

    def __init__(self, details: Any, metadata: list[tuple[str, str]]) -> None:
        self.method = details.method
        self.timeout = details.timeout
        self.metadata = metadata
        self.credentials = details.credentials
        self.wait_for_ready = getattr(details, "wait_for_ready", None)
        self.compression = getattr(details, "compression", None)
