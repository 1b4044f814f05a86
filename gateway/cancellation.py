"""Cancelling a task and waiting until it has unwound, whatever happens to the waiter meanwhile.

Used where a task owns something its cleanup must give back (an upstream connection, a page
walk): grpc.aio may cancel a handler more than once, and Starlette's cancel scope cancels the
task again on every await while a client is gone, so a single ``await`` of the cancelled task
can be cut short, leaving the cleanup half done (httpcore's pool then keeps the connection's
slot for good; a page walk closed while its fetch still runs raises "asynchronous generator is
already running").
"""

from __future__ import annotations

import asyncio
from typing import Any

#: Rounds ``cancel_and_wait`` waits through before it gives up on a task that ignores its
#: cancellation (each round is one cancellation of the waiter).
MAX_WAIT_ROUNDS = 10_000


async def cancel_and_wait(task: asyncio.Future[Any]) -> None:
    """Cancel ``task`` once and wait until it is done, even if the waiter is cancelled again
    meanwhile; a cancellation of the waiter is raised once the task is done, never swallowed."""
    task.cancel()
    interrupted = False
    for _ in range(MAX_WAIT_ROUNDS):
        if task.done():
            break
        try:
            # wait() never raises the task's own outcome, only a cancellation of the waiter.
            await asyncio.wait((task,))
        except asyncio.CancelledError:
            interrupted = True
    if interrupted:
        raise asyncio.CancelledError
