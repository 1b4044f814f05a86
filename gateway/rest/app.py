"""The REST face: the upstream's own paths under ``/v1``, served by Starlette.

Each route is one line onto ``MessageOperations``, exactly like the gRPC servicer: the request
becomes the contract's protobuf message (``gateway.rest.requests``), the operation validates it
and calls the upstream, and the result goes back as the upstream's JSON (``gateway.upstream.wire``).
Errors are rendered in one place (``gateway.rest.errors``); the call record, log line and metrics
in another (``gateway.rest.calls``). ``ROUTES`` mirrors the proto's ``google.api.http``
annotations, which a test checks.

Every call, in order: open the call record → ``OpenAI-Beta`` check → authentication hook →
request translation → operation → JSON. The streaming routes (``…/messages:stream``,
``…/files:stream``) answer newline-delimited JSON, one object per line, from the same
``stream_messages``/``stream_message_files`` the gRPC streams use. An error before the first
line is an ordinary error response with its status; after it the status (200) is already sent,
so the stream ends with one last line ``{"error": {...}, "resume_after": "<last id sent>"}``.
A client that disconnects cancels the stream and the upstream page being fetched.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any

import structlog
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from gateway.call import Call, bind_call, unbind_call
from gateway.errors import GatewayError
from gateway.operations.messages import MessageOperations
from gateway.rest import requests as parse
from gateway.rest.calls import Authenticator, log_call, open_call, response_headers, set_timeout
from gateway.rest.errors import (
    error_envelope,
    error_headers,
    error_line,
    http_exception_envelope,
    to_error,
)
from gateway.upstream import wire

__all__ = ["ROUTES", "RestApi", "create_app"]

log = structlog.get_logger("gateway.rest")

NDJSON = "application/x-ndjson"

#: (RPC name, HTTP method, path): the proto's google.api.http annotations, route by route.
ROUTES: tuple[tuple[str, str, str], ...] = (
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


@dataclass(frozen=True, slots=True)
class _Stream:
    """A started stream: its first page (None when the list is empty) and the rest."""

    first: Any
    pages: AsyncIterator[Any]
    render: Render


class RestApi:
    """The route handlers, bound to the shared operations."""

    def __init__(
        self,
        operations: MessageOperations,
        *,
        default_timeout: float,
        allowed_extra_headers: Collection[str] = (),
        authenticate: Authenticator | None = None,
    ) -> None:
        self._ops = operations
        self._default_timeout = default_timeout
        self._allowed = parse.allowed_header_names(allowed_extra_headers)
        self._authenticate = authenticate

    def routes(self) -> list[Route]:
        handlers: dict[str, Callable[[Request, Call], Awaitable[Any]]] = {
            "CreateMessage": self._create_message,
            "GetMessage": self._get_message,
            "UpdateMessage": self._update_message,
            "ListMessages": self._list_messages,
            "StreamMessages": self._stream_messages,
            "GetMessageFile": self._get_message_file,
            "ListMessageFiles": self._list_message_files,
            "StreamMessageFiles": self._stream_message_files,
        }
        return [
            Route(path, self._endpoint(name, handlers[name]), methods=[method], name=name)
            for name, method, path in ROUTES
        ]

    # -- one call ---------------------------------------------------------------------------------

    def _endpoint(
        self, method: str, handler: Callable[[Request, Call], Awaitable[Any]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            call = open_call(method, request.headers, self._default_timeout)
            call.peer = request.client.host if request.client else ""
            token = bind_call(call)
            streaming = False
            code, status = "OK", 200
            try:
                set_timeout(call, parse.timeout_seconds(request.headers))
                parse.check_beta(request.headers)
                if self._authenticate is not None:
                    await self._authenticate(request.headers, call)
                result = await handler(request, call)
                if isinstance(result, _Stream):
                    streaming = True
                    return _NdjsonResponse(call, result, self._error)
                return JSONResponse(result, headers=response_headers(call))
            except Exception as exc:
                error = self._error(exc)
                code, status = error.grpc_code.name, int(error.http_status)
                return JSONResponse(error_envelope(error), status_code=status,
                                    headers=error_headers(error, response_headers(call)))
            except BaseException:
                code, status = "CANCELLED", 499
                raise
            finally:
                if not streaming:  # a stream logs when it ends
                    log_call(call, code, status)
                unbind_call(token)

        return endpoint

    @staticmethod
    def _error(exc: Exception) -> GatewayError:
        if not isinstance(exc, GatewayError):
            log.exception("http_unexpected_error")
        return to_error(exc)

    @staticmethod
    async def _start(pages: AsyncIterator[Any], render: Render) -> _Stream:
        """Validation and the first upstream page happen before the 200 goes out."""
        try:
            first = await anext(pages, None)
        except BaseException:
            await pages.aclose()  # type: ignore[attr-defined]
            raise
        return _Stream(first, pages, render)

    # -- routes -----------------------------------------------------------------------------------

    async def _create_message(self, request: Request, call: Call) -> dict[str, Any]:
        body = await parse.read_json_object(request)
        req = parse.create_message_request(_path(request, "thread_id"), body, request.headers,
                                           self._allowed)
        return wire.message_to_json(await self._ops.create_message(req))

    async def _get_message(self, request: Request, call: Call) -> dict[str, Any]:
        req = parse.get_message_request(
            _path(request, "thread_id"), _path(request, "message_id"),
            request.query_params.multi_items(), request.headers, self._allowed)
        return wire.message_to_json(await self._ops.get_message(req))

    async def _update_message(self, request: Request, call: Call) -> dict[str, Any]:
        body = await parse.read_json_object(request)
        req = parse.update_message_request(
            _path(request, "thread_id"), _path(request, "message_id"), body, request.headers,
            self._allowed)
        return wire.message_to_json(await self._ops.update_message(req))

    async def _list_messages(self, request: Request, call: Call) -> dict[str, Any]:
        req = parse.list_messages_request(
            _path(request, "thread_id"), request.query_params,
            request.query_params.multi_items(), request.headers, self._allowed, stream=False)
        return wire.message_list_to_json(await self._ops.list_messages(req))  # type: ignore[arg-type]

    async def _stream_messages(self, request: Request, call: Call) -> _Stream:
        req = parse.list_messages_request(
            _path(request, "thread_id"), request.query_params,
            request.query_params.multi_items(), request.headers, self._allowed, stream=True)
        pages = self._ops.stream_messages(req)  # type: ignore[arg-type]
        return await self._start(pages, wire.message_to_json)

    async def _get_message_file(self, request: Request, call: Call) -> dict[str, Any]:
        req = parse.get_message_file_request(
            _path(request, "thread_id"), _path(request, "message_id"), _path(request, "file_id"),
            request.query_params.multi_items(), request.headers, self._allowed)
        return wire.message_file_to_json(await self._ops.get_message_file(req))

    async def _list_message_files(self, request: Request, call: Call) -> dict[str, Any]:
        req = parse.list_message_files_request(
            _path(request, "thread_id"), _path(request, "message_id"), request.query_params,
            request.query_params.multi_items(), request.headers, self._allowed, stream=False)
        return wire.message_file_list_to_json(
            await self._ops.list_message_files(req))  # type: ignore[arg-type]

    async def _stream_message_files(self, request: Request, call: Call) -> _Stream:
        req = parse.list_message_files_request(
            _path(request, "thread_id"), _path(request, "message_id"), request.query_params,
            request.query_params.multi_items(), request.headers, self._allowed, stream=True)
        pages = self._ops.stream_message_files(req)  # type: ignore[arg-type]
        return await self._start(pages, wire.message_file_to_json)


class _NdjsonResponse(StreamingResponse):
    """NDJSON lines from a started stream, with the call bound while they are sent.

    Starlette cancels the sending task when the client disconnects; if that lands while the line
    generator waits at a ``yield``, nothing else would close it, and the page walker's prefetch
    would outlive the request. ``__call__`` closes both at once, and logs the call's one line.
    """

    media_type = NDJSON

    def __init__(
        self, call: Call, stream: _Stream, to_error: Callable[[Exception], GatewayError]
    ) -> None:
        self._call = call
        self._stream = stream
        self._to_error = to_error
        self.code = "OK"
        self.items = 0
        super().__init__(self._lines(), headers=response_headers(call))

    async def _lines(self) -> AsyncIterator[bytes]:
        stream, last = self._stream, ""
        try:
            page = stream.first
            while page is not None:
                yield b"".join(_line(stream.render(item)) for item in page.data)
                self.items += len(page.data)
                last = page.resume_after
                page = await anext(stream.pages, None)
        except Exception as exc:
            error = self._to_error(exc)
            self.code = error.grpc_code.name
            yield error_line(error, last)
        except BaseException:
            self.code = "CANCELLED"  # the client went away, or the server is stopping
            raise

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = bind_call(self._call)
        try:
            await super().__call__(scope, receive, send)
        except BaseException:
            if self.code == "OK":
                self.code = "CANCELLED"
            raise
        finally:
            await self.body_iterator.aclose()  # type: ignore[attr-defined]
            await self._stream.pages.aclose()  # type: ignore[attr-defined]
            log_call(self._call, self.code, 200, items=self.items)
            unbind_call(token)


def _line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def _path(request: Request, name: str) -> str:
    return str(request.path_params[name])


def create_app(
    operations: MessageOperations,
    *,
    default_timeout: float,
    allowed_extra_headers: Collection[str] = (),
    authenticate: Authenticator | None = None,
) -> Starlette:
    """The Starlette application of the REST face."""
    api = RestApi(operations, default_timeout=default_timeout,
                  allowed_extra_headers=allowed_extra_headers, authenticate=authenticate)
    return Starlette(routes=api.routes(), exception_handlers={HTTPException: http_exception_envelope})
