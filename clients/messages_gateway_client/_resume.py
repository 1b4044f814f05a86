"""Resuming a broken stream from the last page received, without gaps or duplicates.

A streamed page is the unit of delivery: it arrives whole or not at all. So after a failure the
client knows exactly what it has, and asks for the rest:

* forward streams (``after`` or no cursor): ``after=<resume_after of the last page>``, which is
  that page's last id - the cursor the gateway itself would have used next;
* backward streams (``before``): the contract walks backwards page by page with each page in list
  order, so the next page the gateway would fetch is the one *before the first id* of the last
  page: ``before=<data[0].id>``. (``resume_after`` names the page's last id, which is the wrong end
  for a backward walk, so it is not used there.)

``max_items`` shrinks by what was received, and ``page_index`` keeps counting across resumes, so
a consumer sees one stream. Only UNAVAILABLE after at least one page in the failed attempt is
resumed: a failure before the first page is retried as a unary call is (``_retry``),
and other statuses (INVALID_ARGUMENT, INTERNAL, DEADLINE_EXCEEDED...) would fail again.
"""

from __future__ import annotations

import random
from typing import Generic, Protocol, TypeVar

import grpc

#: Pause before the n-th resume: full jitter over min(cap, base * 2**n).
RESUME_BACKOFF_BASE = 0.05
RESUME_BACKOFF_CAP = 1.0


class _Item(Protocol):
    @property
    def id(self) -> str: ...  # pragma: no cover - protocol


class StreamRequest(Protocol):
    after: str
    before: str
    max_items: int

    def CopyFrom(self, other: StreamRequest) -> None: ...  # pragma: no cover  # noqa: N802


R = TypeVar("R", bound=StreamRequest)


class Cursor(Generic[R]):
    """Where a stream stands: the request that fetches the rest of it."""

    def __init__(self, request: R) -> None:
        self._request = request
        self._rest: R = request
        self.backwards = bool(request.before)
        self.received = 0
        self.pages = 0
        self.resumes = 0
        self._progress = False

    def start(self) -> R | None:
        """The request for the next attempt, or None when ``max_items`` were all received."""
        self._progress = False
        if self._request.max_items and self.received >= self._request.max_items:
            return None
        return self._rest

    def advance(self, data: list[_Item], resume_after: str) -> int:
        """Record a received page; returns its index within the whole stream."""
        index = self.pages
        if data:
            rest = type(self._request)()
            rest.CopyFrom(self._request)
            if self.backwards:
                rest.before = data[0].id
            else:
                rest.after = resume_after or data[-1].id
            self.received += len(data)
            if self._request.max_items:
                rest.max_items = self._request.max_items - self.received
            self._rest = rest
            self.pages += 1
            self._progress = True
        return index

    @property
    def progressed(self) -> bool:
        """Whether the current attempt delivered a page."""
        return self._progress

    def can_resume(self, code: grpc.StatusCode, max_resumes: int) -> bool:
        return (code == grpc.StatusCode.UNAVAILABLE and self._progress
                and self.resumes < max_resumes)

    def backoff(self) -> float:
        self.resumes += 1
        return random.uniform(0, min(RESUME_BACKOFF_CAP, RESUME_BACKOFF_BASE * 2 ** self.resumes))
