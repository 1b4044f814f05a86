"""REST fixtures: emulator + gateway (both faces) in the test's loop, or in a background thread
for the SDK's blocking client."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator

import httpx
import openai
import pytest

from gateway.app import Gateway, start_gateway
from gateway.config import Settings
from gateway.emulator.server import EmulatorServer
from tests.conftest import EMULATOR_KEY, gateway_settings

#: The SDK needs some key; the gateway does not check consumer keys until credentials land.
CONSUMER_KEY = "gw-consumer-test-key"
UPSTREAM_HEADERS = {"authorization": f"Bearer {EMULATOR_KEY}", "openai-beta": "assistants=v1"}
BETA = {"openai-beta": "assistants=v1"}


def rest_settings(emulator: EmulatorServer, **upstream: object) -> Settings:
    return gateway_settings(emulator, **upstream).replace("server", http_listen="127.0.0.1:0")


@pytest.fixture
async def rest_gateway(emulator: EmulatorServer) -> AsyncIterator[Gateway]:
    gw = await start_gateway(rest_settings(emulator))
    try:
        yield gw
    finally:
        await gw.stop(grace=0.5)


def base_url(gateway: Gateway) -> str:
    return f"http://127.0.0.1:{gateway.http_port}/v1"


@pytest.fixture
async def http(rest_gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=base_url(rest_gateway), headers=BETA,
                                 timeout=10.0) as client:
        yield client


@pytest.fixture
async def async_sdk(rest_gateway: Gateway) -> AsyncIterator[openai.AsyncOpenAI]:
    async with httpx.AsyncClient() as client:
        yield openai.AsyncOpenAI(api_key=CONSUMER_KEY, base_url=base_url(rest_gateway),
                                 http_client=client, max_retries=0)


async def new_thread(emulator: EmulatorServer) -> str:
    """Threads are not a gateway operation: create them on the emulator directly."""
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{emulator.base_url}/threads", json={},
                                     headers=UPSTREAM_HEADERS)
    response.raise_for_status()
    return str(response.json()["id"])


class GatewayThread:
    """Emulator and gateway on their own event loop in a daemon thread (the store, log and
    faults of the emulator are thread-safe, so the test thread uses them directly)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.emulator = EmulatorServer(api_keys={EMULATOR_KEY})
        self.gateway: Gateway | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, name="gateway-loop",
                                        daemon=True)

    def run(self, coro):  # type: ignore[no-untyped-def]
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10.0)

    def start(self) -> GatewayThread:
        self._thread.start()
        self.run(self.emulator.start("127.0.0.1", 0))

        async def build() -> Gateway:
            return await start_gateway(rest_settings(self.emulator))

        self.gateway = self.run(build())
        return self

    def stop(self) -> None:
        if self.gateway is not None:
            self.run(self.gateway.stop(grace=0.5))
        self.run(self.emulator.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10.0)
        self.loop.close()

    @property
    def base_url(self) -> str:
        assert self.gateway is not None
        return base_url(self.gateway)

    def new_thread(self) -> str:
        return str(self.run(new_thread(self.emulator)))


@pytest.fixture
def threaded() -> Iterator[GatewayThread]:
    running = GatewayThread().start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def sync_sdk(threaded: GatewayThread) -> Iterator[openai.OpenAI]:
    with httpx.Client() as client:
        yield openai.OpenAI(api_key=CONSUMER_KEY, base_url=threaded.base_url, http_client=client,
                            max_retries=0)
