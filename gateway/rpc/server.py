"""Build, start and drain the grpc.aio server.

Start-up: server → the face's method handlers → health → reflection → bind → start. Shutdown:
health turns NOT_SERVING (balancers stop sending), a short pause, the pipeline starts draining
(open streams end UNAVAILABLE with their resume point), then ``stop(grace)`` lets in-flight
unary calls finish.
"""

from __future__ import annotations

import asyncio

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from gateway.config import ServerSettings
from gateway.operations.messages import MessageOperations
from gateway.operations.threads import ThreadOperations
from gateway.pipeline import Pipeline
from gateway.rpc.face import SERVICE, THREADS_SERVICE, GrpcFace

SERVICE_NAME = SERVICE.full_name
THREADS_SERVICE_NAME = THREADS_SERVICE.full_name


class GrpcServer:
    """The gRPC face: one grpc.aio server with health and reflection."""

    def __init__(
        self,
        settings: ServerSettings,
        operations: MessageOperations,
        pipeline: Pipeline | None = None,
        *,
        interceptors: list[grpc.aio.ServerInterceptor] | None = None,
        credentials: grpc.ServerCredentials | None = None,
    ) -> None:
        self._settings = settings
        #: Without one, a pipeline with auth off (tests and tools serving the operations alone).
        self.pipeline = pipeline or Pipeline(None, default_timeout=settings.default_timeout_seconds)
        self.server = grpc.aio.server(
            interceptors=interceptors or None,
            maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
            options=[
                ("grpc.max_receive_message_length", 4 * 1024 * 1024),
                ("grpc.keepalive_permit_without_calls", 0),
                ("grpc.http2.min_ping_interval_without_data_ms", 60_000),
            ],
        )
        GrpcFace(self.pipeline, {SERVICE: operations,
                                 THREADS_SERVICE: ThreadOperations(operations)}).register(
            self.server)
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        if settings.reflection:
            reflection.enable_server_reflection(
                (SERVICE_NAME, THREADS_SERVICE_NAME, health.SERVICE_NAME,
                 reflection.SERVICE_NAME), self.server
            )
        self._credentials = credentials
        self.port = 0

    async def start(self, listen: str) -> int:
        """Bind and start; returns the bound port (useful with port 0)."""
        if self._credentials is None:
            self.port = self.server.add_insecure_port(listen)
        else:
            self.port = self.server.add_secure_port(listen, self._credentials)
        await self.server.start()
        for service in ("", SERVICE_NAME, THREADS_SERVICE_NAME):
            await self.health.set(service, health_pb2.HealthCheckResponse.SERVING)
        return self.port

    async def not_serving(self) -> None:
        """Health NOT_SERVING, then the drain delay (balancers notice and stop sending)."""
        await self.health.enter_graceful_shutdown()
        if self._settings.drain_delay_seconds:
            await asyncio.sleep(self._settings.drain_delay_seconds)

    async def stop(self, grace: float | None = None) -> None:
        """Stop accepting and give in-flight calls ``grace`` seconds."""
        await self.server.stop(self._settings.grace_seconds if grace is None else grace)

    async def drain(self, grace: float | None = None) -> None:
        """NOT_SERVING first, then streams end resumable, then in-flight calls get ``grace``."""
        await self.not_serving()
        # Streams can run for as long as pages keep coming: they end now, resumable; unary calls
        # get the grace period.
        self.pipeline.draining.set()
        await self.stop(grace)

    async def wait(self) -> None:
        await self.server.wait_for_termination()
