"""C2 and L1: many streams at once, slow consumers and a steady baseline load.

C2, slow consumers: streams over pages of 100 × 32 KiB messages (3.2 MiB a page) on clients with a
fixed 64 KiB HTTP/2 window, reading one streamed message a second. Each stream starts after a
different message, so the emulator's log tells every stream's upstream requests apart (by their
``after`` cursor); at every pause each stream has fetched at most the pages it read + 2 (the page
whose write waits on flow control and the one page of prefetch), and the process's RSS growth
per stream stays within a few pages.

L1, baseline: concurrent streams of 20 pages each, 50 ms upstream latency per page, for a fixed
time: every stream OK and complete, every page carrying its cursor; the figures are streams and
pages per second, time to first message (p50, p99) and whole-stream time (p99).
"""

from __future__ import annotations

import asyncio
import statistics
import time

import grpc

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2_grpc as pb_grpc
from tests.reliability.conftest import HarnessFactory, record_figure, rss_bytes, scale
from tests.rpc.test_streaming import BIG, FIXED_WINDOW

PAGE_ITEMS = 100
PAGE_BYTES = PAGE_ITEMS * BIG


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


async def test_slow_consumers_hold_at_most_one_page_of_prefetch_each(
        make_harness: HarnessFactory) -> None:
    h = await make_harness()
    count, reads = scale(100, 10), scale(3, 2)
    thread_id = h.emulator.store.create_thread()["id"]
    # Each stream k starts after message k and so walks its own cursors: k, k + 100, ...
    ids = h.emulator.store.seed_messages(thread_id, count + PAGE_ITEMS * (reads + 3),
                                         content="x" * BIG)
    position = {message_id: n for n, message_id in enumerate(ids)}
    rss_before = rss_bytes()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{h.gateway.grpc_port}",
                                         options=FIXED_WINDOW) as channel:
        stub = pb_grpc.MessagesServiceStub(channel)
        calls = [stub.StreamMessages(pb.StreamMessagesRequest(
            thread_id=thread_id, after=ids[k], limit=PAGE_ITEMS, order=pb.ORDER_ASC), timeout=60)
            for k in range(count)]
        worst_ahead, peak_rss = 0, 0
        for read in range(1, reads + 1):
            pages = await asyncio.gather(*(c.read() for c in calls))
            for k, page in enumerate(pages):
                assert len(page.data) == PAGE_ITEMS
                assert page.data[0].id == ids[k + 1 + PAGE_ITEMS * (read - 1)]
            del pages, page  # what the consumer read is not the gateway's memory
            await asyncio.sleep(1.0)  # one streamed message a second
            fetched = [0] * count
            for entry in h.emulator.log.entries:
                fetched[position[entry.query["after"]] % PAGE_ITEMS] += 1
            assert all(read <= n <= read + 2 for n in fetched), (read, fetched)
            worst_ahead = max(worst_ahead, max(fetched) - read)
            peak_rss = max(peak_rss, rss_bytes() - rss_before)
        for c in calls:
            c.cancel()
    per_stream = peak_rss / count
    # Measured (tracemalloc + RSS): the page whose write waits, three times (protobuf, the
    # serialized bytes grpc.aio holds, gRPC core's copy), the page prefetched (protobuf), and
    # the emulator's own encoding cache (~0.4 page): ~4.6 pages. Holding the walk (6 pages a
    # stream, each in several copies) would exceed the bound.
    assert per_stream <= 6 * PAGE_BYTES, per_stream / 2**20
    await h.assert_clean()
    record_figure("C2", f"{count} slow streams, pages of {PAGE_ITEMS} x 32 KiB: at most "
                  f"{worst_ahead} page(s) fetched beyond those read (bound 2: one being written, "
                  f"one prefetched) = {worst_ahead * PAGE_BYTES / 2**20:.1f} MiB queued per "
                  f"stream; RSS +{peak_rss / 2**20:.0f} MiB = {per_stream / 2**20:.1f} MiB per "
                  "stream")


async def test_baseline_load_streams_all_ok_with_cursors(make_harness: HarnessFactory) -> None:
    concurrency, seconds, pages_per_stream, limit = scale(200, 20), scale(60, 3), 20, 5
    # Sized for the load: a stream has an upstream request in flight nearly all the time (the
    # next page is fetched while the current one is written). With the defaults (100), 200
    # streams at once are beyond the upstream admission bound, and the excess ends
    # RESOURCE_EXHAUSTED mid-stream (measured: 71 of them in 60 s).
    pool = max(100, 2 * concurrency)
    h = await make_harness(upstream={"max_connections": pool, "max_keepalive_connections": pool},
                           max_upstream_concurrency=pool)
    thread_id = await h.thread(pages_per_stream * limit)
    expected = h.emulator.store.message_ids(thread_id)
    h.emulator.faults.set_latency("listMessages", 0.05)
    first: list[float] = []
    whole: list[float] = []
    failures: list[BaseException] = []
    pages_sent = 0
    started = time.monotonic()
    end = started + seconds

    async def worker() -> None:
        nonlocal pages_sent
        while time.monotonic() < end:
            began = time.monotonic()
            got: list[str] = []
            try:
                async for page in h.stub.StreamMessages(pb.StreamMessagesRequest(
                        thread_id=thread_id, limit=limit, order=pb.ORDER_ASC), timeout=60):
                    if not got:
                        first.append(time.monotonic() - began)
                    assert page.resume_after == page.data[-1].id  # every item's cursor
                    got.extend(m.id for m in page.data)
                    pages_sent += 1
                assert got == expected
            except (AssertionError, grpc.aio.AioRpcError) as exc:
                failures.append(exc)
                return
            whole.append(time.monotonic() - began)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.monotonic() - started
    assert failures == []
    assert len(whole) >= concurrency  # every worker finished at least one whole stream
    await h.assert_clean()
    p50, p99 = percentile(first, 50), percentile(first, 99)
    record_figure("L1", f"{concurrency} concurrent streams x {pages_per_stream} pages, 50 ms a "
                  f"page, {elapsed:.0f} s: {len(whole)} streams ({len(whole) / elapsed:.1f}/s, "
                  f"{pages_sent / elapsed:.0f} pages/s), 0 errors, every page with its cursor; "
                  f"first message p50 {p50 * 1000:.0f} ms p99 {p99 * 1000:.0f} ms; whole stream "
                  f"p99 {percentile(whole, 99):.2f} s")
