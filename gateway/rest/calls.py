"""The REST face's call record: what ``gateway.rpc.interceptor`` does for gRPC, for HTTP.

Opens a ``gateway.call.Call`` per request (deadline from ``server.default_timeout_seconds`` or the
consumer's ``x-gateway-timeout`` header, request id from ``x-request-id``; every log line written
while it is bound names it, see ``gateway.log.add_call_context``), and writes exactly one log line
and one metrics sample per call. Request headers are never logged: ``Authorization`` carries the
consumer's key.

Metrics share the gRPC face's series with ``face="rest"`` and the same status-code names
(``OK``, ``INVALID_ARGUMENT``, ``NOT_FOUND``, ...), so the faces compare on one dashboard.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import structlog

from gateway import metrics
from gateway.call import Call

log = structlog.get_logger("gateway.rest")

#: Response header carrying the gateway's own id for the call (the gRPC face's metadata key).
GATEWAY_REQUEST_ID_HEADER = "x-gateway-request-id"

#: The hook where consumer authentication plugs in: called with the request headers (lower-case
#: names) and the call before any other work; raises ``Unauthenticated``/``PermissionDenied`` to
#: refuse, or fills ``call.consumer``/``call.key_id``/``call.tenant`` to accept.
Authenticator = Callable[[Mapping[str, str], Call], Awaitable[None]]


def open_call(method: str, headers: Mapping[str, str], default_timeout: float) -> Call:
    """A new call record with the default deadline and the consumer's request id."""
    call = Call(method=method, deadline=time.monotonic() + default_timeout, face="rest")
    request_id = headers.get("x-request-id")
    if request_id and request_id.isprintable():
        call.request_id = request_id[:128]
    return call


def set_timeout(call: Call, seconds: float | None) -> None:
    """Apply the consumer's own timeout, counted from the call's start."""
    if seconds is not None:
        call.deadline = call.started + seconds


def response_headers(call: Call) -> dict[str, str]:
    """The upstream's useful headers plus the gateway's request id."""
    return {**call.response_headers, GATEWAY_REQUEST_ID_HEADER: call.request_id}


def log_call(call: Call, code: str, http_status: int, **extra: Any) -> None:
    """The call's one log line and metrics sample."""
    duration = time.monotonic() - call.started
    metrics.CALLS.labels("rest", call.method, code).inc()
    metrics.CALL_LATENCY.labels("rest", call.method).observe(duration)
    if "items" in extra:
        metrics.STREAM_ITEMS.labels(call.method).inc(extra["items"])
    log.info(
        "http",
        method=call.method,  # also in the contextvars; explicit so the line stands alone
        code=code,
        http_status=http_status,
        duration_ms=round(duration * 1000, 2),
        upstream_status=call.upstream_status,
        upstream_request_id=call.upstream_request_id,
        upstream_calls=call.upstream_calls,
        cache=call.cache,
        consumer=call.consumer,
        **extra,
    )
