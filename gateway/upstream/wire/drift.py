"""Upstream values beyond the schema that the wire passes on in a documented form (F10).

Every such value is counted (``gateway_upstream_tolerated_total{kind}``) and logged as a warning
the first time a kind and name is seen in this process, so a drifting upstream shows up without
flooding the log. The name logged is a schema word (a content part type, a role, a JSON type),
and only when it looks like one: anything else is logged as ``<other>``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import structlog

from gateway import metrics

log = structlog.get_logger("gateway.upstream.wire")

#: At most this many (kind, name) pairs are remembered (and logged) per process.
MAX_LOGGED = 256
_NAME = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")
_logged: set[tuple[str, str]] = set()


def tolerated(kind: str, name: str) -> None:
    """Count one tolerated value; log the first of its kind and name."""
    metrics.UPSTREAM_TOLERATED.labels(kind).inc()
    shown = name if _NAME.fullmatch(name) else "<other>"
    key = (kind, shown)
    if key not in _logged and len(_logged) < MAX_LOGGED:
        _logged.add(key)
        log.warning("upstream value outside the schema passed on", kind=kind, name=shown)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError("not a JSON value")


def json_text(value: Any) -> str:
    """``value`` as compact JSON text (keys in their order, non-ASCII kept).

    ValueError when it has none: NaN or an infinity (``json.loads`` accepts them, JSON does not),
    nesting too deep to write, or something that is not a JSON value at all.
    """
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False,
                          default=_plain)
    except (TypeError, RecursionError):
        raise ValueError("no JSON text") from None
