"""A gateway in a subprocess (``python -m gateway serve``), for tests that send it real signals:
SIGTERM's drain and ``kill -9``. Its JSON log lines (stderr) are collected as they come, so a test
can count the call records the drain wrote (a call's record is written in the pipeline's
``finally``)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import signal
import socket
import sys
import time
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.emulator.server import EmulatorServer
from tests.conftest import EMULATOR_KEY


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class GatewayProcess:
    """One gateway process on a fixed loopback port; ``start`` may be called again after it
    ended (a restart on the same port)."""

    def __init__(self, emulator: EmulatorServer, port: int | None = None,
                 **settings: str) -> None:
        self.port = port or free_port()
        self.env = {**os.environ, "GATEWAY_SERVER_GRPC_LISTEN": f"127.0.0.1:{self.port}",
                    "GATEWAY_UPSTREAM_BASE_URL": emulator.base_url,
                    "GATEWAY_UPSTREAM_API_KEY": EMULATOR_KEY, "GATEWAY_LOGGING_FORMAT": "json",
                    # A crash in native code (exit -11) prints the Python stacks to stderr.
                    "PYTHONFAULTHANDLER": "1",
                    **{f"GATEWAY_{k.upper()}": v for k, v in settings.items()}}
        self.proc: asyncio.subprocess.Process | None = None
        self.lines: list[dict[str, Any]] = []
        #: Its last stderr lines that are not JSON log lines (a traceback, a fault's stacks).
        self.other_stderr: collections.deque[str] = collections.deque(maxlen=60)
        self._reader: asyncio.Task[None] | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self, timeout: float = 30.0) -> None:
        """Start it and wait until its health says SERVING."""
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "serve", env=self.env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        self._reader = asyncio.ensure_future(self._read(self.proc))
        deadline = time.monotonic() + timeout
        async with grpc.aio.insecure_channel(self.target) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                if self.proc.returncode is not None:
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(asyncio.shield(self._reader), 5)
                    raise AssertionError(f"gateway exited {self.proc.returncode} at start; its "
                                         "stderr ends:\n" + "".join(self.other_stderr))
                with contextlib.suppress(grpc.aio.AioRpcError):
                    reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=0.5)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                await asyncio.sleep(0.05)
        raise TimeoutError("the gateway never served")

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stderr is not None
        while line := await proc.stderr.readline():
            try:
                self.lines.append(json.loads(line))
            except ValueError:
                self.other_stderr.append(line.decode(errors="replace"))

    def send(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def wait(self, timeout: float = 15.0) -> int:
        assert self.proc is not None
        code = await asyncio.wait_for(self.proc.wait(), timeout)
        if self._reader is not None:
            await asyncio.wait_for(self._reader, timeout)
        return code

    def calls(self, method: str, code: str) -> int:
        """Call records of ``method`` that ended with ``code``."""
        return sum(1 for line in self.lines if line.get("event") == "call"
                   and line.get("method") == method and line.get("code") == code)

    async def close(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
