"""The Redis backend (redis-py asyncio): one cache shared by every replica.

Failure policy: the cache fails open (``gateway.cache.guard``, shared with the Redis limits): a
command slower than ``op_timeout`` or failing counts as a failure and the call goes to the
upstream; after ``FAILURES_TO_OPEN`` consecutive failures the backend is skipped for
``breaker_seconds`` so a dead Redis costs nothing per call. A caller never cancels a Redis command
(CVE-2023-28858/9); the envelope's (tenant, key) tag is checked on every read regardless.

Invalidation: each generation scope (a thread's list pages, one message) has a key holding a
random token; a write sets a new token (visible to every replica at once) and entries stored under
the old token no longer match. Fills are conditional (a Lua script compares the tokens seen before
the fetch with the current ones), so an answer fetched across a write is never stored. Reads fetch
the tokens and the value in one ``MGET``. Token keys outlive every entry (TTL = longest entry TTL
+ a margin), so an expired token can only turn entries into misses, never revive old ones.

A failed invalidation (Redis paused or unreachable during a write) is not dropped: it is retried
every ``INVALIDATION_RETRY_SECONDS`` until it lands, and until then this replica bypasses the cache
for the scopes it could not invalidate. Other replicas can serve the old entry only while Redis
answers their reads but not this replica's write, and at most one retry interval after Redis
accepts writes again, instead of until the entry's TTL.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
import structlog
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from gateway import metrics
from gateway.cache.backend import Lookup
from gateway.cache.guard import FAILURES_TO_OPEN, CommandGuard
from gateway.cache.guard import RedisUnavailable as _Unavailable
from gateway.cache.envelope import EnvelopeError, decode, encode
from gateway.cache.keys import CacheKey
from gateway.cancellation import cancel_and_wait

__all__ = ["FAILURES_TO_OPEN", "RedisBackend"]

log = structlog.get_logger("gateway.cache")

#: Seconds a generation key outlives the longest entry TTL.
GENERATION_MARGIN_SECONDS = 60.0
#: How often a failed invalidation is tried again.
INVALIDATION_RETRY_SECONDS = 0.5
#: Scopes remembered as not invalidated (beyond it the oldest are dropped).
MAX_DIRTY_SCOPES = 10_000

# KEYS: generation keys..., value key. ARGV: expected tokens..., value, ttl in ms.
_CONDITIONAL_SET = """
local n = #KEYS - 1
for i = 1, n do
  local current = redis.call('GET', KEYS[i]) or ''
  if current ~= ARGV[i] then return 0 end
