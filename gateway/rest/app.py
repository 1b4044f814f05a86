"""The REST face: the upstream's own paths under ``/v1``, served by Starlette, over the pipeline.

Per request, in: the route's RPC name, the request headers (the same ``(name, value)`` pairs the
gRPC face hands over as metadata), the client address and the path's ids; the pipeline then
authenticates, applies every policy and runs the route's operation, which checks ``OpenAI-Beta``,
translates the request into the contract's protobuf message (``gateway.rest.requests``) and
calls ``MessageOperations``. Out: the result as the upstream's JSON (``gateway.upstream.wire``),
or the pipeline's ``GatewayError`` in the upstream's error envelope (``gateway.rest.errors``).
``ROUTES`` mirrors the proto's ``google.api.http`` annotations, which a test checks.

The streaming routes (``…/messages:stream``, ``…/files:stream``) answer newline-delimited JSON,
one object per line, from the same ``stream_messages``/``stream_message_files`` the gRPC streams
use. An error before the first line is an ordinary error response with its status; after it the
status (200) is already sent, so the stream ends with one last line ``{"error": {...},
"resume_after": "<last id sent>"}`` (``resume_before`` for a walk started with ``before``). A
client that disconnects cancels the stream and the upstream page being fetched.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from gateway.context import CallContext
from gateway.errors import GatewayError
from gateway.headers import GATEWAY_REQUEST_ID
from gateway.operations.messages import MessageOperations
from gateway.operations.threads import ThreadOperations
from gateway.pipeline import Pipeline
from gateway.rest import requests as parse
from gateway.rest.errors import error_envelope, error_headers, error_line, http_exception_envelope
from gateway.upstream import wire, wire_threads

__all__ = ["ROUTES", "RestApi", "create_app"]

NDJSON = "application/x-ndjson"

#: (RPC name, HTTP method, path): the proto's google.api.http annotations, route by route. The
#: adopt route comes before the thread's own path, which would otherwise take ``{id}:adopt``.
ROUTES: tuple[tuple[str, str, str], ...] = (
    ("CreateThread", "POST", "/v1/threads"),
    ("AdoptThread", "POST", "/v1/threads/{thread_id}:adopt"),
    ("GetThread", "GET", "/v1/threads/{thread_id}"),
    ("UpdateThread", "POST", "/v1/threads/{thread_id}"),
    ("DeleteThread", "DELETE", "/v1/threads/{thread_id}"),
    ("CreateMessage", "POST", "/v1/threads/{thread_id}/messages"),
    ("GetMessage", "GET", "/v1/threads/{thread_id}/messages/{message_id}"),
    ("UpdateMessage", "POST", "/v1/threads/{thread_id}/messages/{message_id}"),
    ("ListMessages", "GET", "/v1/threads/{thread_id}/messages"),
    ("StreamMessages", "GET", "/v1/threads/{thread_id}/messages:stream"),
    ("GetMessageFile", "GET", "/v1/threads/{thread_id}/messages/{message_id}/files/{file_id}"),
    ("ListMessageFiles", "GET", "/v1/threads/{thread_id}/messages/{message_id}/files"),
    ("StreamMessageFiles", "GET", "/v1/threads/{thread_id}/messages/{message_id}/files:stream"),
)

Render = Callable[[Any], dict[str, Any]]
#: Request → the contract's request message (reading the body when the route has one).
Translate = Callable[[Request], Awaitable[Any]]


def response_headers(ctx: CallContext) -> dict[str, str]:
    """The upstream's useful headers, the cache's, and the gateway's request id."""
    return {**ctx.response_headers, GATEWAY_REQUEST_ID: ctx.request_id}


def _error_response(exc: GatewayError, ctx: CallContext) -> Response:
    return JSONResponse(error_envelope(exc), status_code=int(exc.http_status),
                        headers=error_headers(exc, response_headers(ctx)))


def _header_pairs(request: Request) -> list[tuple[str, str]]:
    # ASGI gives lower-case names and raw bytes; latin-1 is HTTP's own decoding of them.
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.scope["headers"]]


