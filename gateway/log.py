"""structlog set-up: one processor chain, configured once, JSON lines by default.

The standard-library loggers of grpc, httpx and uvicorn are bridged through the same chain so that
every line the process writes has one shape.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from typing import Any

import structlog

from gateway.config import LoggingSettings

#: (request id, method, face) of the call being served: the log fields of every line written
#: while it runs, and nothing else (the call's context is passed explicitly everywhere).
_fields: contextvars.ContextVar[tuple[str, str, str] | None] = contextvars.ContextVar(
    "gateway_log_fields", default=None)

Token = contextvars.Token


def bind_call_fields(request_id: str, method: str, face: str) -> Token[Any]:
    """Name the call in every line written until ``unbind_call_fields``."""
    return _fields.set((request_id, method, face))


def unbind_call_fields(token: Token[Any]) -> None:
    _fields.reset(token)


def add_call_context(logger: Any, name: str, event: dict[str, Any]) -> dict[str, Any]:
    """Every line written while a call is served names it: request id, method, face.

    Read from one contextvar at write time instead of bound into structlog's contextvars per
    call: binding cost two contextvar rounds on every call, including the many whose lines the
    level filters out."""
    fields = _fields.get()
    if fields is not None:
        event.setdefault("request_id", fields[0])
        event.setdefault("method", fields[1])
        event.setdefault("face", fields[2])
    return event


_SHARED: list[Any] = [
    structlog.contextvars.merge_contextvars,
    add_call_context,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


#: The configured level; the per-call lines test it before building their fields (a filtered
#: structlog call is free, computing its dozen keyword arguments is not: ~5 us a line).
_level = logging.INFO


def enabled(level: int) -> bool:
    """Whether a line at ``level`` would be written."""
    return level >= _level


def configure_logging(settings: LoggingSettings, stream: Any = None) -> None:
    """Configure structlog and the stdlib root logger once for the process."""
    global _level
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if settings.format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    level = getattr(logging, settings.level.upper())
    _level = level
    structlog.configure(
        processors=[
            *_SHARED,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(level),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=_SHARED,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs every request URL at INFO; the per-call line already says what matters.
    logging.getLogger("httpx").setLevel(logging.WARNING)
