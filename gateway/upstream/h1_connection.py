"""One upstream HTTP/1.1 connection of ``H1Transport`` (transport_h1.py): its socket, its
httptools parser, the state of the exchange on it, and the answer's body as an httpx stream.

A connection is an ``asyncio.BufferedProtocol``: the loop reads into the transport's one buffer and
the parser's callbacks fill the exchange's state (status, headers, body chunks, completion); the
task in the exchange waits on one future, woken by each callback that matters to it. Reading pauses
while more than ``HIGH_WATER`` body bytes wait unread, and a head above ``MAX_HEAD`` is refused.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Any

import httptools
import httpx

if TYPE_CHECKING:  # pragma: no cover
    from gateway.upstream.transport_h1 import H1Transport

__all__ = ["Body", "Connection", "READ_SIZE"]

#: Bytes read at a time (one read overshoots the bound below by at most this); unread body
#: bytes above which reading pauses (it resumes at half); the largest response head accepted.
READ_SIZE = HIGH_WATER = MAX_HEAD = 64 * 1024


def _done(future: asyncio.Future[None] | None) -> None:
    if future is not None and not future.done():
        future.set_result(None)


class Connection(asyncio.BufferedProtocol):
    """One upstream connection: its socket, its parser and the state of the exchange on it."""

    def __init__(self, pool: H1Transport | None, key: tuple[bytes, bytes, int],
                 view: memoryview) -> None:
        self.pool, self.key = pool, key
        self.loop = asyncio.get_running_loop()
        self.parser = httptools.HttpResponseParser(self)
        #: The transport's one read buffer: the loop fills it and calls ``buffer_updated`` in one
        #: step, and the parser copies what it keeps, so connections can share it (64 KiB each
        #: otherwise: 6.4 MiB at the default 100 connections).
        self.view = view
        self.transport: Any = None
        self.active = self.closed = self.poisoned = self.read_paused = False
        self.write_paused: asyncio.Future[None] | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.idle_since, self.exchanges = 0.0, 0
        self.chunks: deque[bytes] = deque()
        self._reset(False)

    def _reset(self, head_request: bool) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.status = self.buffered = self.head_bytes = 0
        self.head_done = self.complete = self.keep = self.interim = False
        self.head_request = head_request
        self.error: httpx.TransportError | None = None
        self.chunks.clear()

    def reusable(self) -> bool:
        return (self.complete and self.keep and not self.chunks and self.error is None
                and not self.poisoned and not self.closed and not self.transport.is_closing())

    async def send(self, head: bytes, head_request: bool) -> None:
        """Write the request; return once the answer's head is in."""
        self.active = True
        self.exchanges += 1
        self._reset(head_request)
        if self.closed or self.transport.is_closing():  # closed between connect and now
            raise httpx.ReadError("the upstream closed the connection before the request")
        self.transport.write(head)
        if self.write_paused is not None:
            await self.write_paused
        while not self.head_done and self.error is None:
            await self.wait()
        if not self.head_done:
            raise self.error  # type: ignore[misc]

    async def wait(self) -> None:
        self.waiter = waiter = self.loop.create_future()
        try:
            await waiter
        finally:
            self.waiter = None

    def _wake(self) -> None:
        _done(self.waiter)

    def _fail(self, error: httpx.TransportError, cause: BaseException | None) -> None:
        if self.error is None:
            error.__cause__ = cause
            self.error = error
        self.poisoned = True
        self.transport.abort()
        self._wake()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.view

    def buffer_updated(self, nbytes: int) -> None:
        if not self.active or self.poisoned:
            # Bytes nobody asked for (on an idle connection, or past the answer): whatever they
            # are, the next answer on this connection could not be told from them.
            self.poisoned = True
            if not self.active:
                self.transport.close()
            return
        try:
            self.parser.feed_data(self.view[:nbytes])
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            if self.complete:  # the answer is whole; what follows it is not one
                self.poisoned = True
            else:
                self._fail(httpx.RemoteProtocolError(
                    f"the upstream's answer is not valid HTTP/1.1 ({type(exc).__name__})"), exc)
            return
        if not self.head_done:
            self.head_bytes += nbytes
            if self.head_bytes > MAX_HEAD:
                self._fail(httpx.RemoteProtocolError(
                    f"the upstream's response head is larger than {MAX_HEAD} bytes"), None)
        elif self.buffered > HIGH_WATER and not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        _done(self.write_paused)
        if not self.active:
            if self.pool is not None:
                self.pool._forget(self)  # noqa: SLF001
            return
        if self.error is None and not self.complete:
            if self.head_done and not any(  # a body delimited by the end of the connection
                    n.lower() == b"content-length" or (n.lower() == b"transfer-encoding"
                                                       and b"chunked" in v.lower())
                    for n, v in self.headers):
                self.complete = True
            else:
                self._fail(httpx.ReadError(
                    "the upstream closed the connection before the answer was complete"), exc)
        self._wake()

    def pause_writing(self) -> None:
        self.write_paused = self.loop.create_future()

    def resume_writing(self) -> None:
        paused, self.write_paused = self.write_paused, None
        _done(paused)

    def on_message_begin(self) -> None:
        if self.complete:
            self.poisoned = True  # a second answer to one request

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.head_done:
            self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self.head_done:
            return
        status = self.parser.get_status_code()
        if status < 200:  # an interim answer (100 Continue): the real one follows
            self.headers, self.interim = [], True
            return
        self.status, self.head_done = status, True
        if self.head_request:  # no body follows, whatever the headers say; not reused
            self.complete = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        if not self.complete:
            self.chunks.append(body)
            self.buffered += len(body)
            self._wake()

    def on_message_complete(self) -> None:
        if self.interim:
            self.interim = False
        elif not self.complete:
            self.keep = self.parser.should_keep_alive()
            self.complete = True
            self._wake()


class Body(httpx.AsyncByteStream):
    """An answer's body as it arrives; closing it returns the connection to the pool when the
    body was read to its end and the connection is keep-alive, and closes it otherwise."""

    def __init__(self, pool: H1Transport, connection: Connection) -> None:
        self._pool: H1Transport | None = pool
        self._connection = connection

    def __aiter__(self) -> Body:
        return self

    async def __anext__(self) -> bytes:
        conn = self._connection
        if self._pool is None:
            raise StopAsyncIteration
        while not conn.chunks:
            if conn.error is not None:
                raise conn.error
            if conn.complete:
                raise StopAsyncIteration
            await conn.wait()
        chunk = conn.chunks.popleft()
        conn.buffered -= len(chunk)
        if conn.read_paused and conn.buffered <= HIGH_WATER // 2:
            conn.read_paused = False
            conn.transport.resume_reading()
        return chunk

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool._release(self._connection)  # noqa: SLF001
