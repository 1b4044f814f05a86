"""Issue 19, case 2: REST slowloris.

Idle and half-open connections on the HTTP port were never timed out (200 still open after 30 s);
they counted toward the REST concurrency limit (= ``max_concurrent_rpcs``), and at the limit
every REST call got a plain-text 503. Now: connections that have not delivered a request's headers
are timed out, a full connection table makes room by closing the longest-waiting of them, and the
request limit counts requests (answered with the OpenAI error body when it bites).
"""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import httpx
import structlog

from gateway.emulator.server import EmulatorServer
from tests.security.conftest import Secured, metric, secured

PARTIAL = b"GET /v1/threads/thread_x/messages HTTP/1.1\r\nHost: gw\r\nX-Slow: "


def _attack(port: int, idle: int, partial: int) -> list[socket.socket]:
    socks = []
    for i in range(idle + partial):
        s = socket.create_connection(("127.0.0.1", port), timeout=2)
        if i >= idle:
            s.sendall(PARTIAL)
        socks.append(s)
    return socks


def _closed_by_server(s: socket.socket, within: float) -> bool:
    s.settimeout(within)
    try:
        while True:
            data = s.recv(4096)
            if not data:
                return True
    except (TimeoutError, socket.timeout):
        return False
    except ConnectionResetError:
        return True


async def _rest_ok(env: Secured) -> httpx.Response:
    url = (f"http://127.0.0.1:{env.gateway.http_port}/v1/threads/{env.thread_id}/messages/"
           f"{env.message_id}")
    async with httpx.AsyncClient(timeout=5) as http:
        return await http.get(url, headers={"authorization": f"Bearer {env.key}",
                                            "openai-beta": "assistants=v1"})


async def test_idle_and_half_open_connections_do_not_starve_rest_calls(
        emulator: EmulatorServer, tmp_path: Path) -> None:
    async with secured(emulator, tmp_path, server={"http_listen": "127.0.0.1:0",
                                                   "max_concurrent_rpcs": 20}) as env:
        socks = await asyncio.to_thread(_attack, env.gateway.http_port, idle=30, partial=30)
        try:
            await asyncio.sleep(0.2)
            for _ in range(3):
                reply = await _rest_ok(env)
                assert reply.status_code == 200, reply.text
            assert await env.consumer_ok() and await env.health_ok()
        finally:
            for s in socks:
                s.close()


async def test_connections_without_a_request_are_closed_after_the_header_timeout(
        emulator: EmulatorServer, tmp_path: Path) -> None:
    before = metric("gateway_http_connections_closed_total", reason="header_timeout")
    async with secured(emulator, tmp_path, server={"http_listen": "127.0.0.1:0",
                                                   "http_header_timeout_seconds": 0.5}) as env:
        with structlog.testing.capture_logs() as logs:
            socks = await asyncio.to_thread(_attack, env.gateway.http_port, idle=5, partial=5)
            started = time.monotonic()
            try:
                closed = await asyncio.to_thread(
                    lambda: [_closed_by_server(s, 3.0) for s in socks])
            finally:
                for s in socks:
                    s.close()
        assert closed == [True] * 10
        assert time.monotonic() - started < 3.0
        assert metric("gateway_http_connections_closed_total", reason="header_timeout") >= (
            before + 10)
        assert any(e["event"] == "http_connection_closed" and e["reason"] == "header_timeout"
                   for e in logs)
        assert (await _rest_ok(env)).status_code == 200


