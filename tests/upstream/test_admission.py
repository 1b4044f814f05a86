"""Admission: a bounded number of upstream requests, a short wait, then RESOURCE_EXHAUSTED."""

from __future__ import annotations

import asyncio
import time

import pytest

from gateway.errors import ResourceExhausted
from gateway.upstream.admission import Admission


async def test_admission_over_the_limit_refused_after_the_short_wait() -> None:
    admission = Admission(limit=2, wait=0.05)
    release = asyncio.Event()

    async def hold() -> None:
        async with admission.slot(None):
            await release.wait()

    holders = [asyncio.ensure_future(hold()) for _ in range(2)]
    await asyncio.sleep(0)
    assert admission.in_use == 2
    started = time.monotonic()
    with pytest.raises(ResourceExhausted):
        async with admission.slot(None):
            pass
    assert 0.04 <= time.monotonic() - started < 0.2
    release.set()
    await asyncio.gather(*holders)
    assert admission.in_use == 0
    async with admission.slot(None):
        assert admission.in_use == 1


async def test_admission_waiter_gets_a_freed_slot() -> None:
    admission = Admission(limit=1, wait=1.0)

    async def hold() -> None:
        async with admission.slot(None):
            await asyncio.sleep(0.05)

    holder = asyncio.ensure_future(hold())
    await asyncio.sleep(0)
    async with admission.slot(None):
        assert admission.in_use == 1
    await holder


async def test_admission_cancelled_waiter_leaks_no_slot() -> None:
    admission = Admission(limit=1, wait=5.0)
    async with admission.slot(None):
        waiter = asyncio.ensure_future(admission.slot(None).__aenter__())
        await asyncio.sleep(0.01)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
    assert admission.in_use == 0
    async with admission.slot(0.01):
        assert admission.in_use == 1
