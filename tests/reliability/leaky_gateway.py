"""A gateway that leaks on purpose, to show that the soak's gates fail (``test_soak.py``).

    SOAK_LEAK=tasks,fds,memory,upstream \\
    SOAK_GATEWAY_WRAP="python -m tests.reliability.leaky_gateway" python -m tests.reliability.soak

It runs ``python -m gateway serve`` in this process (the soak appends ``-m gateway serve`` to the
wrap) after patching ``start_gateway`` to start, on the gateway's own loop, a loop that every
``PERIOD`` seconds leaks what ``SOAK_LEAK`` names: an asyncio task that never ends, an open file
descriptor, 256 KiB of memory, or (the first ``HANGING`` rounds) an upstream request whose
body never comes (the emulator holds it in flight). Bounded: it stops after ``MAX_LEAKS``
rounds. Test code only; never shipped.
"""

from __future__ import annotations

import asyncio
import os
import runpy
import sys
from typing import Any
from urllib.parse import urlsplit

import gateway.app

PERIOD = 0.05
MAX_LEAKS = 2000
#: Upstream requests left hanging (each holds a connection to the emulator).
HANGING = 20
_kept: list[Any] = []


async def _hang_upstream() -> None:
    """A create whose body never arrives: logged by the emulator, in flight until closed."""
    url = urlsplit(os.environ["GATEWAY_UPSTREAM_BASE_URL"])
    _, writer = await asyncio.open_connection(url.hostname, url.port)
    key = os.environ["GATEWAY_UPSTREAM_API_KEY"]
    writer.write(f"POST /v1/threads/thread_leak/messages HTTP/1.1\r\nHost: x\r\n"
                 f"Authorization: Bearer {key}\r\nOpenAI-Beta: assistants=v1\r\n"
                 f"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{".encode())
    await writer.drain()
    _kept.append(writer)


async def _leak(kinds: set[str]) -> None:
    for number in range(MAX_LEAKS):
        await asyncio.sleep(PERIOD)
        if "tasks" in kinds:
            _kept.append(asyncio.ensure_future(asyncio.Event().wait()))
        if "fds" in kinds:
            _kept.append(open(os.devnull, "rb"))  # noqa: SIM115 - the leak itself
        if "memory" in kinds:
            _kept.append(b"x" * (1 << 18))  # written, so resident
        if "upstream" in kinds and number < HANGING:
            await _hang_upstream()


def main() -> None:
    kinds = set(filter(None, os.environ.get("SOAK_LEAK", "").split(",")))
    original = gateway.app.start_gateway

    async def leaking_start(*args: Any, **kwargs: Any) -> Any:
        started = await original(*args, **kwargs)
        _kept.append(asyncio.ensure_future(_leak(kinds)))
        return started

    gateway.app.start_gateway = leaking_start  # type: ignore[assignment]
    if sys.argv[1:3] != ["-m", "gateway"]:
        raise SystemExit("usage: python -m tests.reliability.leaky_gateway -m gateway serve")
    sys.argv = ["gateway", *sys.argv[3:]]
    runpy.run_module("gateway", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
