from __future__ import annotations

import asyncio

import pytest

from gateway.cache.singleflight import SingleFlight


async def test_singleflight_concurrent_callers_share_one_fetch() -> None:
    flights: SingleFlight[int] = SingleFlight()
    calls = 0

    async def fetch() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return 42

    results = await asyncio.gather(*(flights.do("k", fetch) for _ in range(100)))
    assert calls == 1
    assert [r for r, _ in results] == [42] * 100
    assert sum(joined for _, joined in results) == 99
    assert len(flights) == 0


async def test_singleflight_leader_cancelled_followers_still_get_the_result() -> None:
    flights: SingleFlight[str] = SingleFlight()
    release = asyncio.Event()
    calls = 0

    async def fetch() -> str:
        nonlocal calls
        calls += 1
        await release.wait()
        return "value"

    leader = asyncio.create_task(flights.do("k", fetch))
    await asyncio.sleep(0.01)
    followers = [asyncio.create_task(flights.do("k", fetch)) for _ in range(5)]
    await asyncio.sleep(0.01)
    leader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leader
    release.set()
    assert [await f for f in followers] == [("value", True)] * 5
    assert calls == 1


async def test_singleflight_every_waiter_cancelled_cancels_the_fetch() -> None:
    flights: SingleFlight[str] = SingleFlight()
    cancelled = asyncio.Event()

    async def fetch() -> str:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "never"

    waiters = [asyncio.create_task(flights.do("k", fetch)) for _ in range(3)]
    await asyncio.sleep(0.01)
    for w in waiters:
        w.cancel()
    await asyncio.gather(*waiters, return_exceptions=True)
    await asyncio.wait_for(cancelled.wait(), 1)
    assert len(flights) == 0


async def test_singleflight_error_reaches_every_waiter_and_is_not_remembered() -> None:
    flights: SingleFlight[int] = SingleFlight()
    calls = 0

    async def failing() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        raise ValueError("upstream broke")

    results = await asyncio.gather(*(flights.do("k", failing) for _ in range(3)),
                                   return_exceptions=True)
    assert all(isinstance(r, ValueError) for r in results) and calls == 1
    with pytest.raises(ValueError):
        await flights.do("k", failing)
    assert calls == 2
