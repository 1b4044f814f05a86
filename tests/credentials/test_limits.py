"""Limits: local token bucket and, with real Redis, limits shared by two gateway instances."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
import redis.asyncio as aioredis

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2_grpc as pb_grpc
from gateway.app import start_gateway
from gateway.credentials.limits import LocalLimits, RateLimit, RedisLimits, peer_address
from tests.credentials.helpers import add_consumer, auth_settings, bearer
from tests.rpc.test_messages_service import new_thread

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    value = f"mgw-test:{uuid.uuid4().hex}:"
    yield value
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        keys = [k async for k in client.scan_iter(match=f"{value}*", count=100)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def test_peer_address_drops_the_port() -> None:
    assert peer_address("ipv4:10.0.0.1:5123") == "10.0.0.1"
    assert peer_address("ipv6:[::1]:5123") == "::1"
    assert peer_address("unix:/tmp/s") == "unix:/tmp/s"


async def test_local_limits_stream_slots_released() -> None:
    limits = LocalLimits(0, 60.0)
    limit = RateLimit(0.0, 0, 2)
    leases = [await limits.open_stream("c", limit, 10.0) for _ in range(3)]
    assert leases[0] and leases[1] and leases[2] is None
    await limits.close_stream("c", leases[0])
    assert await limits.open_stream("c", limit, 10.0) is not None


@pytest.mark.redis
async def test_redis_limits_bucket_and_streams_shared_between_instances(prefix: str) -> None:
    one = RedisLimits(REDIS_URL, prefix, 3, 60.0)
    two = RedisLimits(REDIS_URL, prefix, 3, 60.0)
    try:
        limit = RateLimit(0.01, 2, 1)
        assert await one.take("c", limit) is None
        assert await two.take("c", limit) is None
        wait = await one.take("c", limit)
        assert wait is not None and 50 < wait <= 100
        lease = await one.open_stream("c", limit, 30.0)
        assert lease is not None and await two.open_stream("c", limit, 30.0) is None
        await one.close_stream("c", lease)
        assert await two.open_stream("c", limit, 30.0) is not None
        for _ in range(2):
            await one.failed("10.9.9.9")
        await two.failed("10.9.9.9")  # the third failure, counted in Redis, blocks here
        assert two.peer_blocked("10.9.9.9") is not None
    finally:
        await one.aclose()
        await two.aclose()


async def test_redis_unreachable_limits_fail_open() -> None:
    limits = RedisLimits("redis://127.0.0.1:1/0", "x:", 3, 60.0, timeout=0.2)
    try:
        assert await limits.take("c", RateLimit(1.0, 1, 1)) is None
        assert await limits.open_stream("c", RateLimit(1.0, 1, 1), 5.0) is not None
    finally:
        await limits.aclose()


@pytest.mark.redis
async def test_redis_rate_limit_holds_across_two_gateways(emulator, tmp_path, prefix) -> None:
    path = tmp_path / "s.json"
    key = add_consumer(path, "shared", {"read"}, rate_per_second=0.01, burst=4)
    settings = auth_settings(emulator, path, limits_backend="redis", redis_url=REDIS_URL,
                             redis_prefix=prefix)
    gateways = [await start_gateway(settings), await start_gateway(settings)]
    try:
        thread_id = await new_thread(emulator)
        stubs = []
        channels = [grpc.aio.insecure_channel(f"127.0.0.1:{gw.grpc_port}") for gw in gateways]
        stubs = [pb_grpc.MessagesServiceStub(ch) for ch in channels]
        codes = []
        for i in range(6):
            try:
                await stubs[i % 2].ListMessages(pb.ListMessagesRequest(thread_id=thread_id),
                                                metadata=bearer(key), timeout=5)
                codes.append(grpc.StatusCode.OK)
            except grpc.aio.AioRpcError as err:
                codes.append(err.code())
        # Local buckets would have admitted 4 per instance, i.e. all 6.
        assert codes == [grpc.StatusCode.OK] * 4 + [grpc.StatusCode.RESOURCE_EXHAUSTED] * 2
        for ch in channels:
            await ch.close()
    finally:
        for gw in gateways:
            await gw.stop(grace=0.5)
