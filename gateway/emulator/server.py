"""Running the emulator: in the test's event loop, in a background thread, or as a process.

* :class:`EmulatorServer` - ``async with EmulatorServer() as upstream:`` in async tests.
* :class:`ThreadedEmulator` - the same server on its own loop in a daemon thread, for code that
  blocks (the official SDK's sync client, sync gateway tests).
* :func:`serve` - the ``python -m gateway emulator --listen HOST:PORT`` entry point.

Tests bind to 127.0.0.1 port 0 (the default) so runs never collide; ``shutdown_timeout`` is short
because a stopping test server must not wait a minute for a deliberately dripping response.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import signal
import threading
from collections.abc import Callable, Collection
from types import TracebackType
from typing import Any

from aiohttp import web

from gateway.emulator.app import DEFAULT_API_KEYS, DEFAULT_BETA, Emulator, create_app
from gateway.emulator.faults import Faults
from gateway.emulator.log import RequestLog
from gateway.emulator.store import Store

__all__ = ["EmulatorServer", "ThreadedEmulator", "parse_listen", "serve"]

logger = logging.getLogger(__name__)


class EmulatorServer:
    """An emulated upstream on a real TCP socket."""

    def __init__(
        self,
        *,
        api_keys: Collection[str] | None = None,
        beta: str = DEFAULT_BETA,
        seed: int | None = 0,
        clock: Callable[[], float] | None = None,
        pretty: bool = True,
        rate_limit_requests: int = 5000,
        shutdown_timeout: float = 0.5,
        admin_token: str | None = None,
    ) -> None:
        """``seed`` seeds the fault RNG; ``clock`` (Unix seconds) drives ``created_at``.
        ``admin_token``: the ``/_emulator`` admin API then needs ``Authorization: Bearer
        <token>``; required to bind anything but loopback."""
        self.emulator = Emulator(
            admin_token=admin_token,
            api_keys=api_keys,
            beta=beta,
            store=Store(clock) if clock is not None else Store(),
            faults=Faults(seed),
            pretty=pretty,
            rate_limit_requests=rate_limit_requests,
        )
        self._shutdown_timeout = shutdown_timeout
        self._runner: web.AppRunner | None = None
        self.host = ""
        self.port = 0

    @property
    def store(self) -> Store:
        return self.emulator.store

    @property
    def log(self) -> RequestLog:
        return self.emulator.log

    @property
    def faults(self) -> Faults:
        return self.emulator.faults

    @property
    def url(self) -> str:
        """``http://host:port`` (the admin API lives under ``/_emulator``)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The API base URL, ``http://host:port/v1``, as an SDK's ``base_url``."""
        return self.url + "/v1"

    @property
    def admin_url(self) -> str:
        return self.url + "/_emulator"

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> EmulatorServer:
        if self._runner is not None:
            raise RuntimeError("emulator already started")
        if not is_loopback(host) and not self.emulator.admin_token:
            # The admin API reads the request log, wipes the store and injects faults.
            raise ValueError(f"refusing to bind the emulator on {host or 'every address'!r}: "
                             "off loopback its admin API needs a token (admin_token, or "
                             "EMULATOR_ADMIN_TOKEN for `python -m gateway emulator`)")
        runner = web.AppRunner(
            create_app(self.emulator),
            handler_cancellation=True,
            access_log=None,
            shutdown_timeout=self._shutdown_timeout,
        )
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        sockname = runner.addresses[0]
        self.host, self.port = str(sockname[0]), int(sockname[1])
        return self

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> EmulatorServer:
        if self._runner is None:
            await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


class ThreadedEmulator:
    """An :class:`EmulatorServer` on its own event loop in a daemon thread.

    The store, log and faults are thread-safe, so the calling thread uses them directly.
    """

    def __init__(self, **kwargs: Any) -> None:
        self.server = EmulatorServer(**kwargs)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def __getattr__(self, name: str) -> Any:
        # store, log, faults, url, base_url, admin_url, host, port, emulator
        if name in ("server", "_loop", "_thread"):
            raise AttributeError(name)
        return getattr(self.server, name)

    def start(self, host: str = "127.0.0.1", port: int = 0, timeout: float = 10.0) -> ThreadedEmulator:
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.server.start(host, port))
            except BaseException as exc:  # reported to the starting thread
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        thread = threading.Thread(target=run, name="emulator-loop", daemon=True)
        thread.start()
        if not ready.wait(timeout):
            raise TimeoutError("emulator did not start")
        if failure:
            thread.join()
            raise failure[0]
        self._loop, self._thread = loop, thread
        return self

    def stop(self, timeout: float = 10.0) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is None or thread is None:
            return
        asyncio.run_coroutine_threadsafe(self.server.stop(), loop).result(timeout)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)

    def __enter__(self) -> ThreadedEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # "" (every address) or a name that may resolve anywhere


def parse_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPv6]:PORT`` -> (host, port)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"listen address must be HOST:PORT, got {listen!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def serve(listen: str = "127.0.0.1:8099", api_keys: set[str] | None = None) -> None:
    """Run the emulator until SIGINT/SIGTERM.

    Keys: ``api_keys``, else the comma-separated ``EMULATOR_API_KEYS`` environment variable, else
    ``sk-emulator``. The keys themselves are never printed. ``EMULATOR_ADMIN_TOKEN`` protects the
    admin API and is required to listen anywhere but loopback.
    """
    host, port = parse_listen(listen)
    if api_keys is None:
        from_env = {k.strip() for k in os.environ.get("EMULATOR_API_KEYS", "").split(",") if k.strip()}
        api_keys = from_env or set(DEFAULT_API_KEYS)

    admin_token = os.environ.get("EMULATOR_ADMIN_TOKEN") or None

    async def main() -> None:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopping.set)
        server = EmulatorServer(api_keys=api_keys, admin_token=admin_token)
        await server.start(host, port)
        admin = "admin API needs its token" if admin_token else "admin API open (loopback)"
        print(f"emulator listening on {server.base_url} ({len(api_keys)} API key(s), {admin})",
              flush=True)
        try:
            await stopping.wait()
        finally:
            await server.stop()

    asyncio.run(main())
