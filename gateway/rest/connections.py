"""Bounds on the HTTP face's connections and requests (slowloris and friends).

uvicorn (h11 or httptools) never timed out a connection that had not sent a complete request, and its
``limit_concurrency`` counted connections: 1,000 idle or half-open sockets turned every REST call
into a plain-text 503. Here:

* **Header timeout.** A connection must deliver a request's headers within
  ``server.http_header_timeout_seconds`` of opening, and of finishing its previous response (an
  idle keep-alive connection is closed sooner, after ``server.http_keepalive_seconds``, as
  uvicorn does). Past it the connection is closed.
* **Body timeout.** Once its headers are in, a request's body must be complete within
  ``server.request_timeout_seconds`` (the bound the gRPC face puts on a request message); a slow
  POST is cut off and the app sees a disconnect, which frees its request slot.
* **Connection table.** At most ``server.max_http_connections`` connections are open. A new one
  beyond that makes room by closing the connection that has waited longest for its request's
  headers (a real client sends them at once, so the oldest waiter is the likeliest attacker); if
  every connection is busy with a request, the new one is closed instead.
* **Header size.** A request's headers may take at most 16 KiB (``MAX_HEADER_BYTES``, h11's own
  bound; httptools has none, and would buffer an endless header line until the header timeout).
  Past it: 431 with the OpenAI error body, and the connection closes.
* **Requests.** ``server.max_concurrent_rpcs`` counts requests being served, not connections;
  beyond it the answer is the OpenAI error body, 429 ``gateway_concurrency_limit`` with
  ``retry-after: 1`` (the SDK backs off and retries), as the gRPC face's RESOURCE_EXHAUSTED.

Every connection closed by a bound counts in ``gateway_http_connections_closed_total{reason}``
and writes an ``http_connection_closed`` line (at most 20 a second).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from typing import Any

import structlog
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway import metrics
from gateway.errors import ResourceExhausted
from gateway.rest.errors import error_envelope, error_headers

log = structlog.get_logger("gateway.rest")

MAX_LINES_PER_SECOND = 20
#: Bytes of one request's headers (h11's own bound; httptools has none).
MAX_HEADER_BYTES = 16 * 1024


def _headers_too_large() -> bytes:
    body = json.dumps({"error": {
        "message": f"the request's headers are larger than {MAX_HEADER_BYTES} bytes",
        "type": "invalid_request_error", "param": None, "code": "request_headers_too_large",
    }}).encode()
    return (b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
            b"connection: close\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n"
            + body)


HEADERS_TOO_LARGE = _headers_too_large()


class ConnectionGuard:
    """The state shared by one server's connections."""

    def __init__(self, max_connections: int, header_timeout: float,
                 body_timeout: float) -> None:
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.open: set[GuardedProtocol] = set()
        #: Connections waiting for a request's headers, oldest first.
        self.waiting: OrderedDict[GuardedProtocol, None] = OrderedDict()
        self._second = 0
        self._lines = 0

    def closed_by_bound(self, conn: GuardedProtocol, reason: str) -> None:
        metrics.HTTP_CONNECTIONS_CLOSED.labels(reason).inc()
        second = int(time.monotonic())
        if second != self._second:
            self._second, self._lines = second, 0
        if self._lines < MAX_LINES_PER_SECOND:
            self._lines += 1
            client = conn.client
            log.warning("http_connection_closed", reason=reason,
                        peer=f"{client[0]}:{client[1]}" if client else None)


