"""The gateway process: settings in, faces and shared pieces wired together, one lifecycle."""

from __future__ import annotations

import asyncio
import signal
from dataclasses import dataclass

import structlog

from gateway.config import Settings
from gateway.operations.idempotency import IdempotencyStore
from gateway.operations.messages import MessageOperations
from gateway.rest import HttpServer, create_app
from gateway.rpc.server import GrpcServer
from gateway.upstream.client import UpstreamClient

log = structlog.get_logger("gateway")


@dataclass
class Gateway:
    """A running gateway; built with ``start_gateway``, ended with ``stop``."""

    settings: Settings
    upstream: UpstreamClient
    operations: MessageOperations
    grpc: GrpcServer
    grpc_port: int
    #: The HTTP/JSON face, when ``server.http_listen`` is set.
    http: HttpServer | None = None
    http_port: int = 0

    async def stop(self, grace: float | None = None) -> None:
        faces = [self.grpc.drain(grace)]
        if self.http is not None:
            faces.append(self.http.stop(grace))
        await asyncio.gather(*faces)
        await self.upstream.aclose()


async def start_gateway(settings: Settings) -> Gateway:
    """Build every piece inside the running loop (grpc.aio and httpx must not cross loops)."""
    upstream = UpstreamClient(
        settings.upstream, default_timeout=settings.server.default_timeout_seconds,
        reliability=settings.reliability,
    )
    operations = MessageOperations(upstream, IdempotencyStore(
        settings.reliability.idempotency_window_seconds,
        settings.reliability.idempotency_max_entries))
    grpc_server = GrpcServer(settings.server, operations)
    port = await grpc_server.start(settings.server.grpc_listen)
    http_server, http_port = None, 0
    if settings.server.http_listen:
        http_server = HttpServer(settings.server, create_app(
            operations, default_timeout=settings.server.default_timeout_seconds,
            allowed_extra_headers=settings.upstream.allowed_extra_headers))
        try:
            http_port = await http_server.start(settings.server.http_listen)
        except BaseException:
            await grpc_server.drain(0.0)
            await upstream.aclose()
            raise
    log.info("gateway_started", grpc_port=port, http_port=http_port or None,
             upstream=settings.upstream.base_url)
    return Gateway(settings, upstream, operations, grpc_server, port, http_server, http_port)


async def serve(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT, then drain gracefully."""
    gateway = await start_gateway(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("gateway_draining", grace_seconds=settings.server.grace_seconds)
    await gateway.stop()
    log.info("gateway_stopped")
