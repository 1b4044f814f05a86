"""``cancel_and_wait``: the cancelled task's cleanup runs to its end however often the waiter is
cancelled, and the waiter's own cancellation is not swallowed."""

from __future__ import annotations

import asyncio

import pytest

from gateway.cancellation import cancel_and_wait


async def test_cleanup_runs_to_its_end_while_the_waiter_is_cancelled_again_and_again() -> None:
    cleaned: list[int] = []

    async def owner() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            for step in range(5):  # a cleanup that takes several awaits (a pool hand-back)
                await asyncio.sleep(0.01)
                cleaned.append(step)

    task = asyncio.ensure_future(owner())
    await asyncio.sleep(0)
    waiter = asyncio.ensure_future(cancel_and_wait(task))
    for _ in range(3):  # grpc.aio or Starlette cancelling the handler more than once
        await asyncio.sleep(0.005)
        waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert task.cancelled()
    assert cleaned == [0, 1, 2, 3, 4]


async def test_a_waiter_left_alone_returns_once_the_task_is_cancelled() -> None:
    task = asyncio.ensure_future(asyncio.sleep(3600))
    await asyncio.sleep(0)
    await cancel_and_wait(task)
    assert task.cancelled()


async def test_a_task_already_done_is_left_as_it_is() -> None:
    task = asyncio.ensure_future(asyncio.sleep(0, result=7))
    await task
    await cancel_and_wait(task)
    assert task.result() == 7
