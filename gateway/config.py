"""Configuration: the only reader of the TOML file and of ``GATEWAY_*`` environment variables.

Precedence, lowest first: defaults, the TOML file (``--config`` or ``GATEWAY_CONFIG``), the
environment (``GATEWAY_<SECTION>_<KEY>``, e.g. ``GATEWAY_UPSTREAM_BASE_URL``), command-line flags.
Every value is type-checked at start-up and an error names the offending key.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.config_checks import (  # noqa: F401 - the API
    RESOURCE_ENV,
    ConfigError,
    check_all,
    parse_listen,
    parse_resource_attributes,
)

ENV_PREFIX = "GATEWAY_"



@dataclass(frozen=True, slots=True)
class ServerSettings:
    grpc_listen: str = "127.0.0.1:50051"
    #: Empty disables the HTTP/JSON face.
    http_listen: str = ""
    #: HOST:PORT of the Prometheus endpoint (GET /metrics); empty disables it.
    metrics_listen: str = ""
    #: Seconds in-flight calls get to finish after SIGTERM.
    grace_seconds: float = 10.0
    #: Seconds health reports NOT_SERVING before the listener closes (lets balancers notice).
    drain_delay_seconds: float = 0.0
    #: Consumer calls served at once (calls still waiting for their request do not count).
    max_concurrent_rpcs: int = 1000
    #: Seconds a call may take to deliver its request message once its headers arrived (gRPC),
    #: or its body (HTTP).
    request_timeout_seconds: float = 10.0
    #: Calls waiting for their request at once; when full, the longest-waiting one is ended.
    max_pending_calls: int = 1000
    #: HTTP/2 streams one client connection may have open at once.
    max_streams_per_connection: int = 1000
    #: A gRPC connection older than this (grpc core adds +-10 % jitter) gets a GOAWAY, so
    #: clients reconnect and reach replicas added since (0 = never).
    max_connection_age_seconds: float = 300.0
    #: After that GOAWAY, the time calls still open on the old connection get to finish.
    max_connection_age_grace_seconds: float = 30.0
    #: HTTP face: seconds a connection may take to send a request's headers (from opening, or
    #: from the end of its previous response); idle keep-alive connections close sooner.
    http_header_timeout_seconds: float = 10.0
    http_keepalive_seconds: float = 5.0
    #: HTTP connections open at once; when full, the longest-waiting idle one is closed.
    max_http_connections: int = 1000
    #: Deadline applied to calls that carry none.
    default_timeout_seconds: float = 60.0
    #: Worker processes sharing the ports (gateway/supervisor.py): a whole number >= 1, or
    #: "auto" (the CPUs this process may use, or the container's CPU quota if lower).
    workers: int | str = 1
    reflection: bool = True
    #: "uvloop" (measured faster, docs/benchmarks.md) or "asyncio" (the standard library's loop).
    event_loop: str = "uvloop"
    #: REST face's HTTP/1.1 parser: "httptools" (measured faster, docs/benchmarks.md) or "h11".
    http_parser: str = "httptools"
    #: Freed heap the process keeps for reuse (glibc): large bodies then reuse the last one's
    #: pages instead of faulting in new ones on the loop (gateway/native_heap.py); 0 = glibc's
    #: own policy.
    keep_freed_heap_bytes: int = 64 * 1024 * 1024
    #: Proxies (IP addresses or networks) whose X-Forwarded-For / X-Forwarded-Proto the HTTP
    #: face believes; empty = none (the client address is the TCP peer's).
    trusted_proxies: tuple[str, ...] = ()
    #: PEM files; both set = TLS on the gRPC port (otherwise plaintext, for loopback only).
    tls_cert: str = ""
    tls_key: str = ""
    #: PEM CA bundle; set = mutual TLS: clients must present a certificate it signed.
    tls_client_ca: str = ""


@dataclass(frozen=True, slots=True)
class UpstreamSettings:
    base_url: str = "http://127.0.0.1:8099/v1"
    #: The key itself (prefer api_key_env or api_key_file: this one ends up in the file).
    api_key: str = field(default="", repr=False)
    #: Environment variable holding the key.
    api_key_env: str = "OPENAI_API_KEY"
    #: File holding the key (a mounted Kubernetes Secret); wins over the others when set.
    api_key_file: str = ""
    beta: str = "assistants=v1"
    organization: str = ""
    project: str = ""
    connect_timeout_seconds: float = 5.0
    max_connections: int = 100
    max_keepalive_connections: int = 20
    keepalive_expiry_seconds: float = 30.0
    #: Upstream bodies larger than this are refused (RESOURCE_EXHAUSTED).
    max_body_bytes: int = 16 * 1024 * 1024
    #: Extra request headers consumers may pass through (lower-case names).
    allowed_extra_headers: tuple[str, ...] = ()
    #: "httptools" (the gateway's own HTTP/1.1 keep-alive client on httptools' parser,
    #: gateway/upstream/transport_h1.py: measured cheapest per request, docs/benchmarks.md),
    #: "aiohttp" (its own transport over an aiohttp session) or "httpx" (httpcore's).
    transport: str = "httptools"

    def resolve_api_key(self) -> str:
        """The upstream key, read now: a rotated key file is picked up by the next call."""
        if self.api_key_file:
            return Path(self.api_key_file).read_text(encoding="utf-8").strip()
        if self.api_key:
            return self.api_key
        return os.environ.get(self.api_key_env, "") if self.api_key_env else ""


@dataclass(frozen=True, slots=True)
class ReliabilitySettings:
    """Retries, retry budget, circuit breaker, admission and idempotent creates."""

    #: Attempts per upstream exchange, the first included (gRFC A6 caps it at 5).
    max_attempts: int = 3
    #: Full-jitter exponential backoff: a retry waits U(0, min(max, initial * 2^n)).
    initial_backoff_seconds: float = 0.05
    max_backoff_seconds: float = 2.0
    #: A retry-after above this is not slept on: the consumer gets it back as RetryInfo.
    max_retry_after_seconds: float = 60.0
    #: Time one attempt may take; 0 = all the time left before the consumer's deadline.
    per_try_timeout_seconds: float = 0.0
    #: Retry budget (token bucket): each request earns this many retries, up to the burst.
    retry_budget_ratio: float = 0.2
    retry_budget_burst: int = 10
    #: Consecutive upstream failures (5xx, 408, unreachable) that open a profile's circuit.
    circuit_failure_threshold: int = 5
    #: Seconds an open circuit fails calls fast before one probe may go through.
    circuit_open_seconds: float = 5.0
    #: Upstream requests in flight at once; more wait at most admission_wait_seconds.
    max_upstream_concurrency: int = 100
    admission_wait_seconds: float = 0.05
    #: How long the result of a create with an idempotency key is remembered.
    idempotency_window_seconds: float = 3600.0
    idempotency_max_entries: int = 100_000
    #: Where the window lives: "memory" (per process), "redis" (shared by every worker and
    #: replica, on the cache's Redis settings) or "auto" (redis when cache.backend is "redis").
    idempotency_backend: str = "auto"


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """Consumer authentication. OFF by default: without it every caller is served under the
    "default" profile with no key, no scopes and no limits (fine for ``make demo`` on loopback,
    never for a shared network)."""

    enabled: bool = False
    #: The credentials store (JSON, managed with ``python -m gateway keys``).
    store_path: str = ""
    #: How often the store file is checked; SIGHUP reloads at once.
    reload_seconds: float = 1.0
    #: Per-consumer defaults (the store may override them per consumer); 0 = unlimited.
    rate_per_second: float = 50.0
    burst: int = 100
    max_streams: int = 20
    #: Failed authentications per peer address (and per presented key id) per window before
    #: further failures of it are answered RESOURCE_EXHAUSTED; a valid key is never refused.
    failed_auth_limit: int = 20
    failed_auth_window_seconds: float = 60.0
    #: "local" (per replica) or "redis" (shared by every replica).
    limits_backend: str = "local"
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "mgw:limits:"
    #: Who may use a thread made through the gateway: "tenant" (every consumer of its profile),
    #: "consumer" (only the consumer that made it) or "open" (anyone who knows its id).
    thread_access: str = "tenant"
    #: Key of the owner stamps' HMAC (the same on every replica); a file wins over the value.
    #: Empty: a built-in key, with a warning at start (stamps are never shown to consumers and
    #: never accepted from them, so the key only keeps them from being computed elsewhere).
    owner_secret: str = field(default="", repr=False)
    owner_secret_file: str = ""


@dataclass(frozen=True, slots=True)
class ProfileSettings:
    """A named upstream profile (``[profiles.NAME]``); the connection settings (timeouts, pool,
    body cap, transport) are shared and come from ``[upstream]``, which is itself the profile
    named "default"."""

    name: str = "default"
    base_url: str = ""
    api_key: str = field(default="", repr=False)
    api_key_env: str = ""
    api_key_file: str = ""
    beta: str = "assistants=v1"
    organization: str = ""
    project: str = ""


@dataclass(frozen=True, slots=True)
class LoggingSettings:
    level: str = "info"
    #: "json" (one JSON object per line) or "console".
    format: str = "json"


@dataclass(frozen=True, slots=True)
class CacheSettings:
    #: "memory" (in-process, per replica), "redis" (shared by every replica) or "off".
    backend: str = "memory"
    redis_url: str = "redis://127.0.0.1:6379/0"
    #: Prefix of every Redis key the gateway writes (several gateways may share one Redis).
    redis_key_prefix: str = "mgw:"
    #: A Redis command slower than this counts as a failure; the call goes to the upstream.
    redis_op_timeout_seconds: float = 0.05
    #: After consecutive Redis failures the cache is skipped for this long (no per-call cost).
    redis_breaker_seconds: float = 5.0
    redis_max_connections: int = 64
    #: TTL per operation; 0 disables caching of that operation.
    get_message_ttl_seconds: float = 60.0
    list_messages_ttl_seconds: float = 2.0
    get_message_file_ttl_seconds: float = 3600.0
    list_message_files_ttl_seconds: float = 3600.0
    #: Bounds of the in-process backend.
    max_entries: int = 10_000
    max_bytes: int = 64 * 1024 * 1024
    #: Responses larger than this are never stored (either backend).
    max_value_bytes: int = 1024 * 1024


@dataclass(frozen=True, slots=True)
class TracingSettings:
    """OpenTelemetry tracing, OFF by default (``gateway.tracing``)."""

    enabled: bool = False
    #: OTLP/gRPC collector: ``http://HOST:PORT`` (plaintext) or ``https://HOST:PORT`` (TLS).
    otlp_endpoint: str = "http://127.0.0.1:4317"
    #: Share of new traces recorded (0 to 1); a consumer's sampled flag is followed as is.
    sampling_ratio: float = 1.0
    service_name: str = "messages-gateway"
    #: ``key=value`` resource attributes, over those of ``OTEL_RESOURCE_ATTRIBUTES``.
    resource_attributes: tuple[str, ...] = ()
    #: Seconds one export may take (spans of a slow collector are dropped, never waited for).
    export_timeout_seconds: float = 10.0


@dataclass(frozen=True, slots=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    upstream: UpstreamSettings = field(default_factory=UpstreamSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    reliability: ReliabilitySettings = field(default_factory=ReliabilitySettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    #: Extra upstream profiles by name (from ``[profiles.NAME]`` tables; file only, no env).
    profiles: tuple[ProfileSettings, ...] = ()
    cache: CacheSettings = field(default_factory=CacheSettings)
    tracing: TracingSettings = field(default_factory=TracingSettings)

    def replace(self, section: str, **changes: Any) -> Settings:
        """A copy with some keys of one section changed (validated like the file)."""
        current = getattr(self, section)
        merged = {f.name: getattr(current, f.name) for f in dataclasses.fields(current)}
        merged.update(changes)
        return dataclasses.replace(self, **{section: _build(type(current), merged, section)})


def load_settings(
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Defaults ← TOML file ← environment, validated."""
    environ = os.environ if environ is None else environ
    path = path or environ.get("GATEWAY_CONFIG") or None
    raw: dict[str, Any] = {}
    if path:
        try:
            raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    _check_environment_names(environ)
    sections = {f.name: f.type for f in dataclasses.fields(Settings)}
    for name in raw:
        if name not in sections:
            raise ConfigError(f"unknown config section [{name}]")
    built: dict[str, Any] = {"profiles": _profiles(raw.pop("profiles", {}))}
    for f in dataclasses.fields(Settings):
        if f.name == "profiles":
            continue
        cls = typing.get_type_hints(Settings)[f.name]
        values = dict(raw.get(f.name, {}))
        if not isinstance(raw.get(f.name, {}), dict):
            raise ConfigError(f"[{f.name}] must be a table")
        for key in (x.name for x in dataclasses.fields(cls)):
            env_name = f"{ENV_PREFIX}{f.name}_{key}".upper()
            if env_name in environ:
                values[key] = _from_env(environ[env_name], typing.get_type_hints(cls)[key],
                                        f"{f.name}.{key}", env_name)
        if f.name == "tracing" and RESOURCE_ENV in environ:
            # The OpenTelemetry variable, read here like every other: the file's pairs win.
            values["resource_attributes"] = (
                *parse_resource_attributes(environ[RESOURCE_ENV], RESOURCE_ENV),
                *values.get("resource_attributes", ()))
        built[f.name] = _build(cls, values, f.name)
    settings = Settings(**built)
    check_settings(settings)
    return settings


