"""GatewayError → OpenAI error envelope: the one place the REST face maps errors.

The body is the upstream's own shape, ``{"error": {"message", "type", "param", "code"}}``, with
the error's ``http_status``, so the official SDK raises the class it would raise against the
upstream (400 BadRequestError, 401 AuthenticationError, 404 NotFoundError, 429 RateLimitError,
5xx InternalServerError).

* An error the upstream reported keeps the upstream's ``type``, ``code`` and ``param``.
* An error the gateway found keeps its own: ``type`` from the error class, ``param`` naming the
  first invalid field, ``code`` the lower-cased reason (``invalid_argument``, ``invalid_type``,
  ``unknown_parameter``, ``invalid_beta``, ...).
* ``Internal`` never carries upstream details: a rejected upstream key is not the consumer's
  business, and its message might quote part of the key.
* Anything that is not a GatewayError was made a generic 500 by the pipeline already.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.errors import GatewayError, Internal
from gateway.headers import RETRY_AFTER_MS

#: ``type`` values the upstream uses for server-side failures (the SDK only reads the status).
_SERVER_ERROR_TYPE = "server_error"


def error_envelope(error: GatewayError) -> dict[str, Any]:
    """The OpenAI error body for ``error``."""
    details = error.details
    upstream = details.upstream
    if upstream is not None and not isinstance(error, Internal):
        return {"error": {
            "message": error.message,
            "type": upstream.type or _openai_type(error),
            "param": upstream.param,
            "code": upstream.code,
        }}
    param = details.field_violations[0].field if details.field_violations else None
    return {"error": {
        "message": error.message,
        "type": _openai_type(error),
        "param": param,
        "code": details.reason.lower(),
    }}


def _openai_type(error: GatewayError) -> str:
    if error.http_status >= 500:
        return _SERVER_ERROR_TYPE
    return error.openai_type


def error_headers(error: GatewayError, forwarded: Mapping[str, str]) -> dict[str, str]:
    """Response headers of an error: the upstream's (retry hints included), plus our own
    ``retry-after-ms`` when the gateway itself knows how long to wait."""
    headers = dict(forwarded)
    if error.details.retry_after is not None and RETRY_AFTER_MS not in headers:
        headers[RETRY_AFTER_MS] = str(int(max(error.details.retry_after, 0.0) * 1000))
    return headers


def error_line(error: GatewayError) -> bytes:
    """The last line of an NDJSON stream that failed after sending something: the error, the
    HTTP status it would have had (the response's own status, 200, was sent with the first
    line), and where to resume (``resume_after`` on forward walks, ``resume_before`` on backward
    ones)."""
    body: dict[str, Any] = error_envelope(error)
    body["status"] = int(error.http_status)
    resume = error.details.resume
    if resume is not None:
        body[f"resume_{resume.direction}"] = resume.cursor
    return json.dumps(body, separators=(",", ":")).encode() + b"\n"


async def http_exception_envelope(request: Request, exc: Exception) -> Response:
    """Unknown paths (404) and methods (405), in the upstream's envelope and words."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message, code = f"Invalid URL ({request.method} {request.url.path})", None
    else:
        message, code = (f"Method {request.method} is not allowed on {request.url.path}",
                         "method_not_allowed")
    body = {"error": {"message": message, "type": "invalid_request_error", "param": None,
                      "code": code}}
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)
