"""A request's headers are bounded on the REST face, whichever HTTP parser serves it.

httptools (the faster parser, the default) sets no limit of its own on header bytes: a client
could keep sending one endless header line, and uvicorn would buffer it until the header timeout
(10 s by default; at loopback speed, hundreds of megabytes per connection). h11 stops at 16 KiB
with a plain-text 400. Now both answer 431 with the OpenAI error body past 16 KiB of headers,
close the connection, and keep serving everyone else.
"""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import pytest

from gateway.emulator.server import EmulatorServer
from gateway.rest.connections import MAX_HEADER_BYTES
from tests.security.conftest import metric, secured

CHUNK = b"x" * 4096
#: Sent at most: 1 MiB of one header line, far past the bound.
MAX_CHUNKS = 256


def _flood(port: int) -> tuple[bytes, int]:
    """Send a request whose one header never ends; the server's answer and the bytes sent."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /v1/threads/thread_x/messages HTTP/1.1\r\nHost: gw\r\nX-Flood: ")
        try:
            for _ in range(MAX_CHUNKS):
                s.sendall(CHUNK)
                sent += len(CHUNK)
        except (BrokenPipeError, ConnectionResetError):
            pass  # closed by the server: what should happen
        answer = b""
        try:
            while len(answer) < 65536:
                data = s.recv(65536)
                if not data:
                    break
                answer += data
        except (ConnectionResetError, TimeoutError, socket.timeout):
            pass
    return answer, sent


@pytest.mark.parametrize("parser", ["httptools", "h11"])
async def test_endless_headers_get_431_and_the_face_keeps_serving(
        emulator: EmulatorServer, tmp_path: Path, parser: str) -> None:
    before = metric("gateway_http_connections_closed_total", reason="headers_too_large")
    # A header timeout far longer than the test: the answer comes from the size bound.
    async with secured(emulator, tmp_path, server={"http_listen": "127.0.0.1:0",
                                                   "http_parser": parser,
                                                   "http_header_timeout_seconds": 60.0}) as env:
        answer, sent = await asyncio.wait_for(
            asyncio.to_thread(_flood, env.gateway.http_port), 10)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 431 "), answer[:200]
        assert json.loads(body)["error"]["code"] == "request_headers_too_large"
        assert sent > MAX_HEADER_BYTES
        assert metric("gateway_http_connections_closed_total",
                      reason="headers_too_large") == before + 1
        assert await env.consumer_ok() and await env.health_ok()



@pytest.mark.parametrize("parser", ["httptools", "h11"])
async def test_pipelined_requests_are_all_answered_and_the_idle_connection_still_times_out(
        emulator: EmulatorServer, tmp_path: Path, parser: str) -> None:
    """The bounds follow each request of a keep-alive connection, pipelined ones included
    (httptools queues them; h11 starts the next when the previous ends)."""
    async with secured(emulator, tmp_path, server={"http_listen": "127.0.0.1:0",
                                                   "http_parser": parser,
                                                   "http_header_timeout_seconds": 0.5}) as env:
        reader, writer = await asyncio.open_connection("127.0.0.1", env.gateway.http_port)
        request = (f"GET /v1/threads/{env.thread_id}/messages/{env.message_id} HTTP/1.1\r\n"
                   f"host: gw\r\nauthorization: Bearer {env.key}\r\n"
                   "openai-beta: assistants=v1\r\n\r\n").encode()
        writer.write(request * 3)
        answers = b""
        for _ in range(50):  # bounded
            if answers.count(b"HTTP/1.1 200 ") == 3:
                break
            answers += await asyncio.wait_for(reader.read(65536), 5)
        assert answers.count(b"HTTP/1.1 200 ") == 3
        started = asyncio.get_running_loop().time()
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the header timeout
        assert asyncio.get_running_loop().time() - started < 3
        writer.close()
