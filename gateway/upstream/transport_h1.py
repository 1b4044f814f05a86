"""An httpx transport on httptools' HTTP/1.1 response parser, one asyncio protocol per connection.

httpx stays the interface, as with ``AiohttpTransport`` (transport.py): ``httpx.Request`` in,
``httpx.Response`` out, errors httpx's. What it leaves out is measured: an aiohttp GET costs
~0.2 ms of CPU per request on the bench machine, a keep-alive client on
``httptools.HttpResponseParser`` (llhttp, uvicorn's parser, already a dependency) over an
asyncio protocol ~0.06 ms. The difference is aiohttp's per-request machinery the gateway never
uses: ``ClientRequest``/``ClientResponse`` objects, URL, header and cookie handling, trace
hooks, timer contexts, a payload writer, a ``StreamReader``. Here a request is one ``write`` of
the head httpx built, an answer the parser's callbacks filling the connection's state. So:

* a pool per (scheme, host, port): idle connections reused last-in first-out; at most
  ``max_connections`` open (more requests wait, up to the ``pool`` timeout), at most
  ``max_keepalive_connections`` idle; none reused once idle for ``keepalive_expiry``, closed by
  the server, or sent bytes nobody asked for;
* the request goes as built: no header added or reordered, no redirects, no cookies, no
  decompression (body.py decodes ``Content-Encoding`` and counts the decoded bytes); an
  idempotent one is sent once more when a kept-alive connection closes before any answer byte;
* a connection goes back only when its answer was read to the end and is keep-alive; an early
  close or a cancellation at any await closes it;
* reading pauses while more than ``HIGH_WATER`` body bytes wait unread (a slow reader never
  makes the gateway buffer a huge body); a head above ``MAX_HEAD`` is refused;
* timeouts: the caller bounds each exchange with ``asyncio.timeout``; the request's ``connect``
  timeout bounds the connect, its ``pool`` timeout the wait for a connection.

Errors: refused, unresolvable or a failed TLS handshake is ``httpx.ConnectError`` (the request
never left); a connection lost before the whole answer ``httpx.ReadError`` (the request may have
reached the server); an answer that is not HTTP/1.1 ``httpx.RemoteProtocolError``. The original
exception is the cause; no message quotes a request header. One connection and its body stream:
h1_connection.py.
"""

from __future__ import annotations

import asyncio
import ssl
import sys
import time
from collections import deque
from typing import Any

import httpx

from gateway.upstream.h1_connection import READ_SIZE, Body, Connection

__all__ = ["H1Transport"]

_HTTP11 = {"http_version": b"HTTP/1.1"}
_PORTS = {b"http": 80, b"https": 443}
_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})


