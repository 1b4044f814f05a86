"""The idempotency window in Redis: one create per (consumer, key) across workers and replicas.

Same semantics as the in-process ``IdempotencyStore`` (``gateway.operations.idempotency``): within
the window the same consumer and key get the first result; a key re-used with another request is
INVALID_ARGUMENT naming ``request_id``; concurrent duplicates wait for the first call (here: on
every replica); after an ambiguous failure the next attempt looks for the upstream marker first.

One key per (consumer, key) holds ``state \\n fingerprint \\n owner \\n lease-until-ms \\n result``.
A Lua script claims it atomically (absent, ambiguous, or pending with an expired lease → this call
leads; a lapsed lease means its leader died mid-create, so the claim recovers: marker lookup
first). Another script finishes it only while this call still owns it. Duplicates in one process
wait for their local leader's result; duplicates elsewhere poll the key (5 ms doubling to 100 ms)
within their deadline. The lease is Redis' own clock (``TIME``), so replica clocks do not matter.

Redis failure: a command slower than ``op_timeout`` or failing, or the breaker open after one,
falls back to an in-process window whose creates always run the marker lookup first (another
replica may have made the message), logged when the breaker opens and counted in
``gateway_idempotency_fallbacks_total``. Commands are never cancelled mid-flight (the caller only
waits for the task running them, see ``gateway.cache.redis``), so no connection goes back to the
pool with an unread reply.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
import structlog
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from gateway import metrics
from gateway.errors import DeadlineExceeded, FieldViolation, GatewayError, InvalidArgument
from gateway.operations.idempotency import IdempotencyStore, may_have_happened

log = structlog.get_logger("gateway.idempotency")

T = TypeVar("T")

#: A leader's lease beyond its own deadline (a call without one: LEASE_UNBOUNDED_SECONDS).
LEASE_MARGIN_SECONDS = 5.0
LEASE_UNBOUNDED_SECONDS = 120.0
POLL_FIRST_SECONDS = 0.005
POLL_MAX_SECONDS = 0.1

# KEYS: the slot. ARGV: fingerprint, owner token, lease ms, window ms.
# Returns the current value (done, pending, or another fingerprint), or "claimed\n0|1" (1 = an
# earlier attempt may have created it: recover).
_CLAIM = """
local v = redis.call('GET', KEYS[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local recover = '0'
if v then
  local state, fp, owner, lease = string.match(v, '^(%a+)\\n(%x*)\\n(%x*)\\n(%d+)\\n')
  if fp ~= ARGV[1] or state == 'done' then return v end
  if state == 'pending' and tonumber(lease) > now then return v end
  recover = '1'
end
redis.call('SET', KEYS[1], 'pending\\n' .. ARGV[1] .. '\\n' .. ARGV[2] .. '\\n' ..
           (now + tonumber(ARGV[3])) .. '\\n', 'PX', ARGV[4])
return 'claimed\\n' .. recover
"""

# KEYS: the slot. ARGV: owner token, new value ('' = delete), window ms. Only while still owned.
_FINISH = """
local v = redis.call('GET', KEYS[1])
if v then
  local state, owner = string.match(v, '^(%a+)\\n%x*\\n(%x*)\\n')
  if state ~= 'pending' or owner ~= ARGV[1] then return 0 end
end
if ARGV[2] == '' then redis.call('DEL', KEYS[1])
else redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
return 1
"""


class _Unavailable(Exception):
    """Redis did not answer in time or failed (``why``: redis_error, breaker_open, pool_full)."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


def _value(state: str, print_: str, result: bytes = b"") -> bytes:
    return f"{state}\n{print_}\n\n0\n".encode() + result


def _parse(raw: bytes) -> tuple[str, str, bytes]:
    """(state, fingerprint, result) of a stored value."""
    state, print_, _owner, _lease, result = raw.split(b"\n", 4)
    return state.decode(), print_.decode(), result


def _reused() -> InvalidArgument:
    return InvalidArgument.for_fields([FieldViolation(
        "request_id", "was already used with a different request")])


class SharedIdempotency:
    """``IdempotencyStore.run`` over Redis, with the in-process store as the outage fallback."""

    def __init__(self, *, url: str, prefix: str, window: float, max_entries: int,
                 op_timeout: float, breaker_seconds: float, max_connections: int) -> None:
        self._redis = aioredis.Redis.from_url(
            url, socket_timeout=op_timeout, socket_connect_timeout=op_timeout,
            retry=Retry(NoBackoff(), 0), max_connections=max_connections)
        self._claim = self._redis.register_script(_CLAIM)
        self._finish = self._redis.register_script(_FINISH)
        self._prefix = prefix
        self._window_ms = max(1, int(window * 1000))
        self._op_timeout = op_timeout
        self._breaker_seconds = breaker_seconds
        self._open_until = 0.0
        self._max_pending = max_connections
        self._pending: set[asyncio.Future[Any]] = set()
        #: Local leaders: duplicates in this process wait for them instead of polling Redis.
        self._flights: dict[tuple[str, str], tuple[str, asyncio.Future[bytes | None]]] = {}
        self.fallback = IdempotencyStore(window, max_entries)

    def slot_key(self, consumer: str, key: str) -> str:
        digest = hashlib.sha256(f"{consumer}\0{key}".encode()).hexdigest()[:40]
        return f"{self._prefix}idem:{digest}"

    # -- Redis, never cancelled ------------------------------------------------------------------

    async def _run(self, command: Callable[[], Awaitable[T]], stage: str) -> T:
        if time.monotonic() < self._open_until:
            raise _Unavailable("breaker_open")
        if len(self._pending) >= self._max_pending:
            raise _Unavailable("pool_full")
        task = asyncio.ensure_future(command())
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        done, _ = await asyncio.wait({task}, timeout=self._op_timeout)
        if done and task.exception() is None:
            return task.result()
        if done:
            task.exception()  # retrieved: a finished task's error is never logged as unhandled
        self._open_until = time.monotonic() + self._breaker_seconds
        log.warning("idempotency_redis_unavailable", stage=stage,
                    detail="keyed creates use the in-process window and the upstream marker "
                           "look-up", retry_in_seconds=self._breaker_seconds)
        raise _Unavailable("redis_error")

    # -- the window ------------------------------------------------------------------------------

    async def run(self, consumer: str, key: str, print_: str,
                  create: Callable[[bool], Awaitable[pb.Message]], *,
                  remaining: Callable[[], float | None]) -> pb.Message:
        """As ``IdempotencyStore.run``, shared by every process using this Redis."""
        slot = (consumer, key)
        while (local := self._flights.get(slot)) is not None:
            if local[0] != print_:
                raise _reused()
            result = await _wait(local[1], remaining())
            if result is not None:
                metrics.IDEMPOTENT_REPLAYS.labels("awaited").inc()
                return pb.Message.FromString(result)
        flight: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        self._flights[slot] = (print_, flight)
        result = None
        try:
            message = await self._shared(slot, print_, create, remaining)
            result = message.SerializeToString()
            return message
        except _Unavailable as exc:
            metrics.IDEMPOTENCY_FALLBACKS.labels(exc.why).inc()
            message = await self.fallback.run(consumer, key, print_, lambda _: create(True),
                                              remaining=remaining)
            result = message.SerializeToString()
            return message
        finally:
            del self._flights[slot]
            flight.set_result(result)

    async def _shared(self, slot: tuple[str, str], print_: str,
                      create: Callable[[bool], Awaitable[pb.Message]],
                      remaining: Callable[[], float | None]) -> pb.Message:
        name = self.slot_key(*slot)
        token = secrets.token_hex(8)
        left = remaining()
        end = time.monotonic() + (LEASE_UNBOUNDED_SECONDS if left is None else max(0.0, left))
        lease_ms = int(((LEASE_UNBOUNDED_SECONDS if left is None else left)
                        + LEASE_MARGIN_SECONDS) * 1000)
        pause, waited = POLL_FIRST_SECONDS, False
        while True:
            raw: bytes = await self._run(lambda: self._claim(
                keys=[name], args=[print_, token, lease_ms, self._window_ms]), "claim")
            if raw.startswith(b"claimed\n"):
                return await self._lead(name, token, slot[1], print_, create,
                                        recover=raw.endswith(b"1"))
            state, stored_print, result = _parse(raw)
            if stored_print != print_:
                raise _reused()
            if state == "done":
                metrics.IDEMPOTENT_REPLAYS.labels("awaited" if waited else "stored").inc()
                return pb.Message.FromString(result)
            # Pending on another process: wait for it within this call's deadline.
            if time.monotonic() + pause > end:
                raise DeadlineExceeded("the first call with this request_id did not finish in time")
            await asyncio.sleep(pause)
            pause, waited = min(POLL_MAX_SECONDS, pause * 2), True

    async def _lead(self, name: str, token: str, key: str, print_: str,
                    create: Callable[[bool], Awaitable[pb.Message]], *,
                    recover: bool) -> pb.Message:
        try:
            message = await create(recover)
        except BaseException as exc:
            if may_have_happened(exc):
                if isinstance(exc, GatewayError):
                    exc.details.metadata["request_id"] = key
                await self._settle(name, token, _value("ambiguous", print_))
            else:
                await self._settle(name, token, b"")
            raise
        await self._settle(name, token, _value("done", print_, message.SerializeToString()))
        return message

    async def _settle(self, name: str, token: str, value: bytes) -> None:
        """Record the outcome; if Redis fails now, the lease runs out and the next claim
        recovers through the marker look-up."""
        try:
            await self._run(lambda: self._finish(keys=[name], args=[token, value,
                                                                     self._window_ms]), "finish")
        except _Unavailable:
            metrics.IDEMPOTENCY_FALLBACKS.labels("finish_failed").inc()

    async def close(self) -> None:
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=max(1.0, 4 * self._op_timeout))
        await self._redis.aclose()
        await self._redis.connection_pool.disconnect()


async def _wait(flight: asyncio.Future[bytes | None], left: float | None) -> bytes | None:
    try:
        async with asyncio.timeout(left):
            return await asyncio.shield(flight)
    except TimeoutError:
        raise DeadlineExceeded(
            "the first call with this request_id did not finish in time") from None
