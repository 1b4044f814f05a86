"""The page walker behind server-streamed pagination.

It follows the upstream's Stripe-style cursors page after page and prefetches at most one page:
while page N is being written to the consumer, page N+1 is fetched. Nothing runs further ahead,
so a slow consumer holds the walker (and the upstream) still. Closing the walker - the consumer
cancelled, its deadline passed - cancels the in-flight fetch and waits for it to unwind, so no task
and no upstream connection outlives the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol, TypeVar

from gateway.errors import Internal


class Page(Protocol):
    """What both list envelopes (messages, message files) look like."""

    @property
    def data(self) -> list: ...  # pragma: no cover - protocol
    @property
    def has_more(self) -> bool: ...  # pragma: no cover - protocol
    def HasField(self, name: str) -> bool: ...  # pragma: no cover - protocol  # noqa: N802
    @property
    def first_id(self) -> str: ...  # pragma: no cover - protocol
    @property
    def last_id(self) -> str: ...  # pragma: no cover - protocol


P = TypeVar("P", bound=Page)

#: Upper bound on pages in one stream: an upstream that never ends stops here.
MAX_PAGES = 100_000


async def walk_pages(
    fetch: Callable[[str | None], Awaitable[P]],
    *,
    start: str | None,
    backwards: bool,
    max_items: int = 0,
    max_pages: int = MAX_PAGES,
) -> AsyncIterator[P]:
    """Yield upstream pages in walk order.

    ``fetch(cursor)`` fetches the page after (or, ``backwards``, before) ``cursor``. Forward walks
    continue from each page's last id; backward walks from each page's first id, so they move
    towards the start of the list one page at a time while each page keeps list order. The walk
    ends on an empty page, on ``has_more: false``, or once ``max_items`` items were yielded.
    """
    seen: set[str] = set()
    cursor = start
    pending: asyncio.Task[P] | None = asyncio.ensure_future(fetch(cursor))
    sent = 0
    try:
        for _ in range(max_pages):
            assert pending is not None
            page = await pending
            pending = None
            items = page.data
            if max_items and sent + len(items) >= max_items:
                del items[max_items - sent:]
                if items:
                    yield page
                return
            if not items:
                return
            sent += len(items)
            more = page.has_more
            if more:
                cursor = items[0].id if backwards else items[-1].id
                if cursor in seen:
                    raise Internal(
                        "the upstream's pagination cursor did not advance",
                        reason="UPSTREAM_CURSOR_STUCK",
                    )
                seen.add(cursor)
                pending = asyncio.ensure_future(fetch(cursor))
            yield page
            if not more:
                return
        raise Internal("the upstream list did not end", reason="UPSTREAM_LIST_ENDLESS")
    finally:
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pending
            # The suppress above must not swallow a cancellation aimed at this task itself.
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise asyncio.CancelledError
