"""The gateway's httpx transports (over aiohttp, and its own on httptools): httpx's types in and
out, nothing kept, connections pooled and never handed back half-read, errors mapped by what
happened. Every case runs on both transports unless it reads one's own counters."""

from __future__ import annotations

import asyncio
import gzip
import shutil
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import httpx
import pytest

from gateway.upstream.outcomes import never_sent
from gateway.upstream.transport import AiohttpTransport
from gateway.upstream.transport_h1 import H1Transport

Transport = AiohttpTransport | H1Transport
#: What an answer may be: bytes written back, or a coroutine given the writer (a stall, a
#: trickle, a close mid-way); returning True from it ends the connection.
Answer = bytes | Callable[[asyncio.StreamWriter], Awaitable[bool | None]]
SECRET = "sk-never-in-a-message"


class RawUpstream:
    """A keep-alive HTTP/1.1 server whose answer per request is ``answer(request_head)``;
    records each request's head and the connection it came on."""

    def __init__(self, answer: Callable[[bytes], Answer], close_after_reply: bool = False) -> None:
        self.answer = answer
        self.close_after_reply = close_after_reply
        self.heads: list[tuple[int, bytes]] = []
        self._connections = 0
        self.open_now = self.max_open = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        for task in self._tasks:  # a stalled answer ends with the server
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections += 1
        connection = self._connections
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.open_now += 1
        self.max_open = max(self.max_open, self.open_now)
        try:
            for _ in range(20):  # bounded
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
                self.heads.append((connection, head))
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await reader.readexactly(length)
                reply = self.answer(head)
                if not reply:
                    break
                if isinstance(reply, bytes):
                    writer.write(reply)
                    await writer.drain()
                elif await reply(writer):
                    break
                if self.close_after_reply:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            pass
        finally:
            self.open_now -= 1
            self._tasks.discard(task)
            writer.close()


def ok(body: bytes, *headers: bytes, status: bytes = b"200 OK") -> bytes:
    return (b"HTTP/1.1 " + status + b"\r\ncontent-length: " + str(len(body)).encode() + b"\r\n"
            + b"".join(h + b"\r\n" for h in headers) + b"\r\n" + body)


def in_use(t: Transport) -> int:
    """Connections checked out of the transport's pool, and requests waiting for one."""
    if isinstance(t, H1Transport):
        return t.connections_in_use + t.requests_waiting
    session = t._session  # noqa: SLF001
    return 0 if session is None else len(session.connector._acquired)  # noqa: SLF001


@pytest.fixture(params=[AiohttpTransport, H1Transport], ids=["aiohttp", "httptools"])
def kind(request: pytest.FixtureRequest) -> type[Transport]:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
async def transport(kind: type[Transport]) -> AsyncIterator[Transport]:
    t = kind(httpx.Limits(max_connections=4))
    try:
        yield t
    finally:
        await t.aclose()


#: For the cases that read the httptools transport's own counters (aiohttp keeps none).
H1_ONLY = pytest.mark.parametrize("kind", [H1Transport], ids=["httptools"])


async def _get(t: Transport, url: str, **headers: str) -> tuple[httpx.Response, bytes]:
    response = await t.handle_async_request(httpx.Request("GET", url, headers=headers))
    try:
        body = b"".join([chunk async for chunk in response.aiter_bytes()])
    finally:
        await response.aclose()
    return response, body


async def _raw(t: Transport, url: str) -> tuple[httpx.Response, bytes]:
    """The body as it came off the wire (``response.stream``, what body.py reads)."""
    response = await t.handle_async_request(httpx.Request("GET", url))
    try:
        body = b"".join([chunk async for chunk in response.stream])  # type: ignore[union-attr]
    finally:
        await response.aclose()
    return response, body


