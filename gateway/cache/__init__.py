"""Response caching: the façade the operations call (``ResponseCache``).

One call's path: the consumer's ``cache-control`` and the request's options decide whether the
cache is used at all (``policy``); the key names the tenant, operation, path ids and every query
parameter (``keys``); the backend (``memory`` in-process, or ``redis`` shared by replicas) is
asked; on a miss one fetch per key runs per replica (``singleflight``) and a final, small enough
answer is stored as serialized protobuf bytes. The outcome goes on the call record:
``x-cache: hit|miss|bypass`` and ``age`` (seconds) as response metadata.

Writes bump generations rather than deleting entries: a delete races with a fetch already in
flight (the fetch stores the old answer right after the delete), while a fill stored under a
generation that has moved on is never served, in-process or in Redis, on every replica at once.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from google.protobuf.message import Message

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from gateway import metrics
from gateway.metrics import consumer_label
from gateway.cache.backend import Backend, Entry, Lookup
from gateway.cache.keys import CacheKey, list_scope, make_key, message_scope, thread_scope
from gateway.cache.memory import MemoryBackend
from gateway.cache.policy import (
    GET_MESSAGE,
    GET_MESSAGE_FILE,
    LIST_MESSAGE_FILES,
    LIST_MESSAGES,
    CachePolicy,
    Directive,
    cacheable,
    directive,
    options_bypass,
)
from gateway.cache.redis import RedisBackend
from gateway.cache.singleflight import SingleFlight
from gateway.config import CacheSettings
from gateway.context import CallContext
from gateway.errors import DeadlineExceeded
from gateway.headers import AGE, X_CACHE

__all__ = [
    "GET_MESSAGE",
    "GET_MESSAGE_FILE",
    "LIST_MESSAGES",
    "LIST_MESSAGE_FILES",
    "Backend",
    "CacheKey",
    "Entry",
    "Lookup",
    "MemoryBackend",
    "RedisBackend",
    "ResponseCache",
    "build_cache",
]

M = TypeVar("M", bound=Message)

#: A follower whose leader ran out of deadline fetches again, at most this many times.
MAX_TAKEOVERS = 2


@dataclass(frozen=True, slots=True)
class _Fetched:
    #: The flight's own call context: upstream status and headers to copy to every waiter.
    call: CallContext
    message: Message | None = None
    payload: bytes = b""
    #: The fetch's failure, handed to every waiter (never stored).
    error: Exception | None = None

    def result(self) -> Message:
        if self.error is not None:
            raise self.error
        assert self.message is not None
        return self.message


class ResponseCache:
    """Read-through cache for the read operations; invalidation for the writes."""

    def __init__(self, backend: Backend | None, policy: CachePolicy) -> None:
        self.backend = backend
        self.policy = policy
        self._flights: SingleFlight[_Fetched] = SingleFlight()
        #: Metrics label: "memory", "redis" or "off".
        self.backend_name = backend.name if backend is not None else "off"

    def _count(self, event: str) -> None:
        _event_counter(self.backend_name, event).inc()

    def _looked_up(self, call: CallContext, outcome: str) -> None:
        _lookup_counter(self.backend_name, outcome, call.consumer, call.tenant).inc()

    @staticmethod
    def _mark(call: CallContext, outcome: str, age: float = 0.0, span: Any = None) -> None:
        if span is not None:
            span.set_attribute("gateway.cache.outcome", outcome)
            span.end()
        call.cache = outcome
        call.response_headers[X_CACHE] = outcome
        if outcome != "bypass":
            call.response_headers[AGE] = str(int(max(0.0, age)))

    async def read(
        self,
        call: CallContext,
        operation: str,
        path: tuple[str, ...],
        query: Mapping[str, str],
        options: pb.RequestOptions,
        fetch: Callable[[CallContext], Awaitable[M]],
        message_type: type[M],
    ) -> M:
        """The answer to one read request, from the cache when allowed and present.

        ``fetch(ctx)`` asks the upstream under the context it is given: the call's own, or a
        flight's copy of it when the fetch is shared."""
        ttl = self.policy.ttl(operation)
        # The look-up's span (tracing on): from here to the outcome, which ends it.
        span = None if call.trace is None else call.trace.start(
            "cache.lookup", {"gateway.cache.backend": self.backend_name,
                             "gateway.cache.operation": operation})
        wanted = directive(call.cache_control) if call.cache_control else Directive.USE
        if (self.backend is None or ttl <= 0 or wanted is Directive.BYPASS
                or options_bypass(options) or call.forward_headers):
            self._looked_up(call, "bypass")
            self._mark(call, "bypass", span=span)
            return await fetch(call)
        extra = options.extra_query  # usually empty
        if query or extra:
            merged = {**query, **extra} if extra else query
            key = make_key(call.tenant, operation, path, merged, _scopes(operation, path))
        else:
            key = _plain_key(call.tenant, operation, path)
        try:
            lookup = await self.backend.lookup(key)
        except BaseException:
            if span is not None:
                span.end()
            raise
        if not lookup.available:
            self._looked_up(call, "bypass")
            self._mark(call, "bypass", span=span)
            return await fetch(call)
        if wanted is Directive.USE and lookup.entry is not None:
            self._looked_up(call, "hit")
            self._mark(call, "hit", time.time() - lookup.entry.stored_at, span)
            return message_type.FromString(lookup.entry.payload)
        self._looked_up(call, "miss")
        self._mark(call, "miss", span=span)
        if wanted is Directive.REFRESH:
            # The consumer asked for an answer fetched after its request: no joining.
            fetched = await self._fill(key, lookup, ttl, fetch, call)
            _adopt(call, fetched.call, leader=True)
            return fetched.result()  # type: ignore[return-value]
        return await self._shared(key, lookup, ttl, fetch, message_type, call)

    async def _shared(
        self, key: CacheKey, lookup: Lookup, ttl: float,
        fetch: Callable[[CallContext], Awaitable[M]], message_type: type[M], call: CallContext,
    ) -> M:
        for attempt in range(MAX_TAKEOVERS + 1):
            flight_key = (key, lookup.generations)
            fetched, joined = await self._flights.do(
                flight_key, lambda: self._fill(key, lookup, ttl, fetch, call))
            _adopt(call, fetched.call, leader=not joined)
            if joined:
                self._count("singleflight_join")
            if isinstance(fetched.error, DeadlineExceeded) and joined:
                # The leader's deadline ended the shared fetch; a follower with time left takes
                # over with a fresh fetch under its own deadline.
                left = call.remaining()
                if attempt < MAX_TAKEOVERS and (left is None or left > 0):
                    continue
            message = fetched.result()
            return message_type.FromString(fetched.payload) if joined else message  # type: ignore[return-value]
        raise AssertionError("unreachable")  # pragma: no cover

    async def _fill(
        self, key: CacheKey, lookup: Lookup, ttl: float,
        fetch: Callable[[CallContext], Awaitable[M]], leader: CallContext,
    ) -> _Fetched:
        """Fetch under a context of its own (the leader's deadline and tenant), then store."""
        assert self.backend is not None
        own = leader.flight_copy()
        try:
            message = await fetch(own)
        except Exception as exc:  # handed to every waiter by _Fetched.result()
            return _Fetched(own, error=exc)
        payload = message.SerializeToString()
        if cacheable(message) and len(payload) <= self.policy.max_value_bytes:
            await self.backend.store(key, payload, ttl, lookup.generations)
        return _Fetched(own, message, payload)

    async def invalidate(self, thread_id: str, message_id: str = "") -> None:
        """After a write: the thread's list pages and, for an update, the message itself."""
        if self.backend is None:
            return
        scopes = [list_scope(thread_id)]
        if message_id:
            scopes.append(message_scope(thread_id, message_id))
        await self.backend.invalidate(thread_id, scopes)

    async def invalidate_thread(self, thread_id: str) -> None:
        """After a thread's deletion: everything cached about it."""
        if self.backend is None:
            return
        await self.backend.invalidate(thread_id, [thread_scope(thread_id)])

    async def close(self) -> None:
        await self._flights.close()
        if self.backend is not None:
            await self.backend.close()


