"""StreamMessages / StreamMessageFiles end to end: order, guards, backpressure, cancellation,
resuming, and a property test against the emulator's ground truth.

Everything runs on loopback in one event loop: the emulator, the gateway and the consumer. Upstream
requests are counted from the emulator's request log; "no task left" compares the loop's tasks.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2_grpc as pb_grpc
from gateway.app import start_gateway
from gateway.config import CacheSettings
from gateway.emulator.server import EmulatorServer
from tests.conftest import gateway_settings

#: 32 KiB of content per message: pages of 20 are ~660 KB, ten times the 64 KiB HTTP/2 window
#: of a client without BDP probing, so flow control, not buffering, decides when writes complete.
BIG = 32 * 1024
#: A client whose HTTP/2 receive window stays at the 64 KiB default (no BDP-driven growth).
FIXED_WINDOW = [("grpc.http2.bdp_probe", 0), ("grpc.max_receive_message_length", 64 << 20)]


def seed(emulator: EmulatorServer, count: int, *, content: str = "m{i}",
         run_id: str | None = None, thread_id: str | None = None) -> tuple[str, list[str]]:
    """A thread with ``count`` messages (ids in ascending list order), through the store."""
    if thread_id is None:
        thread_id = emulator.store.create_thread()["id"]
    ids = emulator.store.seed_messages(thread_id, count, content=content, run_id=run_id)
    return thread_id, ids


async def eventually(check: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def settled_count(emulator: EmulatorServer, quiet: float = 0.25, timeout: float = 5.0) -> int:
    """The listMessages count once it has stopped changing for ``quiet`` seconds."""
    deadline = time.monotonic() + timeout
    last, since = emulator.log.count("listMessages"), time.monotonic()
    while time.monotonic() < deadline:
        await asyncio.sleep(0.02)
        now = emulator.log.count("listMessages")
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet and emulator.log.in_flight == 0:
            return now
    raise AssertionError("the upstream request count never settled")


#: Tasks that exist whether or not a stream ran: the emulator's per-connection handler (a pooled
#: keep-alive upstream connection) and grpc.aio's waiter for the server's next incoming call,
#: which is replaced by a new task each time a call arrives.
IDLE_SERVER_TASKS = ("RequestHandler.start", "AioServer._request_registered_call")


def gateway_tasks(before: set[asyncio.Task[Any]]) -> list[asyncio.Task[Any]]:
    """Tasks started since ``before`` that are still running, other than the emulator's
    per-connection handlers (the upstream's business: a pooled keep-alive connection)."""
    return [
        t for t in asyncio.all_tasks() - before
        if t is not asyncio.current_task() and not t.done()
        and not any(name in repr(t) for name in IDLE_SERVER_TASKS)
    ]


async def no_tasks_left(before: set[asyncio.Task[Any]]) -> list[asyncio.Task[Any]]:
    await eventually(lambda: not gateway_tasks(before), timeout=2.0)
    return gateway_tasks(before)


def error_reason(err: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info.reason
    raise AssertionError("no ErrorInfo")


async def read_all(call: Any) -> list[pb.MessagePage]:
    return [page async for page in call]


async def warm_up(stub: pb_grpc.MessagesServiceStub, thread_id: str) -> None:
    """One complete stream, so channel, pool and keep-alive connections exist before a baseline."""
    await read_all(stub.StreamMessages(pb.StreamMessagesRequest(thread_id=thread_id, limit=2)))


@pytest.fixture
async def fixed_window_stub(gateway: Any) -> AsyncIterator[pb_grpc.MessagesServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.grpc_port}",
                                         options=FIXED_WINDOW) as ch:
        yield pb_grpc.MessagesServiceStub(ch)


# -- order and cursors ---------------------------------------------------------------------------


async def test_stream_backwards_walks_pages_backwards_items_in_list_order(stub, emulator) -> None:
    thread_id, ids = seed(emulator, 10)
    pages = await read_all(stub.StreamMessages(pb.StreamMessagesRequest(
        thread_id=thread_id, order=pb.ORDER_ASC, before=ids[8], limit=3)))
    assert [[m.id for m in p.data] for p in pages] == [ids[5:8], ids[2:5], ids[0:2]]
    assert [p.resume_before for p in pages] == [ids[5], ids[2], ids[0]]
    assert all(p.resume_after == "" for p in pages)
    assert [p.page_index for p in pages] == [0, 1, 2]


async def test_stream_forward_pages_carry_resume_after_only(stub, emulator) -> None:
    thread_id, ids = seed(emulator, 5)
    pages = await read_all(stub.StreamMessages(pb.StreamMessagesRequest(
        thread_id=thread_id, order=pb.ORDER_DESC, after=ids[4], limit=2)))
    assert [[m.id for m in p.data] for p in pages] == [[ids[3], ids[2]], [ids[1], ids[0]]]
    assert [p.resume_after for p in pages] == [ids[2], ids[0]]
    assert all(p.resume_before == "" for p in pages)


async def test_stream_with_before_and_after_walks_the_window_backwards(stub, emulator) -> None:
    thread_id, ids = seed(emulator, 12)
    emulator.log.clear()
    pages = await read_all(stub.StreamMessages(pb.StreamMessagesRequest(
        thread_id=thread_id, order=pb.ORDER_ASC, after=ids[1], before=ids[9], limit=3)))
    assert [[m.id for m in p.data] for p in pages] == [ids[6:9], ids[3:6], ids[2:3]]
    assert all(e.query.get("after") == ids[1] for e in emulator.log.entries)
    assert emulator.log.count("listMessages") == 3


async def test_stream_message_files_backwards_resume_before(stub, emulator) -> None:
    thread_id = emulator.store.create_thread()["id"]
    files = [f"file-{n:02d}" for n in range(7)]
    message = emulator.store.create_message(thread_id, role="user", content="x", file_ids=files)
    pages = [p async for p in stub.StreamMessageFiles(pb.StreamMessageFilesRequest(
        thread_id=thread_id, message_id=message["id"], order=pb.ORDER_ASC, before=files[6],
        limit=4))]
    assert [[f.id for f in p.data] for p in pages] == [files[2:6], files[0:2]]
    assert [p.resume_before for p in pages] == [files[2], files[0]]


# -- guards --------------------------------------------------------------------------------------


async def test_stream_stale_cursor_upstream_stops_with_internal_cursor_stuck(stub, emulator) -> None:
    thread_id, ids = seed(emulator, 10)
    emulator.faults.add("listMessages", "stale_cursor")
    emulator.log.clear()
    received: list[str] = []
    call = stub.StreamMessages(pb.StreamMessagesRequest(
        thread_id=thread_id, order=pb.ORDER_ASC, limit=3), timeout=5)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async for page in call:
            received.extend(m.id for m in page.data)
    assert err.value.code() == grpc.StatusCode.INTERNAL
    assert error_reason(err.value) == "UPSTREAM_CURSOR_STUCK"
    assert received == ids[:3]  # the repeated page is not sent twice
    assert dict(err.value.trailing_metadata())["resume-after"] == ids[2]
    assert emulator.log.count("listMessages") == 2


# -- backpressure --------------------------------------------------------------------------------


async def test_stream_slow_consumer_keeps_gateway_at_most_one_page_ahead(
    fixed_window_stub, emulator
) -> None:
    """The bound asserted: upstream pages fetched <= pages read + 2.

    With a 64 KiB HTTP/2 window and ~660 KB pages, at most a fraction of one page can sit in
    flow-control buffers, so the gateway's write of page read+1 stays pending; the walker is
    then parked at that write with exactly one page prefetched (read+2). Nothing else may be
    fetched until the consumer reads on.
    """
    thread_id, ids = seed(emulator, 200, content="x" * BIG)  # 10 pages of 20
    emulator.log.clear()
    call = fixed_window_stub.StreamMessages(pb.StreamMessagesRequest(
        thread_id=thread_id, order=pb.ORDER_ASC, limit=20), timeout=30)
    received: list[str] = []
    for read in range(1, 4):
        page = await call.read()
        received.extend(m.id for m in page.data)
        fetched = await settled_count(emulator)
        assert fetched <= read + 2, (read, fetched)
    while (page := await call.read()) is not grpc.aio.EOF:
        received.extend(m.id for m in page.data)
    assert received == ids
    assert emulator.log.count("listMessages") == 10


# -- cancellation and deadlines ------------------------------------------------------------------


async def test_stream_cancelled_before_the_first_page_aborts_the_upstream_request(
    stub, emulator
) -> None:
    thread_id, _ = seed(emulator, 30)
    await warm_up(stub, thread_id)
    before = set(asyncio.all_tasks())
    emulator.log.clear()
    emulator.faults.set_latency("listMessages", 5.0)
    call = stub.StreamMessages(pb.StreamMessagesRequest(thread_id=thread_id, limit=10))
    assert await eventually(lambda: emulator.log.in_flight == 1)
    call.cancel()
    assert await eventually(lambda: emulator.log.in_flight == 0)
    await asyncio.sleep(0.1)
    assert emulator.log.count("listMessages") == 1
    assert [e.disconnected for e in emulator.log.entries] == [True]
    assert await no_tasks_left(before) == []
    emulator.faults.set_latency("listMessages", 0)
    pages = await read_all(stub.StreamMessages(pb.StreamMessagesRequest(
        thread_id=thread_id, limit=10), timeout=5))
    assert sum(len(p.data) for p in pages) == 30


async def test_stream_cancelled_during_an_upstream_fetch_requests_nothing_more(
    stub, emulator
) -> None:
    thread_id, ids = seed(emulator, 50)
    await warm_up(stub, thread_id)
    before = set(asyncio.all_tasks())
    emulator.log.clear()
    # A long page latency, so that even a loaded machine sees page 2 in flight when it cancels.
    emulator.faults.set_latency("listMessages", 1.0)
    call = stub.StreamMessages(pb.StreamMessagesRequest(
        thread_id=thread_id, limit=10, order=pb.ORDER_ASC))
    first = await call.read()
    assert [m.id for m in first.data] == ids[:10]
    # Page 2 is being fetched (prefetch) - cancel in the middle of it.
    assert await eventually(lambda: emulator.log.count("listMessages") == 2
                            and emulator.log.in_flight == 1)
    call.cancel()
    assert await eventually(lambda: emulator.log.in_flight == 0)
    await asyncio.sleep(1.1)  # longer than a page: a page 3 request would have arrived
    assert emulator.log.count("listMessages") == 2
    assert [e.disconnected for e in emulator.log.entries] == [False, True]
    assert await no_tasks_left(before) == []
    emulator.faults.set_latency("listMessages", 0)
    page = await stub.ListMessages(pb.ListMessagesRequest(thread_id=thread_id, limit=5), timeout=5)
    assert len(page.data) == 5


async def test_stream_cancelled_between_pages_while_write_waits_leaves_nothing(
    fixed_window_stub, emulator
) -> None:
    """The handler is parked at a write blocked by flow control when the cancel arrives."""
    thread_id, _ = seed(emulator, 200, content="x" * BIG)
    await warm_up(fixed_window_stub, thread_id)
    before = set(asyncio.all_tasks())
    problems: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, ctx: problems.append(ctx))
    try:
        emulator.log.clear()
        call = fixed_window_stub.StreamMessages(pb.StreamMessagesRequest(
            thread_id=thread_id, limit=20))
        await call.read()
        fetched = await settled_count(emulator)
        call.cancel()
        await asyncio.sleep(0.3)
        assert emulator.log.count("listMessages") == fetched
        assert emulator.log.in_flight == 0
        assert await no_tasks_left(before) == []
    finally:
        loop.set_exception_handler(None)
    # No generator finalised later in some other task and context (the old async-gen path).
    assert problems == []
    page = await fixed_window_stub.ListMessages(pb.ListMessagesRequest(
        thread_id=thread_id, limit=1), timeout=5)
    assert len(page.data) == 1


