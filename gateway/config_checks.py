"""The rules across keys, checked once every value has its type (``gateway.config``, which
imports this module; the settings types are needed here for annotations only)."""

from __future__ import annotations

import ipaddress
import math
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from gateway.headers import FORBIDDEN_EXTRA

if TYPE_CHECKING:  # pragma: no cover
    from gateway.config import CacheSettings, ReliabilitySettings, Settings, TracingSettings

#: The OpenTelemetry variable of resource attributes (``k=v,k2=v2``, values percent-encoded).
RESOURCE_ENV = "OTEL_RESOURCE_ATTRIBUTES"
#: Resource attribute keys: what OpenTelemetry's attribute names are made of.
_ATTRIBUTE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,254}")


class ConfigError(ValueError):
    """The configuration is invalid; the message names the key."""


def parse_listen(value: str, key: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (``[::1]:PORT`` for IPv6); the error names the key."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{key} must be HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)

def require_positive(values: dict[str, float], *, allow_zero: bool = False) -> None:
    """Each named number above 0 (or at least 0 with ``allow_zero``); the error names it."""
    rule = "must not be negative" if allow_zero else "must be greater than 0"
    for key, number in values.items():
        if number < 0 if allow_zero else number <= 0:
            raise ConfigError(f"{key} {rule}")


def worker_count(value: int | str, cpus: int | None = None) -> int:
    """``server.workers`` as a number: N >= 1, or "auto" (``cpus``, default: ``usable_cpus()``);
    anything else (0, -1, "lots", 1.5) is refused naming the key."""
    if value == "auto":
        return cpus if cpus is not None else usable_cpus()
    text = str(value).strip()
    if isinstance(value, bool) or not text.isdigit() or int(text) < 1:
        raise ConfigError(f"server.workers must be a whole number of at least 1 or 'auto', "
                          f"got {value!r}")
    return int(text)


def usable_cpus(cgroup_root: str = "/sys/fs/cgroup") -> int:
    """The CPUs this process may run on, or the cgroup's CPU quota (rounded up) if lower."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count() or 1
    quota = _cgroup_quota(Path(cgroup_root))
    if quota is not None:
        count = min(count, max(1, math.ceil(quota)))
    return max(1, count)


def _cgroup_quota(root: Path) -> float | None:
    """CPUs allowed by the CPU quota: cgroup v2 ``cpu.max``, else v1's cfs files; None = none."""
    try:
        limit, _, period = (root / "cpu.max").read_text().split()[:2] + [""]
        if limit != "max":
            return int(limit) / int(period)
        return None
    except (OSError, ValueError, ZeroDivisionError):
        pass
    try:
        limit_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return limit_us / period_us if limit_us > 0 and period_us > 0 else None


#: server.event_loop's and server.http_parser's values.
EVENT_LOOPS = ("uvloop", "asyncio")
HTTP_PARSERS = ("httptools", "h11")

_PROFILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def check_all(settings: Settings) -> None:
    _, grpc_port = parse_listen(settings.server.grpc_listen, "server.grpc_listen")
    http_port = None
    if settings.server.http_listen:
        _, http_port = parse_listen(settings.server.http_listen, "server.http_listen")
    if worker_count(settings.server.workers, cpus=2) > 1:  # "auto" is checked as if it were 2
        for key, port in (("grpc_listen", grpc_port), ("http_listen", http_port)):
            if port == 0:
                raise ConfigError(f"server.{key}: port 0 cannot be shared by several workers "
                                  "(server.workers); name a port")
    if settings.server.metrics_listen:
        parse_listen(settings.server.metrics_listen, "server.metrics_listen")
    check_base_urls(settings)
    if settings.server.event_loop not in EVENT_LOOPS:
        raise ConfigError("server.event_loop must be 'uvloop' or 'asyncio'")
    if settings.server.http_parser not in HTTP_PARSERS:
        raise ConfigError("server.http_parser must be 'httptools' or 'h11'")
    if settings.upstream.transport not in {"aiohttp", "httptools", "httpx"}:
        raise ConfigError("upstream.transport must be 'aiohttp', 'httptools' or 'httpx'")
    for name in settings.upstream.allowed_extra_headers:
        if name.lower() in FORBIDDEN_EXTRA:
            raise ConfigError(f"upstream.allowed_extra_headers may not include {name!r}")
    positive = {
        "server.grace_seconds": settings.server.grace_seconds,
        "server.default_timeout_seconds": settings.server.default_timeout_seconds,
        "server.max_concurrent_rpcs": settings.server.max_concurrent_rpcs,
        "server.request_timeout_seconds": settings.server.request_timeout_seconds,
        "server.max_pending_calls": settings.server.max_pending_calls,
        "server.max_streams_per_connection": settings.server.max_streams_per_connection,
        "server.http_header_timeout_seconds": settings.server.http_header_timeout_seconds,
        "server.http_keepalive_seconds": settings.server.http_keepalive_seconds,
        "server.max_http_connections": settings.server.max_http_connections,
        "upstream.connect_timeout_seconds": settings.upstream.connect_timeout_seconds,
        "upstream.max_connections": settings.upstream.max_connections,
        "upstream.max_body_bytes": settings.upstream.max_body_bytes,
    }
    require_positive(positive)
    require_positive({"server.max_connection_age_seconds":
                      settings.server.max_connection_age_seconds,
                      "server.keep_freed_heap_bytes": settings.server.keep_freed_heap_bytes},
                     allow_zero=True)
    require_positive({"server.max_connection_age_grace_seconds":
                      settings.server.max_connection_age_grace_seconds})
    for proxy in settings.server.trusted_proxies:
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            raise ConfigError("server.trusted_proxies must list IP addresses or networks "
                              f"(e.g. 10.0.0.0/8), got {proxy!r}") from None
    check_reliability(settings.reliability)
    server = settings.server
    if bool(server.tls_cert) != bool(server.tls_key):
        raise ConfigError("server.tls_cert and server.tls_key must be set together")
    if server.tls_client_ca and not server.tls_cert:
        raise ConfigError("server.tls_client_ca needs server.tls_cert and server.tls_key")
    check_auth(settings)
    _check_cache(settings.cache)
    check_tracing(settings.tracing)
    if settings.logging.format not in {"json", "console"}:
        raise ConfigError("logging.format must be 'json' or 'console'")
    if settings.logging.level.lower() not in {"debug", "info", "warning", "error"}:
        raise ConfigError("logging.level must be debug, info, warning or error")


def check_base_url(value: str, key: str) -> None:
    url = urlsplit(value)
    if url.scheme not in {"http", "https"} or not url.hostname:
        raise ConfigError(f"{key} must be an http(s) URL with a host")
    if url.query or url.fragment:
        raise ConfigError(f"{key} must not have a query or fragment")
    # The API root, e.g. https://api.openai.com/v1: without /v1 every call was NOT_FOUND.
    if not url.path.rstrip("/").endswith("/v1"):
        raise ConfigError(f"{key} must be the API root, ending in /v1 (e.g. "
                          f"https://api.openai.com/v1); its path is {url.path or '/'!r}")


def check_base_urls(settings: Settings) -> None:
    """Every profile's base URL (start-up runs this too, for settings built in code)."""
    check_base_url(settings.upstream.base_url, "upstream.base_url")
    for profile in settings.profiles:
        check_base_url(profile.base_url, f"profiles.{profile.name}.base_url")


def check_reliability(r: ReliabilitySettings) -> None:
    if r.idempotency_backend not in {"auto", "memory", "redis"}:
        raise ConfigError("reliability.idempotency_backend must be 'auto', 'memory' or 'redis'")
    if not 1 <= r.max_attempts <= 5:
        raise ConfigError("reliability.max_attempts must be between 1 and 5")
    positive = {
        "reliability.initial_backoff_seconds": r.initial_backoff_seconds,
        "reliability.max_backoff_seconds": r.max_backoff_seconds,
        "reliability.max_retry_after_seconds": r.max_retry_after_seconds,
        "reliability.circuit_failure_threshold": r.circuit_failure_threshold,
        "reliability.circuit_open_seconds": r.circuit_open_seconds,
        "reliability.max_upstream_concurrency": r.max_upstream_concurrency,
        "reliability.idempotency_window_seconds": r.idempotency_window_seconds,
        "reliability.idempotency_max_entries": r.idempotency_max_entries,
    }
    require_positive(positive)
    not_negative = {
        "reliability.per_try_timeout_seconds": r.per_try_timeout_seconds,
        "reliability.retry_budget_ratio": r.retry_budget_ratio,
        "reliability.retry_budget_burst": r.retry_budget_burst,
        "reliability.admission_wait_seconds": r.admission_wait_seconds,
    }
    require_positive(not_negative, allow_zero=True)


def check_auth(settings: Settings) -> None:
    auth = settings.auth
    if auth.enabled and not auth.store_path:
        raise ConfigError("auth.store_path is required when auth.enabled is true")
    if auth.limits_backend not in {"local", "redis"}:
        raise ConfigError("auth.limits_backend must be 'local' or 'redis'")
    if auth.thread_access not in {"tenant", "consumer", "open"}:
        raise ConfigError("auth.thread_access must be 'tenant', 'consumer' or 'open'")
    if auth.reload_seconds <= 0:
        raise ConfigError("auth.reload_seconds must be greater than 0")
    if auth.failed_auth_window_seconds <= 0:
        raise ConfigError("auth.failed_auth_window_seconds must be greater than 0")
    for key in ("rate_per_second", "burst", "max_streams", "failed_auth_limit"):
        if getattr(auth, key) < 0:
            raise ConfigError(f"auth.{key} must not be negative")
    seen = {"default"}
    for profile in settings.profiles:
        where = f"profiles.{profile.name}"
        if not _PROFILE_NAME.fullmatch(profile.name):
            raise ConfigError(f"[{where}]: a profile name is 1-64 letters, digits, '.', '_', '-'")
        if profile.name in seen:
            raise ConfigError(f"[{where}]: 'default' is the [upstream] section; pick another name")
        seen.add(profile.name)
        if not (profile.api_key or profile.api_key_env or profile.api_key_file):
            raise ConfigError(f"{where} needs api_key_env or api_key_file")


def check_store_exists(path: str) -> None:
    """Auth on with no store file would start with no consumers: refused at start-up (not when
    the settings are read: a config is checked on machines that do not mount the store)."""
    if not Path(path).is_file():
        raise ConfigError(f"auth.store_path: no credentials store at {path} (create it with "
                          "'python -m gateway keys add ...', or fix the path)")


def _check_cache(cache: CacheSettings) -> None:
    if cache.backend not in {"memory", "redis", "off"}:
        raise ConfigError("cache.backend must be 'memory', 'redis' or 'off'")
    if cache.backend == "redis" and urlsplit(cache.redis_url).scheme not in {
        "redis", "rediss", "unix"
    }:
        raise ConfigError("cache.redis_url must be a redis://, rediss:// or unix:// URL")
    positive = {
        "cache.redis_op_timeout_seconds": cache.redis_op_timeout_seconds,
        "cache.redis_breaker_seconds": cache.redis_breaker_seconds,
        "cache.redis_max_connections": cache.redis_max_connections,
        "cache.max_entries": cache.max_entries,
        "cache.max_bytes": cache.max_bytes,
        "cache.max_value_bytes": cache.max_value_bytes,
    }
    require_positive(positive)
    for name in ("get_message", "list_messages", "get_message_file", "list_message_files"):
        if getattr(cache, f"{name}_ttl_seconds") < 0:
            raise ConfigError(f"cache.{name}_ttl_seconds must be 0 (off) or more")


def parse_resource_attributes(text: str, key: str) -> tuple[str, ...]:
    """``k=v,k2=v2`` (``OTEL_RESOURCE_ATTRIBUTES``) as ``("k=v", "k2=v2")``; a pair without a
    key or ``=`` is an error naming ``key`` (values are never echoed: one may be private)."""
    pairs = tuple(part.strip() for part in text.split(",") if part.strip())
    for pair in pairs:
        check_resource_attribute(pair, key)
    return pairs


def check_resource_attribute(pair: str, key: str) -> tuple[str, str]:
    name, sep, value = pair.partition("=")
    name = name.strip()
    if not sep or not _ATTRIBUTE_KEY.fullmatch(name):
        raise ConfigError(f"{key}: each resource attribute must be key=value with a key of "
                          "letters, digits, '.', '_' or '-'")
    if not value.strip().isprintable():
        raise ConfigError(f"{key}: the value of resource attribute {name!r} is not printable")
    return name, value.strip()


def check_tracing(tracing: TracingSettings) -> None:
    if not 0.0 <= tracing.sampling_ratio <= 1.0:
        raise ConfigError("tracing.sampling_ratio must be between 0 and 1")
    url = urlsplit(tracing.otlp_endpoint)
    try:
        port = url.port
    except ValueError:
        port = None
    if url.scheme not in {"http", "https"} or not url.hostname or port is None:
        raise ConfigError("tracing.otlp_endpoint must be http://HOST:PORT or https://HOST:PORT")
    if url.path.strip("/") or url.query or url.fragment or url.username or url.password:
        raise ConfigError("tracing.otlp_endpoint must have no path, query, fragment or "
                          "credentials (OTLP/gRPC: the collector's HOST:PORT)")
    if not tracing.service_name or not tracing.service_name.isprintable():
        raise ConfigError("tracing.service_name must be a printable, non-empty string")
    for pair in tracing.resource_attributes:
        check_resource_attribute(pair, "tracing.resource_attributes")
    require_positive({"tracing.export_timeout_seconds": tracing.export_timeout_seconds})
