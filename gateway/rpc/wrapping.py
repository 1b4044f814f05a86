"""The base of the gateway's server interceptors: wrap each consumer method's behaviour once.

grpc.aio interceptors see a method handler per call; building a new one per call is a measurable
part of a cached GetMessage (README, Benchmarks), so wrapped handlers are kept per method.
Health and reflection are never wrapped: they are infrastructure, open to probes and tooling.
"""

from __future__ import annotations

import abc

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc

#: Services that are not wrapped (no log line, no auth).
PASSTHROUGH_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")

Handler = Callable[[Any, grpc.aio.ServicerContext], Any]


class WrappingInterceptor(grpc.aio.ServerInterceptor):
    """Subclasses say how to wrap a unary and a server-streaming behaviour of one method.

    ``inner`` interceptors are applied inside this one at wrap time instead of being installed as
    further grpc.aio interceptors: each installed interceptor costs an ``intercept_service``
    round per call, which made authentication cost 14 % of a cached GetMessage.
    """

    def __init__(self, inner: Sequence[WrappingInterceptor] = ()) -> None:
        self._inner = tuple(inner)
        #: method → (inner handler, wrapped handler).
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    @abc.abstractmethod
    def wrap_unary(self, method: str, inner: Handler) -> Handler:
        """The behaviour that runs instead of ``inner`` for a unary method."""

    @abc.abstractmethod
    def wrap_stream(self, method: str, inner: Handler) -> Handler:
        """The behaviour that runs instead of ``inner`` for a server-streaming method."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(PASSTHROUGH_PREFIXES):
            return handler
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self._wrap(method, handler)
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        if handler.unary_unary is not None:
            unary = handler.unary_unary
            for guard in reversed(self._inner):
                unary = guard.wrap_unary(method, unary)
            return grpc.unary_unary_rpc_method_handler(
                self.wrap_unary(method, unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            stream = handler.unary_stream
            for guard in reversed(self._inner):
                stream = guard.wrap_stream(method, stream)
            return grpc.unary_stream_rpc_method_handler(
                self.wrap_stream(method, stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler  # pragma: no cover - the contract has no client-streaming methods