async def test_answers_are_httpx_responses_and_connections_are_reused(
        transport: Transport) -> None:
    upstream = RawUpstream(lambda head: ok(b'{"a":1}', b"x-request-id: req_1"))
    async with upstream as base:
        for _ in range(3):
            response, body = await _get(transport, base + "/v1/x", authorization="Bearer k")
            assert response.status_code == 200 and body == b'{"a":1}'
            assert response.headers["x-request-id"] == "req_1"
            assert response.extensions["http_version"] == b"HTTP/1.1"
    assert [c for c, _ in upstream.heads] == [1, 1, 1]  # one kept-alive connection
    head = upstream.heads[0][1].lower()
    assert b"authorization: bearer k" in head
    assert b"user-agent: python" not in head  # the transport adds none of its own
    assert in_use(transport) == 0


@H1_ONLY
async def test_the_request_goes_exactly_as_built(transport: Transport) -> None:
    """Byte for byte (aiohttp's lower-cases the names and adds a content-type)."""
    upstream = RawUpstream(lambda head: ok(b"{}"))
    async with upstream as base:
        request = httpx.Request("POST", base + "/v1/a%2Fb/x?q=1%202", content=b'{"k":1}',
                                headers=[("X-Case", "Kept"), ("authorization", "Bearer k")])
        response = await transport.handle_async_request(request)
        await response.aread()
        await response.aclose()
    host = base.removeprefix("http://").encode()
    assert upstream.heads[0][1] == (
        b"POST /v1/a%2Fb/x?q=1%202 HTTP/1.1\r\nHost: " + host + b"\r\nX-Case: Kept\r\n"
        b"authorization: Bearer k\r\nContent-Length: 7\r\n\r\n")


async def test_cookies_are_never_kept_and_redirects_never_followed(
        transport: Transport) -> None:
    upstream = RawUpstream(lambda head: (
        b"HTTP/1.1 302 Found\r\nlocation: /elsewhere\r\nset-cookie: s=secret; path=/\r\n"
        b"content-length: 0\r\n\r\n"))
    async with upstream as base:
        for _ in range(2):
            response, _ = await _get(transport, base + "/v1/x")
            assert response.status_code == 302
    assert len(upstream.heads) == 2  # never the redirect's target
    assert all(b"cookie" not in head.lower() for _, head in upstream.heads)


async def test_gzip_bodies_come_through_raw_and_are_decoded_by_httpx(
        transport: Transport) -> None:
    payload = b'{"data": "' + b"z" * 5000 + b'"}'
    upstream = RawUpstream(lambda head: ok(gzip.compress(payload, mtime=0),
                                           b"content-encoding: gzip"))
    async with upstream as base:
        _, body = await _get(transport, base + "/v1/x")
        _, raw = await _raw(transport, base + "/v1/x")
    assert body == payload
    assert raw == gzip.compress(payload, mtime=0)  # no decompression in the transport


