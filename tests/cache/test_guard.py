"""gateway/cache/guard.py: the op timeout, the breaker, and commands never cancelled."""

from __future__ import annotations

import asyncio
import time

import pytest

from gateway.cache.guard import FAILURES_TO_OPEN, CommandGuard, RedisUnavailable


async def test_guard_slow_command_unavailable_within_the_op_timeout_and_not_cancelled() -> None:
    guard = CommandGuard(op_timeout=0.05, breaker_seconds=5.0, max_pending=8)
    finished = asyncio.Event()

    async def slow() -> str:
        await asyncio.sleep(0.2)
        finished.set()
        return "late"

    started = time.monotonic()
    with pytest.raises(RedisUnavailable):
        await guard.run(slow)
    assert time.monotonic() - started < 0.15
    await asyncio.wait_for(finished.wait(), 1.0)  # it ran to its end on its own
    await guard.settle()
    assert not guard.pending


async def test_guard_consecutive_failures_open_the_breaker_then_nothing_is_sent() -> None:
    opened: list[float] = []
    failures: list[int] = []
    guard = CommandGuard(op_timeout=0.05, breaker_seconds=0.3, max_pending=8,
                         on_failure=lambda: failures.append(1), on_open=opened.append)
    sent = 0

    async def broken() -> None:
        nonlocal sent
        sent += 1
        raise ConnectionError("refused")

    for _ in range(FAILURES_TO_OPEN):
        with pytest.raises(RedisUnavailable):
            await guard.run(broken)
    assert opened == [0.3] and len(failures) == FAILURES_TO_OPEN and not guard.available
    with pytest.raises(RedisUnavailable):
        await guard.run(broken)
    assert sent == FAILURES_TO_OPEN  # skipped: no command while open

    async def fine() -> str:
        return "ok"

    await asyncio.sleep(0.35)
    assert guard.available and await guard.run(fine) == "ok"
    assert guard.failures == 0


async def test_guard_caller_cancelled_the_command_still_completes() -> None:
    guard = CommandGuard(op_timeout=1.0, breaker_seconds=5.0, max_pending=8)
    done = asyncio.Event()

    async def command() -> None:
        await asyncio.sleep(0.05)
        done.set()

    caller = asyncio.ensure_future(guard.run(command))
    await asyncio.sleep(0.01)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    await asyncio.wait_for(done.wait(), 1.0)
