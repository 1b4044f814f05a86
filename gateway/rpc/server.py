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
from gateway.rpc.admission import CallAdmission
from gateway.rpc.face import SERVICE, THREADS_SERVICE, GrpcFace, HandlerCollector, register

SERVICE_NAME = SERVICE.full_name
THREADS_SERVICE_NAME = THREADS_SERVICE.full_name


def connection_age_options(settings: ServerSettings) -> list[tuple[str, int]]:
    """GOAWAY after ``max_connection_age_seconds`` (a Service balances connections, not calls:
    without it a consumer stays on the pod it first reached and new pods get nothing), then
    ``max_connection_age_grace_seconds`` for the calls still open. A stream still open after the
    grace ends UNAVAILABLE and is resumed from its last item by the typed clients."""
    if not settings.max_connection_age_seconds:
        return []
    return [
        ("grpc.max_connection_age_ms", max(1, int(settings.max_connection_age_seconds * 1000))),
        ("grpc.max_connection_age_grace_ms",
         int(settings.max_connection_age_grace_seconds * 1000)),
    ]


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
        # Admission wraps every handler as it is registered (the call bounds: waiting for the
        # request, serving, health's own budget; it replaces grpc.aio's maximum_concurrent_rpcs,
        # which let calls without a request starve health); no interceptor runs per call.
        # Everything else a call meets is the pipeline's.
        self.admission = CallAdmission(settings)
        self.server = grpc.aio.server(
            interceptors=interceptors or None,
            options=[
                ("grpc.max_concurrent_streams", settings.max_streams_per_connection),
                # A connection must finish its handshake (TLS, HTTP/2 preface and settings) in the
                # time a call gets to deliver its request; grpc core's own bound is 120 s.
                ("grpc.server_handshake_timeout_ms",
                 max(1, int(settings.request_timeout_seconds * 1000))),
                ("grpc.max_receive_message_length", 4 * 1024 * 1024),
                ("grpc.keepalive_permit_without_calls", 0),
                ("grpc.http2.min_ping_interval_without_data_ms", 60_000),
                *connection_age_options(settings),
            ],
        )
        GrpcFace(self.pipeline, {SERVICE: operations,
                                 THREADS_SERVICE: ThreadOperations(operations)}).register(
            self.server, self.admission.wrap_all)
        self.health = health.aio.HealthServicer()
        collected = HandlerCollector()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, collected)
        for service, handlers in collected.handlers.items():
            register(self.server, service, self.admission.wrap_all(service, handlers))
        if settings.reflection:
            reflection.enable_server_reflection(
                (SERVICE_NAME, THREADS_SERVICE_NAME, health.SERVICE_NAME,
                 reflection.SERVICE_NAME), self.server
            )
        self._credentials = credentials
        self.port = 0
        #: False while the consumer service cannot serve (no upstream key): its health is then
        #: NOT_SERVING; the overall health ("") says only that the process is up.
        self.consumer_ready = True
        #: True from the moment health turns NOT_SERVING for the drain.
        self.draining = False
        self._started = False

    async def set_consumer_ready(self, ready: bool) -> None:
        self.consumer_ready = ready
        if self._started:
            status = (health_pb2.HealthCheckResponse.SERVING if ready
                      else health_pb2.HealthCheckResponse.NOT_SERVING)
            for service in (SERVICE_NAME, THREADS_SERVICE_NAME):
                await self.health.set(service, status)

    async def start(self, listen: str) -> int:
        """Bind and start; returns the bound port (useful with port 0)."""
        if self._credentials is None:
            self.port = self.server.add_insecure_port(listen)
        else:
            self.port = self.server.add_secure_port(listen, self._credentials)
        await self.server.start()
        self._started = True
        await self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        await self.set_consumer_ready(self.consumer_ready)
        return self.port

    async def not_serving(self) -> None:
        """Health NOT_SERVING, then the drain delay (balancers notice and stop sending)."""
        self.draining = True
        await self.health.enter_graceful_shutdown()
        if self._settings.drain_delay_seconds:
            await asyncio.sleep(self._settings.drain_delay_seconds)

    async def stop(self, grace: float | None = None) -> None:
        """Stop accepting and give in-flight calls ``grace`` seconds."""
        await self.server.stop(self._settings.grace_seconds if grace is None else grace)
        await self.admission.close()

    async def drain(self, grace: float | None = None) -> None:
        """NOT_SERVING first, then streams end resumable, then in-flight calls get ``grace``."""
        await self.not_serving()
        # Streams can run for as long as pages keep coming: they end now, resumable; unary calls
        # get the grace period.
        self.pipeline.draining.set()
        await self.stop(grace)

    async def wait(self) -> None:
        await self.server.wait_for_termination()
