"""A small asyncio TCP proxy in front of Redis for fault tests (docs/reliability.md, "Tests and soak").

It forwards bytes both ways on 127.0.0.1, optionally delaying every chunk by a random amount
(a slow, jittery network) or a fixed one (``delay``), or dropping every byte (``dropping``: a
blackhole), and ``close()`` drops the listener and every open connection at once
(Redis gone, as the gateway sees it) without touching the real server.
"""

from __future__ import annotations

import asyncio
import contextlib
import random


class TcpProxy:
    def __init__(self, target_host: str, target_port: int, *, max_delay: float = 0.0,
                 seed: int = 0) -> None:
        self._target = (target_host, target_port)
        self._max_delay = max_delay
        self._rng = random.Random(seed)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0
        #: While True every byte either way is dropped: a blackhole (connections stay open and
        #: new ones are accepted; nothing is ever answered).
        self.dropping = False
        #: Seconds every chunk is held before it is forwarded (a slow network).
        self.delay = 0.0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        pumps = [asyncio.create_task(self._pump(reader, up_writer)),
                 asyncio.create_task(self._pump(up_reader, writer))]
        self._tasks.update(pumps)
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for task in pumps:
            task.cancel()
        for w in (writer, up_writer):
            w.close()
            self._writers.discard(w)
        self._tasks.difference_update(pumps)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while chunk := await reader.read(65536):
                if self.dropping:
                    continue
                if self.delay:
                    await asyncio.sleep(self.delay)
                if self._max_delay:
                    await asyncio.sleep(self._rng.uniform(0, self._max_delay))
                writer.write(chunk)
                await writer.drain()

    async def close(self) -> None:
        """Redis is gone: no listener, every connection reset."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            if writer.transport is not None:
                writer.transport.abort()
        self._writers.clear()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
