"""The gateway's httpx transport over aiohttp: httpx's types in and out, nothing kept, errors
mapped by what happened."""

from __future__ import annotations

import asyncio
import gzip
import shutil
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import httpx
import pytest

from gateway.upstream.transport import AiohttpTransport


class RawUpstream:
    """A keep-alive HTTP/1.1 server whose answer per request is ``answer(request_head)``;
    records each request's head and the connection it came on."""

    def __init__(self, answer: Callable[[bytes], bytes], close_after_reply: bool = False) -> None:
        self.answer = answer
        self.close_after_reply = close_after_reply
        self.heads: list[tuple[int, bytes]] = []
        self._connections = 0

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections += 1
        connection = self._connections
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
                writer.write(reply)
                await writer.drain()
                if self.close_after_reply:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            pass
        finally:
            writer.close()


def ok(body: bytes, *headers: bytes) -> bytes:
    return (b"HTTP/1.1 200 OK\r\ncontent-length: " + str(len(body)).encode() + b"\r\n"
            + b"".join(h + b"\r\n" for h in headers) + b"\r\n" + body)


@pytest.fixture
async def transport() -> AsyncIterator[AiohttpTransport]:
    t = AiohttpTransport(httpx.Limits(max_connections=4))
    try:
        yield t
    finally:
        await t.aclose()


async def _get(t: AiohttpTransport, url: str, **headers: str) -> tuple[httpx.Response, bytes]:
    response = await t.handle_async_request(httpx.Request("GET", url, headers=headers))
    try:
        body = b"".join([chunk async for chunk in response.aiter_bytes()])
    finally:
        await response.aclose()
    return response, body


async def test_answers_are_httpx_responses_and_connections_are_reused(
        transport: AiohttpTransport) -> None:
    upstream = RawUpstream(lambda head: ok(b'{"a":1}', b"x-request-id: req_1"))
    async with upstream as base:
        for _ in range(3):
            response, body = await _get(transport, base + "/v1/x", authorization="Bearer k")
            assert response.status_code == 200 and body == b'{"a":1}'
            assert response.headers["x-request-id"] == "req_1"
    assert [c for c, _ in upstream.heads] == [1, 1, 1]  # one kept-alive connection
    head = upstream.heads[0][1].lower()
    assert b"authorization: bearer k" in head
    assert b"user-agent: python" not in head  # aiohttp adds none of its own


async def test_cookies_are_never_kept_and_redirects_never_followed(
        transport: AiohttpTransport) -> None:
    upstream = RawUpstream(lambda head: (
        b"HTTP/1.1 302 Found\r\nlocation: /elsewhere\r\nset-cookie: s=secret; path=/\r\n"
        b"content-length: 0\r\n\r\n"))
    async with upstream as base:
        for _ in range(2):
            response, _ = await _get(transport, base + "/v1/x")
            assert response.status_code == 302
    assert len(upstream.heads) == 2  # never the redirect's target
    assert all(b"cookie" not in head.lower() for _, head in upstream.heads)


async def test_gzip_bodies_are_decoded_by_httpx(transport: AiohttpTransport) -> None:
    payload = b'{"data": "' + b"z" * 5000 + b'"}'
    upstream = RawUpstream(lambda head: ok(gzip.compress(payload), b"content-encoding: gzip"))
    async with upstream as base:
        _, body = await _get(transport, base + "/v1/x")
    assert body == payload


async def test_a_refused_connection_is_a_connect_error(transport: AiohttpTransport) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: refused
        with pytest.raises(httpx.ConnectError) as caught:
            await _get(transport, f"http://127.0.0.1:{port}/v1/x")
    assert isinstance(caught.value.__cause__, aiohttp.ClientConnectorError)


async def test_a_connection_lost_mid_body_is_a_protocol_error_not_a_timeout(
        transport: AiohttpTransport) -> None:
    upstream = RawUpstream(lambda head: b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{\"a\"",
                           close_after_reply=True)
    async with upstream as base:
        with pytest.raises(httpx.TransportError) as caught:
            await _get(transport, base + "/v1/x")
    assert not isinstance(caught.value, httpx.TimeoutException)


async def test_a_server_that_closes_before_answering_is_a_read_error(
        transport: AiohttpTransport) -> None:
    upstream = RawUpstream(lambda head: b"")
    async with upstream as base:
        with pytest.raises(httpx.ReadError):
            await _get(transport, base + "/v1/x")


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
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            writer.write(ok(b'{"tls":true}'))
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=context)
    return server, f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}"


async def test_https_upstreams_are_verified(upstream_certs: Path) -> None:
    """The default context verifies the upstream's certificate (an unknown CA is refused before
    any request is sent); a context trusting the CA gets the answer over TLS."""
    server, base = await _tls_upstream(upstream_certs)
    try:
        default = AiohttpTransport(httpx.Limits(max_connections=2))
        try:
            with pytest.raises(httpx.ConnectError):
                await _get(default, base + "/v1/x")
        finally:
            await default.aclose()
        trusting = AiohttpTransport(httpx.Limits(max_connections=2), ssl.create_default_context(
            cafile=str(upstream_certs / "ca.pem")))
        try:
            response, body = await _get(trusting, base + "/v1/x")
        finally:
            await trusting.aclose()
        assert response.status_code == 200 and body == b'{"tls":true}'
    finally:
        server.close()
        await server.wait_closed()