class RestApi:
    """The route handlers, bound to the shared pipeline and operations."""

    def __init__(self, operations: MessageOperations, pipeline: Pipeline) -> None:
        self._ops = operations
        self._pipeline = pipeline

    def routes(self) -> list[Route]:
        ops, threads = self._ops, ThreadOperations(self._ops)
        table: dict[str, tuple[Translate, Callable[..., Any], Render]] = {
            "CreateThread": (_create_thread, threads.create_thread, wire_threads.thread_to_json),
            "GetThread": (_thread(pb.GetThreadRequest), threads.get_thread,
                          wire_threads.thread_to_json),
            "UpdateThread": (_update_thread, threads.update_thread, wire_threads.thread_to_json),
            "DeleteThread": (_thread(pb.DeleteThreadRequest), threads.delete_thread,
                             wire_threads.thread_deleted_to_json),
            "AdoptThread": (_thread(pb.AdoptThreadRequest), threads.adopt_thread,
                            wire_threads.thread_to_json),
            "CreateMessage": (_create_message, ops.create_message, wire.message_to_json),
            "GetMessage": (_get_message, ops.get_message, wire.message_to_json),
            "UpdateMessage": (_update_message, ops.update_message, wire.message_to_json),
            "ListMessages": (_list_messages(stream=False), ops.list_messages,
                             wire.message_list_to_json),
            "StreamMessages": (_list_messages(stream=True), ops.stream_messages,
                               wire.message_to_json),
            "GetMessageFile": (_get_message_file, ops.get_message_file,
                               wire.message_file_to_json),
            "ListMessageFiles": (_list_message_files(stream=False), ops.list_message_files,
                                 wire.message_file_list_to_json),
            "StreamMessageFiles": (_list_message_files(stream=True), ops.stream_message_files,
                                   wire.message_file_to_json),
        }
        routes = []
        for name, method, path in ROUTES:
            translate, operation, render = table[name]
            endpoint = (self._stream_endpoint if name.startswith("Stream")
                        else self._unary_endpoint)(name, translate, operation, render)
            routes.append(Route(path, endpoint, methods=[method], name=name))
        return routes

    def _open(self, name: str, request: Request) -> CallContext:
        params = request.path_params
        return self._pipeline.open(
            name, "rest", _header_pairs(request),
            peer=request.client.host if request.client else "",
            thread_id=params.get("thread_id", ""), message_id=params.get("message_id", ""))

    def _unary_endpoint(self, name: str, translate: Translate, operation: Callable[..., Any],
                        render: Render) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request, ctx: CallContext) -> Any:
            parse.check_beta(request.headers)
            return await operation(await translate(request), ctx)

        async def endpoint(request: Request) -> Response:
            _refuse_encoded_slash(request)
            ctx = self._open(name, request)
            try:
                result = await self._pipeline.unary(ctx, run, request)
            except GatewayError as exc:
                return _error_response(exc, ctx)
            return OrjsonResponse(render(result), headers=response_headers(ctx))

        return endpoint

    def _stream_endpoint(self, name: str, translate: Translate, operation: Callable[..., Any],
                         render: Render) -> Callable[[Request], Awaitable[Response]]:
        async def walk(request: Request, ctx: CallContext) -> AsyncIterator[Any]:
            parse.check_beta(request.headers)
            req = await translate(request)
            async with contextlib.aclosing(operation(req, ctx)) as pages:
                async for page in pages:
                    yield page

        async def endpoint(request: Request) -> Response:
            _refuse_encoded_slash(request)
            ctx = self._open(name, request)
            pages = self._pipeline.stream(ctx, walk, request)
            # Validation and the first upstream page happen before the 200 goes out.
            try:
                first = await anext(pages, None)
            except GatewayError as exc:
                await pages.aclose()  # type: ignore[attr-defined]
                return _error_response(exc, ctx)
            except BaseException:
                await pages.aclose()  # type: ignore[attr-defined]
                raise
            return _NdjsonResponse(ctx, first, pages, render)

        return endpoint


def _refuse_encoded_slash(request: Request) -> None:
    """The server decodes the path before routing, so an id sent with ``%2F`` in it splits its
    segment and the request lands on another route, with other ids (``GET /v1/threads/T%2F
    messages`` is a ListMessages of T): what a proxy in front saw is not what runs. No id holds a
    slash, so such a path is an unknown URL (404), as if no route matched."""
    raw = request.scope.get("raw_path") or b""
    if b"%2" in raw and b"%2f" in raw.lower():
        raise HTTPException(404)