async def test_stream_deadline_mid_stream_is_deadline_exceeded_and_aborts_upstream(
    stub, emulator
) -> None:
    thread_id, ids = seed(emulator, 50)
    await warm_up(stub, thread_id)
    before = set(asyncio.all_tasks())
    emulator.log.clear()
    emulator.faults.set_latency("listMessages", 0.3)
    received: list[str] = []
    call = stub.StreamMessages(pb.StreamMessagesRequest(
        thread_id=thread_id, limit=10, order=pb.ORDER_ASC), timeout=0.5)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async for page in call:
            received.extend(m.id for m in page.data)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert received == ids[:10]
    assert await eventually(lambda: emulator.log.in_flight == 0)
    await asyncio.sleep(0.4)
    assert emulator.log.count("listMessages") == 2
    assert emulator.log.entries[-1].disconnected
    assert await no_tasks_left(before) == []


@pytest.mark.parametrize("transport", ["aiohttp", "httptools", "httpx"])
async def test_stream_cancels_under_pool_contention_leak_no_connection_slot(
    emulator, transport
) -> None:
    """Six streams on a two-connection pool, all cancelled while fetching or queued; afterwards
    the pool serves calls at full capacity.

    The four that wait do so in admission, never in the connection pool: the admission bound is
    never above the pool (``admission_limit``), because httpcore's pool can leak a slot for good
    when a request queued in it is cancelled (encode/httpcore#1093, seen here now and then under
    load). A long admission wait keeps them waiting rather than refused."""
    thread_id, _ = seed(emulator, 40)
    settings = dataclasses.replace(
        gateway_settings(emulator, max_connections=2, max_keepalive_connections=2,
                         transport=transport),
        cache=CacheSettings(backend="off"))  # four identical lists must be four requests
    settings = settings.replace("reliability", admission_wait_seconds=2.0)
    gw = await start_gateway(settings)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.grpc_port}") as ch:
            stub = pb_grpc.MessagesServiceStub(ch)
            emulator.faults.set_latency("listMessages", 5.0)
            calls = [stub.StreamMessages(pb.StreamMessagesRequest(thread_id=thread_id, limit=10))
                     for _ in range(6)]
            assert await eventually(lambda: emulator.log.in_flight == 2)
            await asyncio.sleep(0.2)  # the other four are queued for a pool slot by now
            assert emulator.log.in_flight == 2
            for c in calls:
                c.cancel()
            assert await eventually(lambda: emulator.log.in_flight == 0)
            emulator.faults.set_latency("listMessages", 0.1)
            started = time.monotonic()
            pages = await asyncio.gather(*(
                stub.ListMessages(pb.ListMessagesRequest(thread_id=thread_id, limit=5), timeout=3)
                for _ in range(4)))
            assert all(len(p.data) == 5 for p in pages)
            # Two slots, four calls of 0.1 s: two rounds, not a pool timeout.
            assert time.monotonic() - started < 1.5
    finally:
        await gw.stop(grace=0.5)


