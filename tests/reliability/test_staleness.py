"""R4: how stale a cached read can be, end to end, memory and Redis backends.

Behind the gateway's back (the emulator's store changed directly, as another writer of the same
upstream would) a change shows once the entry's TTL has run out; written through the gateway it
shows on the very next read, on every replica sharing Redis. The figure is the measured maximum
staleness (printed with ``-s``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest
import redis

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2_grpc as pb_grpc
from gateway.app import start_gateway
from gateway.config import CacheSettings
from gateway.emulator.server import EmulatorServer
from tests.cache.conftest import redis_address  # noqa: F401 - the real Redis fixture
from tests.conftest import gateway_settings
from tests.reliability.conftest import scale

TTL = 1.0
POLL = 0.05


@pytest.fixture(params=["memory", "redis"])
def cache(request: pytest.FixtureRequest, redis_address: tuple[str, int]  # noqa: F811
          ) -> Iterator[CacheSettings]:
    prefix = f"mgw-r4-{uuid.uuid4().hex[:10]}:"
    host, port = redis_address
    # A generous op timeout: this test is about TTLs, not about a slow Redis (test_redis_faults).
    yield CacheSettings(backend=request.param, redis_url=f"redis://{host}:{port}/0",
                        redis_key_prefix=prefix, redis_op_timeout_seconds=1.0,
                        get_message_ttl_seconds=TTL, list_messages_ttl_seconds=TTL)
    client = redis.Redis(host, port)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
async def stubs(emulator: EmulatorServer, cache: CacheSettings
                ) -> AsyncIterator[list[pb_grpc.MessagesServiceStub]]:
    """Two gateways (replicas) on the same cache settings: shared with Redis, one each in
    memory (the write-through bound is then per replica, as docs/caching.md says)."""
    settings = dataclasses.replace(gateway_settings(emulator), cache=cache)
    gateways = [await start_gateway(settings) for _ in range(2)]
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{gw.grpc_port}") for gw in gateways]
    try:
        yield [pb_grpc.MessagesServiceStub(ch) for ch in channels]
    finally:
        for ch in channels:
            await ch.close()
        for gw in gateways:
            await gw.stop(grace=0.2)


async def read_with_cache(call: Any) -> tuple[Any, str]:
    reply = await call
    return reply, str(dict(await call.trailing_metadata()).get("x-cache", ""))


async def until_visible(read: Any, visible: Any, started: float) -> float:
    """Seconds from ``started`` until ``visible(read())`` (bounded: 5 TTLs)."""
    while time.monotonic() - started < 5 * TTL:
        if visible(await read()):
            return time.monotonic() - started
        await asyncio.sleep(POLL)
    raise AssertionError("never visible")


async def test_change_behind_the_gateways_back_visible_within_the_ttl(
        emulator: EmulatorServer, stubs: list[pb_grpc.MessagesServiceStub]) -> None:
    stub = stubs[0]
    thread_id = emulator.store.create_thread()["id"]
    emulator.store.seed_messages(thread_id, 3)
    message_id = emulator.store.message_ids(thread_id)[0]
    page = pb.ListMessagesRequest(thread_id=thread_id, limit=5)
    get = pb.GetMessageRequest(thread_id=thread_id, message_id=message_id)
    worst = {"list": 0.0, "get": 0.0}
    for round_ in range(scale(10, 3)):
        await stub.ListMessages(page, timeout=5)
        _, cached = await read_with_cache(stub.ListMessages(page, timeout=5))
        assert cached == "hit"  # the head page is served from the cache
        await stub.GetMessage(get, timeout=5)
        started = time.monotonic()
        new = emulator.store.create_message(thread_id, role="user", content=f"behind {round_}")
        emulator.store.modify_message(thread_id, message_id, metadata={"round": str(round_)})
        staleness = await until_visible(
            lambda: stub.ListMessages(page, timeout=5),
            lambda reply: reply.data[0].id == new["id"], started)
        worst["list"] = max(worst["list"], staleness)
        staleness = await until_visible(
            lambda: stub.GetMessage(get, timeout=5),
            lambda reply: reply.metadata.entries.get("round") == str(round_), started)
        worst["get"] = max(worst["get"], staleness)
    print(f"R4 behind the back: max staleness list {worst['list'] * 1000:.0f} ms, "
          f"get {worst['get'] * 1000:.0f} ms (TTL {TTL * 1000:.0f} ms)")
    assert max(worst.values()) <= TTL + POLL + 0.25  # the TTL, one poll, scheduling
    assert max(worst.values()) > 0.0


async def test_change_through_the_gateway_visible_on_the_next_read(
        emulator: EmulatorServer, stubs: list[pb_grpc.MessagesServiceStub],
        cache: CacheSettings) -> None:
    writer = stubs[0]
    # Redis: every replica sees the write at once; memory: the replica that wrote.
    readers = stubs if cache.backend == "redis" else stubs[:1]
    thread_id = emulator.store.create_thread()["id"]
    emulator.store.seed_messages(thread_id, 3)
    message_id = emulator.store.message_ids(thread_id)[0]
    page = pb.ListMessagesRequest(thread_id=thread_id, limit=5)
    get = pb.GetMessageRequest(thread_id=thread_id, message_id=message_id)
    fresh = 0
    rounds = scale(20, 5)
    for round_ in range(rounds):
        for reader in readers:  # warm: the next reads would be hits
            await reader.ListMessages(page, timeout=5)
            await reader.GetMessage(get, timeout=5)
        created = await writer.CreateMessage(pb.CreateMessageRequest(
            thread_id=thread_id, role=pb.ROLE_USER, content=f"through {round_}"), timeout=5)
        await writer.UpdateMessage(pb.UpdateMessageRequest(
            thread_id=thread_id, message_id=message_id,
            metadata=pb.Metadata(entries={"round": str(round_)})), timeout=5)
        for reader in readers:
            listed = await reader.ListMessages(page, timeout=5)
            got = await reader.GetMessage(get, timeout=5)
            fresh += (listed.data[0].id == created.id
                      and got.metadata.entries.get("round") == str(round_))
    print(f"R4 through the gateway: {fresh}/{rounds * len(readers)} next reads fresh "
          f"(staleness 0)")
    assert fresh == rounds * len(readers)