class GuardedProtocol(asyncio.Protocol):
    """The bounds above, mixed into one of uvicorn's HTTP/1.1 protocols (``guard`` is set on a
    subclass per server, see ``guarded_protocol``). Both keep the request being served in
    ``cycle``; httptools also queues pipelined requests in ``pipeline``."""

    guard: ConnectionGuard
    cycle: Any
    client: Any
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._seen_cycle: object | None = None
        #: Bytes of the awaited request's headers received so far.
        self._header_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        guard = self.guard
        if len(guard.open) >= guard.max_connections:
            if guard.waiting:
                oldest, _ = guard.waiting.popitem(last=False)
                oldest._close("evicted")
            else:
                self._close("connection_limit")
                return
        guard.open.add(self)
        self._wait_for_request()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        self.guard.open.discard(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._header_timer is not None:  # waiting for a request's headers
            end = data.find(b"\r\n\r\n")
            self._header_bytes += len(data) if end < 0 else end
            if self._header_bytes > MAX_HEADER_BYTES:
                self._refuse_headers()
                return
        super().data_received(data)
        cycle = self.cycle
        if cycle is not None and cycle is not self._seen_cycle:
            self._seen_cycle = cycle  # a request's headers arrived: it is being served
            self._stop_waiting()
            if cycle.more_body:
                self._body_timer = self.loop.call_later(self.guard.body_timeout,
                                                        self._body_overdue, cycle)
        if self._body_timer is not None and (cycle is None or not cycle.more_body):
            self._body_timer.cancel()
            self._body_timer = None

    def _body_overdue(self, cycle: Any) -> None:
        self._body_timer = None
        if cycle is self.cycle and cycle.more_body:
            self._close("body_timeout")  # the app sees a disconnect; its request slot frees

    def on_response_complete(self) -> None:
        # httptools: a pipelined request whose headers were seen starts now.
        pipelined = bool(getattr(self, "pipeline", None))
        super().on_response_complete()  # type: ignore[misc]  # may start a pipelined request
        if pipelined:
            return
        if self.cycle is not self._seen_cycle:
            self._seen_cycle = self.cycle
        elif not self.transport.is_closing():
            self._wait_for_request()  # keep-alive: the next request's headers are due too

    def _refuse_headers(self) -> None:
        """431 with the OpenAI error body, then close: the headers are past the bound."""
        self._stop_waiting()
        if self.transport.is_closing():
            return
        self.transport.write(HEADERS_TOO_LARGE)
        self._close("headers_too_large")

    def _wait_for_request(self) -> None:
        self._stop_waiting()
        self._header_bytes = 0
        self.guard.waiting[self] = None
        self._header_timer = self.loop.call_later(self.guard.header_timeout, self._close,
                                                  "header_timeout")

    def _stop_waiting(self) -> None:
        self.guard.waiting.pop(self, None)
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _close(self, reason: str) -> None:
        self._stop_waiting()
        if self.transport is None or self.transport.is_closing():
            return
        self.guard.open.discard(self)  # now, not at connection_lost: its room is taken at once
        self.guard.closed_by_bound(self, reason)
        self.transport.close()


#: ``server.http_parser`` value → uvicorn's protocol using that parser.
PROTOCOLS: dict[str, type[asyncio.Protocol]] = {"httptools": HttpToolsProtocol, "h11": H11Protocol}


def guarded_protocol(guard: ConnectionGuard, parser: str) -> type[GuardedProtocol]:
    return type(f"Gateway{PROTOCOLS[parser].__name__}", (GuardedProtocol, PROTOCOLS[parser]),
                {"guard": guard})


class RequestLimit:
    """ASGI wrapper: at most ``limit`` HTTP requests served at once."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self._app = app
        self._limit = limit
        self.active = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        if self.active >= self._limit:
            metrics.HTTP_REQUESTS_REFUSED.inc()
            error = ResourceExhausted("the gateway is at its concurrent call limit; retry later",
                                      reason="GATEWAY_CONCURRENCY_LIMIT", retry_after=1.0)
            response = JSONResponse(error_envelope(error), status_code=int(error.http_status),
                                    headers={**error_headers(error, {}), "retry-after": "1"})
            await response(scope, receive, send)
            return
        self.active += 1
        try:
            await self._app(scope, receive, send)
        finally:
            self.active -= 1