# -- resuming ------------------------------------------------------------------------------------


FAULTS = [
    ("status", {"status": 500}),
    ("status", {"status": 429}),
    ("reset_mid_body", {}),
    ("truncated_json", {}),
]


@pytest.mark.parametrize(("kind", "params"), FAULTS, ids=[f[0] + str(f[1].get("status", ""))
                                                           for f in FAULTS])
@pytest.mark.parametrize("order", [pb.ORDER_ASC, pb.ORDER_DESC])
async def test_stream_resumed_after_a_failure_yields_the_exact_list(
    stub, emulator, kind, params, order
) -> None:
    thread_id, ids = seed(emulator, 47)
    expected = ids if order == pb.ORDER_ASC else ids[::-1]
    emulator.faults.set_latency("listMessages", 0.02)  # pages arrive one by one
    received: list[str] = []
    call = stub.StreamMessages(pb.StreamMessagesRequest(
        thread_id=thread_id, limit=5, order=order), timeout=10)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async for page in call:
            received.extend(m.id for m in page.data)
            if page.page_index == 1:
                # Enough failures in a row to outlast the gateway's read retries.
                emulator.faults.add("listMessages", kind, times=10, **params)
    assert err.value.code() != grpc.StatusCode.OK
    emulator.faults.clear(latency=False)
    resume = dict(err.value.trailing_metadata())["resume-after"]
    assert resume == received[-1]
    assert 10 <= len(received) < 47
    resumed = await read_all(stub.StreamMessages(pb.StreamMessagesRequest(
        thread_id=thread_id, limit=5, order=order, after=resume), timeout=10))
    assert received + [m.id for p in resumed for m in p.data] == expected


