"""Benchmark: server-streamed pagination (issue 8), every figure a ratio measured in this run.

Self-contained: starts its own emulator and gateway in this process on 127.0.0.1:0 and seeds a
10,000-message thread through the emulator store. ``run()`` returns one row per figure:
``name``, ``measured``, ``baseline`` (what the ratio divides by), ``ratio``, ``target``, ``ok``.
Run alone with ``python -m tests.bench.streaming``.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import psutil

from clients.generated.messages_gateway.v1 import messages_pb2 as pb
from clients.generated.messages_gateway.v1 import messages_pb2_grpc as pb_grpc
from gateway.app import start_gateway
from gateway.config import ServerSettings, Settings, UpstreamSettings
from gateway.emulator.server import EmulatorServer

KEY = "sk-bench-streaming"
THREAD = "thread_bench_stream"
MESSAGES = 10_000
PAGE = 100
PAGES = MESSAGES // PAGE
LATENCY = 0.020
CONCURRENT = 200
#: Pages each of the CONCURRENT consumers reads in the memory figure.
MEMORY_PAGES = 10
#: Bounds on every loop: repetitions of a timed measurement and seconds any phase may take.
REPEATS = 3
PHASE_TIMEOUT = 300.0


def row(name: str, measured: str, baseline: str, ratio: float, target: str, ok: bool) -> dict[str, Any]:
    return {"name": name, "measured": measured, "baseline": baseline, "ratio": round(ratio, 3),
            "target": target, "ok": ok}


async def stream_all(stub: pb_grpc.MessagesServiceStub) -> tuple[int, float, float]:
    """Items, seconds to the first page, seconds for the whole stream."""
    started = time.perf_counter()
    first = 0.0
    items = 0
    async for page in stub.StreamMessages(pb.StreamMessagesRequest(
            thread_id=THREAD, limit=PAGE, order=pb.ORDER_ASC), timeout=PHASE_TIMEOUT):
        if not items:
            first = time.perf_counter() - started
        items += len(page.data)
    return items, first, time.perf_counter() - started


async def page_unary(stub: pb_grpc.MessagesServiceStub) -> tuple[int, float, float]:
    """The baseline consumer: pages through ListMessages itself, one call after the other."""
    started = time.perf_counter()
    first = 0.0
    items = 0
    after = ""
    for _ in range(PAGES + 1):
        page = await stub.ListMessages(pb.ListMessagesRequest(
            thread_id=THREAD, limit=PAGE, order=pb.ORDER_ASC, after=after), timeout=30)
        if not items:
            first = time.perf_counter() - started
        items += len(page.data)
        if not page.has_more:
            break
        after = page.last_id
    return items, first, time.perf_counter() - started


async def best_of(measure: Callable[[], Awaitable[tuple[int, float, float]]]) -> tuple[int, float, float]:
    results = [await measure() for _ in range(REPEATS)]
    for items, _, _ in results:
        if items != MESSAGES:
            raise RuntimeError(f"streamed {items} messages, expected {MESSAGES}")
    return min(results, key=lambda r: r[2])


async def latency_rows(stub: pb_grpc.MessagesServiceStub, emulator: EmulatorServer) -> list[dict[str, Any]]:
    emulator.faults.set_latency("listMessages", LATENCY)
    try:
        _, first, whole = await best_of(lambda: stream_all(stub))
        _, _, unary = await best_of(lambda: page_unary(stub))
    finally:
        emulator.faults.set_latency("listMessages", 0)
    ideal = PAGES * LATENCY
    return [
        row("stream 10k msgs, 20 ms/page: whole stream / (pages x 20 ms)",
            f"{whole * 1000:.0f} ms", f"{ideal * 1000:.0f} ms", whole / ideal, "<= 1.05",
            whole / ideal <= 1.05),
        row("stream 10k msgs, 20 ms/page: first page / one page's latency",
            f"{first * 1000:.1f} ms", f"{LATENCY * 1000:.0f} ms", first / LATENCY, "<= 1.2",
            first / LATENCY <= 1.2),
        row("unary ListMessages paging, 20 ms/page (reference) / (pages x 20 ms)",
            f"{unary * 1000:.0f} ms", f"{ideal * 1000:.0f} ms", unary / ideal, "-", True),
    ]


async def throughput_rows(stub: pb_grpc.MessagesServiceStub) -> list[dict[str, Any]]:
    _, _, stream = await best_of(lambda: stream_all(stub))
    _, _, unary = await best_of(lambda: page_unary(stub))
    stream_rate, unary_rate = MESSAGES / stream, MESSAGES / unary
    return [row("messages/s, no added latency: StreamMessages / unary ListMessages paging",
                f"{stream_rate:,.0f} msg/s", f"{unary_rate:,.0f} msg/s", stream_rate / unary_rate,
                ">= 1.0", stream_rate >= unary_rate)]


class PeakRss:
    """Samples this process's RSS every 10 ms while active (native memory included: grpc core
    allocations are invisible to tracemalloc)."""

    def __init__(self) -> None:
        self._proc = psutil.Process()
        self.peak = 0
        self._task: asyncio.Task[None] | None = None

    def now(self) -> int:
        return int(self._proc.memory_info().rss)

    async def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, self.now())
            await asyncio.sleep(0.01)

    def __enter__(self) -> PeakRss:
        self.peak = self.now()
        self._task = asyncio.get_running_loop().create_task(self._sample())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        self.peak = max(self.peak, self.now())


async def concurrent_rss(work: Callable[[], Awaitable[Any]]) -> int:
    """RSS growth (bytes) while ``CONCURRENT`` copies of ``work`` run at once."""
    gc.collect()
    with PeakRss() as rss:
        base = rss.now()
        await asyncio.wait_for(asyncio.gather(*(work() for _ in range(CONCURRENT))), PHASE_TIMEOUT)
    return rss.peak - base


async def memory_rows(stub: pb_grpc.MessagesServiceStub, emulator: EmulatorServer,
                      channel_target: str) -> list[dict[str, Any]]:
    page_bytes = (await stub.ListMessages(pb.ListMessagesRequest(
        thread_id=THREAD, limit=PAGE, order=pb.ORDER_ASC))).ByteSize()

    async def one_stream() -> None:
        # Every stream reads MEMORY_PAGES pages and then cancels: 200 streams of the thread open
        # at once in steady state, bounded in time (the whole thread 200 times is 2M messages).
        call = stub.StreamMessages(pb.StreamMessagesRequest(
            thread_id=THREAD, limit=PAGE, order=pb.ORDER_ASC), timeout=PHASE_TIMEOUT)
        for _ in range(MEMORY_PAGES):
            page = await call.read()
            if page is grpc.aio.EOF or len(page.data) != PAGE:
                raise RuntimeError("a concurrent stream ended early")
        call.cancel()

    async def one_pager() -> None:
        after = ""
        for _ in range(MEMORY_PAGES):
            page = await stub.ListMessages(pb.ListMessagesRequest(
                thread_id=THREAD, limit=PAGE, order=pb.ORDER_ASC, after=after), timeout=30)
            if len(page.data) != PAGE:
                raise RuntimeError("a concurrent pager ended early")
            after = page.last_id

    # The unary pagers run first so the stream figure cannot profit from memory they grew.
    unary_growth = await concurrent_rss(one_pager)
    stream_growth = await concurrent_rss(one_stream)
    per_stream = stream_growth / CONCURRENT

    # A slow consumer (reads a page, then waits 20 ms), default channel options: everything
    # fetched from the upstream and not yet read sits somewhere between the two - the gateway's
    # one prefetched page, the page being written, gRPC/HTTP/2 buffers.
    async with grpc.aio.insecure_channel(channel_target) as channel:
        slow = pb_grpc.MessagesServiceStub(channel)
        emulator.log.clear()
        call = slow.StreamMessages(pb.StreamMessagesRequest(
            thread_id=THREAD, limit=PAGE, order=pb.ORDER_ASC), timeout=PHASE_TIMEOUT)
        read = 0
        peak_ahead = 0
        async for _ in call:
            read += 1
            await asyncio.sleep(0.02)
            peak_ahead = max(peak_ahead, emulator.log.count("listMessages") - read)
            if read >= 40:
                call.cancel()
                break
    buffered = peak_ahead * page_bytes
    return [
        row(f"RSS growth, {CONCURRENT} concurrent streams ({MEMORY_PAGES} pages each) / "
            "same with unary paging",
            f"{stream_growth / 2**20:.1f} MiB ({per_stream / 1024:.0f} KiB/stream)",
            f"{unary_growth / 2**20:.1f} MiB", stream_growth / max(unary_growth, 1), "-", True),
        row("RSS growth per concurrent stream / one page (protobuf bytes)",
            f"{per_stream / 1024:.0f} KiB", f"{page_bytes / 1024:.0f} KiB",
            per_stream / page_bytes, "-", True),
        row("slow consumer: peak bytes fetched but unread / one page",
            f"{buffered / 1024:.0f} KiB ({peak_ahead} pages)", f"{page_bytes / 1024:.0f} KiB",
            peak_ahead, "-", True),
    ]


async def run() -> list[dict[str, Any]]:
    emulator = EmulatorServer(api_keys={KEY})
    await emulator.start(host="127.0.0.1", port=0)
    gateway = None
    try:
        emulator.store.create_thread(thread_id=THREAD)
        emulator.store.seed_messages(THREAD, MESSAGES, content="Benchmark message {i}")
        settings = Settings(
            server=ServerSettings(grpc_listen="127.0.0.1:0", grace_seconds=1.0,
                                  max_concurrent_rpcs=4 * CONCURRENT),
            upstream=UpstreamSettings(base_url=emulator.base_url, api_key=KEY),
        )
        gateway = await start_gateway(settings)
        target = f"127.0.0.1:{gateway.grpc_port}"
        async with grpc.aio.insecure_channel(target) as channel:
            stub = pb_grpc.MessagesServiceStub(channel)
            await stream_all(stub)  # warm-up: connections, pools, code paths
            rows = await latency_rows(stub, emulator)
            rows += await throughput_rows(stub)
            rows += await memory_rows(stub, emulator, target)
        return rows
    finally:
        if gateway is not None:
            await gateway.stop(grace=1.0)
        await emulator.stop()


if __name__ == "__main__":
    for r in asyncio.run(run()):
        print(r)
