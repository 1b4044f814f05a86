"""The aiohttp application: the ``/v1`` upstream routes and the ``/_emulator`` admin API.

Every ``/v1`` request goes through :meth:`Emulator._handle`, which records it in the request log,
applies the fault plan, runs the operation and *delivers* the answer itself through a
``StreamResponse``. Delivering in the handler (instead of returning a ``Response`` for aiohttp to
write later) is what gives byte-level control (slow drip, cut bodies, RST mid-body) and lets the log
tell whether the client hung up before the answer was complete. The server runs with
``handler_cancellation=True`` so a client disconnect cancels the handler at its next ``await``
(during a latency fault, for instance), exactly what "the upstream observed the disconnect" needs.

Check order for a ``/v1`` request: faults (they emulate the network and the edge, which sit in
front of the service), then auth (401), then the beta header (400 ``invalid_beta``), then the body
or query (400), then the objects in the path (404), then cursors (400). Unknown paths and methods
under ``/v1`` answer 404 ``Invalid URL (METHOD /path)`` after auth, like the live API.

Responses are JSON indented by two spaces, as the live API sent them (``pretty=False`` gives
compact JSON), with ``content-type: application/json`` and the OpenAI headers (``x-request-id``,
``openai-processing-ms``, ``openai-version``, ``x-ratelimit-*-requests``). Rate-limit headers count
requests per minute against ``rate_limit_requests`` but never refuse: throttling is a fault
(``status`` 429), so tests decide when it happens.

The admin API is unlogged and never faulted. It is open on loopback; the server refuses any other
bind unless an admin token is set, and with a token every admin request must carry it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import os
import socket
import struct
import time
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from aiohttp import web

from gateway.emulator import huge, ids
from gateway.emulator.encoding import Encoder
from gateway.emulator.faults import LIST_OPERATIONS, FaultDecision, Faults
from gateway.emulator.log import LogEntry, RequestLog
from gateway.emulator.store import CursorNotFoundError, NotFoundError, Store
from gateway.emulator.threads import ThreadOperations, thread_routes
from gateway.emulator.validation import (
    ApiError,
    check_auth,
    check_beta,
    error_body,
    parse_json_body,
    parse_list_query,
    validate_create_message,
    validate_modify_message,
)

__all__ = ["DEFAULT_API_KEYS", "DEFAULT_BETA", "EMULATOR_KEY", "Emulator", "create_app"]

DEFAULT_API_KEYS = frozenset({"sk-emulator"})
DEFAULT_BETA = "assistants=v1"
OPENAI_VERSION = "2020-10-01"
# A 256,000-character content can take 6 bytes per character once JSON-escaped.
CLIENT_MAX_SIZE = 8 * 1024 * 1024

_STATUS_DEFAULTS: dict[int, tuple[str, str, str | None]] = {
    400: ("Bad request.", "invalid_request_error", None),
    401: (
        "Incorrect API key provided. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
        "invalid_request_error",
        "invalid_api_key",
    ),
    403: ("You are not allowed to access this resource.", "invalid_request_error", None),
    404: ("Not found.", "invalid_request_error", None),
    408: ("Request timed out.", "server_error", None),
    409: ("Conflict: the request could not be completed.", "invalid_request_error", None),
    429: (
        "Rate limit reached for requests. Please try again later.",
        "requests",
        "rate_limit_exceeded",
    ),
    500: (
        "The server had an error while processing your request. Sorry about that!",
        "server_error",
        None,
    ),
    502: ("Bad gateway.", "server_error", None),
    503: ("The engine is currently overloaded, please try again later.", "server_error", None),
    504: ("Gateway timeout.", "server_error", None),
}

_Operation = Callable[[web.Request, bool], Awaitable[Any]]
#: The request's fault kind, for the operations that shape their answer by it (endless_pages).
_FAULT: web.RequestKey[str] = web.RequestKey("emulator_fault", str)


async def _sleep_until(when: float) -> None:
    """Sleep until the running loop's clock reads ``when`` (no-op when it already has)."""
    delay = when - asyncio.get_running_loop().time()
    if delay > 0:
        await asyncio.sleep(delay)


class _Aborted(Exception):
    """The emulator itself aborted the connection (a ``reset`` fault)."""