# -- request translation, route by route ----------------------------------------------------------


def _path(request: Request, name: str) -> str:
    return str(request.path_params[name])


async def _create_message(request: Request) -> Any:
    body = await parse.read_json_object(request)
    return parse.create_message_request(_path(request, "thread_id"), body,
                                        request.query_params.multi_items())


async def _get_message(request: Request) -> Any:
    return parse.get_message_request(_path(request, "thread_id"), _path(request, "message_id"),
                                     request.query_params.multi_items())


async def _update_message(request: Request) -> Any:
    body = await parse.read_json_object(request)
    return parse.update_message_request(_path(request, "thread_id"),
                                        _path(request, "message_id"), body,
                                        request.query_params.multi_items())


async def _create_thread(request: Request) -> Any:
    body = await parse.read_json_object(request)
    return parse.create_thread_request(body, request.query_params.multi_items())


async def _update_thread(request: Request) -> Any:
    body = await parse.read_json_object(request)
    return parse.update_thread_request(_path(request, "thread_id"), body,
                                       request.query_params.multi_items())


def _thread(cls: type[Any]) -> Translate:
    async def translate(request: Request) -> Any:
        return parse.thread_request(cls, _path(request, "thread_id"),
                                    request.query_params.multi_items())

    return translate


def _list_messages(*, stream: bool) -> Translate:
    async def translate(request: Request) -> Any:
        return parse.list_messages_request(_path(request, "thread_id"), request.query_params,
                                           request.query_params.multi_items(), stream=stream)

    return translate


async def _get_message_file(request: Request) -> Any:
    return parse.get_message_file_request(
        _path(request, "thread_id"), _path(request, "message_id"), _path(request, "file_id"),
        request.query_params.multi_items())


def _list_message_files(*, stream: bool) -> Translate:
    async def translate(request: Request) -> Any:
        return parse.list_message_files_request(
            _path(request, "thread_id"), _path(request, "message_id"), request.query_params,
            request.query_params.multi_items(), stream=stream)

    return translate


class _NdjsonResponse(StreamingResponse):
    """NDJSON lines from a started pipeline stream.

    Starlette cancels the sending task when the client disconnects; if that lands while the line
    generator waits at a ``yield``, nothing else would close it, and the page walker's prefetch
    would outlive the request. ``__call__`` closes both at once (the pipeline then records the
    call: OK, its error, or CANCELLED).
    """

    media_type = NDJSON

    def __init__(self, ctx: CallContext, first: Any, pages: AsyncIterator[Any],
                 render: Render) -> None:
        self._first = first
        self._pages = pages
        self._render = render
        super().__init__(self._lines(), headers=response_headers(ctx))

    async def _lines(self) -> AsyncIterator[bytes]:
        render, page = self._render, self._first
        try:
            while page is not None:
                yield b"".join(_line(render(item)) for item in page.data)
                page = await anext(self._pages, None)
        except GatewayError as exc:
            yield error_line(exc)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.body_iterator.aclose()  # type: ignore[attr-defined]
            await self._pages.aclose()  # type: ignore[attr-defined]


class OrjsonResponse(JSONResponse):
    """Starlette's JSONResponse written by orjson: the same compact UTF-8 JSON, ~4x faster
    (json.dumps was ~3 % of a REST call's CPU in the profile)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def _line(obj: dict[str, Any]) -> bytes:
    # orjson writes the same compact UTF-8 JSON as json.dumps(ensure_ascii=False, separators=
    # (",", ":")), several times faster: a 1,000-message NDJSON stream spent most of its CPU here.
    return orjson.dumps(obj) + b"\n"


def create_app(operations: MessageOperations, pipeline: Pipeline) -> Starlette:
    """The Starlette application of the REST face."""
    api = RestApi(operations, pipeline)
    app = Starlette(routes=api.routes(), exception_handlers={HTTPException: http_exception_envelope})
    # No route ends with a slash, and Starlette's slash redirect takes its host from the client's
    # Host header (an open redirect through the gateway): such a path is a 404 like any other.
    app.router.redirect_slashes = False
    return app
