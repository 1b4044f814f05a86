"""The page walker behind server-streamed pagination.

It follows the upstream's Stripe-style cursors page after page and prefetches at most one page:
the fetch of page N+1 starts as soon as page N has arrived, and runs while page N is handed to
the consumer. Nothing runs further ahead: the walker resumes (and starts the fetch of N+2) only
when the consumer asks for the next page, which a gRPC handler does once gRPC core has accepted
the previous write - and gRPC core accepts a write only as HTTP/2 flow control lets it through.
So a slow consumer holds the walker, and the upstream, still.

Closing the walker (the consumer cancelled, its deadline passed, the handler failed) cancels the
in-flight fetch and waits for it to unwind, so no task and no upstream connection outlives the
stream. The walker never swallows a cancellation aimed at its own task (RELIABILITY.md §2.9).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol, TypeVar

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


async def walk_pages(
    fetch: Callable[[str | None], Awaitable[P]],
    *,
    start: str | None,
    backwards: bool,
    max_items: int = 0,
    max_pages: int = MAX_PAGES,
) -> AsyncIterator[P]:
    """Yield upstream pages in walk order.

    ``fetch(cursor)`` fetches the page after (or, ``backwards``, before) ``cursor``; ``None`` is
    the walk's first page. Forward walks continue from each page's last id; backward walks from
    each page's first id, so they move towards the start of the list one page at a time while
    each page keeps list order. The walk ends on an empty page, on ``has_more: false``, or once
    ``max_items`` items were yielded (the last page is cut to fit).

    Raises ``Internal`` (reason ``UPSTREAM_CURSOR_STUCK``) when a cursor repeats - the upstream
    ignored it and would be walked forever - and ``UPSTREAM_LIST_ENDLESS`` after ``max_pages``.
    """
    seen: set[str] = set()
    sent = 0
    pending: asyncio.Task[P] | None = None
    try:
        pending = asyncio.ensure_future(fetch(start))
        pending.add_done_callback(_retrieve)
        for number in range(1, max_pages + 1):
            page = await pending
            pending = None
            items = page.data
            if not items:
                return
            if max_items and sent + len(items) >= max_items:
                del items[max_items - sent:]
                yield page
                return
            sent += len(items)
            more = page.has_more
            if more:
                cursor = items[0].id if backwards else items[-1].id
                if cursor in seen or cursor == start:
                    raise Internal(
                        "the upstream's pagination cursor did not advance",
                        reason="UPSTREAM_CURSOR_STUCK",
                    )
                seen.add(cursor)
                if number < max_pages:
                    # The one page of prefetch: fetched while this page is being written.
                    pending = asyncio.ensure_future(fetch(cursor))
                    pending.add_done_callback(_retrieve)
            yield page
            if not more:
                return
        raise Internal("the upstream list did not end", reason="UPSTREAM_LIST_ENDLESS")
    finally:
        if pending is not None and not pending.done():
            pending.cancel()
            # asyncio.wait never raises the fetch's own outcome (its CancelledError included),
            # but does raise a cancellation of *this* task: nothing aimed at us is swallowed.
            await asyncio.wait((pending,))
