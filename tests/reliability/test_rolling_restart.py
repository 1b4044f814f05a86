"""A rolling restart of one of two gateways under load, with ``max_connection_age`` set.

The typed client balances round robin over both (what the headless Service gives it), each behind
a counting TCP proxy. While unary calls run and one stream walks a long thread, gateway A drains
(NOT_SERVING for the drain delay: the client's health checking moves new calls to B; without it a
call sent in the instant the listener closes ended CANCELLED) and a new A starts on its port: no unary call fails, the stream completes (resumed from its last
item when its connection went), and new connections reach both gateways afterwards.
"""

from __future__ import annotations

import asyncio

from messages_gateway_client import AsyncMessagesGatewayClient
from gateway.app import Gateway, start_gateway
from gateway.config import Settings
from tests.clients.conftest import new_thread
from tests.conftest import gateway_settings
from tests.rpc.test_server import CountingProxy

LOAD_SECONDS = 3.0


def aged(settings: Settings, port: int = 0) -> Settings:
    return settings.replace("server", grpc_listen=f"127.0.0.1:{port}",
                            max_connection_age_seconds=0.7,
                            max_connection_age_grace_seconds=2.0, grace_seconds=2.0,
                            drain_delay_seconds=0.3)


async def test_rolling_restart_fails_no_unary_call_and_the_stream_completes(emulator) -> None:
    settings = gateway_settings(emulator)
    a: Gateway = await start_gateway(aged(settings))
    b: Gateway = await start_gateway(aged(settings))
    proxies = [CountingProxy(a.grpc_port), CountingProxy(b.grpc_port)]
    for proxy in proxies:
        await proxy.start()
    thread_id, ids = new_thread(emulator, 60)
    # 100 ms per page of 5: the walk of 12 pages is under way when A drains.
    emulator.faults.add("listMessages", "latency", seconds=0.1, times=100)
    target = "ipv4:" + ",".join(f"127.0.0.1:{p.port}" for p in proxies)
    failures: list[BaseException] = []
    answered = 0
    new_a: Gateway | None = None
    try:
        async with AsyncMessagesGatewayClient(target, timeout=10) as client:
            async def unary_load() -> None:
                nonlocal answered
                end = asyncio.get_running_loop().time() + LOAD_SECONDS
                while asyncio.get_running_loop().time() < end:
                    try:
                        got = await client.messages.retrieve(ids[0], thread_id=thread_id,
                                                             extra_headers=None)
                        assert got.id == ids[0]
                        answered += 1
                    except Exception as exc:  # noqa: BLE001 - every failure is the finding
                        failures.append(exc)
                    await asyncio.sleep(0.005)

            async def stream() -> list[str]:
                return [m.id async for m in client.messages.list(thread_id, limit=5,
                                                                 order="asc")]

            load = [asyncio.ensure_future(unary_load()) for _ in range(4)]
            walk = asyncio.ensure_future(stream())
            await asyncio.sleep(0.5)
            before = proxies[0].accepted
            await a.stop(grace=2.0)  # SIGTERM's path: NOT_SERVING, streams end, grace
            new_a = await start_gateway(aged(settings, a.grpc_port))
            await asyncio.gather(*load)
            walked = await walk
    finally:
        for proxy in proxies:
            await proxy.close()
        await b.stop(grace=0.5)
        if new_a is not None:
            await new_a.stop(grace=0.5)
    assert failures == []
    assert answered >= 40
    assert walked == ids  # complete, in order, nothing repeated
    assert proxies[0].accepted > before and proxies[1].accepted >= 2  # both reached again
