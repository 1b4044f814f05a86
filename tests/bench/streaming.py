"""Benchmark: server-streamed pagination, every figure a ratio measured in this run.

Three processes on loopback, as in gateway_unary: the emulator (``python -m gateway emulator``),
the gateway (``python -m gateway serve``, logging at warning) and this one, the consumer. The
10,000-message thread is seeded and the 20 ms page latency set through the emulator's admin API
(``/_emulator/...``); the emulator pretty-prints its JSON, as the live upstream does.

Timed figures run in interleaved rounds (the cases in a rotating order) and report medians: the
machine may be shared and its background load drifts. Rows:

* whole stream at 20 ms/page ÷ (pages × 20 ms) - the streaming target. The same walk made directly
  against the emulator (httpx on the gateway's transport, one cursor after the other) is reported
  next to it: no cursor walk can be faster than that, whatever the gateway does, so it shows how
  much of a miss is the upstream's own service time rather than the gateway's;
* the machine's own floor: a bare aiohttp server in this process that waits 20 ms and answers a
  tiny body, walked 100 times by the same httpx client. On a shared VM the CPU is slow to wake
  after every 20 ms idle gap (a loopback round trip costs ~1 ms busy and ~2-3 ms after the gap),
  so no walk of 100 sequential round trips can come in under this row, gateway or not;
* time to the first page ÷ 20 ms;
* messages/s with no added latency: StreamMessages ÷ a consumer paging with unary ListMessages;
* memory: the gateway process's RSS growth with 200 concurrent streams (against 200 concurrent
  unary pagers), and how many pages a slow consumer's stream fetched but had not yet read.

Run alone with ``python -m tests.bench streaming``.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import ExitStack, asynccontextmanager
from typing import Any

import grpc
import httpx
import psutil
from aiohttp import web

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2_grpc as pb_grpc
from gateway.config import UpstreamSettings
from gateway.upstream.http import build_transport
from tests.bench.common import child_env, free_port, python_args, start_process, wait_http
from tests.bench.gateway_unary import wait_serving

BENCHMARK = "streaming"
KEY = "sk-bench-streaming"
THREAD = "thread_bench_stream"
MESSAGES = 10_000
PAGE = 100
PAGES = MESSAGES // PAGE
LATENCY = 0.020
CONCURRENT = 200
#: Pages each of the CONCURRENT consumers reads in the memory figure.
MEMORY_PAGES = 10
#: Pages the slow consumer reads (one every SLOW_READ_SECONDS) before it cancels.
SLOW_PAGES = 40
SLOW_READ_SECONDS = 0.02
#: Interleaved rounds per timed comparison (medians reported); every loop is bounded in count
#: and every phase in time.
ROUNDS = 5
PHASE_TIMEOUT = 300.0
CALL_TIMEOUT = 30.0

STREAM = "StreamMessages"
UNARY = "unary ListMessages paging"
DIRECT = "direct upstream walk (httpx, no gateway)"
BARE = "bare loopback round trips (20 ms wait, tiny body)"

Measure = Callable[[], Awaitable[tuple[int, float, float]]]


def row(case: str, ratio: float, target: str, **figures: Any) -> dict[str, Any]:
    return {"benchmark": BENCHMARK, "case": case, **figures, "ratio": round(ratio, 3),
            "target": target}


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


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
    """A consumer paging through ListMessages itself, one call after the other."""
    started = time.perf_counter()
    first = 0.0
    items = 0
    after = ""
    for _ in range(PAGES + 1):
        page = await stub.ListMessages(pb.ListMessagesRequest(
            thread_id=THREAD, limit=PAGE, order=pb.ORDER_ASC, after=after), timeout=CALL_TIMEOUT)
        if not items:
            first = time.perf_counter() - started
        items += len(page.data)
        if not page.has_more:
            break
        after = page.last_id
    return items, first, time.perf_counter() - started


async def walk_direct(http: httpx.AsyncClient, base_url: str) -> tuple[int, float, float]:
    """The same cursor walk straight against the emulator: the floor of any sequential walk."""
    url = f"{base_url}/threads/{THREAD}/messages"
    started = time.perf_counter()
    first = 0.0
    items = 0
    params = {"limit": str(PAGE), "order": "asc"}
    for _ in range(PAGES + 1):
        body = (await http.get(url, params=params)).raise_for_status().json()
        if not items:
            first = time.perf_counter() - started
        items += len(body["data"])
        if not body["has_more"]:
            break
        params["after"] = body["last_id"]
    return items, first, time.perf_counter() - started


async def interleaved(cases: dict[str, Measure], rounds: int = ROUNDS) -> dict[str, list[tuple[float, float]]]:
    """(first page, whole walk) seconds of every case per round, the order rotating each round."""
    names = list(cases)
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    for index in range(rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            items, first, whole = await asyncio.wait_for(cases[name](), PHASE_TIMEOUT)
            if items != MESSAGES:
                raise RuntimeError(f"{name} walked {items} messages, expected {MESSAGES}")
            results[name].append((first, whole))
    return results


def median_ratio(mine: list[float], base: list[float]) -> float:
    return statistics.median(m / b for m, b in zip(mine, base))


async def walk_bare(http: httpx.AsyncClient, url: str) -> tuple[int, float, float]:
    """PAGES sequential requests to a server that only waits LATENCY: the machine's floor."""
    started = time.perf_counter()
    first = 0.0
    for index in range(PAGES):
        (await http.get(url)).raise_for_status()
        if not index:
            first = time.perf_counter() - started
    return MESSAGES, first, time.perf_counter() - started