class H1Transport(httpx.AsyncBaseTransport):
    """HTTP/1.1 keep-alive connections on httptools, pooled per (scheme, host, port)."""

    def __init__(self, limits: httpx.Limits, ssl_context: ssl.SSLContext | None = None) -> None:
        self.ssl_context = ssl_context or httpx.create_ssl_context(trust_env=False)
        self._max = limits.max_connections or sys.maxsize
        keepalive = limits.max_keepalive_connections
        self._max_idle = self._max if keepalive is None else keepalive
        self._expiry = limits.keepalive_expiry
        self._idle: dict[tuple[bytes, bytes, int], list[Connection]] = {}
        self._active: set[Connection] = set()
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._open = 0  # connections open or being opened
        self._sweep_handle: asyncio.TimerHandle | None = None
        self._view = memoryview(bytearray(READ_SIZE))
        #: Connections checked out (connecting or in an exchange), and idle in the pool.
        self.connections_in_use = 0
        self.idle_connections = 0

    @property
    def requests_waiting(self) -> int:  # for max_connections to free up
        return len(self._waiters)

    @property
    def buffered_bytes(self) -> int:  # received and not yet read, over every connection
        return sum(c.buffered for c in self._active)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        port = _PORTS.get(url.raw_scheme)
        if port is None:
            raise httpx.UnsupportedProtocol(
                f"the URL scheme {url.scheme!r} is not supported (http or https)")
        head = [request.method.encode("ascii"), b" ", url.raw_path, b" HTTP/1.1\r\n"]
        raw = request.headers.raw
        for name, value in raw:
            head += (name, b": ", value, b"\r\n")
        head.append(b"\r\n")
        data = b"".join(head)
        if data.count(b"\n") != len(raw) + 2 or data.count(b"\r") != len(raw) + 2:
            raise httpx.LocalProtocolError("a request header or the target holds a line break")
        try:
            body = request.content
        except httpx.RequestNotRead:
            body = await request.aread()
        timeouts = request.extensions.get("timeout") or {}
        key, retry = (url.raw_scheme, url.raw_host, url.port or port), request.method in _IDEMPOTENT
        while True:
            conn = await self._acquire(key, timeouts)
            try:
                await conn.send(data + body if body else data, request.method == "HEAD")
            except httpx.ReadError:
                self._release(conn)
                # A kept-alive connection the server closed as the request arrived, not a byte
                # of answer: an idempotent request goes once more (RFC 9112 9.3.1.1, as aiohttp).
                if not (retry and conn.exchanges > 1 and not conn.head_bytes):
                    raise
                retry = False
                continue
            except BaseException:
                self._release(conn)
                raise
            return httpx.Response(conn.status, headers=conn.headers, stream=Body(self, conn),
                                  request=request, extensions=_HTTP11)

    async def _acquire(self, key: tuple[bytes, bytes, int],
                       timeouts: dict[str, Any]) -> Connection:
        while True:
            idle = self._idle.get(key)
            if idle:
                now = time.monotonic()
                while idle:
                    conn = idle.pop()  # the most recently used
                    if (conn.closed or conn.poisoned or conn.transport.is_closing()
                            or (self._expiry is not None
                                and now - conn.idle_since > self._expiry)):
                        self._drop(conn, idle=True)
                        continue
                    self.idle_connections -= 1
                    self.connections_in_use += 1
                    self._active.add(conn)
                    return conn
            if self._open < self._max:
                self._open += 1
                self.connections_in_use += 1
                try:
                    conn = await self._connect(key, timeouts.get("connect"))
                except BaseException:
                    self._open -= 1
                    self.connections_in_use -= 1
                    self._wake_one()
                    raise
                self._active.add(conn)
                return conn
            if self.idle_connections:  # the slot is held by an idle connection to another host
                self._evict_oldest()
                continue
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                async with asyncio.timeout(timeouts.get("pool")):
                    await waiter
            except BaseException as exc:
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()  # woken, then cancelled: the turn goes to the next
                elif waiter in self._waiters:
                    self._waiters.remove(waiter)
                if isinstance(exc, TimeoutError):
                    raise httpx.PoolTimeout("no upstream connection was free in time") from exc
                raise

    async def _connect(self, key: tuple[bytes, bytes, int], timeout: float | None) -> Connection:
        scheme, raw_host, port = key
        host = raw_host.decode("ascii")
        tls = self.ssl_context if scheme == b"https" else None
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                _, conn = await loop.create_connection(
                    lambda: Connection(self, key, self._view), host, port, ssl=tls,
                    server_hostname=host if tls is not None else None)
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(f"connecting to {host}:{port} timed out") from exc
        except OSError as exc:
            raise httpx.ConnectError(f"could not connect to {host}:{port}: {exc}") from exc
        return conn

    def _release(self, conn: Connection) -> None:
        """An exchange is over: keep its connection for the next, or close it."""
        self.connections_in_use -= 1
        self._active.discard(conn)
        conn.active = False
        if conn.reusable() and self.idle_connections < self._max_idle:
            conn.idle_since = time.monotonic()
            self._idle.setdefault(conn.key, []).append(conn)
            self.idle_connections += 1
            if self._expiry is not None and self._sweep_handle is None:
                self._sweep_handle = asyncio.get_running_loop().call_later(
                    self._expiry, self._sweep)
            self._wake_one()
        else:
            self._drop(conn)

    def _drop(self, conn: Connection, idle: bool = False) -> None:
        """Close a connection the pool no longer holds (``idle``: taken out of the idle lists),
        and free its slot."""
        self.idle_connections -= idle
        conn.pool = None
        conn.transport.abort()  # close() would wait to flush a request the server never read
        self._open -= 1
        self._wake_one()

    def _forget(self, conn: Connection) -> None:
        """An idle connection the server closed (or sent unasked bytes on)."""
        idle = self._idle.get(conn.key, [])
        if conn in idle:
            idle.remove(conn)
            self._drop(conn, idle=True)

    def _evict_oldest(self) -> None:
        idle = min((c for c in self._idle.values() if c), key=lambda c: c[0].idle_since)
        self._drop(idle.pop(0), idle=True)

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _sweep(self) -> None:
        """Close the connections idle for longer than ``keepalive_expiry``."""
        self._sweep_handle = None
        cutoff = time.monotonic() - (self._expiry or 0.0)
        for idle in self._idle.values():
            while idle and idle[0].idle_since <= cutoff:
                self._drop(idle.pop(0), idle=True)
        if self.idle_connections and self._expiry is not None:
            self._sweep_handle = asyncio.get_running_loop().call_later(
                self._expiry, self._sweep)

    async def aclose(self) -> None:
        """Close every connection, idle or in use (an exchange in flight fails)."""
        if self._sweep_handle is not None:
            self._sweep_handle.cancel()
            self._sweep_handle = None
        for idle in self._idle.values():
            while idle:
                self._drop(idle.pop(), idle=True)
        for conn in list(self._active):
            conn.transport.abort()
