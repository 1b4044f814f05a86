"""Client fixtures: a real gateway and emulator on loopback (tests/conftest.py) plus helpers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from messages_gateway_client import AsyncMessagesGatewayClient
from gateway.app import Gateway
from gateway.emulator.server import EmulatorServer

#: Per-page upstream latency in the resume tests: long enough that a fault armed after the
#: first page arrives hits a later page fetch, never one that already left.
PAGE_LATENCY = 0.1


@pytest.fixture
def target(gateway: Gateway) -> str:
    return f"127.0.0.1:{gateway.grpc_port}"


@pytest.fixture
async def aclient(target: str) -> AsyncIterator[AsyncMessagesGatewayClient]:
    async with AsyncMessagesGatewayClient(target, timeout=10.0) as client:
        yield client


def new_thread(emulator: EmulatorServer, count: int = 0) -> tuple[str, list[str]]:
    """A thread with ``count`` messages; returns its id and the message ids, oldest first."""
    thread_id = str(emulator.store.create_thread()["id"])
    return thread_id, emulator.store.seed_messages(thread_id, count) if count else []


def arm_mid_stream_failure(emulator: EmulatorServer) -> None:
    """The next upstream list page answers 503. ``should_retry=False`` (x-should-retry: false)
    keeps any upstream retry policy in the gateway from absorbing it: the stream must break."""
    emulator.faults.add("listMessages", "status", status=503, should_retry=False, times=1)
