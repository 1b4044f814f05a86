"""The page walker behind server-streamed pagination.

It follows the upstream's Stripe-style cursors page after page and prefetches at most one page:
the fetch of page N+1 starts as soon as page N's cursor is known, and runs while page N is
converted and handed to the consumer. With ``convert`` the fetches return the upstream's raw
list envelope (parsed JSON): the cursor is read from it, the next request is on its way, and only
then is the page converted - so conversion never sits on the chain of upstream round trips, whose
length is what a whole stream costs when the upstream is slow. Nothing runs further ahead: the walker resumes (and starts the fetch of N+2) only
when the consumer asks for the next page, which a gRPC handler does once gRPC core has accepted
the previous write - and gRPC core accepts a write only as HTTP/2 flow control lets it through.
So a slow consumer holds the walker, and the upstream, still.

Closing the walker (the consumer cancelled, its deadline passed, the handler failed) cancels the
in-flight fetch and waits for it to unwind, so no task and no upstream connection outlives the
stream. The walker never swallows a cancellation aimed at its own task (docs/reliability.md, "Failure modes of this stack").
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol, TypeVar

from gateway import metrics
from gateway.cancellation import cancel_and_wait
from gateway.errors import Internal


class Page(Protocol):
    """What both list envelopes (messages, message files) look like."""

    @property
    def data(self) -> list: ...  # pragma: no cover - protocol
    @property
    def has_more(self) -> bool: ...  # pragma: no cover - protocol


P = TypeVar("P", bound=Page)

#: Upper bound on pages in one stream: an upstream that never ends (fresh cursors forever, e.g. a
#: thread being appended to faster than it is read) stops here. 10,000 pages of the largest page
#: size are a million items, far beyond any real thread.
MAX_PAGES = 10_000


def _retrieve(task: asyncio.Task[object]) -> None:
    """Mark a fetch's outcome as seen: a prefetch that failed while nobody awaited it (the stream
    was closed first) must not log "Task exception was never retrieved"."""
    if not task.cancelled():
        task.exception()


#: What the walker needs of a page before converting it: item count, has_more, first id, last id.
Peek = tuple[int, bool, str | None, str | None]


def _peek_page(page: Page) -> Peek:
    items = page.data
    if not items:
        return 0, page.has_more, None, None
    return len(items), page.has_more, items[0].id, items[-1].id


def _peek_envelope(raw: Any) -> Peek | None:
    """The same from an upstream list envelope (parsed JSON), or None when it lacks the shape
    the cursors need - conversion then names the fault. Every check here is one conversion makes
    too, so a page that passes this and fails conversion fails the stream all the same."""
    if type(raw) is not dict:
        return None
    data = raw.get("data")
    more = raw.get("has_more")
    if type(data) is not list or type(more) is not bool:
        return None
    if not data:
        return 0, more, None, None
    first, last = data[0], data[-1]
    if type(first) is not dict or type(last) is not dict:
        return None
    first_id, last_id = first.get("id"), last.get("id")
    if type(first_id) is not str or type(last_id) is not str:
        return None
    return len(data), more, first_id, last_id


async def walk_pages(
    fetch: Callable[[str | None], Awaitable[Any]],
    *,
    start: str | None,
    backwards: bool,
    max_items: int = 0,
    max_pages: int = MAX_PAGES,
    convert: Callable[[Any], P] | None = None,
) -> AsyncIterator[P]:
    """Yield upstream pages in walk order.

    ``fetch(cursor)`` fetches the page after (or, ``backwards``, before) ``cursor``; ``None`` is
    the walk's first page. Without ``convert`` it returns pages (``data`` of items with an
    ``id``, ``has_more``); with it, the upstream's list envelope as parsed JSON, which
    ``convert`` turns into the page yielded (raising for JSON that breaks the schema).
    Forward walks continue from each page's last id; backward walks from each page's first id,
    so they move towards the start of the list one page at a time while each page keeps list
    order. The walk ends on an empty page, on ``has_more: false``, or once ``max_items`` items
    were yielded (the last page is cut to fit).

    Raises ``Internal`` (reason ``UPSTREAM_CURSOR_STUCK``) when a cursor repeats - the upstream
    ignored it and would be walked forever - and ``UPSTREAM_LIST_ENDLESS`` after ``max_pages``.
    """
    seen: set[str] = set()
    sent = 0
    pending: asyncio.Task[tuple[Peek | None, Any, P | None]] | None = None
    #: Whether the walker is blocked on the fetch (the consumer waits for the upstream).
    waiting = False

    async def fetch_page(cursor: str | None) -> tuple[Peek | None, Any, P | None]:
        """(peek, raw envelope to convert, page already converted): one of the last two."""
        metrics.STREAM_PAGES_IN_FLIGHT.inc()
        try:
            fetched = await fetch(cursor)
        finally:
            metrics.STREAM_PAGES_IN_FLIGHT.dec()
        if convert is None:
            return _peek_page(fetched), None, fetched
        peeked = _peek_envelope(fetched)
        if waiting or peeked is None:
            # The walker converts, once the next request is on its way.
            return peeked, fetched, None
        # Nobody is waiting for this page (the consumer is slower than the upstream): hold it
        # converted - protobuf, not the ~170 KB of Python objects a parsed 100-message page is -
        # until it is asked for. The conversion is off the critical path: the consumer is.
        return peeked, None, convert(fetched)

    def start_fetch(cursor: str | None) -> asyncio.Task[tuple[Peek | None, Any, P | None]]:
        task = asyncio.ensure_future(fetch_page(cursor))
        task.add_done_callback(_retrieve)
        return task

    try:
        pending = start_fetch(start)
        for number in range(1, max_pages + 1):
            waiting = True
            try:
                # Shielded: a cancellation of the consumer reaches the fetch once, from the
                # finally below, however often the consumer is cancelled.
                peeked, raw, page = await asyncio.shield(pending)
            finally:
                waiting = False
            pending = None
            if peeked is None:
                assert convert is not None  # pages are always peekable
                convert(raw)  # raises, naming what is wrong
                raise Internal(
                    "the upstream returned a list page the gateway could not understand",
                    reason="UPSTREAM_INVALID_RESPONSE",
                )
            count, more, first_id, last_id = peeked
            if not count:
                if page is None and convert is not None:
                    convert(raw)  # an empty page must still be a valid one
                return
            if max_items and sent + count >= max_items:
                if page is None:
                    assert convert is not None
                    page = convert(raw)
                del page.data[max_items - sent:]
                yield page
                return
            sent += count
            if more:
                cursor = first_id if backwards else last_id
                if cursor in seen or cursor == start:
                    raise Internal(
                        "the upstream's pagination cursor did not advance",
                        reason="UPSTREAM_CURSOR_STUCK",
                    )
                assert cursor is not None  # count > 0: both ids are strings
                seen.add(cursor)
                if number < max_pages:
                    # The one page of prefetch, fetched while this page is converted and written.
                    pending = start_fetch(cursor)
                    if number > 1:
                        # One turn of the loop: the fetch builds and sends its request now, not
                        # after this page's conversion and write (a new task only runs once we
                        # yield). Not on the first page: the consumer is waiting for it, and
                        # the request still goes out while that page is written.
                        await asyncio.sleep(0)
            if page is None:
                assert convert is not None
                page = convert(raw)
            raw = None  # only the page is held while the consumer takes it
            yield page
            if not more:
                return
        raise Internal("the upstream list did not end", reason="UPSTREAM_LIST_ENDLESS")
    finally:
        if pending is not None and not pending.done():
            await cancel_and_wait(pending)
