"""Tests for gateway.upstream.pagination: the page walker, with an in-memory upstream.

The walker's contract seen from its two sides: the cursors it sends upstream (counted here), and
what it yields, when, and what it leaves behind when it is closed or cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from gateway.errors import Internal
from gateway.upstream.pagination import walk_pages


@dataclass
class Item:
    id: str


@dataclass
class FakePage:
    data: list[Item]
    has_more: bool


@dataclass
class FakeUpstream:
    """A list of ids ``i0..i{n-1}`` in list order, paged like the upstream (Stripe cursors)."""

    size: int
    limit: int
    delay: float = 0.0
    calls: list[str | None] = field(default_factory=list)
    finished: int = 0
    cancelled: int = 0

    def ids(self) -> list[str]:
        return [f"i{n}" for n in range(self.size)]

    async def after(self, cursor: str | None) -> FakePage:
        self.calls.append(cursor)
        try:
            await asyncio.sleep(self.delay)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        ids = self.ids()
        start = 0 if cursor is None else ids.index(cursor) + 1
        chunk = ids[start:start + self.limit]
        self.finished += 1
        return FakePage([Item(i) for i in chunk], start + self.limit < len(ids))

    async def before(self, cursor: str | None) -> FakePage:
        self.calls.append(cursor)
        await asyncio.sleep(self.delay)
        ids = self.ids()
        end = len(ids) if cursor is None else ids.index(cursor)
        start = max(0, end - self.limit)
        self.finished += 1
        return FakePage([Item(i) for i in ids[start:end]], start > 0)


async def collect(pages: AsyncIterator[FakePage]) -> list[list[str]]:
    async with contextlib.aclosing(pages):
        return [[item.id for item in page.data] async for page in pages]


def own_tasks() -> set[asyncio.Task[Any]]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


async def test_walk_pages_forward_follows_each_last_id_until_has_more_is_false() -> None:
    upstream = FakeUpstream(size=7, limit=3)
    pages = await collect(walk_pages(upstream.after, start=None, backwards=False))
    assert pages == [["i0", "i1", "i2"], ["i3", "i4", "i5"], ["i6"]]
    assert upstream.calls == [None, "i2", "i5"]


async def test_walk_pages_forward_from_a_cursor_starts_after_it() -> None:
    upstream = FakeUpstream(size=7, limit=4)
    pages = await collect(walk_pages(upstream.after, start="i1", backwards=False))
    assert pages == [["i2", "i3", "i4", "i5"], ["i6"]]
    assert upstream.calls == ["i1", "i5"]


async def test_walk_pages_backwards_follows_each_first_id_pages_keep_list_order() -> None:
    upstream = FakeUpstream(size=10, limit=3)
    pages = await collect(walk_pages(upstream.before, start="i8", backwards=True))
    assert pages == [["i5", "i6", "i7"], ["i2", "i3", "i4"], ["i0", "i1"]]
    assert upstream.calls == ["i8", "i5", "i2"]


async def test_walk_pages_empty_list_yields_nothing_after_one_call() -> None:
    upstream = FakeUpstream(size=0, limit=3)
    assert await collect(walk_pages(upstream.after, start=None, backwards=False)) == []
    assert upstream.calls == [None]


async def test_walk_pages_max_items_cuts_the_last_page_and_fetches_no_further() -> None:
    upstream = FakeUpstream(size=20, limit=4)
    pages = await collect(walk_pages(upstream.after, start=None, backwards=False, max_items=6))
    assert pages == [["i0", "i1", "i2", "i3"], ["i4", "i5"]]
    # The cap is reached on page 2: no third (prefetch) call was made.
    assert upstream.calls == [None, "i3"]


async def test_walk_pages_max_items_on_a_page_boundary_makes_no_extra_call() -> None:
    upstream = FakeUpstream(size=20, limit=4)
    pages = await collect(walk_pages(upstream.after, start=None, backwards=False, max_items=4))
    assert pages == [["i0", "i1", "i2", "i3"]]
    assert upstream.calls == [None]


async def test_walk_pages_holding_a_page_keeps_exactly_one_fetch_ahead() -> None:
    upstream = FakeUpstream(size=100, limit=5)
    walk = walk_pages(upstream.after, start=None, backwards=False)
    async with contextlib.aclosing(walk):
        first = await anext(walk)
        assert [i.id for i in first.data] == ["i0", "i1", "i2", "i3", "i4"]
        await asyncio.sleep(0.05)  # a consumer that does not read on
        assert upstream.calls == [None, "i4"]
        assert upstream.finished == 2
        await anext(walk)
        await asyncio.sleep(0.05)
        assert upstream.calls == [None, "i4", "i9"]


async def test_walk_pages_repeated_cursor_stops_with_cursor_stuck() -> None:
    calls = 0

    async def stale(cursor: str | None) -> FakePage:
        nonlocal calls
        calls += 1
        return FakePage([Item("a"), Item("b")], True)  # ignores the cursor, like stale_cursor

    walk = walk_pages(stale, start=None, backwards=False)
    with pytest.raises(Internal) as err:
        await collect(walk)
    assert err.value.details.reason == "UPSTREAM_CURSOR_STUCK"
    assert calls == 2


async def test_walk_pages_cursor_echoing_the_start_stops_with_cursor_stuck() -> None:
    async def echo(cursor: str | None) -> FakePage:
        return FakePage([Item("x"), Item("start")], True)

    with pytest.raises(Internal) as err:
        await collect(walk_pages(echo, start="start", backwards=False))
    assert err.value.details.reason == "UPSTREAM_CURSOR_STUCK"


async def test_walk_pages_endless_upstream_stops_at_max_pages() -> None:
    calls = 0

    async def endless(cursor: str | None) -> FakePage:
        nonlocal calls
        calls += 1
        return FakePage([Item(f"n{calls}")], True)  # fresh cursors forever

    got: list[list[str]] = []
    with pytest.raises(Internal) as err:
        async with contextlib.aclosing(walk_pages(endless, start=None, backwards=False,
                                                  max_pages=25)) as walk:
            async for page in walk:
                got.append([i.id for i in page.data])
    assert err.value.details.reason == "UPSTREAM_LIST_ENDLESS"
    assert len(got) == 25
    assert calls == 25  # no prefetch beyond the last page allowed


async def test_walk_pages_fetch_error_propagates_after_the_pages_before_it() -> None:
    async def failing(cursor: str | None) -> FakePage:
        if cursor is None:
            return FakePage([Item("a")], True)
        raise Internal("boom", reason="TEST")

    got: list[str] = []
    with pytest.raises(Internal):
        async with contextlib.aclosing(walk_pages(failing, start=None, backwards=False)) as w:
            async for page in w:
                got.extend(i.id for i in page.data)
    assert got == ["a"]


async def test_walk_pages_closed_while_prefetching_cancels_the_fetch_and_leaves_no_task() -> None:
    upstream = FakeUpstream(size=50, limit=5, delay=0.0)
    before = own_tasks()
    walk = walk_pages(upstream.after, start=None, backwards=False)
    await anext(walk)
    await asyncio.sleep(0.01)  # the prefetch of page 2 completes without delay
    upstream.delay = 10.0  # page 3 (the next prefetch) hangs
    await anext(walk)
    await asyncio.sleep(0.01)
    assert upstream.calls == [None, "i4", "i9"]
    await walk.aclose()
    assert upstream.cancelled == 1
    assert own_tasks() == before  # awaited, not merely cancelled


async def test_walk_pages_consumer_cancelled_mid_fetch_is_cancelled_and_fetch_is_cancelled() -> None:
    upstream = FakeUpstream(size=50, limit=5, delay=10.0)
    before = own_tasks()

    async def consume() -> None:
        await collect(walk_pages(upstream.after, start=None, backwards=False))

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()
    assert upstream.cancelled == 1
    assert own_tasks() == before


async def test_walk_pages_cancel_during_cleanup_is_not_swallowed() -> None:
    """A fetch that takes a while to unwind; the closing task is cancelled meanwhile."""
    unwinding = asyncio.Event()

    async def slow_unwind(cursor: str | None) -> FakePage:
        if cursor is None:
            return FakePage([Item("a")], True)
        try:
            await asyncio.sleep(10)
        finally:
            unwinding.set()
            await asyncio.sleep(0.2)  # e.g. a connection being closed politely
        raise AssertionError("unreachable")  # pragma: no cover

    walk = walk_pages(slow_unwind, start=None, backwards=False)
    await anext(walk)
    await asyncio.sleep(0.01)
    closer = asyncio.create_task(walk.aclose())
    await asyncio.wait_for(unwinding.wait(), 1)
    closer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closer
    assert closer.cancelled()


async def test_walk_pages_consumer_cancelled_twice_lets_the_fetch_finish_its_cleanup() -> None:
    """A consumer task cancelled again while the fetch unwinds (grpc.aio can cancel a handler more
    than once) must not cut the fetch's cleanup short: there it hands its connection back, and
    httpcore's pool keeps a request interrupted there for good (C1 cancel storm, httpx
    transport: CancelledError escaping PoolByteStream.aclose, one pool slot lost each time)."""
    cleaned = asyncio.Event()
    unwinding = asyncio.Event()

    async def fetch(cursor: str | None) -> FakePage:
        try:
            await asyncio.sleep(10)
        finally:
            unwinding.set()
            await asyncio.sleep(0.05)  # the connection handed back to the pool
            cleaned.set()
        raise AssertionError("unreachable")  # pragma: no cover

    async def consume() -> None:
        await collect(walk_pages(fetch, start=None, backwards=False))

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.wait_for(unwinding.wait(), 1)
    task.cancel()  # again, while the fetch unwinds
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned.is_set()


# gc.collect() below also finalises garbage other tests left (unclosed sockets...): not ours.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_walk_pages_failed_prefetch_of_a_closed_walk_is_not_reported_unretrieved() -> None:
    reported: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, ctx: reported.append(ctx))
    try:
        async def fails_later(cursor: str | None) -> FakePage:
            if cursor is None:
                return FakePage([Item("a")], True)
            raise Internal("boom", reason="TEST")

        walk = walk_pages(fails_later, start=None, backwards=False)
        await anext(walk)
        await asyncio.sleep(0.01)  # the prefetch has failed; nobody awaits it
        await walk.aclose()
        del walk
        gc.collect()
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(None)
    # gc.collect() may also surface garbage left by earlier tests: only ours counts here.
    assert [ctx for ctx in reported if isinstance(ctx.get("exception"), Internal)] == []


class RawUpstream:
    """FakeUpstream answering with list envelopes as parsed JSON; ``log`` records every fetch
    and every conversion, in order."""

    def __init__(self, size: int, limit: int, delay: float) -> None:
        self.pages = FakeUpstream(size=size, limit=limit, delay=delay)
        self.log: list[str] = []

    async def after(self, cursor: str | None) -> dict[str, Any]:
        self.log.append(f"fetch {cursor}")
        page = await self.pages.after(cursor)
        return {"object": "list", "data": [{"id": i.id} for i in page.data],
                "has_more": page.has_more}

    def convert(self, raw: dict[str, Any]) -> FakePage:
        if not isinstance(raw.get("data"), list):
            raise Internal("bad page", reason="UPSTREAM_INVALID_RESPONSE")
        self.log.append(f"convert {raw['data'][0]['id'] if raw['data'] else '-'}")
        return FakePage([Item(o["id"]) for o in raw["data"]], raw["has_more"])


async def test_walk_pages_with_convert_sends_the_next_request_before_converting_the_page() -> None:
    upstream = RawUpstream(size=12, limit=3, delay=0.01)
    walk = walk_pages(upstream.after, start=None, backwards=False, convert=upstream.convert)
    pages = await collect(walk)
    assert pages == [["i0", "i1", "i2"], ["i3", "i4", "i5"], ["i6", "i7", "i8"], ["i9", "i10", "i11"]]
    log = upstream.log
    # The first page goes to the consumer first; from then on the request for page N+1 is out
    # before page N is converted (the consumer waits on the upstream, not on the conversion).
    assert log.index("convert i0") < log.index("fetch i2")
    assert log.index("fetch i5") < log.index("convert i3")
    assert log.index("fetch i8") < log.index("convert i6")


async def test_walk_pages_with_convert_holds_the_prefetched_page_converted_for_a_slow_consumer() -> None:
    upstream = RawUpstream(size=12, limit=3, delay=0.0)
    walk = walk_pages(upstream.after, start=None, backwards=False, convert=upstream.convert)
    async with contextlib.aclosing(walk):
        await anext(walk)
        await asyncio.sleep(0.05)  # the consumer does not ask; the prefetch completes meanwhile
        # Converted as it arrived: the parsed JSON is not what sits waiting for the consumer.
        assert upstream.log == ["fetch None", "convert i0", "fetch i2", "convert i3"]
        second = await anext(walk)
        assert [i.id for i in second.data] == ["i3", "i4", "i5"]
        assert upstream.log.count("convert i3") == 1


async def test_walk_pages_with_convert_invalid_envelope_fails_with_the_conversion_error() -> None:
    async def broken(cursor: str | None) -> dict[str, Any]:
        return {"object": "list", "data": "not a list", "has_more": False}

    def convert(raw: dict[str, Any]) -> FakePage:
        raise Internal("bad page", reason="UPSTREAM_INVALID_RESPONSE")

    with pytest.raises(Internal) as err:
        await collect(walk_pages(broken, start=None, backwards=False, convert=convert))
    assert err.value.details.reason == "UPSTREAM_INVALID_RESPONSE"
