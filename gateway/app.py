"""The gateway process: settings in, faces and shared pieces wired together, one lifecycle."""

from __future__ import annotations

import asyncio
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import structlog

from gateway.config import AuthSettings, CacheSettings, ConfigError, ServerSettings, Settings
from gateway.config_checks import check_base_urls
from gateway.credentials.authenticator import Authenticator
from gateway.credentials.limits import Limits, LocalLimits, RedisLimits
from gateway.credentials.reloader import Reloader
from gateway.headers import FORBIDDEN_EXTRA
from gateway import native_heap
from gateway.loop_lag import LoopLagSampler
from gateway.metrics import EVENT_LOOP_TASKS
from gateway.metrics_server import MetricsServer, Readiness
from gateway.operations.idempotency import IdempotencyStore, IdempotencyWindow
from gateway.operations.shared_idempotency import SharedIdempotency
from gateway.cache import build_cache
from gateway.operations.messages import MessageOperations
from gateway.operations.ownership import Ownership
from gateway.pipeline import Pipeline
from gateway.rest import HttpServer, create_app
from gateway.rpc.server import GrpcServer
from gateway.upstream.pool import UpstreamPool, all_profiles
from gateway.tracing import Tracing, build_tracing
from gateway.upstream.startup import UpstreamKeyWatch

if TYPE_CHECKING:  # pragma: no cover
    from opentelemetry.sdk.trace.export import SpanExporter

log = structlog.get_logger("gateway")


@dataclass
class Gateway:
    """A running gateway; built with ``start_gateway``, ended with ``stop``."""

    settings: Settings
    upstream: UpstreamPool
    operations: MessageOperations
    pipeline: Pipeline
    grpc: GrpcServer
    grpc_port: int
    #: The HTTP/JSON face, when ``server.http_listen`` is set.
    http: HttpServer | None = None
    http_port: int = 0
    #: None when auth is off.
    authenticator: Authenticator | None = None
    reloader: Reloader | None = None
    #: The Prometheus endpoint, when ``server.metrics_listen`` is set.
    metrics: MetricsServer | None = None
    key_watch: UpstreamKeyWatch | None = None
    #: None when tracing is off.
    tracing: Tracing | None = None
    #: The shared idempotency window, when it lives in Redis (closed at stop).
    shared_idempotency: SharedIdempotency | None = None
    #: Samples the event loop's lag (``gateway_event_loop_lag_seconds``) while the gateway runs.
    loop_lag: LoopLagSampler | None = None

    async def stop(self, grace: float | None = None) -> None:
        """NOT_SERVING, then open streams on both faces end resumable, then both faces stop
        accepting and give in-flight calls ``grace`` seconds."""
        if self.key_watch is not None:
            await self.key_watch.stop()
        await self.grpc.not_serving()
        self.pipeline.draining.set()
        faces = [self.grpc.stop(grace)]
        if self.http is not None:
            faces.append(self.http.stop(grace))
        await asyncio.gather(*faces)
        if self.reloader is not None:
            await self.reloader.stop()
        if self.authenticator is not None:
            await self.authenticator.limits.aclose()
        await self.operations.cache.close()
        if self.shared_idempotency is not None:
            await self.shared_idempotency.close()
        await self.upstream.aclose()
        if self.loop_lag is not None:
            await self.loop_lag.stop()
        if self.tracing is not None:
            # Exports the spans still batched; blocking (the exporter's own thread and channel).
            await asyncio.to_thread(self.tracing.shutdown)
        # Last, so the drain itself stays observable; in a thread, as the server's shutdown
        # waits for its polling loop.
        if self.metrics is not None:
            await asyncio.to_thread(self.metrics.close)


def build_limits(auth: AuthSettings, cache: CacheSettings | None = None) -> Limits:
    if auth.limits_backend == "redis":
        c = cache or CacheSettings()  # the one Redis failure policy (docs/caching.md)
        return RedisLimits(auth.redis_url, auth.redis_prefix, auth.failed_auth_limit,
                           auth.failed_auth_window_seconds, timeout=c.redis_op_timeout_seconds,
                           breaker_seconds=c.redis_breaker_seconds,
                           max_connections=c.redis_max_connections)
    return LocalLimits(auth.failed_auth_limit, auth.failed_auth_window_seconds)


def build_idempotency(settings: Settings) -> IdempotencyWindow:
    """In Redis (shared by every worker and replica) when configured, else in-process."""
    r, cache = settings.reliability, settings.cache
    backend = r.idempotency_backend
    if backend == "auto":
        backend = "redis" if cache.backend == "redis" else "memory"
    if backend == "memory":
        return IdempotencyStore(r.idempotency_window_seconds, r.idempotency_max_entries)
    return SharedIdempotency(
        url=cache.redis_url, prefix=cache.redis_key_prefix, window=r.idempotency_window_seconds,
        max_entries=r.idempotency_max_entries, op_timeout=cache.redis_op_timeout_seconds,
        breaker_seconds=cache.redis_breaker_seconds, max_connections=cache.redis_max_connections)


def build_ownership(auth: AuthSettings) -> Ownership:
    """Whose threads are whose: ``auth.thread_access`` with auth on; open without consumers."""
    if not auth.enabled:
        return Ownership("open")
    secret = auth.owner_secret.encode()
    if auth.owner_secret_file:
        try:
            secret = Path(auth.owner_secret_file).read_bytes().strip()
        except OSError as exc:
            raise ConfigError(f"auth.owner_secret_file: cannot read {auth.owner_secret_file}: "
                              f"{exc.strerror}") from None
        if not secret:
            raise ConfigError(f"auth.owner_secret_file: {auth.owner_secret_file} is empty")
    if auth.thread_access != "open" and not secret:
        log.warning("owner_secret_built_in", detail="thread owner stamps use the built-in key; "
                    "set auth.owner_secret_file so that they cannot be computed elsewhere")
    return Ownership(auth.thread_access, secret)


