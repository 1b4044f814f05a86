"""``authenticate(authorization, peer, scope) -> Principal``: the one consumer check every face
calls (gRPC metadata ``authorization`` or the HTTP ``Authorization`` header, same value).

Order, cheapest and safest first:

1. the header must be ``Bearer <key>`` with a well-formed key (length checked before anything
   else) → otherwise Unauthenticated; nothing derived from a malformed value is ever looked up;
2. the key id names one record in the in-memory snapshot; the SHA-256 of the presented key is
   compared with ``hmac.compare_digest``; revoked, expired or unknown → Unauthenticated (one
   message for all, so a caller learns nothing about which keys exist). A key that passed is
   remembered under its (public) key id until the store changes, and later calls compare the
   presented value with the remembered one, again with ``hmac.compare_digest``: SHA-256 through
   OpenSSL was most of authentication's cost on a cached call (docs/benchmarks.md). The
   remembered value lives in this process's memory only, as every request's header does; the
   store on disk keeps hashes only, and a reload forgets every remembered value;
3. the consumer must hold ``scope`` → PermissionDenied;
4. the consumer's token bucket → ResourceExhausted with ``retry_after``.

``admit_remembered(header, scope)`` runs first on the gRPC face: it admits only the exact header
value that passed all of the above before (one dict lookup by the 16 characters where a key id
sits, one ``compare_digest``, then the scope, expiry and token checks) and answers
None for anything else, which then takes the path above and gets its error from it.

Failures of steps 1 and 2 count against the peer address and against the presented key id (when
it parses). Over ``failed_auth_limit`` within the window, either one turns *further failures*
into RESOURCE_EXHAUSTED (``AUTH_FAILURES_EXCEEDED``, with retry-after); a valid key is always
checked and admitted, whatever its address or key id has seen: a block of the whole address locked
out every consumer behind one NAT, ingress or sidecar. Messages never quote the presented value.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

from gateway import metrics
from gateway.config import AuthSettings
from gateway.credentials import keys
from gateway.credentials.limits import Limits, LocalLimits, RateLimit, peer_address
from gateway.credentials.store import Consumer, KeyRecord, Snapshot
from gateway.errors import PermissionDenied, ResourceExhausted, Unauthenticated

BEARER = "bearer "
#: Failed-authentication counts per presented key id share the limits' per-peer counters under
#: this prefix (no peer address starts with it).
KEY_ID_SUBJECT = "key:"
#: Where the key id sits in a canonical header value, "Bearer mgw_<key id>_<secret>".
_HEADER_KEY_ID = slice(len("Bearer ") + len(keys.PREFIX), len("Bearer ") + keys.KEY_ID_END)


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated consumer: who, with which key, allowed what, under which profile."""

    consumer: str
    key_id: str
    scopes: frozenset[str]
    profile: str
    limit: RateLimit


