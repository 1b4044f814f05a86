"""R6: health says whether this process can serve, not whether its dependencies are well.

With the upstream failing (5xx until the circuit opens), Redis blackholed, or both, every
``Health/Check`` stays SERVING and an open ``Watch`` sees no transition (a balancer must not pull
every replica out for an upstream outage they all share, and the cache fails open); the drain is
the one transition to NOT_SERVING (docs/observability.md, the health table).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from gateway.emulator.server import EmulatorServer
from gateway.rpc.server import SERVICE_NAME
from tests.cache.conftest import redis_address  # noqa: F401 - the real Redis fixture
from tests.cache.proxy import TcpProxy
from tests.credentials.helpers import bearer
from tests.reliability.conftest import scale
from tests.security.conftest import OWN_CONNECTION, Secured, secured

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture
async def proxy(redis_address: tuple[str, int]) -> AsyncIterator[TcpProxy]:  # noqa: F811
    p = TcpProxy(*redis_address)
    await p.start()
    try:
        yield p
    finally:
        await p.close()


async def checks(env: Secured, n: int) -> list[int]:
    """``n`` Checks of the overall and the consumer service, each on a connection of its own
    (as a kubelet probe or a balancer would ask)."""
    statuses = []
    for i in range(n):
        async with grpc.aio.insecure_channel(env.target, options=OWN_CONNECTION) as ch:
            service = "" if i % 2 else SERVICE_NAME
            reply = await health_pb2_grpc.HealthStub(ch).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=2)
            statuses.append(reply.status)
    return statuses


async def calls(env: Secured, n: int) -> list[Any]:
    """Consumer calls meanwhile (they fail or succeed; health must not follow them)."""
    out: list[Any] = []
    for _ in range(n):
        try:
            out.append(await env.stub.GetMessage(pb.GetMessageRequest(
                thread_id=env.thread_id, message_id=env.message_id),
                metadata=bearer(env.key), timeout=2))
        except grpc.aio.AioRpcError as err:
            out.append(err.code())
    return out


async def test_health_serving_while_upstream_and_redis_break_not_serving_only_on_drain(
        emulator: EmulatorServer, tmp_path: Path, proxy: TcpProxy,
        redis_address: tuple[str, int]) -> None:  # noqa: F811
    n = scale(50, 10)
    prefix = f"mgw-r6-{uuid.uuid4().hex[:10]}:"
    cache = {"backend": "redis", "redis_url": proxy.url, "redis_key_prefix": prefix}
    try:
        async with secured(emulator, tmp_path, cache=cache,
                           reliability={"circuit_open_seconds": 0.3}) as env:
            watches = [health_pb2_grpc.HealthStub(env.channel).Watch(
                health_pb2.HealthCheckRequest(service=s)) for s in ("", SERVICE_NAME)]
            seen: list[list[int]] = [[], []]

            async def follow(i: int) -> None:
                async for reply in watches[i]:
                    seen[i].append(reply.status)

            followers = [asyncio.ensure_future(follow(i)) for i in range(2)]
            phases: dict[str, list[int]] = {"healthy": await checks(env, n)}

            rule = emulator.faults.add("*", "status", status=503)
            outcomes = await calls(env, 6)  # enough to open the circuit
            assert grpc.StatusCode.UNAVAILABLE in outcomes
            phases["upstream 503, circuit open"] = await checks(env, n)

            proxy.dropping = True
            phases["upstream 503 and Redis blackholed"] = await checks(env, n)
            emulator.faults.remove(rule.id)
            await asyncio.sleep(0.4)  # the circuit's open time passes: calls reach upstream
            # Served again with Redis still blackholed (the cache fails open).
            assert all(isinstance(r, pb.Message) for r in await calls(env, 3))
            phases["Redis blackholed"] = await checks(env, n)
            proxy.dropping = False

            await env.gateway.grpc.drain(grace=0.5)
            await asyncio.wait_for(asyncio.gather(*followers, return_exceptions=True), 5)
    finally:
        client = redis.Redis(*redis_address)
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()

    broken = [s for name, statuses in phases.items() if name != "healthy" for s in statuses]
    print(f"R6: {broken.count(SERVING)}/{len(broken)} checks SERVING while broken; "
          f"Watch transitions {seen}")
    assert {name: set(statuses) for name, statuses in phases.items()} == {
        name: {SERVING} for name in phases}
    # The one transition each Watch saw: SERVING at the start, NOT_SERVING at the drain.
    assert seen == [[SERVING, NOT_SERVING], [SERVING, NOT_SERVING]]