async def test_full_connection_table_closes_the_longest_waiting_connection(
        emulator: EmulatorServer, tmp_path: Path) -> None:
    before = metric("gateway_http_connections_closed_total", reason="evicted")
    async with secured(emulator, tmp_path, server={"http_listen": "127.0.0.1:0",
                                                   "max_http_connections": 10}) as env:
        socks = await asyncio.to_thread(_attack, env.gateway.http_port, idle=15, partial=15)
        try:
            await asyncio.sleep(0.2)
            assert (await _rest_ok(env)).status_code == 200
            closed = await asyncio.to_thread(lambda: [_closed_by_server(s, 0.2) for s in socks])
        finally:
            for s in socks:
                s.close()
        assert sum(closed) >= 21  # 30 waiting, at most 9 may stay beside the valid call's
        assert all(closed[:20])  # the oldest went first
        assert metric("gateway_http_connections_closed_total", reason="evicted") >= before + 21


async def test_request_limit_answers_with_the_openai_error_body(
        emulator: EmulatorServer, tmp_path: Path) -> None:
    async with secured(emulator, tmp_path, server={"http_listen": "127.0.0.1:0",
                                                   "max_concurrent_rpcs": 2},
                       cache={"backend": "off"}) as env:
        emulator.faults.set_latency("getMessage", 0.5)
        replies = await asyncio.gather(*(_rest_ok(env) for _ in range(4)))
        codes = sorted(r.status_code for r in replies)
        assert codes == [200, 200, 429, 429]
        refused = next(r for r in replies if r.status_code == 429)
        assert refused.json()["error"]["code"] == "gateway_concurrency_limit"
        assert refused.headers["retry-after"] == "1"


def _slow_body(port: int, count: int) -> list[socket.socket]:
    """Requests whose headers arrive at once and whose body never finishes (slow POST)."""
    socks = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=2)
        s.sendall(b"POST /v1/threads/thread_x/messages HTTP/1.1\r\nHost: gw\r\n"
                  b"Content-Type: application/json\r\nOpenAI-Beta: assistants=v1\r\n"
                  b"Authorization: Bearer junk\r\nContent-Length: 100\r\n\r\n{\"ro")
        socks.append(s)
    return socks


async def test_a_body_that_never_finishes_is_cut_off_and_frees_its_request_slot(
        emulator: EmulatorServer, tmp_path: Path) -> None:
    before = metric("gateway_http_connections_closed_total", reason="body_timeout")
    async with secured(emulator, tmp_path, server={"http_listen": "127.0.0.1:0",
                                                   "max_concurrent_rpcs": 2,
                                                   "request_timeout_seconds": 0.5}) as env:
        socks = await asyncio.to_thread(_slow_body, env.gateway.http_port, 4)
        try:
            closed = await asyncio.to_thread(lambda: [_closed_by_server(s, 3.0) for s in socks])
        finally:
            for s in socks:
                s.close()
        assert closed == [True] * 4
        assert metric("gateway_http_connections_closed_total", reason="body_timeout") >= (
            before + 2)
        assert (await _rest_ok(env)).status_code == 200


async def test_a_kept_alive_connection_that_starts_a_request_and_stalls_is_closed(
        emulator: EmulatorServer, tmp_path: Path) -> None:
    """After one full exchange, a second request's headers dribble in: uvicorn cancels its
    keep-alive timer on the first byte, so only the header timeout ends it."""
    async with secured(emulator, tmp_path, server={"http_listen": "127.0.0.1:0",
                                                   "http_header_timeout_seconds": 0.5,
                                                   "http_keepalive_seconds": 30.0}) as env:
        def exchange_then_stall() -> bool:
            s = socket.create_connection(("127.0.0.1", env.gateway.http_port), timeout=2)
            try:
                s.sendall(b"GET /v1/threads/thread_x/messages HTTP/1.1\r\nHost: gw\r\n"
                          b"OpenAI-Beta: assistants=v1\r\n\r\n")
                first = s.recv(65536)
                assert first.startswith(b"HTTP/1.1 401"), first[:40]
                s.sendall(PARTIAL)
                return _closed_by_server(s, 3.0)
            finally:
                s.close()

        started = time.monotonic()
        assert await asyncio.to_thread(exchange_then_stall)
        assert time.monotonic() - started < 2.5