class Authenticator:
    def __init__(
        self,
        snapshot: Callable[[], Snapshot],
        limits: Limits,
        settings: AuthSettings,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``snapshot`` returns the current store snapshot (the reloader swaps it)."""
        self._snapshot = snapshot
        self.limits = limits
        self._settings = settings
        self._clock = clock
        #: key id -> (the header value and the key that passed the hash check, its record, its
        #: Principal), for the snapshot ``_verified_for`` only; at most one entry per key in the
        #: store.
        self._verified: dict[str, tuple[str, str, KeyRecord, Principal]] = {}
        self._verified_for: Snapshot | None = None
        #: In-process limits are checked without a coroutine (the common deployment's hot path).
        self._local = limits if isinstance(limits, LocalLimits) else None

    def admit_remembered(self, authorization: str | None, scope: str) -> Principal | None:
        """The common call's whole check, without a coroutine: exactly the header value that
        passed the full check before, under the current store, with in-process limits, the
        scope held and a token taken. None means "not that case": call ``authenticate``, which
        decides (and reports) everything else."""
        if authorization is None or self._local is None:
            return None
        known = self._verified.get(authorization[_HEADER_KEY_ID])
        if known is None or self._verified_for is not self._snapshot():
            return None
        value, _, record, principal = known
        # compare_digest takes ASCII text only; the length check keeps the work bounded.
        if (len(authorization) != len(value) or not authorization.isascii()
                or not hmac.compare_digest(value, authorization)):
            return None
        if record.expires is not None and self._clock() >= record.expires:
            return None
        if scope not in principal.scopes:
            return None
        if self._local.take_now(principal.consumer, principal.limit) is not None:
            return None
        return principal

    async def authenticate(
        self, authorization: str | None, peer: str | Callable[[], str], scope: str | None = None
    ) -> Principal:
        """``peer`` may be a callable: the gRPC face's ``context.peer()`` is only asked for when
        this call fails (a valid key needs no address)."""
        principal = self._verify(authorization)
        if principal is None:
            await self._failed(authorization, _address(peer))
        if scope is not None and scope not in principal.scopes:
            metrics.AUTH_FAILURES.labels("scope").inc()
            raise PermissionDenied(f"the key lacks the '{scope}' scope",
                                   reason="SCOPE_MISSING", metadata={"scope": scope})
        if self._local is not None:
            wait = self._local.take_now(principal.consumer, principal.limit)
        else:
            wait = await self.limits.take(principal.consumer, principal.limit)
        if wait is not None:
            metrics.RATE_LIMITED.labels("rate", metrics.consumer_label(principal.consumer),
                                        principal.profile).inc()
            raise ResourceExhausted("the consumer's request rate limit is exceeded",
                                    reason="CONSUMER_RATE_LIMITED", retry_after=wait)
        return principal

    async def _failed(self, authorization: str | None, address: str) -> NoReturn:
        """A failed check: counted against the address and the presented key id (when one
        parses). Blocked by either (over the limit before this failure), the failure is answered
        RESOURCE_EXHAUSTED: only failures are refused, a valid key never is (a block per address
        alone locked out everyone behind one NAT, ingress or sidecar)."""
        key_id = _presented_key_id(authorization)
        blocked = self.limits.peer_blocked(address) if self.limits.any_peer_blocked() else None
        key_blocked = (self.limits.peer_blocked(KEY_ID_SUBJECT + key_id)
                       if key_id is not None and self.limits.any_peer_blocked() else None)
        await self.limits.failed(address)
        if key_id is not None:
            await self.limits.failed(KEY_ID_SUBJECT + key_id)
        if blocked is not None or key_blocked is not None:
            metrics.AUTH_FAILURES.labels("peer_blocked" if blocked is not None
                                         else "key_blocked").inc()
            raise ResourceExhausted("too many failed authentications; retry later",
                                    reason="AUTH_FAILURES_EXCEEDED",
                                    retry_after=max(blocked or 0.0, key_blocked or 0.0))
        raise Unauthenticated(
            "a valid gateway key is required: 'authorization: Bearer <key>'",
            reason="INVALID_GATEWAY_KEY")

    def _verify(self, authorization: str | None) -> Principal | None:
        if not authorization:
            metrics.AUTH_FAILURES.labels("missing").inc()
            return None
        # Bound the work before any string operation that scales with the input.
        if len(authorization) > len(BEARER) + keys.KEY_LENGTH + 8:
            metrics.AUTH_FAILURES.labels("malformed").inc()
            return None
        scheme = authorization[: len(BEARER)]
        if scheme != "Bearer " and scheme.lower() != BEARER:
            metrics.AUTH_FAILURES.labels("malformed").inc()
            return None
        presented = authorization[len(BEARER):].strip()
        key_id = keys.parse_key_id(presented)
        if key_id is None:
            metrics.AUTH_FAILURES.labels("malformed").inc()
            return None
        snapshot = self._snapshot()
        if snapshot is not self._verified_for:
            self._verified = {}
            self._verified_for = snapshot
        known = self._verified.get(key_id)
        if known is not None and hmac.compare_digest(known[1], presented):
            _, _, record, principal = known
        else:
            found = snapshot.by_key_id.get(key_id)
            if found is None:
                # Hash anyway: unknown and wrong keys take the same time.
                keys.matches(presented, "0" * 64)
                metrics.AUTH_FAILURES.labels("unknown").inc()
                return None
            consumer, record = found
            if not keys.matches(presented, record.hash):
                metrics.AUTH_FAILURES.labels("unknown").inc()
                return None
            principal = Principal(consumer.id, record.key_id, consumer.scopes, consumer.profile,
                                  self._limit(consumer))
            if record.valid_at(self._clock()):
                self._verified[key_id] = (authorization, presented, record, principal)
        # Every call: an expiry (a rotated key's grace period) needs no store change.
        if not record.valid_at(self._clock()):
            metrics.AUTH_FAILURES.labels("revoked" if record.revoked else "expired").inc()
            return None
        return principal

    def still_valid(self, principal: Principal) -> bool:
        """Whether ``principal``'s key is still in force in the current store (a long stream
        checks this between pages, so a revocation ends it within the reload bound)."""
        found = self._snapshot().by_key_id.get(principal.key_id)
        return found is not None and found[1].valid_at(self._clock())

    def _limit(self, consumer: Consumer) -> RateLimit:
        s = self._settings
        return RateLimit(
            s.rate_per_second if consumer.rate_per_second is None else consumer.rate_per_second,
            s.burst if consumer.burst is None else consumer.burst,
            s.max_streams if consumer.max_streams is None else consumer.max_streams,
        )

    async def open_stream(self, principal: Principal, lifetime: float) -> str:
        """A stream lease for ``principal``; ResourceExhausted at the concurrent-stream limit."""
        lease = await self.limits.open_stream(principal.consumer, principal.limit, lifetime)
        if lease is None:
            metrics.RATE_LIMITED.labels("streams", metrics.consumer_label(principal.consumer),
                                        principal.profile).inc()
            raise ResourceExhausted(
                "the consumer has too many open streams", reason="CONSUMER_STREAM_LIMIT",
                retry_after=1.0)
        return lease

    async def close_stream(self, principal: Principal, lease: str) -> None:
        await self.limits.close_stream(principal.consumer, lease)


def _address(peer: str | Callable[[], str]) -> str:
    return peer_address(peer if isinstance(peer, str) else peer())


def _presented_key_id(authorization: str | None) -> str | None:
    """The key id of a well-formed presented key (public: it is in the key's first part)."""
    if not authorization or len(authorization) > len(BEARER) + keys.KEY_LENGTH + 8:
        return None
    if authorization[: len(BEARER)].lower() != BEARER:
        return None
    return keys.parse_key_id(authorization[len(BEARER):].strip())
