"""The gRPC face: every MessagesService and ThreadsService method → the call pipeline, transport
details only.

Per call, in: the method name, the request metadata, ``context.peer`` (asked for lazily), the
deadline (``context.time_remaining()``) and the ids the request names; out: the response or the
stream's pages, the response metadata (``x-gateway-request-id`` and the upstream's and cache's
headers) as trailers, or the pipeline's ``GatewayError`` as a status with details
(``gateway.rpc.status``). Policy lives in ``gateway.pipeline``, not here.

Handlers are registered directly from the contract's service descriptors (no server
interceptor): an installed grpc.aio interceptor costs an ``intercept_service`` round per call.
Each method calls the operations method of the same name in snake case (``MessageOperations``,
``ThreadOperations``).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from typing import Any

import grpc

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from gateway.context import CallContext
from gateway.errors import GatewayError
from gateway.headers import GATEWAY_REQUEST_ID
from gateway.pipeline import Pipeline
from gateway.rpc.status import to_grpc_status

SERVICE = pb.DESCRIPTOR.services_by_name["MessagesService"]
THREADS_SERVICE = pb.DESCRIPTOR.services_by_name["ThreadsService"]

Behavior = Callable[[Any, grpc.aio.ServicerContext], Any]


def operation_name(rpc: str) -> str:
    """``GetMessageFile`` → ``get_message_file``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", rpc).lower()


def _metadata(ctx: CallContext) -> tuple[tuple[str, str], ...]:
    return ((GATEWAY_REQUEST_ID, ctx.request_id), *ctx.response_headers.items())


async def _abort(context: grpc.aio.ServicerContext, ctx: CallContext, exc: GatewayError) -> None:
    status = to_grpc_status(exc)
    await context.abort(status.code, status.details,
                        tuple(status.trailing_metadata) + _metadata(ctx))


class GrpcFace:
    """Builds the method handlers of the contract's services over one pipeline: ``services``
    maps each service descriptor to the object holding its operations."""

    def __init__(self, pipeline: Pipeline, services: dict[Any, Any]) -> None:
        self._pipeline = pipeline
        self._services = services

    def _open(self, name: str, request: Any, context: grpc.aio.ServicerContext) -> CallContext:
        return self._pipeline.open(
            name, "grpc", context.invocation_metadata() or (), peer=context.peer,
            timeout=context.time_remaining(), thread_id=getattr(request, "thread_id", ""),
            message_id=getattr(request, "message_id", ""))

    def _unary(self, name: str, operation: Any) -> Behavior:
        unary = self._pipeline.unary

        async def behavior(request: Any, context: grpc.aio.ServicerContext) -> Any:
            ctx = self._open(name, request, context)
            try:
                response = await unary(ctx, operation, request)
            except GatewayError as exc:
                await _abort(context, ctx, exc)
                raise  # pragma: no cover - abort raises
            # Trailing, not initial: grpc.aio then sends metadata, message and status in one
            # batch. send_initial_metadata() is a batch of its own, ~10 % of a cache hit.
            context.set_trailing_metadata(_metadata(ctx))
            return response

        return behavior

    def _stream(self, name: str, operation: Any) -> Behavior:
        # A coroutine writing with context.write, not an async generator: when the consumer
        # cancels (or its deadline passes) while a write waits on flow control, the cancellation
        # lands here, inside this task, and aclosing() closes the pipeline's stream (and the page
        # walker under it) at once. An async generator suspended at `yield` would instead be
        # finalised later by the loop's asyncgen hook, in another task - the upstream fetch
        # outliving the call. A write that fails because the consumer left (grpc's
        # ExecuteBatchError, an aio InternalError) is re-raised unmapped: grpc treats it as the
        # cancellation it is.
        stream = self._pipeline.stream

        async def behavior(request: Any, context: grpc.aio.ServicerContext) -> None:
            ctx = self._open(name, request, context)
            sent = False
            try:
                async with contextlib.aclosing(stream(ctx, operation, request)) as pages:
                    async for page in pages:
                        if not sent:
                            # Trailers, as on unary calls; the first page's upstream headers
                            # are the stream's.
                            context.set_trailing_metadata(_metadata(ctx))
                            sent = True
                        await context.write(page)
            except GatewayError as exc:
                await _abort(context, ctx, exc)
            if not sent:
                context.set_trailing_metadata(_metadata(ctx))

        return behavior

    def handlers(self, service: Any) -> dict[str, grpc.RpcMethodHandler]:
        """Method name → handler, for every method of one of the contract's services."""
        handlers: dict[str, grpc.RpcMethodHandler] = {}
        operations = self._services[service]
        for method in service.methods:
            request_type = getattr(pb, method.input_type.name)
            response_type = getattr(pb, method.output_type.name)
            operation = getattr(operations, operation_name(method.name))
            if method.server_streaming:
                handlers[method.name] = grpc.unary_stream_rpc_method_handler(
                    self._stream(method.name, operation),
                    request_deserializer=request_type.FromString,
                    response_serializer=response_type.SerializeToString)
            else:
                handlers[method.name] = grpc.unary_unary_rpc_method_handler(
                    self._unary(method.name, operation),
                    request_deserializer=request_type.FromString,
                    response_serializer=response_type.SerializeToString)
        return handlers

    def register(self, server: grpc.aio.Server,
                 wrap: Callable[[str, dict[str, Any]], dict[str, Any]] | None = None) -> None:
        """Add every service's handlers to ``server``, each first passed through ``wrap``
        (service name, handlers → handlers), e.g. ``CallAdmission.wrap_all``."""
        for service in self._services:
            handlers = self.handlers(service)
            if wrap is not None:
                handlers = wrap(service.full_name, handlers)
            register(server, service.full_name, handlers)


def register(server: grpc.aio.Server, service: str,
             handlers: dict[str, grpc.RpcMethodHandler]) -> None:
    """Registered method handlers are found first, by name; the generic handler serves the same
    methods to code paths that look there."""
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
    server.add_registered_method_handlers(service, handlers)


class HandlerCollector:
    """Stands in for a server to collect the handlers a generated ``add_*_to_server`` adds (to
    wrap them before they reach the real one)."""

    def __init__(self) -> None:
        self.handlers: dict[str, dict[str, grpc.RpcMethodHandler]] = {}

    def add_generic_rpc_handlers(self, generic_handlers: Any) -> None:
        """The same methods come in through ``add_registered_method_handlers``."""

    def add_registered_method_handlers(self, service: str,
                                       handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        self.handlers[service] = handlers
