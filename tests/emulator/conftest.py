"""Fixtures: an emulator per test (async or in a thread) and clients that talk to it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from gateway.emulator import EmulatorServer, ThreadedEmulator

API_KEY = "sk-emulator-test-key-0123456789"
HEADERS = {"Authorization": f"Bearer {API_KEY}", "OpenAI-Beta": "assistants=v1"}


@pytest.fixture
async def upstream() -> AsyncIterator[EmulatorServer]:
    async with EmulatorServer(api_keys={API_KEY}) as server:
        yield server


@pytest.fixture
async def client(upstream: EmulatorServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=upstream.base_url, headers=HEADERS, timeout=10) as c:
        yield c


@pytest.fixture
async def admin(upstream: EmulatorServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=upstream.admin_url, timeout=10) as c:
        yield c


@pytest.fixture
def threaded() -> Iterator[ThreadedEmulator]:
    """The emulator on its own loop in a thread, for the SDK's blocking client."""
    with ThreadedEmulator(api_keys={API_KEY}) as server:
        yield server
