"""Opening a call: the consumer's metadata (gRPC) or headers (HTTP) → a ``CallContext``.

Both faces hand over the same thing, ``(name, value)`` pairs with lower-case names, so one pass
reads every input the gateway takes from them, with the same rules on both faces: a repeated
``authorization`` is refused like a missing one, a repeated ``idempotency-key`` is refused as
ambiguous, a bad ``x-gateway-timeout`` is refused naming it, allow-listed headers are kept for
the upstream (values checked as ``options.extra_headers`` values are).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable

from gateway import headers as h
from gateway.context import CallContext
from gateway.errors import FieldViolation, InvalidArgument
from gateway.operations.validation import Violations, check_header_value

#: The longest deadline a call may have (gRPC's "infinite" deadline is capped to it).
MAX_TIMEOUT_SECONDS = 10**7


def open_call(
    method: str,
    face: str,
    metadata: Iterable[tuple[str, str | bytes]],
    *,
    peer: str | Callable[[], str],
    default_timeout: float,
    timeout: float | None = None,
    forward: Collection[str] = (),
    thread_id: str = "",
    message_id: str = "",
) -> CallContext:
    """A new context. ``timeout``: the transport's own deadline in seconds (gRPC), if any. An
    ``x-gateway-timeout`` header sets the call's deadline in place of ``default_timeout``; a
    transport deadline that is shorter still wins. ``forward``: allow-listed header names."""
    ctx = CallContext(method=method, face=face, peer=peer, thread_id=thread_id,
                      message_id=message_id)
    seconds = default_timeout if timeout is None else min(timeout, MAX_TIMEOUT_SECONDS)
    idempotency_seen = False
    for key, value in metadata:
        if isinstance(value, bytes):
            if key == h.AUTHORIZATION:
                ctx.authorization = ""  # a binary value is never a key
            continue
        if key == h.AUTHORIZATION:
            # Several values are ambiguous: "" fails authentication like a missing one.
            ctx.authorization = value if ctx.authorization is None else ""
        elif key == h.REQUEST_ID:
            if value.isascii() and value.isprintable():  # it goes back as a header/trailer
                ctx.request_id = value[:h.MAX_VALUE_CHARS]
        elif key == h.IDEMPOTENCY_KEY:
            # Two keys are ambiguous: "" is refused by the create's validation, naming it.
            ctx.idempotency_key = "" if idempotency_seen else value
            idempotency_seen = True
        elif key == h.CACHE_CONTROL:
            if value.isprintable():
                joined = value[:h.MAX_VALUE_CHARS].lower()
                ctx.cache_control = f"{ctx.cache_control},{joined}" if ctx.cache_control else joined
        elif key == h.TIMEOUT:
            parsed = _timeout(value)
            if parsed is None:
                ctx.rejected = InvalidArgument.for_fields([FieldViolation(
                    h.TIMEOUT, "must be a number of seconds greater than 0")])
            else:
                seconds = parsed if timeout is None else min(seconds, parsed)
        elif key == h.TRACEPARENT or key == h.TRACESTATE:
            _trace_header(ctx, key, value)
            if key in forward:
                _forward(ctx, key, value)
        elif key in forward:
            _forward(ctx, key, value)
    ctx.deadline = ctx.started + seconds
    return ctx


def _forward(ctx: CallContext, key: str, value: str) -> None:
    v = Violations()
    check_header_value(v, key, value)
    if v.items:
        ctx.rejected = InvalidArgument.for_fields(v.items)
    else:
        ctx.forward_headers[key] = value


def _trace_header(ctx: CallContext, key: str, value: str) -> None:
    """Kept for the call span to continue (``gateway.tracing`` parses it; a malformed one starts
    a new trace). Two traceparents are ambiguous: neither is followed. Several tracestate
    values join as one list, as W3C says; a tracestate longer than the W3C allows is dropped."""
    carrier = ctx.trace_carrier
    if carrier is None:
        carrier = ctx.trace_carrier = {}
    if key == h.TRACEPARENT:
        carrier[key] = "" if key in carrier else value
        return
    if key in carrier and not carrier[key]:
        return  # already dropped
    joined = f"{carrier[key]},{value}" if key in carrier else value
    if not joined or len(joined) > h.MAX_TRACESTATE_CHARS:
        carrier[key] = ""
        return
    carrier[key] = joined


def _timeout(raw: str) -> float | None:
    try:
        seconds = float(raw)
    except ValueError:
        return None
    return seconds if 0 < seconds <= MAX_TIMEOUT_SECONDS else None  # also None for NaN