async def test_chunked_bodies_are_read_and_the_connection_kept(transport: Transport) -> None:
    upstream = RawUpstream(lambda head: (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"))
    async with upstream as base:
        for _ in range(2):
            _, body = await _raw(transport, base + "/v1/x")
            assert body == b"hello world"
    assert [c for c, _ in upstream.heads] == [1, 1]


async def test_a_body_read_until_close_and_a_new_connection_after_it(
        transport: Transport) -> None:
    upstream = RawUpstream(lambda head: b"HTTP/1.1 200 OK\r\n\r\nuntil the end",
                           close_after_reply=True)
    async with upstream as base:
        for _ in range(2):
            _, body = await _raw(transport, base + "/v1/x")
            assert body == b"until the end"
    assert [c for c, _ in upstream.heads] == [1, 2]


@pytest.mark.parametrize("head", [b"HTTP/1.1 204 No Content\r\n\r\n",
                                  b"HTTP/1.1 304 Not Modified\r\ncontent-length: 10\r\n\r\n",
                                  b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"{}")])
async def test_answers_without_a_body_keep_the_connection(transport: Transport,
                                                          head: bytes) -> None:
    upstream = RawUpstream(lambda _: head)
    async with upstream as base:
        for _ in range(2):
            response, body = await _raw(transport, base + "/v1/x")
            assert body == (b"{}" if response.status_code == 200 else b"")
    assert [c for c, _ in upstream.heads] == [1, 1]


async def test_closing_a_body_early_drops_the_connection(transport: Transport) -> None:
    upstream = RawUpstream(lambda head: ok(b"x" * 4_000_000))
    async with upstream as base:
        response = await transport.handle_async_request(httpx.Request("GET", base + "/v1/x"))
        async for _ in response.stream:  # type: ignore[union-attr]
            break
        await response.aclose()
        assert in_use(transport) == 0
        upstream.answer = lambda head: ok(b"{}")
        _, body = await _get(transport, base + "/v1/x")
    assert body == b"{}"
    assert [c for c, _ in upstream.heads] == [1, 2]  # never the half-read connection


async def _stall(writer: asyncio.StreamWriter) -> bool:
    await asyncio.sleep(30)
    return True


async def _half_body(writer: asyncio.StreamWriter) -> bool:
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{\"a\"")
    await writer.drain()
    await asyncio.sleep(30)
    return True


async def _deaf(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        await asyncio.sleep(30)  # reads nothing: the client's write buffer fills
    finally:
        writer.close()


@pytest.mark.parametrize(("kind", "point"), [
    (kind, point) for kind in (AiohttpTransport, H1Transport)
    for point in ("connect", "write", "head", "body")
    # aiohttp refuses a body this large as bytes (a ResourceWarning): no write point there.
    if not (kind is AiohttpTransport and point == "write")])
async def test_a_cancel_at_any_await_leaks_nothing(transport: Transport, point: str) -> None:
    """Cancelled while connecting, writing a body the server does not read, waiting for the
    head, or reading the body: the slot is back, and the next request works."""
    upstream = RawUpstream(lambda head: _half_body if point == "body" else _stall)
    deaf = await asyncio.start_server(_deaf, "127.0.0.1", 0)
    try:
        async with upstream as base:
            url = base + "/v1/x"
            if point == "write":
                url = f"http://127.0.0.1:{deaf.sockets[0].getsockname()[1]}/v1/x"
            request = httpx.Request("POST" if point == "write" else "GET", url,
                                    content=b"x" * (32 << 20) if point == "write" else b"")

            async def exchange() -> None:
                response = await transport.handle_async_request(request)
                try:
                    async for _ in response.stream:  # type: ignore[union-attr]
                        pass
                finally:
                    await response.aclose()

            task = asyncio.create_task(exchange())
            if point == "connect":
                await asyncio.sleep(0)
            else:
                for _ in range(200):
                    await asyncio.sleep(0.01)
                    if point == "write" or upstream.heads:
                        break
                await asyncio.sleep(0.1)
            assert not task.done()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert in_use(transport) == 0
            upstream.answer = lambda head: ok(b"{}")
            _, body = await _get(transport, base + "/v1/x")
            assert body == b"{}"
            assert in_use(transport) == 0
    finally:
        deaf.close()


async def test_at_most_max_connections_are_open(kind: type[Transport]) -> None:
    async def slow(writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(0.05)
        writer.write(ok(b"{}"))

    t = kind(httpx.Limits(max_connections=2))
    upstream = RawUpstream(lambda head: slow)
    try:
        async with upstream as base:
            results = await asyncio.gather(*(_get(t, base + "/v1/x") for _ in range(6)))
    finally:
        await t.aclose()
    assert [body for _, body in results] == [b"{}"] * 6
    assert upstream.max_open == 2
    assert in_use(t) == 0


@H1_ONLY
async def test_a_wait_for_a_connection_is_bounded_by_the_pool_timeout(
        kind: type[Transport]) -> None:
    t = H1Transport(httpx.Limits(max_connections=1))
    try:
        async with RawUpstream(lambda head: _stall) as base:
            first = asyncio.create_task(_get(t, base + "/v1/x"))
            await asyncio.sleep(0.1)
            with pytest.raises(httpx.PoolTimeout):
                await t.handle_async_request(httpx.Request(
                    "GET", base + "/v1/x", extensions={"timeout": {"pool": 0.1}}))
            assert t.requests_waiting == 0
            first.cancel()
            with pytest.raises(asyncio.CancelledError):
                await first
            assert in_use(t) == 0
    finally:
        await t.aclose()


async def test_idle_connections_expire_and_at_most_max_keepalive_are_kept(
        kind: type[Transport]) -> None:
    t = kind(httpx.Limits(max_connections=4, max_keepalive_connections=1,
                          keepalive_expiry=0.2))
    upstream = RawUpstream(lambda head: ok(b"{}"))
    try:
        async with upstream as base:
            await _get(t, base + "/v1/x")
            await asyncio.sleep(0.4)  # expired: never reused
            await _get(t, base + "/v1/x")
            assert [c for c, _ in upstream.heads] == [1, 2]
            if isinstance(t, H1Transport):
                await asyncio.sleep(0.5)  # closed by the sweep, not only skipped
                assert t.idle_connections == 0 and upstream.open_now == 0
                await asyncio.gather(*(_get(t, base + "/v1/x") for _ in range(3)))
                assert t.idle_connections == 1
                await asyncio.sleep(0.05)
                assert upstream.open_now == 1
    finally:
        await t.aclose()


async def test_a_connection_the_server_closed_while_idle_is_not_reused(
        transport: Transport) -> None:
    upstream = RawUpstream(lambda head: ok(b"{}"), close_after_reply=True)
    async with upstream as base:
        for _ in range(3):
            _, body = await _get(transport, base + "/v1/x")
            assert body == b"{}"
            await asyncio.sleep(0.05)
    assert [c for c, _ in upstream.heads] == [1, 2, 3]


async def test_a_refused_connection_is_a_connect_error(transport: Transport) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: refused
        with pytest.raises(httpx.ConnectError) as caught:
            await _get(transport, f"http://127.0.0.1:{port}/v1/x", authorization=SECRET)
    cause = (aiohttp.ClientConnectorError if isinstance(transport, AiohttpTransport)
             else ConnectionRefusedError)
    assert isinstance(caught.value.__cause__, cause)
    assert never_sent(caught.value)  # the retry policy may send even a create again
    assert SECRET not in str(caught.value) and SECRET not in repr(caught.value.__cause__)
    assert in_use(transport) == 0


@H1_ONLY
async def test_a_connect_timeout_is_a_connect_timeout(kind: type[Transport]) -> None:
    t = H1Transport(httpx.Limits(max_connections=1))
    try:
        with pytest.raises(httpx.ConnectTimeout):
            await t.handle_async_request(httpx.Request(
                "GET", "http://127.0.0.1:9/", extensions={"timeout": {"connect": 0}}))
        assert in_use(t) == 0
    finally:
        await t.aclose()


async def test_an_unsupported_scheme_is_refused(transport: Transport) -> None:
    with pytest.raises(httpx.UnsupportedProtocol):
        await _get(transport, "ftp://127.0.0.1/v1/x")


async def test_a_connection_lost_mid_body_is_a_protocol_error_not_a_timeout(
        transport: Transport) -> None:
    upstream = RawUpstream(lambda head: b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{\"a\"",
                           close_after_reply=True)
    async with upstream as base:
        with pytest.raises(httpx.TransportError) as caught:
            await _get(transport, base + "/v1/x", authorization=SECRET)
    assert not isinstance(caught.value, httpx.TimeoutException)
    assert SECRET not in str(caught.value)
    assert in_use(transport) == 0


async def test_a_server_that_closes_before_answering_is_a_read_error(
        transport: Transport) -> None:
    upstream = RawUpstream(lambda head: b"")
    async with upstream as base:
        with pytest.raises(httpx.ReadError) as caught:
            await _get(transport, base + "/v1/x")
    assert not never_sent(caught.value)  # it reached the server
    assert in_use(transport) == 0


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_a_kept_connection_closed_as_the_request_arrives(transport: Transport,
                                                               method: str) -> None:
    """The server takes the request on a reused connection and closes without a byte (its idle
    timeout ran out as the request came): a GET goes once more, on a new connection; a POST may
    have been acted on, so it fails, and not as "never sent"."""
    answers = iter([ok(b"{}"), b"", ok(b"{}")])
    upstream = RawUpstream(lambda head: next(answers))
    async with upstream as base:
        first = await transport.handle_async_request(httpx.Request(method, base + "/v1/x"))
        await first.aread()
        await first.aclose()
        request = httpx.Request(method, base + "/v1/x")
        if method == "GET":
            response = await transport.handle_async_request(request)
            assert await response.aread() == b"{}"
            await response.aclose()
        else:
            with pytest.raises(httpx.TransportError) as caught:
                await transport.handle_async_request(request)
            assert not isinstance(caught.value, httpx.TimeoutException)
            assert not never_sent(caught.value)
    assert [c for c, _ in upstream.heads] == ([1, 1, 2] if method == "GET" else [1, 1])
    assert in_use(transport) == 0


@pytest.mark.parametrize("answer", [b"HTTPX/9 nonsense\r\n\r\n",
                                    b"HTTP/1.1 200 OK\r\nx-bad header\r\n\r\n",
                                    b"HTTP/1.1 200 OK\r\nx-long: " + b"a" * 200_000])
async def test_an_answer_that_is_not_http_is_a_protocol_error(transport: Transport,
                                                              answer: bytes) -> None:
    upstream = RawUpstream(lambda head: answer)
    async with upstream as base:
        with pytest.raises(httpx.RemoteProtocolError) as caught:
            await _get(transport, base + "/v1/x", authorization=SECRET)
    assert SECRET not in str(caught.value)
    assert in_use(transport) == 0


@H1_ONLY
async def test_a_slow_reader_of_a_huge_body_buffers_a_bounded_amount(
        kind: type[Transport]) -> None:
    size = 16 << 20
    t = H1Transport(httpx.Limits(max_connections=1))

    async def huge(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: " + str(size).encode() + b"\r\n\r\n")
        block = b"y" * (1 << 20)
        for _ in range(16):
            writer.write(block)
            await writer.drain()

    try:
        async with RawUpstream(lambda head: huge) as base:
            response = await t.handle_async_request(httpx.Request("GET", base + "/v1/x"))
            got = peak = 0
            async for chunk in response.stream:  # type: ignore[union-attr]
                got += len(chunk)
                peak = max(peak, t.buffered_bytes)
                await asyncio.sleep(0.0005 if got < (2 << 20) else 0)
            await response.aclose()
    finally:
        await t.aclose()
    assert got == size
    assert peak < 256 * 1024


async def test_aclose_closes_every_connection(transport: Transport) -> None:
    upstream = RawUpstream(lambda head: ok(b"{}"))
    async with upstream as base:
        await asyncio.gather(*(_get(transport, base + "/v1/x") for _ in range(3)))
        assert upstream.open_now >= 1
        await transport.aclose()
        for _ in range(100):
            if upstream.open_now == 0:
                break
            await asyncio.sleep(0.01)
        assert upstream.open_now == 0


@pytest.fixture(scope="module")
def upstream_certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("openssl") is None:  # pragma: no cover - a real external condition
        pytest.skip("the openssl CLI is needed to make test certificates")
    from tests.rpc.test_tls import _ca, _leaf

    d = tmp_path_factory.mktemp("upstream-certs")
    _ca(d, "ca")
    _leaf(d, "server", "ca", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    return d


async def _tls_upstream(certs: Path) -> tuple[asyncio.Server, str]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certs / "server.pem", certs / "server.key")

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            for _ in range(2):
                await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
                writer.write(ok(b'{"tls":true}'))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=context)
    return server, f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}"


async def test_https_upstreams_are_verified(upstream_certs: Path, kind: type[Transport]) -> None:
    """The default context verifies the upstream's certificate (an unknown CA is refused before
    any request is sent); a context trusting the CA gets the answer over TLS, kept alive."""
    server, base = await _tls_upstream(upstream_certs)
    try:
        default = kind(httpx.Limits(max_connections=2))
        try:
            with pytest.raises(httpx.ConnectError):
                await _get(default, base + "/v1/x")
        finally:
            await default.aclose()
        trusting = kind(httpx.Limits(max_connections=2), ssl.create_default_context(
            cafile=str(upstream_certs / "ca.pem")))
        try:
            for _ in range(2):
                response, body = await _get(trusting, base + "/v1/x")
                assert response.status_code == 200 and body == b'{"tls":true}'
        finally:
            await trusting.aclose()
    finally:
        server.close()
        await server.wait_closed()