@functools.cache
def _lookup_counter(backend: str, outcome: str, consumer: str | None, profile: str) -> Any:
    """Cleared when the labelled consumer names change (``metrics.on_consumer_names_change``)."""
    return metrics.CACHE_LOOKUPS.labels(backend, outcome, consumer_label(consumer), profile)


metrics.on_consumer_names_change(_lookup_counter.cache_clear)


@functools.cache
def _event_counter(backend: str, event: str) -> Any:
    """The counter child of one (backend, event): ``labels()`` takes a lock on every call."""
    return metrics.CACHE_EVENTS.labels(backend, event)


@functools.lru_cache(maxsize=4096)
def _plain_key(tenant: str, operation: str, path: tuple[str, ...]) -> CacheKey:
    """The key of a read without query parameters (every get): hot keys repeat on every hit, and
    building one (encoding, scopes, the frozen key) took 3.6 µs of a hit's hot loop, this
    look-up 0.3. Bounded: 4,096 keys of ~0.5 KB."""
    return make_key(tenant, operation, path, {}, _scopes(operation, path))


def _scopes(operation: str, path: tuple[str, ...]) -> tuple[str, ...]:
    """What an entry depends on: its thread (deleted as a whole), and its list or message."""
    if operation == GET_MESSAGE:
        return (message_scope(path[0], path[1]), thread_scope(path[0]))
    if operation == LIST_MESSAGES:
        return (list_scope(path[0]), thread_scope(path[0]))
    return (thread_scope(path[0]),)  # message files never change, but go with their thread


def _adopt(call: CallContext, flight: CallContext, *, leader: bool) -> None:
    """Hand the flight's upstream outcome to a waiting call (its log line, its metadata)."""
    call.upstream_status = flight.upstream_status
    call.upstream_request_id = flight.upstream_request_id
    call.response_headers.update(flight.response_headers)
    if leader:
        call.upstream_calls += flight.upstream_calls


def build_cache(settings: CacheSettings) -> ResponseCache:
    """The cache the ``[cache]`` settings describe (call inside the running loop)."""
    policy = CachePolicy(settings)
    backend: Backend | None = None
    if settings.backend == "memory":
        backend = MemoryBackend(max_entries=settings.max_entries, max_bytes=settings.max_bytes)
    elif settings.backend == "redis":
        backend = RedisBackend(
            url=settings.redis_url,
            prefix=settings.redis_key_prefix,
            op_timeout=settings.redis_op_timeout_seconds,
            breaker_seconds=settings.redis_breaker_seconds,
            max_connections=settings.redis_max_connections,
            max_ttl=policy.max_ttl,
        )
    return ResponseCache(backend, policy)
