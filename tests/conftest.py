"""Shared fixtures: a real emulator and a real gateway on loopback ports, per test."""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import AsyncIterator, Iterator

# Before grpc is imported: grpc core's fork handlers, run in a child that this process forks while
# its own gRPC threads are busy, crashed that child before it could exec (a gateway "exited -11 at
# start" with nothing on its stderr, 2 runs in 22 of tests/reliability/test_shutdown.py; 0 in 42
# without them). Every child here execs a new interpreter, which needs none of those handlers.
# Only the test process: `python -m tests.reliability.soak` and the benches run as shipped.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import grpc  # noqa: E402
import pytest

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2_grpc as pb_grpc
from gateway.app import Gateway, start_gateway
from gateway.config import Settings, ServerSettings, UpstreamSettings
from gateway.emulator.server import EmulatorServer
from gateway.loop import LOOP_FACTORIES

EMULATOR_KEY = "sk-emulator-test-key"

#: The loop every async test (and the gateway it starts in-process) runs on: the server's default,
#: or PYTEST_EVENT_LOOP (``asyncio`` / ``uvloop``).
TEST_EVENT_LOOP = os.environ.get("PYTEST_EVENT_LOOP") or ServerSettings().event_loop


#: Tests between full collections of this process's heap (run between tests, never inside one).
FULL_COLLECTION_EVERY = 200
_tests_run = 0


@pytest.fixture(autouse=True)
def earlier_tests_heap_frozen() -> Iterator[None]:
    """What the collection and earlier tests left in this process is out of the cyclic
    collector's sight while a test runs (``gc.freeze``): a full collection over a whole suite's
    heap (measured 0.5 s of the loop's CPU after ~1,500 tests) otherwise lands inside whichever
    test allocates at that moment; a gateway process has no such heap. (R5's 0.5 s refusal bound,
    tests/reliability/test_pool_exhaustion.py, read 0.62 s once in a whole run, 0.06-0.07 s
    alone.) What a test makes is collected as usual; its leftovers after it, and every
    ``FULL_COLLECTION_EVERY`` tests the whole heap, between tests."""
    global _tests_run
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
        _tests_run += 1
        gc.collect(2 if _tests_run % FULL_COLLECTION_EVERY == 0 else 1)


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, object]:
    return {TEST_EVENT_LOOP: LOOP_FACTORIES[TEST_EVENT_LOOP]}


@pytest.fixture
async def emulator() -> AsyncIterator[EmulatorServer]:
    server = EmulatorServer(api_keys={EMULATOR_KEY})
    await server.start(host="127.0.0.1", port=0)
    try:
        yield server
    finally:
        await server.stop()


def gateway_settings(emulator: EmulatorServer, **upstream: object) -> Settings:
    return Settings(
        server=ServerSettings(grpc_listen="127.0.0.1:0", grace_seconds=1.0),
        upstream=UpstreamSettings(base_url=emulator.base_url, api_key=EMULATOR_KEY,
                                  **upstream),  # type: ignore[arg-type]
    )


@pytest.fixture
async def gateway(emulator: EmulatorServer) -> AsyncIterator[Gateway]:
    gw = await start_gateway(gateway_settings(emulator))
    try:
        yield gw
    finally:
        await gw.stop(grace=0.5)


@pytest.fixture
async def channel(gateway: Gateway) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.grpc_port}") as ch:
        yield ch


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> pb_grpc.MessagesServiceStub:
    return pb_grpc.MessagesServiceStub(channel)


@contextlib.asynccontextmanager
async def gateway_stub(settings: Settings) -> AsyncIterator[pb_grpc.MessagesServiceStub]:
    """A gateway with non-default settings and a stub talking to it, for one test."""
    gw = await start_gateway(settings)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.grpc_port}") as ch:
            yield pb_grpc.MessagesServiceStub(ch)
    finally:
        await gw.stop(grace=0.1)