def server_credentials(server: ServerSettings) -> grpc.ServerCredentials | None:
    """TLS when a certificate is configured; mutual TLS when a client CA is too."""
    if not server.tls_cert:
        return None
    chain = Path(server.tls_cert).read_bytes()
    key = Path(server.tls_key).read_bytes()
    client_ca = Path(server.tls_client_ca).read_bytes() if server.tls_client_ca else None
    return grpc.ssl_server_credentials(
        [(key, chain)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


async def start_gateway(settings: Settings, *,
                        span_exporter: SpanExporter | None = None) -> Gateway:
    """Build every piece inside the running loop (grpc.aio and httpx must not cross loops).
    ``span_exporter``: where spans go instead of OTLP (tests); it turns tracing on."""
    check_base_urls(settings)  # settings built in code skip load_settings' checks
    loop = asyncio.get_running_loop()
    if settings.server.keep_freed_heap_bytes:
        native_heap.keep_freed(settings.server.keep_freed_heap_bytes)
    EVENT_LOOP_TASKS.set_function(lambda: len(asyncio.all_tasks(loop)))
    ownership = build_ownership(settings.auth)  # before anything that needs closing
    tracing = build_tracing(settings.tracing, span_exporter)  # refuses a missing exporter
    upstream = UpstreamPool(settings)
    window = build_idempotency(settings)
    shared = window if isinstance(window, SharedIdempotency) else None
    operations = MessageOperations(upstream, window, build_cache(settings.cache), ownership)
    authenticator: Authenticator | None = None
    reloader: Reloader | None = None
    if settings.auth.enabled:
        reloader = Reloader(settings.auth.store_path, settings.auth.reload_seconds, upstream.names)
        try:
            reloader.start()  # refuses a missing or unloadable store (ConfigError)
        except BaseException:
            await operations.cache.close()
            await upstream.aclose()
            raise
        limits = build_limits(settings.auth, settings.cache)
        authenticator = Authenticator(reloader.current, limits, settings.auth)
    else:
        log.warning("auth_disabled", detail="every caller is served under the default profile "
                    "without a key; set [auth] enabled = true outside loopback")
    pipeline = Pipeline(
        authenticator, default_timeout=settings.server.default_timeout_seconds,
        forward_headers=frozenset(
            h.lower() for h in settings.upstream.allowed_extra_headers) - FORBIDDEN_EXTRA,
        tracing=tracing)
    grpc_server = GrpcServer(settings.server, operations, pipeline,
                             credentials=server_credentials(settings.server))
    key_watch = UpstreamKeyWatch(all_profiles(settings), grpc_server.set_consumer_ready,
                                 upstream.set_keys_missing)
    await key_watch.start()  # before the port opens: no moment of SERVING without a key
    port = await grpc_server.start(settings.server.grpc_listen)
    http_server, http_port = None, 0
    if settings.server.http_listen:
        http_server = HttpServer(settings.server, create_app(operations, pipeline))
        try:
            http_port = await http_server.start(settings.server.http_listen)
        except BaseException:
            await grpc_server.drain(0.0)
            await key_watch.stop()
            if reloader is not None:
                await reloader.stop()
            await upstream.aclose()
            raise
    listen = settings.server.metrics_listen
    metrics = MetricsServer(listen, readiness(key_watch, grpc_server)) if listen else None
    log.info("gateway_started", grpc_port=port, http_port=http_port or None,
             metrics_port=metrics.port if metrics else None,
             upstream=settings.upstream.base_url, auth=settings.auth.enabled,
             tls=bool(settings.server.tls_cert), mtls=bool(settings.server.tls_client_ca),
             profiles=sorted(upstream.names),
             tracing=settings.tracing.otlp_endpoint if settings.tracing.enabled else None)
    loop_lag = LoopLagSampler()
    loop_lag.start()
    return Gateway(settings, upstream, operations, pipeline, grpc_server, port, http_server,
                   http_port, authenticator, reloader, metrics, key_watch, tracing, shared,
                   loop_lag)


def readiness(key_watch: UpstreamKeyWatch, grpc_server: GrpcServer) -> Readiness:
    """Why the consumer service is NOT_SERVING, for the metrics port's ``/readyz`` (read from
    its thread: one attribute read each, no lock needed)."""

    def reasons() -> list[dict[str, str]]:
        found = [{"reason": reason, "profile": profile}
                 for profile, reason in sorted(key_watch.problems.items())]
        if grpc_server.draining:
            found.append({"reason": "draining"})
        return found

    return reasons


def _nothing_to_reload() -> None:
    log.info("sighup_ignored", detail="auth is off: no credentials store to reload")


async def serve(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT, then drain gracefully; SIGHUP reloads the credentials.
    A start-up check that fails (no credentials store, ...) exits 2 with one error line."""
    try:
        gateway = await start_gateway(settings)
    except ConfigError as exc:
        log.error("gateway_start_refused", error=str(exc))
        raise SystemExit(2) from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # Without a store there is nothing to reload, but SIGHUP must not end the process (its
    # default action): the supervisor forwards it to every worker.
    reload = gateway.reloader.trigger if gateway.reloader is not None else _nothing_to_reload
    loop.add_signal_handler(signal.SIGHUP, reload)
    await stop.wait()
    log.info("gateway_draining", grace_seconds=settings.server.grace_seconds)
    await gateway.stop()
    log.info("gateway_stopped")