@asynccontextmanager
async def bare_server() -> AsyncIterator[str]:
    """An aiohttp server in this process answering ``{}`` LATENCY after each request."""
    async def wait_then_answer(request: web.Request) -> web.Response:
        await asyncio.sleep(LATENCY)
        return web.Response(body=b"{}", content_type="application/json")

    app = web.Application()
    app.router.add_get("/", wait_then_answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        await runner.cleanup()


class Emulator:
    """The emulator process's admin API."""

    def __init__(self, http: httpx.AsyncClient, url: str) -> None:
        self._http, self._admin = http, url + "/_emulator"

    async def seed(self) -> None:
        (await self._http.post(f"{self._admin}/threads", json={"id": THREAD})).raise_for_status()
        (await self._http.post(f"{self._admin}/threads/{THREAD}/seed", json={
            "count": MESSAGES, "content": "Benchmark message {i}"})).raise_for_status()

    async def set_latency(self, seconds: float) -> None:
        (await self._http.put(f"{self._admin}/latency", json={
            "operation": "listMessages", "seconds": seconds})).raise_for_status()

    async def clear_log(self) -> None:
        (await self._http.delete(f"{self._admin}/log")).raise_for_status()

    async def list_count(self) -> int:
        reply = await self._http.get(f"{self._admin}/log", params={"operation": "listMessages"})
        return int(reply.raise_for_status().json()["count"])


async def latency_rows(stub: pb_grpc.MessagesServiceStub, emulator: Emulator,
                       http: httpx.AsyncClient, base_url: str) -> list[dict[str, Any]]:
    await emulator.set_latency(LATENCY)
    try:
        async with bare_server() as bare_url:
            got = await interleaved({
                STREAM: lambda: stream_all(stub),
                UNARY: lambda: page_unary(stub),
                DIRECT: lambda: walk_direct(http, base_url),
                BARE: lambda: walk_bare(http, bare_url),
            })
    finally:
        await emulator.set_latency(0)
    ideal = PAGES * LATENCY
    whole = {name: [w for _, w in got[name]] for name in got}
    first = {name: [f for f, _ in got[name]] for name in got}
    stream_ms = statistics.median(whole[STREAM])
    return [
        row("StreamMessages 10k msgs, 20 ms/page: whole stream / (pages x 20 ms)",
            statistics.median(w / ideal for w in whole[STREAM]), "<= 1.05",
            measured_ms=ms(stream_ms), baseline_ms=ms(ideal), rounds=ROUNDS),
        row("direct upstream walk, 20 ms/page (the floor of any cursor walk) / (pages x 20 ms)",
            statistics.median(w / ideal for w in whole[DIRECT]), "-",
            measured_ms=ms(statistics.median(whole[DIRECT])), baseline_ms=ms(ideal),
            rounds=ROUNDS),
        row("bare loopback round trips, 20 ms wait (this machine's floor) / (pages x 20 ms)",
            statistics.median(w / ideal for w in whole[BARE]), "-",
            measured_ms=ms(statistics.median(whole[BARE])), baseline_ms=ms(ideal),
            rounds=ROUNDS),
        row("StreamMessages, 20 ms/page: whole stream / bare loopback round trips",
            median_ratio(whole[STREAM], whole[BARE]), "-",
            measured_ms=ms(stream_ms), baseline_ms=ms(statistics.median(whole[BARE])),
            rounds=ROUNDS),
        row("StreamMessages, 20 ms/page: whole stream / direct upstream walk",
            median_ratio(whole[STREAM], whole[DIRECT]), "-",
            measured_ms=ms(stream_ms), baseline_ms=ms(statistics.median(whole[DIRECT])),
            rounds=ROUNDS),
        row("unary ListMessages paging, 20 ms/page (reference) / (pages x 20 ms)",
            statistics.median(w / ideal for w in whole[UNARY]), "-",
            measured_ms=ms(statistics.median(whole[UNARY])), baseline_ms=ms(ideal),
            rounds=ROUNDS),
        row("StreamMessages, 20 ms/page: first page / one page's latency",
            statistics.median(f / LATENCY for f in first[STREAM]), "<= 1.2",
            measured_ms=ms(statistics.median(first[STREAM])), baseline_ms=ms(LATENCY),
            rounds=ROUNDS),
        row("direct upstream GET, 20 ms/page: first page / one page's latency (reference)",
            statistics.median(f / LATENCY for f in first[DIRECT]), "-",
            measured_ms=ms(statistics.median(first[DIRECT])), baseline_ms=ms(LATENCY),
            rounds=ROUNDS),
        row("bare loopback round trip, 20 ms wait: first answer / one page's latency (reference)",
            statistics.median(f / LATENCY for f in first[BARE]), "-",
            measured_ms=ms(statistics.median(first[BARE])), baseline_ms=ms(LATENCY),
            rounds=ROUNDS),
    ]


async def throughput_rows(stub: pb_grpc.MessagesServiceStub) -> list[dict[str, Any]]:
    got = await interleaved({STREAM: lambda: stream_all(stub), UNARY: lambda: page_unary(stub)})
    stream = [w for _, w in got[STREAM]]
    unary = [w for _, w in got[UNARY]]
    # Rate ratio = inverse time ratio (the same messages in both).
    return [row("messages/s, no added latency: StreamMessages / unary ListMessages paging",
                median_ratio(unary, stream), ">= 1.0",
                measured_msg_s=round(MESSAGES / statistics.median(stream)),
                baseline_msg_s=round(MESSAGES / statistics.median(unary)), rounds=ROUNDS)]


class PeakRss:
    """Samples a process's RSS every 10 ms while active (native memory included: grpc core
    allocations are invisible to tracemalloc)."""

    def __init__(self, pid: int) -> None:
        self._proc = psutil.Process(pid)
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


async def concurrent_rss(pid: int, work: Callable[[], Awaitable[Any]]) -> int:
    """The gateway's RSS growth (bytes) while ``CONCURRENT`` copies of ``work`` run at once."""
    with PeakRss(pid) as rss:
        base = rss.now()
        await asyncio.wait_for(asyncio.gather(*(work() for _ in range(CONCURRENT))), PHASE_TIMEOUT)
    return rss.peak - base


async def memory_rows(stub: pb_grpc.MessagesServiceStub, emulator: Emulator, gateway_pid: int,
                      target: str) -> list[dict[str, Any]]:
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
                thread_id=THREAD, limit=PAGE, order=pb.ORDER_ASC, after=after),
                timeout=CALL_TIMEOUT)
            if len(page.data) != PAGE:
                raise RuntimeError("a concurrent pager ended early")
            after = page.last_id

    # The unary pagers run first so the stream figure cannot profit from memory they grew.
    unary_growth = await concurrent_rss(gateway_pid, one_pager)
    stream_growth = await concurrent_rss(gateway_pid, one_stream)
    per_stream = stream_growth / CONCURRENT

    # A slow consumer (reads a page, then waits), default channel options: everything fetched
    # from the upstream and not yet read sits somewhere between the two - the gateway's one
    # prefetched page, the page being written, gRPC/HTTP/2 buffers (BDP probing grows them).
    async with grpc.aio.insecure_channel(target) as channel:
        slow = pb_grpc.MessagesServiceStub(channel)
        await emulator.clear_log()
        call = slow.StreamMessages(pb.StreamMessagesRequest(
            thread_id=THREAD, limit=PAGE, order=pb.ORDER_ASC), timeout=PHASE_TIMEOUT)
        read = 0
        peak_ahead = 0
        async for _ in call:
            read += 1
            await asyncio.sleep(SLOW_READ_SECONDS)
            peak_ahead = max(peak_ahead, await emulator.list_count() - read)
            if read >= SLOW_PAGES:
                call.cancel()
                break
    return [
        row(f"gateway RSS growth, {CONCURRENT} concurrent streams ({MEMORY_PAGES} pages each) / "
            "same with unary paging",
            stream_growth / max(unary_growth, 1), "-",
            measured_mib=round(stream_growth / 2**20, 1),
            baseline_mib=round(unary_growth / 2**20, 1)),
        row("gateway RSS growth per concurrent stream / one page (protobuf bytes)",
            per_stream / page_bytes, "-",
            measured_kib=round(per_stream / 1024, 1), baseline_kib=round(page_bytes / 1024, 1)),
        row("slow consumer: peak pages fetched but unread (gateway + gRPC buffers)",
            float(peak_ahead), "-",
            measured_kib=round(peak_ahead * page_bytes / 1024, 1),
            baseline_kib=round(page_bytes / 1024, 1)),
    ]