end
redis.call('SET', KEYS[n + 1], ARGV[n + 1], 'PX', ARGV[n + 2])
return 1
"""


def _h(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


class RedisBackend:
    name = "redis"

    def __init__(
        self,
        *,
        url: str,
        prefix: str,
        op_timeout: float,
        breaker_seconds: float,
        max_connections: int,
        max_ttl: float,
    ) -> None:
        self._redis = aioredis.Redis.from_url(
            url,
            socket_timeout=op_timeout,
            socket_connect_timeout=op_timeout,
            retry=Retry(NoBackoff(), 0),
            max_connections=max_connections,
        )
        self._set_if_current = self._redis.register_script(_CONDITIONAL_SET)
        self._prefix = prefix
        self._generation_ttl = max(1, int(max_ttl + GENERATION_MARGIN_SECONDS))
        self.guard = CommandGuard(
            op_timeout=op_timeout, breaker_seconds=breaker_seconds, max_pending=max_connections,
            on_failure=lambda: metrics.CACHE_EVENTS.labels(self.name, "error").inc(),
            on_open=lambda seconds: log.warning("cache_redis_unavailable",
                                                retry_in_seconds=seconds))
        self._run = self.guard.run
        self._spawn = self.guard.spawn
        #: Generation keys whose invalidation failed → when to stop retrying (monotonic).
        self._dirty: dict[str, float] = {}
        self._retrying: asyncio.Future[None] | None = None

    # -- keys ----------------------------------------------------------------------------------

    @staticmethod
    def _slot(thread_id: str) -> str:
        # Hash tag on the thread: a value and its generation keys share a Redis Cluster slot.
        return "{" + _h(thread_id) + "}"

    def value_key(self, key: CacheKey) -> str:
        thread_id = key.path[0] if key.path else ""
        return f"{self._prefix}v:{self._slot(thread_id)}:{_h(key.tenant, key.text)}"

    def generation_key(self, thread_id: str, scope: str) -> str:
        return f"{self._prefix}g:{self._slot(thread_id)}:{_h(scope)}"

    def _generation_keys(self, key: CacheKey) -> list[str]:
        thread_id = key.path[0] if key.path else ""
        return [self.generation_key(thread_id, s) for s in key.scopes]

    # -- failure handling ----------------------------------------------------------------------

    @property
    def available(self) -> bool:
        return self.guard.available

    # -- the backend contract ------------------------------------------------------------------

    async def lookup(self, key: CacheKey) -> Lookup:
        value_key = self.value_key(key)
        names = [*self._generation_keys(key), value_key]
        if self._dirty and self._is_dirty(names[:-1]):
            return Lookup(None, (), available=False)  # a write here is not invalidated yet
        try:
            values: list[bytes | None] = await self._run(lambda: self._redis.mget(names))
        except _Unavailable:
            return Lookup(None, (), available=False)
        generations = tuple((v or b"").decode() for v in values[:-1])
        raw = values[-1]
        if raw is None:
            return Lookup(None, generations)
        try:
            entry, stored_under = decode(raw, key.tenant, key.text)
        except EnvelopeError as exc:
            log.warning("cache_value_rejected", reason=exc.reason)
            metrics.CACHE_EVENTS.labels(self.name, "error").inc()
            if self.available:
                self._spawn(lambda: self._redis.delete(value_key))
            return Lookup(None, generations)
        if stored_under != generations:
            return Lookup(None, generations)
        return Lookup(entry, generations)

    async def store(
        self, key: CacheKey, payload: bytes, ttl: float, generations: tuple[str, ...]
    ) -> None:
        value = encode(key.tenant, key.text, generations, payload, time.time())
        keys = [*self._generation_keys(key), self.value_key(key)]
        args: list[Any] = [*generations, value, max(1, int(ttl * 1000))]
        try:
            await self._run(lambda: self._set_if_current(keys=keys, args=args))
        except _Unavailable:
            return

    async def _bump(self, names: Sequence[str]) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.set(name, secrets.token_hex(8), ex=self._generation_ttl)
            await pipe.execute()

    async def invalidate(self, thread_id: str, scopes: Sequence[str]) -> None:
        names = [self.generation_key(thread_id, scope) for scope in scopes]
        try:
            await self._run(lambda: self._bump(names))
        except _Unavailable:
            # Not given up on: retried until it lands, and this replica bypasses the cache for
            # these scopes meanwhile (the entries would otherwise be served until their TTL).
            log.warning("cache_invalidation_failed", scopes=len(scopes),
                        retry_every_seconds=INVALIDATION_RETRY_SECONDS)
            metrics.CACHE_EVENTS.labels(self.name, "invalidation_failed").inc()
            self._mark_dirty(names)

    def _mark_dirty(self, names: Sequence[str]) -> None:
        # Past the generation TTL every entry stored before the write has expired anyway.
        give_up = time.monotonic() + self._generation_ttl
        for name in names:
            self._dirty[name] = give_up
        while len(self._dirty) > MAX_DIRTY_SCOPES:  # bounded; the oldest were retried longest
            self._dirty.pop(next(iter(self._dirty)))
        if self._retrying is None or self._retrying.done():
            self._retrying = asyncio.ensure_future(self._retry_invalidations())

    def _is_dirty(self, names: Sequence[str]) -> bool:
        return any(name in self._dirty for name in names)

    async def _retry_invalidations(self) -> None:
        while self._dirty:
            await asyncio.sleep(INVALIDATION_RETRY_SECONDS)
            now = time.monotonic()
            for name in [n for n, until in self._dirty.items() if until <= now]:
                del self._dirty[name]
            names = list(self._dirty)
            if not names or not self.available:
                continue
            try:
                await self._run(lambda: self._bump(names))
            except _Unavailable:
                continue
            for name in names:
                self._dirty.pop(name, None)
            log.info("cache_invalidation_recovered", scopes=len(names))

    async def close(self) -> None:
        if self._retrying is not None:
            await cancel_and_wait(self._retrying)
        await self.guard.settle()
        await self._redis.aclose()
        await self._redis.connection_pool.disconnect()

