"""Typed errors: one exception class per gRPC status, with the gateway's error details decoded.

The gateway sends a ``google.rpc.Status`` in the ``grpc-status-details-bin`` trailer (AIP-193):
``ErrorInfo`` (stable reason), ``BadRequest`` (the offending fields), ``RetryInfo``. They are
decoded here with googleapis-common-protos, so callers branch on attributes, not on strings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2

#: Trailer carrying the serialized google.rpc.Status.
STATUS_DETAILS_KEY = "grpc-status-details-bin"
#: Trailer naming the last id a failed stream sent (the gateway's resume cursor).
RESUME_AFTER_KEY = "resume-after"
#: Trailer naming the first id of a failed backward stream's last page.
RESUME_BEFORE_KEY = "resume-before"
#: Response metadata naming the gateway's id for the call.
GATEWAY_REQUEST_ID_KEY = "x-gateway-request-id"

Metadata = Sequence[tuple[str, str | bytes]]


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """A request field the gateway (or the upstream) rejected."""

    field: str
    description: str


class GatewayError(Exception):
    """A call failed. ``code`` is the gRPC status, ``status_code`` the HTTP status the gateway's
    REST face answers for it (the SDK's ``APIStatusError.status_code``); the rest comes from the
    status details: ``reason`` / ``domain`` / ``error_metadata`` (ErrorInfo),
    ``field_violations`` (BadRequest), ``retry_after`` (RetryInfo), and ``details``, every
    detail message decoded (others stay ``google.protobuf.Any``). ``request_id`` is the
    gateway's id for the call, ``upstream_request_id`` the upstream's ``x-request-id``."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN
    status_code: int = 500

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode | None = None,
        reason: str = "",
        domain: str = "",
        error_metadata: dict[str, str] | None = None,
        field_violations: tuple[FieldViolation, ...] = (),
        retry_after: float | None = None,
        request_id: str | None = None,
        resume_after: str | None = None,
        resume_before: str | None = None,
        details: tuple[Message, ...] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.reason = reason
        self.domain = domain
        self.error_metadata = dict(error_metadata or {})
        self.field_violations = field_violations
        self.retry_after = retry_after
        self.request_id = request_id
        self.resume_after = resume_after
        self.resume_before = resume_before
        self.details = details

    @property
    def upstream_request_id(self) -> str | None:
        """The upstream's ``x-request-id``, when the upstream answered (what its support asks)."""
        return self.error_metadata.get("upstream_request_id")

    @property
    def upstream_status(self) -> int | None:
        """The upstream's HTTP status, when the error is the upstream's answer."""
        value = self.error_metadata.get("upstream_status")
        return int(value) if value and value.isdigit() else None

    def to_dict(self) -> dict[str, object]:
        """The error as plain data (for logs and JSON answers), never the request's key."""
        return {"code": self.code.name, "status_code": self.status_code,
                "message": self.message, "reason": self.reason or None,
                "domain": self.domain or None, "metadata": dict(self.error_metadata),
                "field_violations": [{"field": v.field, "description": v.description}
                                     for v in self.field_violations],
                "retry_after": self.retry_after, "request_id": self.request_id,
                "upstream_request_id": self.upstream_request_id}

    def __str__(self) -> str:
        reason = f" ({self.reason})" if self.reason else ""
        return f"{self.code.name}{reason}: {self.message}"


class BadRequestError(GatewayError):
    code = grpc.StatusCode.INVALID_ARGUMENT
    status_code = 400


class AuthenticationError(GatewayError):
    code = grpc.StatusCode.UNAUTHENTICATED
    status_code = 401


class PermissionDeniedError(GatewayError):
    code = grpc.StatusCode.PERMISSION_DENIED
    status_code = 403


class NotFoundError(GatewayError):
    code = grpc.StatusCode.NOT_FOUND
    status_code = 404


class ConflictError(GatewayError):
    code = grpc.StatusCode.ABORTED
    status_code = 409


class RateLimitError(GatewayError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    status_code = 429


class APITimeoutError(GatewayError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED
    status_code = 504


class UnavailableError(GatewayError):
    code = grpc.StatusCode.UNAVAILABLE
    status_code = 503


class InternalServerError(GatewayError):
    code = grpc.StatusCode.INTERNAL
    status_code = 500


class CancelledError(GatewayError):
    code = grpc.StatusCode.CANCELLED
    status_code = 499


_BY_CODE: dict[grpc.StatusCode, type[GatewayError]] = {
    cls.code: cls
    for cls in (BadRequestError, AuthenticationError, PermissionDeniedError, NotFoundError,
                ConflictError, RateLimitError, APITimeoutError, UnavailableError,
                InternalServerError, CancelledError)
}


def _text(value: str | bytes) -> str:
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


#: The google.rpc detail types decoded into ``GatewayError.details``.
_DETAIL_TYPES: tuple[type[Message], ...] = (
    error_details_pb2.ErrorInfo, error_details_pb2.BadRequest, error_details_pb2.RetryInfo,
    error_details_pb2.RequestInfo, error_details_pb2.QuotaFailure, error_details_pb2.Help,
    error_details_pb2.PreconditionFailure, error_details_pb2.ResourceInfo,
    error_details_pb2.DebugInfo, error_details_pb2.LocalizedMessage,
)


def _unpack(detail: Any) -> Message:
    for kind in _DETAIL_TYPES:
        if detail.Is(kind.DESCRIPTOR):
            out = kind()
            detail.Unpack(out)
            return out
    return detail  # type: ignore[no-any-return]


def error_from_status(
    code: grpc.StatusCode, message: str, trailers: Metadata | None
) -> GatewayError:
    """The typed error for a status and its trailing metadata."""
    trailers = trailers or ()
    kwargs: dict[str, object] = {}
    violations: list[FieldViolation] = []
    details: list[Message] = []
    for key, value in trailers:
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            for detail in status_pb2.Status.FromString(value).details:
                decoded = _unpack(detail)
                details.append(decoded)
                if isinstance(decoded, error_details_pb2.ErrorInfo):
                    kwargs.update(reason=decoded.reason, domain=decoded.domain,
                                  error_metadata=dict(decoded.metadata))
                elif isinstance(decoded, error_details_pb2.BadRequest):
                    violations.extend(FieldViolation(v.field, v.description)
                                      for v in decoded.field_violations)
                elif isinstance(decoded, error_details_pb2.RetryInfo):
                    kwargs["retry_after"] = decoded.retry_delay.ToTimedelta().total_seconds()
        elif key == RESUME_AFTER_KEY:
            kwargs["resume_after"] = _text(value)
        elif key == RESUME_BEFORE_KEY:
            kwargs["resume_before"] = _text(value)
        elif key == GATEWAY_REQUEST_ID_KEY:
            kwargs["request_id"] = _text(value)
    cls = _BY_CODE.get(code, GatewayError)
    return cls(message, code=code, field_violations=tuple(violations), details=tuple(details),
               **kwargs)  # type: ignore[arg-type]


def error_from_rpc(err: grpc.RpcError) -> GatewayError:
    """Translate a grpc (sync or aio) error; the original stays the ``__cause__``."""
    call: grpc.Call = err  # type: ignore[assignment]
    return error_from_status(call.code(), call.details() or "", call.trailing_metadata())
