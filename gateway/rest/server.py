"""Serve the REST face with uvicorn, as a task in the gRPC server's event loop.

One loop means one upstream client, one cache and one set of credentials for both faces (httpx
and grpc.aio objects must not cross loops). The gateway owns the process signals: uvicorn's own
handlers would steal SIGTERM from ``gateway.app.serve`` and stop only this face.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Generator

import uvicorn
from starlette.types import ASGIApp

from gateway.config import ServerSettings, parse_listen
from gateway.config_checks import worker_count
from gateway.rest.connections import ConnectionGuard, RequestLimit, guarded_protocol

#: How long start-up may take before it is reported as failed.
STARTUP_TIMEOUT_SECONDS = 10.0
_STARTUP_POLL_SECONDS = 0.005


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield  # the gateway's serve() handles SIGTERM/SIGINT and stops every face


class HttpServer:
    """uvicorn serving one ASGI app on a socket the gateway binds itself (port 0 works)."""

    def __init__(self, settings: ServerSettings, app: ASGIApp) -> None:
        self._settings = settings
        #: Connection bounds (header timeout, connection table); see gateway/rest/connections.py.
        self.guard = ConnectionGuard(settings.max_http_connections,
                                     settings.http_header_timeout_seconds,
                                     settings.request_timeout_seconds)
        self._config = uvicorn.Config(
            # Requests are limited by the gateway, not by uvicorn's limit_concurrency, which
            # counted idle connections and answered a plain-text 503.
            RequestLimit(app, settings.max_concurrent_rpcs),
            http=guarded_protocol(self.guard, settings.http_parser),
            timeout_keep_alive=settings.http_keepalive_seconds,
            lifespan="off",
            log_config=None,  # keep the gateway's structlog set-up
            access_log=False,  # the face writes its own line per call, without headers
            server_header=False,
            # X-Forwarded-For only from the configured proxies: uvicorn's default believed it
            # from loopback (and "*" is a common copy-paste), so a client could pick its address.
            proxy_headers=bool(settings.trusted_proxies),
            forwarded_allow_ips=list(settings.trusted_proxies) or None,
            timeout_graceful_shutdown=settings.grace_seconds,
        )
        self._server = _Server(self._config)
        self._task: asyncio.Task[None] | None = None
        self.port = 0

    async def start(self, listen: str) -> int:
        """Bind and serve; returns the bound port."""
        host, port = parse_listen(listen, "server.http_listen")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if worker_count(self._settings.workers) > 1:
                # Several workers share the port (gateway/supervisor.py); the kernel spreads
                # new connections over them. Never otherwise: a second gateway would bind too.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            # Inherited by accepted sockets. Without it uvicorn's separate header and body writes
            # meet the client's delayed ACK: measured 44 ms instead of 6 ms per small response.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.bind((host, port))
        except OSError:
            sock.close()
            raise
        self.port = int(sock.getsockname()[1])
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="http-face")
        limit = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while not self._server.started:
            if self._task.done():
                sock.close()
                self._task.result()  # raises what stopped it
                raise RuntimeError("the HTTP face stopped during start-up")
            if time.monotonic() > limit:
                await self.stop(0.0)
                raise TimeoutError("the HTTP face did not start")
            await asyncio.sleep(_STARTUP_POLL_SECONDS)
        return self.port

    async def stop(self, grace: float | None = None) -> None:
        """Stop accepting, give in-flight requests ``grace`` seconds, then cancel them."""
        task, self._task = self._task, None
        if task is None:
            return
        if grace is not None:
            self._config.timeout_graceful_shutdown = grace
        self._server.should_exit = True
        await task
