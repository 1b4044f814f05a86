"""Issue 19, case 1: calls that send headers but never their request message.

The attacker has no key and sets no deadline: the handler never starts, so neither
authentication nor the default timeout applies. Such calls must neither take the slots of calls
that did deliver a request (a valid key's, health's) nor be held for ever, and it must show.
"""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import grpc
import pytest
import structlog

from gateway.emulator.server import EmulatorServer
from gateway.rpc import admission
from tests.security.conftest import OWN_CONNECTION, Secured, metric, secured

GET_MESSAGE = "/messages_gateway.v1.MessagesService/GetMessage"
HEALTH_CHECK = "/grpc.health.v1.Health/Check"


async def _hold(target: str, method: str, connections: int, per_connection: int
                ) -> tuple[list[grpc.aio.Channel], list[grpc.aio.StreamStreamCall]]:
    """Open calls that send headers (no key, no deadline) and never a message."""
    channels = [grpc.aio.insecure_channel(target, options=OWN_CONNECTION)
                for _ in range(connections)]
    calls = []
    for ch in channels:
        opener = ch.stream_stream(method)
        calls += [opener() for _ in range(per_connection)]
    await asyncio.sleep(0.5)  # the headers reach the server
    return channels, calls


async def _no_slot_held(env: Secured) -> None:
    """Once the attack is over no waiting or serving slot stays taken."""
    admission = env.gateway.grpc.admission
    for _ in range(100):
        if admission.waiting == 0 and admission.serving == 0:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{admission.waiting} waiting, {admission.serving} serving")


async def _release(channels: list[grpc.aio.Channel], calls: list[grpc.aio.StreamStreamCall]
                   ) -> None:
    for call in calls:
        call.cancel()
    for ch in channels:
        await ch.close()


async def test_held_calls_do_not_starve_consumers_or_health(
        emulator: EmulatorServer, tmp_path: Path) -> None:
    async with secured(emulator, tmp_path, server={"max_concurrent_rpcs": 20}) as env:
        before = emulator.log.count("getMessage")
        channels, calls = await _hold(env.target, GET_MESSAGE, connections=6, per_connection=20)
        try:
            assert await env.health_ok()
            assert await env.consumer_ok()
            assert await env.consumer_ok()
        finally:
            await _release(channels, calls)
        # The valid calls and nothing else reached the upstream (the second is a cache hit).
        assert emulator.log.count("getMessage") == before + 1
        await _no_slot_held(env)


async def test_held_health_calls_do_not_starve_the_liveness_probe(
        emulator: EmulatorServer, tmp_path: Path) -> None:
    async with secured(emulator, tmp_path, server={"max_concurrent_rpcs": 20}) as env:
        channels, calls = await _hold(env.target, HEALTH_CHECK, connections=6, per_connection=20)
        try:
            assert await env.health_ok()
            assert await env.consumer_ok()
        finally:
            await _release(channels, calls)


async def test_held_calls_end_after_the_request_timeout_logged_and_counted(
        emulator: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A fresh second's line budget (earlier tests' refusals may have used this one's).
    monkeypatch.setattr(admission, "_lines", {"second": 0, "written": 0, "skipped": 0})
    before = metric("gateway_calls_refused_total", reason="request_timeout")
    async with secured(emulator, tmp_path, server={"request_timeout_seconds": 0.5}) as env:
        with structlog.testing.capture_logs() as logs:
            channels, calls = await _hold(env.target, GET_MESSAGE, connections=2,
                                          per_connection=5)
            started = time.monotonic()
            try:
                codes = [await asyncio.wait_for(call.code(), 3.0) for call in calls]
            finally:
                await _release(channels, calls)
        assert codes == [grpc.StatusCode.DEADLINE_EXCEEDED] * 10
        assert time.monotonic() - started < 2.0
        refused = [e for e in logs if e["event"] == "rpc_refused"]
        assert len(refused) == 10 and {e["reason"] for e in refused} == {"request_timeout"}
        assert all(e["method"] == "GetMessage" for e in refused)
        assert metric("gateway_calls_refused_total", reason="request_timeout") == before + 10
        assert await env.consumer_ok() and await env.health_ok()
        await _no_slot_held(env)


async def test_pending_budget_full_evicts_the_oldest_held_call(
        emulator: EmulatorServer, tmp_path: Path) -> None:
    """More held calls than the pending budget: the longest-waiting are ended (they are the
    likeliest attackers, a real call delivers its request with its headers) and counted."""
    before = metric("gateway_calls_refused_total", reason="pending_evicted")
    async with secured(emulator, tmp_path, server={"max_pending_calls": 10}) as env:
        channels, calls = await _hold(env.target, GET_MESSAGE, connections=3, per_connection=10)
        try:
            ended = [c for c in calls if c.done()]
            assert len(ended) == 20
            assert {await c.code() for c in ended} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
            assert await env.consumer_ok() and await env.health_ok()
        finally:
            await _release(channels, calls)
        assert metric("gateway_calls_refused_total", reason="pending_evicted") >= before + 20


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        while sock.recv(4096):
            pass
        return True
    except ConnectionResetError:
        return True
    except (TimeoutError, socket.timeout):
        return False


async def test_connections_that_never_finish_the_handshake_are_closed(
        emulator: EmulatorServer, tmp_path: Path) -> None:
    """The connection-level form of the same attack: TCP open, then nothing (or only the HTTP/2
    preface). grpc core's own bound is 120 s; the gateway's is the request timeout."""
    async with secured(emulator, tmp_path, server={"request_timeout_seconds": 0.5}) as env:
        socks = []
        for i in range(10):
            s = socket.create_connection(("127.0.0.1", env.gateway.grpc_port), timeout=2)
            if i % 2:
                s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            socks.append(s)
        try:
            assert await env.consumer_ok() and await env.health_ok()
            closed = await asyncio.to_thread(lambda: [_closed_within(s, 3.0) for s in socks])
        finally:
            for s in socks:
                s.close()
        assert closed == [True] * 10
