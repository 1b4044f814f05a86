"""Issue 19, case 11: stale answers after a Redis outage during a write.

With Redis paused while a message was updated, the invalidation failed (``cache_invalidation_failed``
logged) and reads 7-27 s later were still hits with the old metadata, until the TTL. A failed
invalidation is now retried until it lands, and meanwhile the replica that wrote bypasses the
cache for what it could not invalidate: the staleness is bounded by Redis's outage (plus one retry
interval), not by the TTL.

The pause is a proxy that drops every byte (the machine's Redis is shared: no CLIENT PAUSE).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis
import structlog

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from gateway.emulator.server import EmulatorServer
from tests.cache.proxy import TcpProxy
from tests.credentials.helpers import bearer
from tests.security.conftest import Secured, secured



class DroppingProxy(TcpProxy):
    """While ``paused``, every byte either way is dropped (a blackholed network)."""

    paused = False

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while chunk := await reader.read(65536):
                if not self.paused:
                    writer.write(chunk)
                    await writer.drain()


@pytest.fixture
async def proxy(redis_address: tuple[str, int]) -> AsyncIterator[DroppingProxy]:
    """A dropping proxy in front of the real Redis of the cache tests (which fail, not skip,
    under CI when there is none)."""
    p = DroppingProxy(*redis_address)
    await p.start()
    try:
        yield p
    finally:
        await p.close()


async def _get(env: Secured) -> tuple[str, str]:
    call = env.stub.GetMessage(pb.GetMessageRequest(
        thread_id=env.thread_id, message_id=env.message_id), metadata=bearer(env.key), timeout=5)
    message = await call
    cache = dict(await call.trailing_metadata()).get("x-cache", "")
    return message.metadata.entries.get("v", ""), str(cache)


async def test_reads_after_a_failed_invalidation_are_fresh_once_redis_is_back(
        emulator: EmulatorServer, tmp_path: Path, proxy: DroppingProxy) -> None:
    prefix = f"mgw-sec-{uuid.uuid4().hex[:10]}:"
    cache = {"backend": "redis", "redis_url": proxy.url, "redis_key_prefix": prefix,
             "redis_breaker_seconds": 0.3, "get_message_ttl_seconds": 60.0,
             "redis_op_timeout_seconds": 0.3}  # generous: the machine may be loaded
    try:
        async with secured(emulator, tmp_path, cache=cache) as env:
            await env.stub.UpdateMessage(pb.UpdateMessageRequest(
                thread_id=env.thread_id, message_id=env.message_id,
                metadata=pb.Metadata(entries={"v": "1"})), metadata=bearer(env.key), timeout=5)
            assert (await _get(env))[0] == "1"
            assert await _get(env) == ("1", "hit")

            proxy.paused = True
            with structlog.testing.capture_logs() as logs:
                await env.stub.UpdateMessage(pb.UpdateMessageRequest(
                    thread_id=env.thread_id, message_id=env.message_id,
                    metadata=pb.Metadata(entries={"v": "2"})), metadata=bearer(env.key),
                    timeout=5)
            assert any(e["event"] == "cache_invalidation_failed" for e in logs)
            assert (await _get(env))[0] == "2"  # Redis unreachable: straight to the upstream
            await asyncio.sleep(0.3)
            proxy.paused = False

            seen = []
            deadline = time.monotonic() + 2.5  # well past the breaker, far short of the TTL
            while time.monotonic() < deadline:
                seen.append(await _get(env))
                await asyncio.sleep(0.1)
            assert {v for v, _ in seen} == {"2"}, seen
            assert ("2", "hit") in seen  # and the cache works again
            assert await env.consumer_ok() and await env.health_ok()
    finally:
        client = redis.Redis(*proxy._target)  # the real server, past the proxy
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
