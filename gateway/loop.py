"""The event loop the server runs on (``server.event_loop``): uvloop's or the standard library's.

uvloop (libuv, written in Cython) measured ~8 % less CPU per proxied call than the standard
library's loop on the bench machine (docs/benchmarks.md), so it is the default; ``asyncio``
turns it off. The test suite runs on the same default (tests/conftest.py), and
``GATEWAY_TEST_EVENT_LOOP=asyncio make test`` runs it on the other.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import uvloop

from gateway.config_checks import EVENT_LOOPS

#: ``server.event_loop`` value → a function making such a loop.
LOOP_FACTORIES: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "uvloop": uvloop.new_event_loop,
    "asyncio": asyncio.new_event_loop,
}
assert tuple(LOOP_FACTORIES) == EVENT_LOOPS


def run(main: Coroutine[Any, Any, None], event_loop: str) -> None:
    """Run ``main`` to its end on a new loop of the named kind."""
    with asyncio.Runner(loop_factory=LOOP_FACTORIES[event_loop]) as runner:
        runner.run(main)
