"""The end of every call: one log line, one audit line, its metrics, for both faces alike.

The ``call`` line (logger ``gateway.call``) is for operators: outcome, duration, upstream status
and request id, cache outcome. The ``audit`` line (logger ``gateway.audit``) is for an audit sink:
who (consumer, key id, profile), what (method, thread and message ids), outcome. Neither ever
carries a key, a hash or a header value. Both name the face, and the HTTP status the outcome
maps to, so a dashboard compares the faces on one series.
"""

from __future__ import annotations

import functools
import logging
import time
from typing import Any

import structlog

from gateway import metrics
from gateway.context import CallContext
from gateway.log import enabled as log_enabled
from gateway.tracing import CallTrace

log = structlog.get_logger("gateway.call")
audit = structlog.get_logger("gateway.audit")

#: The lines' trace fields with tracing off: none (one shared, never-written mapping).
_UNTRACED: dict[str, Any] = {}
#: gRPC code name → HTTP status, for the outcomes that are not a GatewayError.
_PLAIN_HTTP = {"OK": 200, "CANCELLED": 499}


def finish(ctx: CallContext, code: str, http_status: int, response: Any = None,
           items: int | None = None, pages: int | None = None) -> None:
    """Count and log the call's outcome (``code``: a gRPC status code name)."""
    duration = time.monotonic() - ctx.started
    calls, latency = _series(ctx.face, ctx.method, code, ctx.consumer, ctx.tenant)
    calls.inc()
    latency.observe(duration)
    if items is not None:
        stream_items, stream_pages = _stream_series(ctx.method)
        stream_items.inc(items)
        stream_pages.inc(pages or 0)
    trace = ctx.trace
    if trace is not None:
        _finish_span(ctx, trace, code, http_status, response, items, pages)
    if not log_enabled(logging.INFO):
        return
    duration_ms = round(duration * 1000, 2)
    thread_id, message_id = _ids(ctx, response)
    extra: dict[str, Any] = {} if items is None else {"items": items, "pages": pages}
    traced = _UNTRACED
    if trace is not None:
        traced = {"trace_id": trace.trace_id}
        extra.update(traced)
    log.info(
        "call",
        request_id=ctx.request_id,
        method=ctx.method,
        face=ctx.face,
        code=code,
        http_status=http_status,
        duration_ms=duration_ms,
        upstream_status=ctx.upstream_status,
        upstream_request_id=ctx.upstream_request_id,
        upstream_calls=ctx.upstream_calls,
        cache=ctx.cache,
        consumer=ctx.consumer,
        key_id=ctx.key_id,
        thread_id=thread_id,
        message_id=message_id,
        **extra,
    )
    audit.info(
        "audit",
        request_id=ctx.request_id,
        method=ctx.method,
        face=ctx.face,
        consumer=ctx.consumer,
        key_id=ctx.key_id,
        profile=ctx.tenant if ctx.consumer else None,
        thread_id=thread_id,
        message_id=message_id,
        outcome=code,
        duration_ms=duration_ms,
        **traced,
    )


def _finish_span(ctx: CallContext, trace: CallTrace, code: str, http_status: int,
                 response: Any, items: int | None, pages: int | None) -> None:
    """The call span's outcome: what the audit line says, and the cache and upstream summary."""
    thread_id, message_id = _ids(ctx, response)
    attributes: dict[str, Any] = {"gateway.profile": ctx.tenant,
                                  "gateway.upstream.calls": ctx.upstream_calls}
    if ctx.consumer:
        attributes["gateway.consumer"] = ctx.consumer
    if ctx.cache:
        attributes["gateway.cache.outcome"] = ctx.cache
    if thread_id:
        attributes["gateway.thread_id"] = thread_id
    if message_id:
        attributes["gateway.message_id"] = message_id
    if items is not None:
        attributes["gateway.stream.items"] = items
        attributes["gateway.stream.pages"] = pages or 0
    trace.finish(code, http_status, attributes)


def plain_http_status(code: str) -> int:
    return _PLAIN_HTTP.get(code, 500)


#: An id the request named is cut to this many characters on the lines and the span.
MAX_LOGGED_ID_CHARS = 128

#: ``object`` values of the answers whose ``id`` is a thread's (CreateThread names none before).
_THREAD_OBJECTS = frozenset({"thread", "thread.deleted"})


def _ids(ctx: CallContext, response: Any) -> tuple[str | None, str | None]:
    """The thread and message the call was about: the request's (bounded, printable), else the
    created object's."""
    value = getattr(response, "id", "")
    created = value if isinstance(value, str) and value else None
    thread_id, message_id = _bounded(ctx.thread_id), _bounded(ctx.message_id)
    if getattr(response, "object", "") in _THREAD_OBJECTS:
        return thread_id or created, message_id or None
    return thread_id or None, message_id or created


def _bounded(value: str) -> str:
    """A request's id as the lines carry it: validation comes later, so it may be anything.
    Made here, when a line or span is written, not when the call opens: a scan of both ids on
    every call was 3.5 % of the face's and pipeline's instructions (``logic_instructions``)
    with call lines off."""
    if not value:
        return ""
    value = value[:MAX_LOGGED_ID_CHARS]
    return value if value.isprintable() else repr(value)


@functools.cache
def _series(face: str, method: str, code: str, consumer: str | None,
            profile: str) -> tuple[Any, Any]:
    """The metric children of one (face, method, code, consumer, profile): ``labels()`` takes a
    lock on every call otherwise. Bounded: faces and methods come from the code, codes from
    grpc, consumers from the store (labelled by ``metrics.consumer_label``; cleared when the
    labelled names change), profiles from the configuration."""
    return (metrics.CALLS.labels(face, method, code, metrics.consumer_label(consumer), profile),
            metrics.CALL_LATENCY.labels(face, method))


metrics.on_consumer_names_change(_series.cache_clear)


@functools.cache
def _stream_series(method: str) -> tuple[Any, Any]:
    return metrics.STREAM_ITEMS.labels(method), metrics.STREAM_PAGES.labels(method)
