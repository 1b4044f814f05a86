"""Per-consumer limits: request rate (token bucket with burst), concurrent streams, and failed
authentications per peer.

``LocalLimits`` keeps the state in this process. ``RedisLimits`` keeps rate and stream state in
Redis so the limits hold across replicas: a token bucket and a stream-lease set per consumer,
each updated by one Lua script (atomic, one round trip, the clock is Redis's ``TIME`` so replicas
need not agree on time).

Redis failure policy: limits fail **open** (the call is admitted, a warning is logged and
``gateway_limit_backend_errors_total`` counts it). Authentication itself never needs Redis — the
store is a local file — so a Redis outage cannot lock consumers out (OpenAI's October 2023 outage
was an auth cache in Redis). Every Redis command is bounded and broken like the cache's
(``gateway.cache.guard``: ``cache.redis_op_timeout_seconds``, then a breaker for
``cache.redis_breaker_seconds``, commands never cancelled by their callers), so a slow or
blackholed Redis adds at most the op timeout to a call, and nothing while the breaker is open.

Failed authentications are counted per peer address (never the port: a new connection must not
reset the count), and by the authenticator per presented key id too (subjects ``key:<id>``, same
counters). Over ``failed_auth_limit`` failures within the window, further *failures* of that
subject are answered RESOURCE_EXHAUSTED; a valid key is always checked and admitted (see
``gateway.credentials.authenticator``). With Redis the count is shared; the blocked state is also
remembered locally so a blocked subject costs no round trip.
"""

from __future__ import annotations

import math
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol

import structlog

from gateway import metrics
from gateway.cache.guard import CommandGuard, RedisUnavailable

log = structlog.get_logger(__name__)

LIMIT_BACKEND_ERRORS = metrics.LIMIT_BACKEND_ERRORS

#: Peers whose failure counts are remembered locally (oldest evicted first): bounded memory
#: whatever an attacker does with source addresses.
MAX_TRACKED_PEERS = 10_000


@dataclass(frozen=True, slots=True)
class RateLimit:
    """``rate_per_second`` 0 disables the bucket; ``max_streams`` 0 disables the stream limit."""

    rate_per_second: float
    burst: int
    max_streams: int


class Limits(Protocol):
    async def take(self, consumer: str, limit: RateLimit) -> float | None:
        """Take one token; None when admitted, else the seconds until one is available."""

    async def open_stream(self, consumer: str, limit: RateLimit, lifetime: float) -> str | None:
        """A lease id when admitted (release it when the stream ends), else None."""

    async def close_stream(self, consumer: str, lease: str) -> None: ...

    def peer_blocked(self, peer: str) -> float | None:
        """Seconds the peer stays refused, or None."""

    def any_peer_blocked(self) -> bool:
        """Whether any peer is refused now (when none is, a call need not look up its own)."""

    async def failed(self, peer: str) -> None:
        """Record one failed authentication by ``peer``."""

    async def aclose(self) -> None: ...


def peer_address(peer: str) -> str:
    """``ipv4:10.0.0.1:5123`` → ``10.0.0.1``; ``ipv6:[::1]:5123`` → ``::1``; else unchanged."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rpartition(":")[0] or rest
    if kind == "ipv6":
        host = rest.rpartition(":")[0] or rest
        return host.strip("[]")
    return peer


class _PeerFailures:
    """Fixed-window failure counts and blocks per peer, bounded in size."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._windows: OrderedDict[str, tuple[float, int]] = OrderedDict()
        self._blocked: OrderedDict[str, float] = OrderedDict()

    def any_blocked(self) -> bool:
        return bool(self._blocked)

    def blocked(self, peer: str, now: float) -> float | None:
        until = self._blocked.get(peer)
        if until is None:
            return None
        if now >= until:
            del self._blocked[peer]
            return None
        return until - now

    def block(self, peer: str, until: float) -> None:
        self._blocked[peer] = until
        self._blocked.move_to_end(peer)
        while len(self._blocked) > MAX_TRACKED_PEERS:
            self._blocked.popitem(last=False)

    def count(self, peer: str, now: float) -> None:
        start, count = self._windows.pop(peer, (now, 0))
        if now - start >= self.window:
            start, count = now, 0
        count += 1
        self._windows[peer] = (start, count)
        while len(self._windows) > MAX_TRACKED_PEERS:
            self._windows.popitem(last=False)
        if self.limit and count >= self.limit:
            self.block(peer, start + self.window)


