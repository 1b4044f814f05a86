"""What an upstream exchange's outcome means: parsed bodies, error mapping, metric labels.

The pure functions behind ``gateway.upstream.client``: the JSON parse of a 2xx body, the
consumer-facing error of a non-2xx answer, whether a transport error is a timeout or provably
never sent, and the bounded metric labels of a request.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp
import httpx
import orjson

from gateway import metrics
from gateway.errors import (
    FieldViolation,
    GatewayError,
    Internal,
    InvalidArgument,
    ResourceExhausted,
    UpstreamErrorInfo,
    error_for_upstream_status,
)
from gateway.upstream.retry import parse_retry_after


def loads(raw: bytes | bytearray | str) -> Any:
    """``json.loads``, three times faster on the common case (a 100-message page: ~0.2 ms
    instead of ~0.65 ms, and a stream's next request waits for it).

    orjson accepts a subset of what ``json.loads`` does (UTF-8 only, no NaN or infinity,
    bounded nesting) and parses it to the same values, with one exception: an integer outside
    [-2**63, 2**64) comes back as a float, not an int. No field of the upstream's schema can hold
    either, so conversion refuses such a body both ways ("expected an integer" rather than "out
    of the int64 range" in the log; the consumer sees the same INTERNAL). Anything orjson refuses
    goes to ``json.loads``, so what is accepted, and how a body is refused, is unchanged. Text
    (a large body, ``as_text``) goes to ``json.loads`` alone.

    A body nested deeper than ``json.loads`` recurses (orjson stops at 1,024 levels) raises
    ``RecursionError`` there; it is refused as a ``ValueError`` like any other body that is not
    JSON the gateway takes, so callers need one ``except``.
    """
    try:
        if isinstance(raw, str):
            return json.loads(raw)
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            return json.loads(raw)
    except RecursionError:
        raise ValueError("the JSON is nested too deeply") from None


def as_text(raw: bytes | bytearray) -> str | bytes | bytearray:
    """A large body decoded for ``loads``, in a loop step before its parse's.

    A parse allocates its strings at once, and on a VM each newly touched page is a fault the
    loop's thread pays for (measured ~2.7 µs on memory used before, ~10 µs on memory new since
    boot: gateway/loop_lag.py). orjson copies its input into a scratch buffer (it maps ~12
    times the body and touches the body's size) and then builds the strings: two bodies' worth
    of new pages in one step. The decode here is one body's worth, and ``json.loads`` of the
    text another, in the next step (tests/reliability/test_loop_lag.py). A UTF-8 BOM is
    dropped, as ``json.loads`` of bytes drops it; a body that is not UTF-8 stays bytes
    (``json.loads`` detects UTF-16 and UTF-32)."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw


def never_sent(exc: httpx.TransportError) -> bool:
    """Whether the request provably never reached the upstream (the connection was refused), so
    even a create may be sent again."""
    if isinstance(exc, httpx.ConnectError):
        return True
    cause = exc.__cause__
    return isinstance(cause, aiohttp.ClientConnectorError) and not isinstance(
        cause, aiohttp.ClientSSLError)
#: Path parameter named after the collection segment before it (``threads/{thread_id}``).
_ROUTE_PARAMS = {"threads": "{thread_id}", "messages": "{message_id}", "files": "{file_id}"}


def route_label(method: str, segments: Sequence[str]) -> str:
    """``GET /threads/{thread_id}/messages``: the metric label of a request, never its ids.

    Segments alternate collection name / id, so every odd segment is replaced by its parameter
    name and the label set stays bounded whatever ids consumers send.
    """
    return _route_label(method, tuple(segments[::2]), len(segments))


@functools.lru_cache(maxsize=256)
def _route_label(method: str, collections: tuple[str, ...], length: int) -> str:
    segments = [s for c in collections for s in (c, "")][:length]
    parts = [
        s if i % 2 == 0 else _ROUTE_PARAMS.get(segments[i - 1], "{id}")
        for i, s in enumerate(segments)
    ]
    return f"{method} /" + "/".join(parts)


@functools.lru_cache(maxsize=1024)
def upstream_series(operation: str, outcome: str) -> tuple[Any, Any]:
    """The metric children of one (route, outcome): ``labels()`` takes a lock on every call
    otherwise. Bounded: routes come from the code, outcomes are HTTP statuses or ``error``."""
    return (metrics.UPSTREAM_REQUESTS.labels(operation, outcome),
            metrics.UPSTREAM_LATENCY.labels(operation))


def is_real_timeout(exc: httpx.TimeoutException) -> bool:
    """Whether a timeout is one: the transport's timeout exceptions are, unless their cause is a
    connection error that is not a timeout (any other httpx transport may map errors its own
    way); the cause tells the truth."""
    cause = exc.__cause__
    return not isinstance(cause, aiohttp.ClientError) or isinstance(cause, asyncio.TimeoutError)


def key_rejected(status: int) -> bool:
    return status in (401, 403)


def too_large() -> GatewayError:
    return ResourceExhausted(
        "the upstream response is larger than the gateway accepts",
        reason="UPSTREAM_RESPONSE_TOO_LARGE",
    )


#: What stands in for the upstream key wherever an upstream error quotes it.
REDACTED = "[redacted]"


def upstream_error(status: int, raw: bytes | bytearray, headers: Mapping[str, str], *,
                   sent_key: str = "") -> GatewayError:
    """The consumer-facing error for a non-2xx upstream answer. ``sent_key``: the upstream key
    the request carried; an answer that quotes it (an upstream or a proxy echoing the request's
    ``Authorization`` in its message, type, code or param) has it replaced by ``[redacted]``
    before any of it reaches a consumer, a log line or a trace."""
    if sent_key and sent_key.encode() in raw:
        raw = raw.replace(sent_key.encode(), REDACTED.encode())
    envelope: dict[str, Any] = {}
    try:
        parsed = loads(raw)
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
            envelope = parsed["error"]
    except ValueError:
        pass

    def text(name: str) -> str | None:
        value = envelope.get(name)
        return value if isinstance(value, str) else None

    info = UpstreamErrorInfo(
        status=status,
        type=text("type"),
        code=text("code"),
        message=text("message"),
        param=text("param"),
        request_id=headers.get("x-request-id"),
    )
    retry_after = parse_retry_after(headers)
    if key_rejected(status):
        # Never the consumer's fault, and the upstream message may quote part of our key.
        return Internal(
            "the gateway's upstream credentials were rejected",
            reason="UPSTREAM_CREDENTIALS_REJECTED",
            upstream=UpstreamErrorInfo(status=status, type=info.type, code=info.code,
                                       request_id=info.request_id),
        )
    if 300 <= status < 400:
        return Internal(
            "the upstream answered with a redirect, which the gateway does not follow",
            reason="UPSTREAM_REDIRECT",
            upstream=UpstreamErrorInfo(status=status, request_id=info.request_id),
        )
    cls = error_for_upstream_status(status)
    message = info.message or f"the upstream answered HTTP {status}"
    violations = (
        (FieldViolation(info.param, info.message or "rejected by the upstream"),)
        if cls is InvalidArgument and info.param
        else ()
    )
    return cls(
        message,
        reason=f"UPSTREAM_{cls.default_reason}",
        upstream=info,
        retry_after=retry_after,
        field_violations=violations,
    )
