"""Redis commands under a deadline and a breaker, never cancelled by their callers.

One policy for every Redis the gateway uses on a call's path (the cache, the shared limits): a
command slower than ``op_timeout`` or failing counts as a failure and the caller goes on without
Redis; after ``FAILURES_TO_OPEN`` consecutive failures Redis is skipped for ``breaker_seconds``,
so a dead or blackholed Redis costs nothing per call.

Cancellation: a caller never cancels a Redis command. Each command runs in its own task and the
caller only *waits* for it (``asyncio.wait``, which neither cancels on timeout nor propagates the
caller's cancellation). redis-py's own socket timeouts end the command, and redis-py drops a
connection whose command was interrupted, so no connection goes back to the pool with an unread
reply (CVE-2023-28858/9).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

__all__ = ["FAILURES_TO_OPEN", "CommandGuard", "RedisUnavailable"]

T = TypeVar("T")

#: Consecutive failures that open the breaker.
FAILURES_TO_OPEN = 3


class RedisUnavailable(Exception):
    """Redis did not answer in time, failed, or is skipped by the open breaker."""


class CommandGuard:
    """Runs commands within ``op_timeout`` (at most ``max_pending`` at once); ``on_failure`` is
    called for each failure, ``on_open`` when the breaker opens."""

    def __init__(self, *, op_timeout: float, breaker_seconds: float, max_pending: int,
                 on_failure: Callable[[], None] = lambda: None,
                 on_open: Callable[[float], None] = lambda seconds: None) -> None:
        self.op_timeout = op_timeout
        self.breaker_seconds = breaker_seconds
        self.max_pending = max_pending
        self._on_failure = on_failure
        self._on_open = on_open
        self.failures = 0
        #: Monotonic time the breaker closes again (0: closed).
        self.open_until = 0.0
        self.pending: set[asyncio.Future[Any]] = set()

    @property
    def available(self) -> bool:
        return time.monotonic() >= self.open_until

    def _settle(self, task: asyncio.Future[Any]) -> None:
        self.pending.discard(task)
        if task.cancelled():
            return
        if task.exception() is None:
            self.failures = 0
            return
        self.failure()

    def failure(self) -> None:
        self._on_failure()
        self.failures += 1
        if self.failures >= FAILURES_TO_OPEN and self.available:
            self.open_until = time.monotonic() + self.breaker_seconds
            self._on_open(self.breaker_seconds)

    def spawn(self, command: Callable[[], Awaitable[T]]) -> asyncio.Future[T]:
        """Run ``command`` in a task of its own, its outcome counted, nobody waiting."""
        async def run() -> T:
            return await command()

        task = asyncio.ensure_future(run())
        self.pending.add(task)
        task.add_done_callback(self._settle)
        return task

    async def run(self, command: Callable[[], Awaitable[T]]) -> T:
        """The command's result within ``op_timeout``, or RedisUnavailable; never cancels it."""
        if not self.available or len(self.pending) >= self.max_pending:
            raise RedisUnavailable
        task = self.spawn(command)
        done, _ = await asyncio.wait({task}, timeout=self.op_timeout)
        if not done:
            # Still running: it finishes (or times out inside redis-py) on its own; counted then.
            raise RedisUnavailable
        if task.exception() is not None:
            raise RedisUnavailable
        return task.result()

    async def settle(self) -> None:
        """Wait (bounded) for the commands still running, e.g. before closing the client."""
        if self.pending:
            await asyncio.wait(set(self.pending), timeout=max(1.0, 4 * self.op_timeout))