async def test_stream_backwards_resumed_with_resume_before_yields_the_exact_walk(
    stub, emulator
) -> None:
    thread_id, ids = seed(emulator, 40)
    request = pb.StreamMessagesRequest(thread_id=thread_id, limit=4, order=pb.ORDER_ASC,
                                       before=ids[37], after=ids[3])
    whole = [m.id for p in await read_all(stub.StreamMessages(request)) for m in p.data]
    emulator.faults.set_latency("listMessages", 0.02)
    received: list[str] = []
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async for page in stub.StreamMessages(request, timeout=10):
            received.extend(m.id for m in page.data)
            if page.page_index == 1:
                emulator.faults.add("listMessages", "status", times=10, status=503)
    emulator.faults.clear(latency=False)
    trailing = dict(err.value.trailing_metadata())
    assert "resume-after" not in trailing
    resume = trailing["resume-before"]
    rest = pb.StreamMessagesRequest()
    rest.CopyFrom(request)
    rest.before = resume
    resumed = [m.id for p in await read_all(stub.StreamMessages(rest)) for m in p.data]
    assert received + resumed == whole
    assert sorted(whole) == sorted(ids[4:37])


# -- property: the stream is the emulator's ground truth -----------------------------------------


def expected_pages(listed: list[str], *, after: str | None, before: str | None,
                   keep: Callable[[str], bool], limit: int, max_items: int) -> list[list[str]]:
    """Ground truth from the full list in list order: the documented walk over the window."""
    lo = listed.index(after) + 1 if after is not None else 0
    hi = listed.index(before) if before is not None else len(listed)
    window = [m for m in listed[lo:hi] if keep(m)]
    if before is None:
        pages = [window[i:i + limit] for i in range(0, len(window), limit)]
    else:
        pages = [window[max(0, end - limit):end] for end in range(len(window), 0, -limit)]
    if not max_items:
        return pages
    cut: list[list[str]] = []
    left = max_items
    for page in pages:
        if left <= 0:
            break
        cut.append(page[:left])
        left -= len(page)
    return cut