async def run() -> list[dict[str, Any]]:
    with ExitStack() as stack:
        emulator_port, grpc_port = free_port(), free_port()
        env = child_env(
            EMULATOR_API_KEYS=KEY, OPENAI_API_KEY=KEY, GATEWAY_LOGGING_LEVEL="warning",
            # Streams are not cached; unary pages are. Off, so both read the upstream each time.
            GATEWAY_CACHE_BACKEND="off",
            GATEWAY_SERVER_MAX_CONCURRENT_RPCS=str(4 * CONCURRENT),
            # Every one of the CONCURRENT streams has a fetch in flight at once.
            GATEWAY_RELIABILITY_MAX_UPSTREAM_CONCURRENCY=str(2 * CONCURRENT),
        )
        emulator_url = f"http://127.0.0.1:{emulator_port}"
        base_url = emulator_url + "/v1"
        target = f"127.0.0.1:{grpc_port}"
        emulator_proc = start_process(
            "emulator", python_args("-m", "gateway", "emulator", "--listen",
                                    f"127.0.0.1:{emulator_port}"), stack, env=env)
        gateway_proc = start_process(
            "gateway", python_args("-m", "gateway", "serve", "--grpc-listen", target,
                                   "--upstream-url", base_url), stack, env=env)
        await wait_http(emulator_url + "/_emulator/health", emulator_proc)
        await wait_serving(target, gateway_proc)
        headers = {"authorization": f"Bearer {KEY}", "openai-beta": "assistants=v1"}
        async with httpx.AsyncClient(transport=build_transport(UpstreamSettings()),
                                     headers=headers, trust_env=False,
                                     timeout=CALL_TIMEOUT) as http, \
                grpc.aio.insecure_channel(target) as channel:
            emulator = Emulator(http, emulator_url)
            await emulator.seed()
            stub = pb_grpc.MessagesServiceStub(channel)
            # Warm-up: connections, pools, the emulator's encoding cache, code paths.
            await stream_all(stub)
            await page_unary(stub)
            await walk_direct(http, base_url)
            rows = await latency_rows(stub, emulator, http, base_url)
            rows += await throughput_rows(stub)
            rows += await memory_rows(stub, emulator, gateway_proc.pid, target)
        for proc in (gateway_proc, emulator_proc):
            proc.check_alive()  # a crash during the run would make every figure meaningless
    return rows
