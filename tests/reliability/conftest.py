"""The reliability harness: a real emulator and a gateway with test-sized reliability settings,
a leak check every fault test ends with, and the "N of N faults survived" summary."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import psutil
import pytest

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2_grpc as pb_grpc
from gateway.app import Gateway, start_gateway
from gateway.config import (
    CacheSettings,
    ReliabilitySettings,
    ServerSettings,
    Settings,
    UpstreamSettings,
)
from gateway.emulator.server import EmulatorServer
from gateway.upstream.transport import AiohttpTransport
from gateway.upstream.transport_h1 import H1Transport
from tests.conftest import EMULATOR_KEY

#: Short backoffs and a quick circuit so the suite stays fast; the logic is the production one.
TEST_RELIABILITY = {"initial_backoff_seconds": 0.01, "max_backoff_seconds": 0.05,
                    "circuit_open_seconds": 0.3}

#: `make stress` (RELIABILITY_STRESS=1) runs the load rows of the fault plan at the plan's full
#: scale; `make test` runs the same code at a scale that fits CI's time and still covers each path.
STRESS = os.environ.get("RELIABILITY_STRESS") == "1"


def scale(full: int, ci: int) -> int:
    """A count (calls, streams, steps, seconds) for the current run: the plan's under `make
    stress`, the CI-sized one otherwise."""
    return full if STRESS else ci


#: Tasks that are not per-request work: the emulator's idle keep-alive connections (their number
#: is the gateway's pool, bounded by max_keepalive_connections).
POOLED_TASKS = ("RequestHandler.start",)


def live_tasks() -> set[asyncio.Task[Any]]:
    return {t for t in asyncio.all_tasks()
            if getattr(t.get_coro(), "__qualname__", "") not in POOLED_TASKS}


FAULT_FILES = ("tests/reliability/test_faults.py",)
_outcomes: dict[str, bool] = {}
#: What the load, cancellation and shutdown rows measured (the plan's "figure" column), printed
#: at the end of the run.
_figures: list[str] = []


def record_figure(row: str, text: str) -> None:
    _figures.append(f"{row}: {text}")


def rss_bytes() -> int:
    """This process's resident set (gRPC core's native allocations included, which tracemalloc
    cannot see), after a collection and, on glibc, ``malloc_trim``: freed heap pages go back to
    the system, so what is counted is live memory rather than the heap's high-water mark."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    return int(psutil.Process().memory_info().rss)


def pool_in_use(gateway: Gateway) -> int:
    """Upstream connections checked out of the gateway's pool, plus requests queued for one.
    The httptools transport counts both; the others keep them in their pools' attributes."""
    transport = gateway.upstream._http.transport  # noqa: SLF001
    if isinstance(transport, H1Transport):
        return transport.connections_in_use + transport.requests_waiting
    if isinstance(transport, AiohttpTransport):
        session = transport._session  # noqa: SLF001
        return 0 if session is None else len(session.connector._acquired)  # noqa: SLF001
    assert isinstance(transport, httpx.AsyncHTTPTransport)
    pool = transport._pool  # noqa: SLF001
    return len(pool._requests) + sum(  # noqa: SLF001
        1 for c in pool.connections if not c.is_idle() and not c.is_closed())


@dataclass
class Harness:
    emulator: EmulatorServer
    gateway: Gateway
    channel: grpc.aio.Channel
    stub: pb_grpc.MessagesServiceStub
    baseline_tasks: int

    async def thread(self, messages: int = 0) -> str:
        thread = self.emulator.store.create_thread()
        if messages:
            self.emulator.store.seed_messages(thread["id"], messages)
        return str(thread["id"])

    async def assert_clean(self) -> None:
        """Nothing left behind: no upstream request in flight, no admission slot held, no
        upstream connection checked out, no task beyond the baseline after a short settle."""
        assert await self.emulator.log.wait_idle(3.0), "upstream request left in flight"
        assert self.gateway.upstream.admission.in_use == 0
        deadline = time.monotonic() + 3.0
        while ((len(live_tasks()) > self.baseline_tasks or pool_in_use(self.gateway))
               and time.monotonic() < deadline):
            await asyncio.sleep(0.02)
        assert pool_in_use(self.gateway) == 0, "upstream connection left checked out"
        extra = len(live_tasks()) - self.baseline_tasks
        assert extra <= 0, f"{extra} asyncio task(s) left behind: {live_tasks()}"


HarnessFactory = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def make_harness(emulator: EmulatorServer) -> AsyncIterator[HarnessFactory]:
    opened: list[Harness] = []

    async def make(*, server: dict[str, Any] | None = None,
                   upstream: dict[str, Any] | None = None, **reliability: Any) -> Harness:
        settings = Settings(
            server=ServerSettings(grpc_listen="127.0.0.1:0", grace_seconds=1.0, **(server or {})),
            upstream=UpstreamSettings(base_url=emulator.base_url, api_key=EMULATOR_KEY,
                                      **(upstream or {})),
            reliability=ReliabilitySettings(**{**TEST_RELIABILITY, **reliability}),
            # Off: these tests count upstream attempts, which cache hits would hide.
            cache=CacheSettings(backend="off"),
        )
        gw = await start_gateway(settings)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{gw.grpc_port}")
        stub = pb_grpc.MessagesServiceStub(channel)
        # Warm up the channel and the upstream pool, so their long-lived tasks are the baseline.
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.GetMessage(pb.GetMessageRequest(thread_id="thread_warm", message_id="m"))
        await emulator.log.wait_idle()
        emulator.log.clear()
        harness = Harness(emulator, gw, channel, stub, len(live_tasks()))
        opened.append(harness)
        return harness

    yield make
    for harness in opened:
        await harness.channel.close()
        await harness.gateway.stop(grace=0.5)


@pytest.fixture
async def harness(make_harness: HarnessFactory) -> Harness:
    return await make_harness()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if not report.nodeid.startswith(FAULT_FILES):
        return
    if report.when == "call" or (report.when == "setup" and report.failed):
        _outcomes[report.nodeid] = report.passed
    elif report.when == "teardown" and report.failed:
        _outcomes[report.nodeid] = False


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _outcomes:
        survived = sum(_outcomes.values())
        terminalreporter.write_line(f"{survived} of {len(_outcomes)} faults survived")
    for line in _figures:
        terminalreporter.write_line(line)