class _RateWindow:
    """Requests-per-minute bookkeeping for the ``x-ratelimit-*-requests`` headers."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._window_start = time.monotonic()
        self._count = 0

    def headers(self) -> dict[str, str]:
        now = time.monotonic()
        if now - self._window_start >= 60.0:
            self._window_start, self._count = now, 0
        self._count += 1
        reset = max(0.0, 60.0 - (now - self._window_start))
        if reset < 1:
            reset_text = f"{int(reset * 1000)}ms"
        else:
            reset_text = f"{reset:.3f}".rstrip("0").rstrip(".") + "s"
        return {
            "x-ratelimit-limit-requests": str(self.limit),
            "x-ratelimit-remaining-requests": str(max(0, self.limit - self._count)),
            "x-ratelimit-reset-requests": reset_text,
        }


class Emulator:
    """Configuration and state of one emulated upstream: store, request log and fault rules."""

    def __init__(
        self,
        *,
        api_keys: Collection[str] | None = None,
        beta: str = DEFAULT_BETA,
        store: Store | None = None,
        log: RequestLog | None = None,
        faults: Faults | None = None,
        pretty: bool = True,
        rate_limit_requests: int = 5000,
        admin_token: str | None = None,
    ) -> None:
        self.api_keys: set[str] = set(DEFAULT_API_KEYS if api_keys is None else api_keys)
        #: When set, every /_emulator request must carry ``Authorization: Bearer <token>``.
        self.admin_token = admin_token
        self.beta = beta
        self.store = store if store is not None else Store()
        self.log = log if log is not None else RequestLog()
        self.faults = faults if faults is not None else Faults()
        self.encoder = Encoder(pretty)
        self._rate = _RateWindow(rate_limit_requests)
        self._endless_ids = itertools.count(1)
        # Names each key in the request log without the key: rotation tests see which key a
        # request carried, and the log holds nothing that a leaked key could be checked against.
        self._key_id_secret = os.urandom(16)
        self._operations: dict[str, _Operation] = {
            **ThreadOperations(lambda: self.store, self._json_body).operations(),
            "createMessage": self._create_message,
            "listMessages": self._list_messages,
            "getMessage": self._get_message,
            "modifyMessage": self._modify_message,
            "listMessageFiles": self._list_message_files,
            "getMessageFile": self._get_message_file,
        }

    def key_id(self, key: str) -> str:
        """The request log's name for ``key``: 12 hex digits of an HMAC under this emulator's
        own random secret (so not the key's plain hash)."""
        return hmac.new(self._key_id_secret, key.encode(), hashlib.sha256).hexdigest()[:12]

    def _presented_key_id(self, request: web.Request) -> str | None:
        authorization = request.headers.get("Authorization", "")
        key = authorization[7:].strip() if authorization.startswith("Bearer ") else ""
        return self.key_id(key) if key else None

    # ------------------------------------------------------------------ encoding

    def _openai_headers(self, request_id: str, started: float) -> dict[str, str]:
        return {
            "x-request-id": request_id,
            "openai-processing-ms": str(int((time.perf_counter() - started) * 1000)),
            "openai-version": OPENAI_VERSION,
            **self._rate.headers(),
        }

    # ------------------------------------------------------------------ the operations

    @staticmethod
    async def _json_body(request: web.Request) -> dict[str, Any]:
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise ApiError(413, "Request body too large.", code="request_too_large") from None
        return parse_json_body(raw)

    async def _create_message(self, request: web.Request, stale: bool) -> Any:
        body = validate_create_message(await self._json_body(request))
        return self.store.create_message(
            request.match_info["thread_id"],
            role=body.role,
            content=body.content,
            file_ids=body.file_ids,
            metadata=body.metadata,
        )

    async def _list_messages(self, request: web.Request, stale: bool) -> Any:
        query = parse_list_query(request.query, allow_run_id=True)
        cursors = (query.after or "", query.before or "")
        if request.get(_FAULT) == "endless_pages" or any(
                cursor.startswith(ids.ENDLESS_PREFIX) for cursor in cursors):
            real = self.store.list_messages(request.match_info["thread_id"], limit=query.limit,
                                            order=query.order, run_id=query.run_id)
            return self._endless(real.to_json())
        page = self.store.list_messages(
            request.match_info["thread_id"],
            limit=query.limit,
            order=query.order,
            after=None if stale else query.after,
            before=None if stale else query.before,
            run_id=query.run_id,
        ).to_json()
        if stale:
            page["has_more"] = True
        return page

    def _endless(self, page: dict[str, Any]) -> dict[str, Any]:
        """The ``endless_pages`` fault: the real page's messages under fresh ids, more to come
        (an empty thread's page stays empty: there is nothing to repeat)."""
        data = [{**message, "id": ids.endless_message_id(next(self._endless_ids))}
                for message in page["data"]]
        return {**page, "data": data, "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None, "has_more": bool(data)}

    async def _get_message(self, request: web.Request, stale: bool) -> Any:
        return self.store.get_message(request.match_info["thread_id"], request.match_info["message_id"])

    async def _modify_message(self, request: web.Request, stale: bool) -> Any:
        metadata = validate_modify_message(await self._json_body(request))
        return self.store.modify_message(
            request.match_info["thread_id"], request.match_info["message_id"], metadata
        )

    async def _list_message_files(self, request: web.Request, stale: bool) -> Any:
        query = parse_list_query(request.query, allow_run_id=False)
        page = self.store.list_message_files(
            request.match_info["thread_id"],
            request.match_info["message_id"],
            limit=query.limit,
            order=query.order,
            after=None if stale else query.after,
            before=None if stale else query.before,
        ).to_json()
        if stale:
            page["has_more"] = True
        return page

    async def _get_message_file(self, request: web.Request, stale: bool) -> Any:
        return self.store.get_message_file(
            request.match_info["thread_id"],
            request.match_info["message_id"],
            request.match_info["file_id"],
        )

    async def _run(self, request: web.Request, operation: str | None, stale: bool) -> tuple[int, Any]:
        """Auth, beta, then the operation; every failure becomes (status, error envelope)."""
        try:
            check_auth(request.headers.get("Authorization"), self.api_keys)
            check_beta(request.headers.get("OpenAI-Beta"), self.beta)
            if operation is None:
                raise ApiError(404, f"Invalid URL ({request.method} {request.path})")
            return 200, await self._operations[operation](request, stale)
        except ApiError as exc:
            return exc.status, exc.body()
        except NotFoundError as exc:
            return 404, error_body(str(exc), "invalid_request_error", None, None)
        except CursorNotFoundError as exc:
            return 400, error_body(str(exc), "invalid_request_error", exc.param, "invalid_value")

    # ------------------------------------------------------------------ delivery

    @staticmethod
    def _rst(request: web.Request) -> None:
        """Abort with a TCP RST (SO_LINGER 0), not a FIN: the client sees a connection reset."""
        transport = request.transport
        if transport is None:
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        transport.abort()

    async def _send(
        self,
        request: web.Request,
        entry: LogEntry,
        status: int,
        headers: dict[str, str],
        body: bytes,
        *,
        chunk_size: int | None = None,
        delay: float = 0.0,
    ) -> web.StreamResponse:
        """Write status, headers and body; ``chunk_size``/``delay`` drip the body."""
        response = web.StreamResponse(status=status, headers=headers)
        response.content_length = len(body)
        await response.prepare(request)
        entry.status = status
        if chunk_size is None:
            await response.write(body)
        else:
            for start in range(0, len(body), chunk_size):
                await response.write(body[start : start + chunk_size])
                if delay:
                    await asyncio.sleep(delay)
        await response.write_eof()
        return response

    async def _send_huge(
        self,
        request: web.Request,
        entry: LogEntry,
        headers: dict[str, str],
        params: dict[str, Any],
    ) -> web.StreamResponse:
        """``size`` bytes of valid JSON (a list envelope with a long padding string), streamed in
        64 KiB writes so the emulator itself never holds the whole body; gzip-compressed with
        ``gzip``. A ``content_length`` larger than the body is a lying header: the connection is
        closed (FIN) after the body. A smaller one is a lying header too: the whole body follows
        it on the connection, which stays open."""
        size, chunked = int(params["size"]), bool(params["chunked"])
        declared = None if params["content_length"] is None else int(params["content_length"])
        if params["gzip"]:
            body = huge.gzip_body(size)
            headers = {**headers, "Content-Encoding": "gzip"}
            actual = len(body)
            pieces = (body[i : i + huge.BLOCK] for i in range(0, actual, huge.BLOCK))
        else:
            actual, pieces = huge.plain_size(size), huge.plain_pieces(size)
        response = web.StreamResponse(status=200, headers=headers)
        if chunked:
            response.enable_chunked_encoding()
        else:
            response.content_length = actual if declared is None else declared
        await response.prepare(request)
        entry.status = 200
        left = actual if declared is None or chunked else declared
        for piece in pieces:
            if left >= len(piece):
                await response.write(piece)
                left -= len(piece)
                continue
            if left:  # aiohttp cuts what goes beyond the declared length: past it, write raw
                await response.write(piece[:left])
                piece, left = piece[left:], 0
            if request.transport is not None:
                request.transport.write(piece)
                await asyncio.sleep(0)
        if declared is not None and not chunked and declared > actual:
            await asyncio.sleep(0.02)  # let loopback deliver the body before the FIN
            if request.transport is not None:
                request.transport.close()
            raise _Aborted
        await response.write_eof()
        return response

    @staticmethod
    def _other_host(request: web.Request) -> str:
        """The same path and query on 127.0.0.2 (another host as far as a client can tell)."""
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        port = sockname[1] if sockname else 80
        return f"http://127.0.0.2:{port}{request.path_qs}"

    def _fault_status(self, params: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        status = int(params["status"])
        message, type_, code = _STATUS_DEFAULTS.get(
            status,
            ("Upstream error.", "server_error" if status >= 500 else "invalid_request_error", None),
        )
        body = error_body(
            params["message"] or message, params["type"] or type_, None, params["code"] or code
        )
        headers: dict[str, str] = {}
        if params["retry_after"] is not None:
            headers["retry-after"] = str(params["retry_after"])
        if params["retry_after_ms"] is not None:
            headers["retry-after-ms"] = str(params["retry_after_ms"])
        if params["should_retry"] is not None:
            headers["x-should-retry"] = "true" if params["should_retry"] else "false"
        headers.update({str(k): str(v) for k, v in (params["headers"] or {}).items()})
        return status, body, headers

    async def _handle(self, request: web.Request, operation: str | None) -> web.StreamResponse:
        """Log, apply the fault decision, run the operation and deliver the answer.

        Faults that replace the service (reset, redirect, non_json, huge_body, status) come before
        auth; faults that distort delivery (slow_*, truncated_json, reset_mid_body) wrap the real
        answer, whatever it is (a 401 included).
        """
        started = time.perf_counter()
        request_id = ids.request_id()
        entry = self.log.start(request_id, operation, request.method, request.path,
                               dict(request.query), _logged_headers(request))
        entry.key_id = self._presented_key_id(request)
        decision: FaultDecision = self.faults.decide(operation)
        entry.fault = decision.kind
        kind, params = decision.kind, decision.params
        if kind is not None:
            request[_FAULT] = kind
        try:
            if decision.latency:
                await asyncio.sleep(decision.latency)
            # The response time counts from when handling starts (after any added latency, so
            # the two stack), on the loop's clock, which is what its timers use.
            answer_at = asyncio.get_running_loop().time() + decision.response_time
            if kind in ("reset", "redirect", "non_json", "huge_body"):
                await _sleep_until(answer_at)

            if kind in ("reset", "status") and params.get("run_handler"):
                await self._run(request, operation, False)
            if kind == "reset":
                self._rst(request)
                raise _Aborted
            if kind == "redirect":
                location = params["location"] or self._other_host(request)
                headers = {"Location": location, **self._openai_headers(request_id, started)}
                return await self._send(request, entry, int(params["status"]), headers, b"")
            if kind == "non_json":
                raw = params["body"]
                html = raw if isinstance(raw, bytes) else str(raw).encode()
                headers = {"Content-Type": str(params["content_type"])}
                return await self._send(request, entry, int(params["status"]), headers, html)
            if kind == "huge_body":
                headers = {"Content-Type": "application/json", **self._openai_headers(request_id, started)}
                return await self._send_huge(request, entry, headers, params)

            extra: dict[str, str] = {}
            if kind == "status":
                status, payload, extra = self._fault_status(params)
            else:
                status, payload = await self._run(request, operation, kind == "stale_cursor")
            body = self.encoder.encode(payload)
            await _sleep_until(answer_at)
            headers = {
                "Content-Type": "application/json",
                **self._openai_headers(request_id, started),
                **extra,
            }

            if kind == "slow_headers":
                await asyncio.sleep(float(params["seconds"]))
            if kind == "slow_body":
                return await self._send(
                    request, entry, status, headers, body,
                    chunk_size=int(params["chunk_size"]), delay=float(params["delay"]),
                )
            if kind == "truncated_json":
                cut = body[: int(len(body) * float(params["fraction"]))]
                return await self._send(request, entry, status, headers, cut)
            if kind == "reset_mid_body":
                response = web.StreamResponse(status=status, headers=headers)
                response.content_length = len(body)
                await response.prepare(request)
                entry.status = status
                await response.write(body[: int(len(body) * float(params["fraction"]))])
                # Let loopback deliver what was written before the RST discards the send buffer.
                await asyncio.sleep(0.02)
                self._rst(request)
                raise _Aborted
            return await self._send(request, entry, status, headers, body)
        except _Aborted:
            # Already aborted by us; CancelledError tells aiohttp to drop the connection quietly.
            raise asyncio.CancelledError from None
        except asyncio.CancelledError:
            # aiohttp cancels the handler when the client goes away (handler_cancellation).
            entry.disconnected = True
            raise
        except (ConnectionError, RuntimeError) as exc:
            # Writing to a transport the client closed (aiohttp raises ClientConnectionResetError,
            # a ConnectionResetError; older paths raise RuntimeError on a closed transport).
            if isinstance(exc, RuntimeError) and "closing transport" not in str(exc).lower():
                raise
            entry.disconnected = True
            raise asyncio.CancelledError from None
        finally:
            self.log.finish(entry)

    def _route(self, operation: str | None) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handler(request: web.Request) -> web.StreamResponse:
            return await self._handle(request, operation)

        return handler

    # ------------------------------------------------------------------ admin API

    @staticmethod
    def _admin_json(obj: Any, status: int = 200) -> web.Response:
        return web.json_response(obj, status=status)

    @staticmethod
    async def _admin_body(request: web.Request) -> dict[str, Any]:
        try:
            return parse_json_body(await request.read())
        except ApiError as exc:
            raise web.HTTPBadRequest(
                text=json.dumps(exc.body()), content_type="application/json"
            ) from None

    def _admin_error(self, exc: Exception) -> web.Response:
        status = 404 if isinstance(exc, NotFoundError) else 400
        return self._admin_json(error_body(str(exc), "invalid_request_error", None, None), status)

    async def _admin_create_thread(self, request: web.Request) -> web.Response:
        body = await self._admin_body(request)
        try:
            thread = self.store.create_thread(
                metadata=body.get("metadata"),
                thread_id=body.get("id"),
                created_at=body.get("created_at"),
            )
        except (ValueError, TypeError) as exc:
            return self._admin_error(exc)
        return self._admin_json(thread)

    async def _admin_insert(self, request: web.Request) -> web.Response:
        body = await self._admin_body(request)
        raws = body["messages"] if isinstance(body.get("messages"), list) else [body]
        try:
            inserted = [self.store.insert_message(request.match_info["thread_id"], raw) for raw in raws]
        except (NotFoundError, ValueError, TypeError) as exc:
            return self._admin_error(exc)
        return self._admin_json({"data": inserted})

    async def _admin_seed(self, request: web.Request) -> web.Response:
        body = await self._admin_body(request)
        try:
            count = int(body.get("count", 0))
            if count < 0:
                raise ValueError("count must be >= 0")
            new_ids = self.store.seed_messages(
                request.match_info["thread_id"],
                count,
                role=str(body.get("role", "user")),
                content=str(body.get("content", "Seed message {i}")),
                run_id=body.get("run_id"),
                created_at=body.get("created_at"),
                spacing=int(body.get("spacing", 0)),
            )
        except (NotFoundError, ValueError, TypeError) as exc:
            return self._admin_error(exc)
        return self._admin_json(
            {
                "count": len(new_ids),
                "first_id": new_ids[0] if new_ids else None,
                "last_id": new_ids[-1] if new_ids else None,
            }
        )

    async def _admin_reset_store(self, request: web.Request) -> web.Response:
        self.store.reset()
        return self._admin_json({"ok": True})

    async def _admin_get_log(self, request: web.Request) -> web.Response:
        operation = request.query.get("operation")
        entries = [
            e.to_json() for e in self.log.entries if operation is None or e.operation == operation
        ]
        return self._admin_json(
            {"entries": entries, "count": self.log.count(operation), "in_flight": self.log.in_flight}
        )

    async def _admin_clear_log(self, request: web.Request) -> web.Response:
        self.log.clear()
        return self._admin_json({"ok": True})

    async def _admin_get_faults(self, request: web.Request) -> web.Response:
        return self._admin_json(
            {"rules": [r.to_json() for r in self.faults.rules], "latency": self.faults.latency}
        )

    async def _admin_add_fault(self, request: web.Request) -> web.Response:
        body = await self._admin_body(request)
        try:
            operation = body.pop("operation")
            kind = body.pop("kind")
            rule = self.faults.add(str(operation), str(kind), **body)
        except (KeyError, ValueError, TypeError) as exc:
            return self._admin_error(ValueError(f"bad fault rule: {exc}"))
        return self._admin_json(rule.to_json())

    async def _admin_clear_faults(self, request: web.Request) -> web.Response:
        self.faults.clear(latency=request.query.get("latency", "true") != "false")
        return self._admin_json({"ok": True})

    async def _admin_set_latency(self, request: web.Request) -> web.Response:
        body = await self._admin_body(request)
        try:
            self.faults.set_latency(str(body.get("operation", "*")), float(body["seconds"]))
        except (KeyError, ValueError, TypeError) as exc:
            return self._admin_error(ValueError(f"bad latency setting: {exc}"))
        return self._admin_json({"latency": self.faults.latency})

    async def _admin_health(self, request: web.Request) -> web.Response:
        return self._admin_json({"ok": True})

    # ------------------------------------------------------------------ wiring

    def routes(self) -> list[web.RouteDef]:
        thread = "/v1/threads/{thread_id}"
        message = thread + "/messages/{message_id}"
        return [
            *thread_routes(self._route),
            web.post(thread + "/messages", self._route("createMessage")),
            web.get(thread + "/messages", self._route("listMessages"), allow_head=False),
            web.get(message, self._route("getMessage"), allow_head=False),
            web.post(message, self._route("modifyMessage")),
            web.get(message + "/files", self._route("listMessageFiles"), allow_head=False),
            web.get(message + "/files/{file_id}", self._route("getMessageFile"), allow_head=False),
            web.route("*", "/v1/{tail:.*}", self._route(None)),
            web.get("/_emulator/health", self._admin_health),
            web.post("/_emulator/threads", self._admin_create_thread),
            web.post("/_emulator/threads/{thread_id}/messages", self._admin_insert),
            web.post("/_emulator/threads/{thread_id}/seed", self._admin_seed),
            web.delete("/_emulator/store", self._admin_reset_store),
            web.get("/_emulator/log", self._admin_get_log),
            web.delete("/_emulator/log", self._admin_clear_log),
            web.get("/_emulator/faults", self._admin_get_faults),
            web.post("/_emulator/faults", self._admin_add_fault),
            web.delete("/_emulator/faults", self._admin_clear_faults),
            web.put("/_emulator/latency", self._admin_set_latency),
        ]


#: Request headers the request log never keeps: the caller's credentials.
_UNLOGGED_HEADERS = frozenset({"authorization", "cookie"})


def _logged_headers(request: web.Request) -> dict[str, str]:
    return {k.lower(): v for k, v in request.headers.items()
            if k.lower() not in _UNLOGGED_HEADERS}


def _admin_guard(emulator: Emulator) -> Any:
    expected = f"Bearer {emulator.admin_token}".encode()

    @web.middleware
    async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith("/_emulator"):
            given = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                return web.json_response(error_body(
                    "the emulator's admin API needs 'Authorization: Bearer <admin token>'",
                    "invalid_request_error", None, "invalid_admin_token"), status=401)
        return await handler(request)

    return guard


def create_app(emulator: Emulator) -> web.Application:
    """The aiohttp application serving ``emulator`` (run it with ``handler_cancellation=True``)."""
    middlewares = [_admin_guard(emulator)] if emulator.admin_token else []
    app = web.Application(client_max_size=CLIENT_MAX_SIZE, middlewares=middlewares)
    app.add_routes(emulator.routes())
    app[EMULATOR_KEY] = emulator
    return app


EMULATOR_KEY: web.AppKey[Emulator] = web.AppKey("emulator", Emulator)