class LocalLimits:
    """In-process limits: exact for one replica."""

    def __init__(self, failed_auth_limit: int, failed_auth_window: float) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}
        self._streams: dict[str, set[str]] = {}
        self._peers = _PeerFailures(failed_auth_limit, failed_auth_window)

    async def take(self, consumer: str, limit: RateLimit) -> float | None:
        return self.take_now(consumer, limit)

    def take_now(self, consumer: str, limit: RateLimit) -> float | None:
        """``take`` without a coroutine: the state is in this process."""
        if limit.rate_per_second <= 0:
            return None
        now = time.monotonic()
        burst = float(max(limit.burst, 1))
        tokens, stamp = self._buckets.get(consumer, (burst, now))
        tokens = min(burst, tokens + (now - stamp) * limit.rate_per_second)
        if tokens >= 1.0:
            self._buckets[consumer] = (tokens - 1.0, now)
            return None
        self._buckets[consumer] = (tokens, now)
        return (1.0 - tokens) / limit.rate_per_second

    async def open_stream(self, consumer: str, limit: RateLimit, lifetime: float) -> str | None:
        leases = self._streams.setdefault(consumer, set())
        if limit.max_streams and len(leases) >= limit.max_streams:
            return None
        lease = uuid.uuid4().hex
        leases.add(lease)
        return lease

    async def close_stream(self, consumer: str, lease: str) -> None:
        leases = self._streams.get(consumer)
        if leases is not None:
            leases.discard(lease)
            if not leases:
                del self._streams[consumer]

    def peer_blocked(self, peer: str) -> float | None:
        return self._peers.blocked(peer, time.monotonic())

    def any_peer_blocked(self) -> bool:
        return self._peers.any_blocked()

    async def failed(self, peer: str) -> None:
        self._peers.count(peer, time.monotonic())

    async def aclose(self) -> None:
        return None


# KEYS[1] bucket; ARGV rate, burst. Returns "0" when admitted, else the wait in seconds.
_TAKE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'stamp')
local tokens = tonumber(state[1]) or burst
local stamp = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - stamp) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'stamp', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return tostring(wait)
"""

# KEYS[1] lease set (member = lease id, score = expiry); ARGV max, lease, lifetime.
# Expired leases (a replica that died mid-stream) are dropped first, so a crash cannot leak slots
# for longer than the stream's own deadline.
_OPEN = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local max = tonumber(ARGV[1])
if max > 0 and redis.call('ZCARD', KEYS[1]) >= max then return 0 end
local expiry = now + tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], expiry, ARGV[2])
redis.call('EXPIREAT', KEYS[1], math.ceil(expiry) + 1)
return 1
"""

# KEYS[1] failure counter; ARGV window. Returns {count, ttl_ms}.
_FAIL = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return {n, redis.call('PTTL', KEYS[1])}
"""


class RedisLimits:
    """Limits shared by every replica pointed at the same Redis and prefix."""

    def __init__(self, url: str, prefix: str, failed_auth_limit: int,
                 failed_auth_window: float, *, timeout: float = 0.05,
                 breaker_seconds: float = 5.0, max_connections: int = 64) -> None:
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self._redis = aioredis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, decode_responses=True,
            retry=Retry(NoBackoff(), 0), max_connections=max_connections,
        )
        self._guard = CommandGuard(
            op_timeout=timeout, breaker_seconds=breaker_seconds, max_pending=max_connections,
            on_open=lambda seconds: log.warning("limit_backend_unavailable",
                                                retry_in_seconds=seconds))
        self._prefix = prefix
        self._take = self._redis.register_script(_TAKE)
        self._open = self._redis.register_script(_OPEN)
        self._fail = self._redis.register_script(_FAIL)
        self._failed_limit = failed_auth_limit
        self._window = failed_auth_window
        self._peers = _PeerFailures(failed_auth_limit, failed_auth_window)

    def _error(self, operation: str) -> None:
        LIMIT_BACKEND_ERRORS.inc()
        if self._guard.available:  # while the breaker is open, its opening was the warning
            log.warning("limit_backend_error", operation=operation)

    async def take(self, consumer: str, limit: RateLimit) -> float | None:
        if limit.rate_per_second <= 0:
            return None
        try:
            wait = float(await self._guard.run(lambda: self._take(
                keys=[f"{self._prefix}rate:{consumer}"],
                args=[limit.rate_per_second, max(limit.burst, 1)])))
        except RedisUnavailable:  # fail open, see the module docstring
            self._error("take")
            return None
        return wait if wait > 0 else None

    async def open_stream(self, consumer: str, limit: RateLimit, lifetime: float) -> str | None:
        lease = uuid.uuid4().hex
        try:
            admitted = await self._guard.run(lambda: self._open(
                keys=[f"{self._prefix}streams:{consumer}"],
                args=[limit.max_streams, lease, max(lifetime, 1.0)]))
        except RedisUnavailable:
            self._error("open_stream")
            return lease
        return lease if int(admitted) else None

    async def close_stream(self, consumer: str, lease: str) -> None:
        try:
            await self._guard.run(lambda: self._redis.zrem(f"{self._prefix}streams:{consumer}",
                                                           lease))
        except RedisUnavailable:
            self._error("close_stream")

    def peer_blocked(self, peer: str) -> float | None:
        return self._peers.blocked(peer, time.monotonic())

    def any_peer_blocked(self) -> bool:
        return self._peers.any_blocked()

    async def failed(self, peer: str) -> None:
        try:
            count, ttl_ms = await self._guard.run(lambda: self._fail(
                keys=[f"{self._prefix}authfail:{peer}"], args=[math.ceil(self._window * 1000)]))
        except RedisUnavailable:
            self._error("failed")
            self._peers.count(peer, time.monotonic())
            return
        if self._failed_limit and int(count) >= self._failed_limit:
            self._peers.block(peer, time.monotonic() + max(int(ttl_ms), 0) / 1000)

    async def aclose(self) -> None:
        await self._guard.settle()
        await self._redis.aclose()
