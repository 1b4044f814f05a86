"""F7 and F11 through a real gateway: upstreams slow at every attempt, bodies that are huge,
compressed bombs or whose Content-Length lies.

F7 counts what the emulator saw: every attempt was abandoned (``disconnected``) and none outlived
the call's deadline. F11 measures the peak of Python's heap (tracemalloc) during the call: every
byte of an upstream body is a Python object here (aiohttp's buffers, the decoder's output, the
collected chunks), and unlike RSS the figure does not move with what other tests or processes on
the machine did before.
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from gateway.emulator import huge
from tests.reliability.conftest import Harness, HarnessFactory, scale
from tests.rpc.test_messages_service import details

MiB = 1024 * 1024
CAP = 1 * MiB
#: What the plan allows above the cap (F11: peak RSS delta < cap + 10 MiB).
HEADROOM = 10 * MiB


async def failing(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value


def reason(err: grpc.aio.AioRpcError) -> str:
    return str(details(err)["ErrorInfo"].reason)  # type: ignore[attr-defined]


def overshoot(h: Harness, deadline_at: float) -> float:
    """Seconds the longest-lived upstream request outlived ``deadline_at`` (wall clock; <= 0:
    none did)."""
    ends = [e.started_at + (e.duration_ms or 0.0) / 1000 for e in h.emulator.log.entries]
    return max(ends) - deadline_at


# -- F7: slow headers on every attempt -------------------------------------------------------------


async def test_slow_headers_on_every_attempt_per_try_timeouts_then_unavailable(
        make_harness: HarnessFactory) -> None:
    per_try, attempts = 0.25, 3
    h = await make_harness(per_try_timeout_seconds=per_try, max_attempts=attempts)
    thread_id = await h.thread(1)
    message_id = h.emulator.store.message_ids(thread_id)[0]
    h.emulator.faults.add("getMessage", "slow_headers", seconds=10.0)
    started_wall, started = time.time(), time.monotonic()
    err = await failing(h.stub.GetMessage(
        pb.GetMessageRequest(thread_id=thread_id, message_id=message_id), timeout=5))
    elapsed = time.monotonic() - started
    assert err.code() == grpc.StatusCode.UNAVAILABLE and reason(err) == "UPSTREAM_TIMEOUT"
    # Three per-try timeouts and two short backoffs, far from the 10 s headers or 5 s deadline.
    assert attempts * per_try <= elapsed < attempts * per_try + 1.0
    assert await h.emulator.log.wait_idle(1.0)  # nothing left upstream once the call ended
    entries = h.emulator.log.entries
    assert len(entries) == attempts and all(e.disconnected and e.status is None for e in entries)
    assert all((e.duration_ms or 0) / 1000 < per_try + 0.2 for e in entries)  # each cut at per-try
    assert overshoot(h, started_wall + elapsed) < 0.2
    await h.assert_clean()


async def test_slow_headers_longer_than_the_deadline_allows_deadline_exceeded_nothing_outlives_it(
        make_harness: HarnessFactory) -> None:
    deadline = 1.0
    h = await make_harness(per_try_timeout_seconds=0.4, max_attempts=5)
    thread_id = await h.thread(1)
    message_id = h.emulator.store.message_ids(thread_id)[0]
    h.emulator.faults.add("getMessage", "slow_headers", seconds=10.0)
    started_wall, started = time.time(), time.monotonic()
    err = await failing(h.stub.GetMessage(
        pb.GetMessageRequest(thread_id=thread_id, message_id=message_id), timeout=deadline))
    assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < deadline + 0.3
    assert await h.emulator.log.wait_idle(1.0)
    entries = h.emulator.log.entries
    assert 2 <= len(entries) <= 5 and all(e.disconnected for e in entries)
    # 0 upstream requests alive beyond the deadline (to within the emulator noticing the
    # disconnect on a loaded machine).
    assert overshoot(h, started_wall + deadline) < 0.1
    await h.assert_clean()


async def test_slow_headers_on_a_stream_page_ends_unavailable_resumable(
        make_harness: HarnessFactory) -> None:
    h = await make_harness(per_try_timeout_seconds=0.2)
    thread_id = await h.thread(20)
    expected = h.emulator.store.message_ids(thread_id)
    h.emulator.faults.add("listMessages", "slow_headers", times=1, seconds=0.0)  # page 1 passes
    h.emulator.faults.add("listMessages", "slow_headers", seconds=10.0)
    call = h.stub.StreamMessages(pb.StreamMessagesRequest(
        thread_id=thread_id, limit=10, order=pb.ORDER_ASC), timeout=5)
    received: list[str] = []
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for page in call:
            received.extend(m.id for m in page.data)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert received == expected[:10]
    assert dict(info.value.trailing_metadata())["resume-after"] == expected[9]
    assert await h.emulator.log.wait_idle(1.0)
    assert h.emulator.log.count("listMessages") == 1 + 3  # page 1, then page 2's three attempts
    await h.assert_clean()


# -- F11: huge, bombs and lying lengths ------------------------------------------------------------


async def peak_heap(call: Callable[[], Awaitable[Any]]) -> tuple[Any, int]:
    """The call's outcome (or its error) and the peak of Python's heap above where it started."""
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        try:
            outcome: Any = await call()
        except grpc.aio.AioRpcError as err:
            outcome = err
        return outcome, tracemalloc.get_traced_memory()[1] - before
    finally:
        if started:
            tracemalloc.stop()


def list_call(h: Harness, thread_id: str) -> Callable[[], Awaitable[Any]]:
    return lambda: h.stub.ListMessages(pb.ListMessagesRequest(thread_id=thread_id), timeout=10)


@pytest.mark.parametrize("shape", ["chunked", "content-length", "gzip-bomb"])
async def test_huge_body_aborted_at_the_cap_memory_bounded(
        make_harness: HarnessFactory, shape: str) -> None:
    size = scale(500, 64) * MiB
    h = await make_harness(upstream={"max_body_bytes": CAP})
    thread_id = await h.thread(1)
    if shape == "gzip-bomb":
        huge.gzip_body(size)  # built (and cached) before the measurement: the emulator's bytes
    h.emulator.faults.add("listMessages", "huge_body", size=size, chunked=shape == "chunked",
                          gzip=shape == "gzip-bomb")
    err, peak = await peak_heap(list_call(h, thread_id))
    assert isinstance(err, grpc.aio.AioRpcError)
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert reason(err) == "UPSTREAM_RESPONSE_TOO_LARGE"
    print(f"F11 {shape}: peak heap {peak / MiB:.1f} MiB")
    assert peak < CAP + HEADROOM, f"peak heap {peak / MiB:.1f} MiB"
    assert h.emulator.log.count("listMessages") == 1  # not retried
    assert await h.emulator.log.wait_idle(2.0)
    if shape != "gzip-bomb":  # a bomb's few wire bytes are all sent before the gateway stops
        assert h.emulator.log.entries[-1].disconnected  # stopped reading: the upstream saw it
    await h.assert_clean()


async def test_content_length_longer_than_the_body_retried_then_unavailable(
        make_harness: HarnessFactory) -> None:
    """The connection closes before the declared length: a connection lost mid-body, retried,
    then UNAVAILABLE (docs/reliability.md: a connection lost mid-exchange)."""
    h = await make_harness(upstream={"max_body_bytes": CAP})
    thread_id = await h.thread(1)
    h.emulator.faults.add("listMessages", "huge_body", size=100_000, content_length=500_000)
    err, peak = await peak_heap(list_call(h, thread_id))
    assert isinstance(err, grpc.aio.AioRpcError)
    assert err.code() == grpc.StatusCode.UNAVAILABLE and reason(err) == "UPSTREAM_UNREACHABLE"
    assert h.emulator.log.count("listMessages") == 3
    assert peak < CAP + HEADROOM
    await h.assert_clean()


async def test_content_length_over_the_cap_refused_before_reading(
        make_harness: HarnessFactory) -> None:
    h = await make_harness(upstream={"max_body_bytes": CAP})
    thread_id = await h.thread(1)
    h.emulator.faults.add("listMessages", "huge_body", size=100_000,
                          content_length=500 * MiB)
    err, peak = await peak_heap(list_call(h, thread_id))
    assert isinstance(err, grpc.aio.AioRpcError)
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert h.emulator.log.count("listMessages") == 1
    assert peak < HEADROOM  # not even the cap: nothing was read
    await h.assert_clean()


async def test_content_length_shorter_than_the_body_refused_and_the_pool_recovers(
        make_harness: HarnessFactory) -> None:
    """The gateway reads the declared bytes (cut JSON, refused); the rest of the body follows on
    the connection. Whichever request meets those bytes next fails as a transport error and is
    retried; none is ever answered with them, and the pool serves normally afterwards."""
    lies = 3
    h = await make_harness(upstream={"max_body_bytes": CAP})
    thread_id = await h.thread(3)
    h.emulator.faults.add("listMessages", "huge_body", times=lies, size=20_000, content_length=50)
    err = await failing(list_call(h, thread_id)())
    # INTERNAL when the last attempt read its cut body, UNAVAILABLE when it met a previous
    # answer's rest; never OK, never UNKNOWN.
    assert (err.code(), reason(err)) in {
        (grpc.StatusCode.INTERNAL, "UPSTREAM_INVALID_RESPONSE"),
        (grpc.StatusCode.UNAVAILABLE, "UPSTREAM_UNREACHABLE")}
    fired = sum(e.fault == "huge_body" for e in h.emulator.log.entries)
    h.emulator.log.clear()
    ok = 0
    for _ in range(5):  # every pooled connection gets a turn
        page = await list_call(h, thread_id)()
        ok += [m.id for m in page.data] == list(reversed(h.emulator.store.message_ids(thread_id)))
    assert ok == 5
    # A lying answer not yet consumed by the failed call, and each poisoned connection, can cost
    # one attempt more; nothing else.
    assert h.emulator.log.count("listMessages") <= 5 + lies
    assert fired + sum(e.fault == "huge_body" for e in h.emulator.log.entries) == lies
    await h.assert_clean()