@st.composite
def stream_cases(draw: st.DrawFn) -> dict[str, Any]:
    size = draw(st.integers(0, 60))
    with_run = draw(st.integers(0, size))
    cursor = draw(st.sampled_from(["none", "after", "before", "both"])) if size else "none"
    a = draw(st.integers(0, size - 1)) if size else 0
    b = draw(st.integers(0, size - 1)) if size else 0
    return {
        "size": size,
        "with_run": with_run,  # how many of the messages belong to run_prop (appended last)
        "order": draw(st.sampled_from([pb.ORDER_ASC, pb.ORDER_DESC, pb.ORDER_UNSPECIFIED])),
        "limit": draw(st.sampled_from([0, 1, 2, 3, 7, 10, 25, 100])),
        "max_items": draw(st.sampled_from([0, 0, 1, 5, 13, 40, 100])),
        "cursor": cursor,
        "after_at": min(a, b) if cursor == "both" else a,
        "before_at": max(a, b) if cursor == "both" else b,
        "run_filter": draw(st.booleans()),
    }


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=stream_cases())
async def test_stream_equals_the_emulators_ground_truth(stub, emulator, case) -> None:
    thread_id, _ = seed(emulator, case["size"] - case["with_run"])
    if case["with_run"]:
        seed(emulator, case["with_run"], run_id="run_prop", thread_id=thread_id)
    order = "asc" if case["order"] == pb.ORDER_ASC else "desc"
    listed = emulator.store.message_ids(thread_id, order)  # every id, in list order
    after = listed[case["after_at"]] if case["cursor"] in ("after", "both") else None
    before = listed[case["before_at"]] if case["cursor"] in ("before", "both") else None
    run_ids = {m for m in listed
               if emulator.store.get_message(thread_id, m)["run_id"] == "run_prop"}
    truth = expected_pages(
        listed, after=after, before=before, limit=case["limit"] or 100,
        max_items=case["max_items"],
        # A message the run filter hides is still a valid cursor: its position is what counts.
        keep=(lambda m: m in run_ids) if case["run_filter"] else (lambda m: True))
    request = pb.StreamMessagesRequest(
        thread_id=thread_id, order=case["order"], limit=case["limit"],
        max_items=case["max_items"], after=after or "", before=before or "",
        run_id="run_prop" if case["run_filter"] else "")
    pages = await read_all(stub.StreamMessages(request, timeout=10))
    assert [[m.id for m in p.data] for p in pages] == truth
    for page in pages:
        assert (page.resume_before, page.resume_after) == (
            (page.data[0].id, "") if before else ("", page.data[-1].id))
