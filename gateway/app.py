"""The gateway process: settings in, faces and shared pieces wired together, one lifecycle."""

from __future__ import annotations

import asyncio
import signal
from dataclasses import dataclass

import structlog

from gateway.cache import build_cache
from gateway.config import Settings
from gateway.operations.messages import MessageOperations
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

    async def stop(self, grace: float | None = None) -> None:
        await self.grpc.drain(grace)
        await self.operations.cache.close()
        await self.upstream.aclose()


async def start_gateway(settings: Settings) -> Gateway:
    """Build every piece inside the running loop (grpc.aio and httpx must not cross loops)."""
    upstream = UpstreamClient(
        settings.upstream, default_timeout=settings.server.default_timeout_seconds
    )
    operations = MessageOperations(upstream, build_cache(settings.cache))
    grpc_server = GrpcServer(settings.server, operations)
    port = await grpc_server.start(settings.server.grpc_listen)
    log.info("gateway_started", grpc_port=port, upstream=settings.upstream.base_url)
    return Gateway(settings, upstream, operations, grpc_server, port)


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
