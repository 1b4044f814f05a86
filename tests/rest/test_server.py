"""uvicorn in the gateway's loop: started only when configured, stopped gracefully."""

from __future__ import annotations

import asyncio

import httpx

from gateway.app import start_gateway
from gateway.emulator.server import EmulatorServer
from tests.conftest import gateway_settings
from tests.rest.conftest import BETA, new_thread, rest_settings


async def test_gateway_without_http_listen_has_no_http_face(emulator: EmulatorServer) -> None:
    gw = await start_gateway(gateway_settings(emulator))
    try:
        assert gw.http is None and gw.http_port == 0
    finally:
        await gw.stop(grace=0.5)


async def test_stop_lets_in_flight_request_finish_then_refuses_connections(
    emulator: EmulatorServer,
) -> None:
    gw = await start_gateway(rest_settings(emulator))
    thread_id = await new_thread(emulator)
    emulator.store.seed_messages(thread_id, 1)
    emulator.faults.set_latency("listMessages", 0.4)
    url = f"http://127.0.0.1:{gw.http_port}/v1/threads/{thread_id}/messages"
    async with httpx.AsyncClient(headers=BETA) as client:
        in_flight = asyncio.create_task(client.get(url))
        await asyncio.sleep(0.15)  # the request is waiting on the upstream
        await gw.stop(grace=3.0)
        response = await in_flight
        assert response.status_code == 200 and len(response.json()["data"]) == 1
    async with httpx.AsyncClient(headers=BETA) as fresh:
        try:
            await fresh.get(url)
            refused = False
        except httpx.ConnectError:
            refused = True
    assert refused
