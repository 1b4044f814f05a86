"""Threads belong to their owner: a tenant, or one consumer (``[auth] thread_access``).

A thread made through the gateway carries its owner in the upstream's own thread metadata, under
the reserved key ``gateway_owner``: an HMAC-SHA256 (``auth.owner_secret``) of the tenant, and of
the consumer under ``consumer``. No database is needed and every replica agrees. The stamp is
never shown to consumers (removed from every thread they receive) and never accepted from them
(refused on every write, like the idempotency marker).

Every messages and threads call checks the owner before any cache read or upstream write. A
thread of another owner answers NOT_FOUND exactly as a missing one does (no existence oracle):
both are ``refuse()``'s error, with no upstream detail and no upstream headers. Owners are
cached per (tenant, thread) in this process, bounded in count, and forgotten when the thread is
deleted here; another replica's entry for a deleted thread is harmless (the upstream answers 404
for anything on it). "No owner" is never cached: it is the one state that changes (adoption,
possibly on another replica). A thread made outside the gateway carries no stamp: ``open``
serves it; ``tenant`` and ``consumer`` refuse it until an administrator adopts it (AdoptThread,
``admin`` scope, audited).
"""

from __future__ import annotations

import hashlib
import hmac
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from gateway.context import CallContext
from gateway.errors import FieldViolation, InvalidArgument, NotFound, UpstreamErrorInfo

#: The reserved thread metadata key holding the owner stamp.
OWNER_KEY = "gateway_owner"
#: The built-in HMAC key when ``auth.owner_secret`` is not set.
BUILT_IN_SECRET = b"messages-gateway/owner-stamp/v1"
#: Owners remembered per process.
MAX_CACHED_OWNERS = 100_000
#: What a missing stamp is cached as.
_UNOWNED = ""

FetchThread = Callable[[CallContext, str], Awaitable[Mapping[str, Any]]]


def thread_not_found(thread_id: str) -> NotFound:
    """The upstream's own answer for a missing thread, word for word."""
    message = f"No thread found with id '{thread_id}'."
    return NotFound(message, reason="UPSTREAM_NOT_FOUND", upstream=UpstreamErrorInfo(
        status=404, type="invalid_request_error", message=message))


def refuse(ctx: CallContext, thread_id: str) -> NotFound:
    """The one answer for a thread the caller may not see, missing or another owner's: the
    upstream's words, and none of the upstream's headers or ids (they would tell the two
    apart)."""
    ctx.response_headers.clear()
    return thread_not_found(thread_id)


def metadata_of(raw: Any) -> Mapping[str, Any] | None:
    """The metadata of an upstream thread body, if it has any (the body is checked later)."""
    metadata = raw.get("metadata") if isinstance(raw, Mapping) else None
    return metadata if isinstance(metadata, Mapping) else None


def refuse_reserved(field: str, metadata: Mapping[str, str], reserved: tuple[str, ...]) -> None:
    """A consumer may never set, change or remove a reserved metadata key."""
    for key in reserved:
        if key in metadata:
            raise InvalidArgument.for_fields([FieldViolation(
                f"{field}.{key}", "is reserved by the gateway")])


class Ownership:
    """Stamps and checks thread owners for one gateway process."""

    def __init__(self, mode: str, secret: bytes = b"", *,
                 max_entries: int = MAX_CACHED_OWNERS) -> None:
        if mode not in {"tenant", "consumer", "open"}:
            raise ValueError(f"unknown thread access mode {mode!r}")
        self.mode = mode
        self._secret = secret or BUILT_IN_SECRET
        self._max_entries = max_entries
        #: (tenant, thread id) -> the stamp the thread carries ("" = none).
        self._owners: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._stamps: dict[tuple[str, str | None], str] = {}

    @property
    def enforced(self) -> bool:
        return self.mode != "open"

    def stamp(self, ctx: CallContext) -> str:
        """The stamp of the caller's threads."""
        who = (ctx.tenant, ctx.consumer if self.mode == "consumer" else None)
        stamp = self._stamps.get(who)
        if stamp is None:
            subject = ctx.tenant if who[1] is None else f"{ctx.tenant}\0{who[1]}"
            stamp = hmac.new(self._secret, subject.encode(), hashlib.sha256).hexdigest()[:40]
            if len(self._stamps) < self._max_entries:
                self._stamps[who] = stamp
        return stamp

    def remember(self, ctx: CallContext, thread_id: str, metadata: Mapping[str, Any] | None
                 ) -> str:
        """Cache what a thread the upstream just returned carries; returns its stamp."""
        value = metadata.get(OWNER_KEY) if isinstance(metadata, Mapping) else None
        found = value if isinstance(value, str) else _UNOWNED
        slot = (ctx.tenant, thread_id)
        if found == _UNOWNED:
            self._owners.pop(slot, None)  # never cached: an adoption anywhere changes it
            return found
        self._owners[slot] = found
        self._owners.move_to_end(slot)
        while len(self._owners) > self._max_entries:
            self._owners.popitem(last=False)
        return found

    def forget(self, ctx: CallContext, thread_id: str) -> None:
        self._owners.pop((ctx.tenant, thread_id), None)

    def allows(self, ctx: CallContext, found: str) -> bool:
        return not self.enforced or (found != _UNOWNED and hmac.compare_digest(
            found, self.stamp(ctx)))

    async def check(self, ctx: CallContext, thread_id: str, fetch: FetchThread) -> None:
        """NOT_FOUND unless the caller owns ``thread_id``; one upstream look-up the first time
        this process meets the thread (``fetch`` returns its JSON, or raises NOT_FOUND)."""
        if not self.enforced:
            return
        found = self._owners.get((ctx.tenant, thread_id))
        if found is None:
            try:
                raw = await fetch(ctx, thread_id)
            except NotFound:
                raise refuse(ctx, thread_id) from None
            found = self.remember(ctx, thread_id, metadata_of(raw))
        if not self.allows(ctx, found):
            raise refuse(ctx, thread_id)