def _profiles(raw: Any) -> tuple[ProfileSettings, ...]:
    if not isinstance(raw, dict):
        raise ConfigError("[profiles] must contain [profiles.NAME] tables")
    profiles = []
    for name, values in raw.items():
        if not isinstance(values, dict):
            raise ConfigError(f"[profiles.{name}] must be a table")
        if "name" in values:
            raise ConfigError(f"unknown config key profiles.{name}.name")
        profiles.append(_build(ProfileSettings, {**values, "name": name}, f"profiles.{name}"))
    return tuple(profiles)


def environment_names() -> frozenset[str]:
    """Every ``GATEWAY_*`` variable the gateway reads."""
    names = {"GATEWAY_CONFIG"}
    for f in dataclasses.fields(Settings):
        if f.name == "profiles":
            continue  # file only
        cls = typing.get_type_hints(Settings)[f.name]
        names.update(f"{ENV_PREFIX}{f.name}_{k.name}".upper() for k in dataclasses.fields(cls))
    return frozenset(names)


def _check_environment_names(environ: Mapping[str, str]) -> None:
    """A misspelt ``GATEWAY_*`` name is an error, not a setting silently left at its default
    (``GATEWAY_AUTH_ENABLE=true`` would leave auth off). Values are never echoed."""
    known = environment_names()
    for name in sorted(environ):
        if name.upper().startswith(ENV_PREFIX) and name not in known:
            close = difflib.get_close_matches(name.upper(), known, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise ConfigError(f"unknown environment variable {name}: not a gateway setting "
                              f"(GATEWAY_<SECTION>_<KEY>; [profiles] are file-only){hint}")


def _from_env(text: str, hint: Any, key: str, env_name: str) -> Any:
    if hint is bool:
        # As in TOML: exactly true or false. Anything else ("enabled", "y", "true # comment")
        # turned auth *off* when it meant on.
        if text in {"true", "false"}:
            return text == "true"
        raise ConfigError(f"{key} must be true or false (from {env_name})")
    if typing.get_origin(hint) is tuple:
        return tuple(part.strip() for part in text.split(",") if part.strip())
    return text


def _build(cls: type[Any], values: dict[str, Any], section: str) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for key in values:
        if key not in known:
            raise ConfigError(f"unknown config key {section}.{key}")
    coerced: dict[str, Any] = {}
    for key, value in values.items():
        coerced[key] = _coerce(value, hints[key], f"{section}.{key}")
    return cls(**coerced)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key} must be true or false")
    if hint is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key} must be an integer")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key} must be an integer") from None
    if hint is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key} must be a number")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key} must be a number") from None
        # NaN fails every comparison, so range checks pass it (rate_per_second=nan admitted
        # every call); TOML and float() both accept nan and inf.
        if not math.isfinite(number):
            raise ConfigError(f"{key} must be a finite number")
        return number
    if hint == int | str:  # a number or a keyword (server.workers: 4 or "auto")
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ConfigError(f"{key} must be an integer or a string")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string")
        return value
    if typing.get_origin(hint) is tuple or isinstance(hint, types.GenericAlias):
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{key} must be a list of strings")
        return tuple(value)
    raise ConfigError(f"{key} has an unsupported type")  # pragma: no cover - programming error


def check_settings(settings: Settings) -> None:
    """Every cross-key rule (gateway/config_checks.py); an error names the key."""
    check_all(settings)