"""Idempotent creates: one message per (consumer, key), however often or concurrently it is sent.

A create without a key is sent once and never re-sent after it reached the upstream (a lost
answer would otherwise become a duplicate message). A create with a key (``request_id`` or the
``idempotency-key`` metadata) is retried like a read, and deduplicated:

* **Within the window** the same consumer and key get the first result (stored as proto bytes);
  concurrent duplicates wait for the first call instead of sending their own; a key re-used with a
  different request is INVALID_ARGUMENT naming ``request_id``.
* **Ambiguous failures** - the request reached the upstream but no usable answer came back (5xx,
  reset, timeout, a garbled body: the create may or may not have happened). The gateway cannot
  know from the answer, so it asks the upstream: every keyed create carries a marker in its
  metadata (``gateway_idempotency_key`` = a hash of consumer and key; it stays visible on the
  message, and the key is reserved on every write, create and update, so no consumer can put a
  marker on a message itself), and before anything is re-sent after an ambiguous failure the
  newest messages of the thread are listed and searched for the marker. Found: that message is the result (no second
  create). Not found: the create did not happen, and sending it again is safe. The same look-up
  runs first when a consumer retries a key whose last attempt ended ambiguously (the gateway
  answered UNAVAILABLE/DEADLINE_EXCEEDED naming the key in ErrorInfo metadata ``request_id``).

We chose the look-up over "refuse to retry ambiguous failures": refusing only moves the problem
to the consumer, whose retry could not be deduplicated either once the answer was lost. The
look-up scans one page (100 newest messages), enough because the lost create was the thread's
newest a moment ago; a thread receiving more than 100 creates within one retry interval could
hide it. This window store is in-process; with Redis configured the window is shared by every
worker and replica (``gateway.operations.shared_idempotency``, same semantics), and this store is
its fallback while Redis is unavailable.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from gateway import metrics
from gateway.context import CallContext
from gateway.errors import (
    DeadlineExceeded,
    FieldViolation,
    GatewayError,
    InvalidArgument,
)
from gateway.operations.validation import MARKER_KEY, MAX_ID_LENGTH
from gateway.upstream.admission import ADMISSION_REASON
from gateway.upstream.circuit import CIRCUIT_OPEN_REASON

__all__ = ["MARKER_KEY", "IdempotencyStore", "IdempotencyWindow", "marker"]
#: The upstream's metadata limit; the marker takes one of the pairs.
MAX_METADATA_PAIRS = 16
#: How many of the thread's newest messages the look-up searches.
LOOKUP_PAGE = 100
#: Errors raised before anything was sent upstream.
NOT_SENT_REASONS = frozenset({CIRCUIT_OPEN_REASON, ADMISSION_REASON})


def idempotency_key(req: pb.CreateMessageRequest, ctx: CallContext) -> str | None:
    """The request's key (field, or the call's ``idempotency-key``), validated; None without."""
    header = ctx.idempotency_key
    if header is not None and (not header or len(header) > MAX_ID_LENGTH
                               or not header.isprintable()):
        raise InvalidArgument.for_fields([FieldViolation(
            "idempotency-key", f"must be printable and 1 to {MAX_ID_LENGTH} characters")])
    if req.request_id and header and header != req.request_id:
        raise InvalidArgument.for_fields([FieldViolation(
            "request_id", "differs from the idempotency-key metadata")])
    return req.request_id or header or None


def check_marker_room(req: pb.CreateMessageRequest, keyed: bool) -> None:
    """The marker key is reserved, and a keyed create needs one metadata pair for it."""
    entries = req.metadata.entries if req.HasField("metadata") else {}
    if MARKER_KEY in entries:
        raise InvalidArgument.for_fields([FieldViolation(
            f"metadata.{MARKER_KEY}", "is reserved by the gateway")])
    if keyed and len(entries) >= MAX_METADATA_PAIRS:
        raise InvalidArgument.for_fields([FieldViolation(
            "metadata", f"may have at most {MAX_METADATA_PAIRS - 1} pairs with a request_id "
                        "(the gateway stores its idempotency marker in one)")])


def marker(consumer: str, key: str) -> str:
    return hashlib.sha256(f"{consumer}\0{key}".encode()).hexdigest()[:40]


def fingerprint(req: pb.CreateMessageRequest) -> str:
    """What makes two creates "the same request": everything but the key itself."""
    copy = pb.CreateMessageRequest()
    copy.CopyFrom(req)
    copy.request_id = ""
    return hashlib.sha256(copy.SerializeToString(deterministic=True)).hexdigest()


def may_have_happened(exc: BaseException) -> bool:
    """Whether a failed create may nevertheless exist upstream."""
    if isinstance(exc, GatewayError):
        if exc.details.reason in NOT_SENT_REASONS:
            return False
        status = exc.details.upstream.status if exc.details.upstream else None
        # A 4xx (408 included) is the upstream saying it did not apply the request.
        if status is not None and 400 <= status < 500:
            return False
    return True


def find_marked(page: Any, mark: str) -> Any | None:
    """The message carrying ``mark`` in an upstream list page, or None."""
    data = page.get("data") if isinstance(page, dict) else None
    for item in data if isinstance(data, list) else ():
        meta = item.get("metadata") if isinstance(item, dict) else None
        if isinstance(meta, dict) and meta.get(MARKER_KEY) == mark:
            return item
    return None


class IdempotencyWindow(Protocol):
    """What the operations need: ``IdempotencyStore`` here, or the shared one
    (``gateway.operations.shared_idempotency``)."""

    async def run(self, consumer: str, key: str, print_: str,
                  create: Callable[[bool], Awaitable[pb.Message]], *,
                  remaining: Callable[[], float | None]) -> pb.Message: ...


@dataclass(slots=True)
class _Entry:
    fingerprint: str
    #: "pending" (a call is creating it), "done" (``result`` holds it) or "ambiguous" (the last
    #: attempt may have created it: look it up before sending again).
    state: str
    result: bytes = b""
    waiter: asyncio.Future[None] | None = None
    expires: float = float("inf")


class IdempotencyStore:
    """The window of remembered creates, bounded in time and in count."""

    def __init__(self, window: float = 3600.0, max_entries: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def _prune(self) -> None:
        # From the oldest end only, stopping at the first live entry: a scan of the whole window
        # (up to max_entries) on every create would cost milliseconds per call at 100,000.
        # Entries are kept in start order and all live for the same window, so an expired entry
        # behind a live one is dropped a moment later, when the ones before it expire.
        now = self._clock()
        while self._entries:
            oldest_key, oldest = next(iter(self._entries.items()))
            if oldest.state == "pending" or oldest.expires > now:
                break
            del self._entries[oldest_key]
        while len(self._entries) > self.max_entries:
            oldest = next((k for k, e in self._entries.items() if e.state != "pending"), None)
            if oldest is None:
                break
            del self._entries[oldest]

    async def run(
        self,
        consumer: str,
        key: str,
        print_: str,
        create: Callable[[bool], Awaitable[pb.Message]],
        *,
        remaining: Callable[[], float | None],
    ) -> pb.Message:
        """The message for (consumer, key): remembered, awaited, or made by ``create(recover)``
        where ``recover`` asks it to look for an earlier ambiguous attempt first. A duplicate
        waits for the first call at most ``remaining()`` seconds (the caller's deadline)."""
        slot = (consumer, key)
        while True:
            self._prune()
            entry = self._entries.get(slot)
            if entry is not None and entry.fingerprint != print_:
                raise InvalidArgument.for_fields([FieldViolation(
                    "request_id", "was already used with a different request")])
            if entry is not None and entry.state == "done":
                metrics.IDEMPOTENT_REPLAYS.labels("stored").inc()
                return pb.Message.FromString(entry.result)
            if entry is not None and entry.state == "pending":
                assert entry.waiter is not None
                left = remaining()
                try:
                    async with asyncio.timeout(left):
                        await asyncio.shield(entry.waiter)
                except TimeoutError:
                    raise DeadlineExceeded(
                        "the first call with this request_id did not finish in time") from None
                if self._entries.get(slot) is entry and entry.state == "done":
                    metrics.IDEMPOTENT_REPLAYS.labels("awaited").inc()
                    return pb.Message.FromString(entry.result)
                continue
            return await self._lead(slot, print_, recover=entry is not None, create=create)

    async def _lead(self, slot: tuple[str, str], print_: str, *, recover: bool,
                    create: Callable[[bool], Awaitable[pb.Message]]) -> pb.Message:
        entry = _Entry(print_, "pending", waiter=asyncio.get_running_loop().create_future())
        self._entries[slot] = entry
        self._entries.move_to_end(slot)
        try:
            message = await create(recover)
        except BaseException as exc:
            if may_have_happened(exc):
                entry.state, entry.expires = "ambiguous", self._clock() + self.window
                if isinstance(exc, GatewayError):
                    exc.details.metadata["request_id"] = slot[1]
            else:
                self._entries.pop(slot, None)
            raise
        else:
            entry.state, entry.result = "done", message.SerializeToString()
            entry.expires = self._clock() + self.window
            return message
        finally:
            assert entry.waiter is not None
            if not entry.waiter.done():
                entry.waiter.set_result(None)
            entry.waiter = None
