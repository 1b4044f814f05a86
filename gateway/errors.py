"""The gateway's exceptions: one class per status, each carrying its gRPC code and HTTP status.

Everything below the faces raises these; exactly one place per face turns them into a wire
status (``gateway.rpc.status`` for gRPC, ``gateway.rest.errors`` for HTTP). Anything else that
escapes becomes ``Internal`` with a generic message.

    GatewayError
    ├── InvalidArgument      INVALID_ARGUMENT     400   bad request field (BadRequest details)
    ├── Unauthenticated      UNAUTHENTICATED      401   missing/unknown/revoked gateway key
    ├── PermissionDenied     PERMISSION_DENIED    403   key lacks the scope
    ├── NotFound             NOT_FOUND            404   upstream 404
    ├── Aborted              ABORTED              409   upstream 409
    ├── ResourceExhausted    RESOURCE_EXHAUSTED   429   upstream 429, our limits, oversized body
    ├── Cancelled            CANCELLED            499   the consumer left mid-request (REST body)
    ├── Internal             INTERNAL             500   upstream broke the contract, or a bug
    ├── Unavailable          UNAVAILABLE          503   upstream 5xx, connection failure, draining
    └── DeadlineExceeded     DEADLINE_EXCEEDED    504   the consumer's deadline passed
"""

from __future__ import annotations

from dataclasses import dataclass, field
from http import HTTPStatus

import grpc

#: The ErrorInfo domain of every error the gateway reports.
ERROR_DOMAIN = "messages-gateway"


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One invalid request field (google.rpc.BadRequest.FieldViolation)."""

    field: str
    description: str


@dataclass(frozen=True, slots=True)
class UpstreamErrorInfo:
    """What the upstream said about a failed request (never contains credentials)."""

    status: int | None = None
    type: str | None = None
    code: str | None = None
    message: str | None = None
    param: str | None = None
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class Resume:
    """Where a failed stream resumes: ``after=<id>`` (forward walks) or ``before=<id>``."""

    direction: str  # "after" or "before"
    cursor: str


@dataclass(slots=True)
class ErrorDetails:
    """Everything a face needs to render an error besides its code."""

    reason: str
    field_violations: tuple[FieldViolation, ...] = ()
    upstream: UpstreamErrorInfo | None = None
    retry_after: float | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    trailing_metadata: dict[str, str] = field(default_factory=dict)
    #: Set on the error that ends a stream after it delivered a page.
    resume: Resume | None = None


class GatewayError(Exception):
    """Base of every error the gateway reports to a consumer."""

    grpc_code: grpc.StatusCode = grpc.StatusCode.UNKNOWN
    http_status: int = HTTPStatus.INTERNAL_SERVER_ERROR
    #: The OpenAI error envelope's ``type`` for the REST face.
    openai_type: str = "api_error"
    default_reason: str = "UNKNOWN"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        field_violations: tuple[FieldViolation, ...] | list[FieldViolation] = (),
        upstream: UpstreamErrorInfo | None = None,
        retry_after: float | None = None,
        metadata: dict[str, str] | None = None,
        trailing_metadata: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = ErrorDetails(
            reason=reason or self.default_reason,
            field_violations=tuple(field_violations),
            upstream=upstream,
            retry_after=retry_after,
            metadata=dict(metadata or {}),
            trailing_metadata=dict(trailing_metadata or {}),
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, reason={self.details.reason!r})"


class InvalidArgument(GatewayError):
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT
    http_status = HTTPStatus.BAD_REQUEST
    openai_type = "invalid_request_error"
    default_reason = "INVALID_ARGUMENT"

    @classmethod
    def for_fields(cls, violations: list[FieldViolation]) -> InvalidArgument:
        """One error naming every invalid field; the message names the first."""
        first = violations[0]
        extra = f" (and {len(violations) - 1} more)" if len(violations) > 1 else ""
        return cls(f"{first.field}: {first.description}{extra}", field_violations=violations)


class Unauthenticated(GatewayError):
    grpc_code = grpc.StatusCode.UNAUTHENTICATED
    http_status = HTTPStatus.UNAUTHORIZED
    openai_type = "invalid_request_error"
    default_reason = "UNAUTHENTICATED"


class PermissionDenied(GatewayError):
    grpc_code = grpc.StatusCode.PERMISSION_DENIED
    http_status = HTTPStatus.FORBIDDEN
    openai_type = "invalid_request_error"
    default_reason = "PERMISSION_DENIED"


class NotFound(GatewayError):
    grpc_code = grpc.StatusCode.NOT_FOUND
    http_status = HTTPStatus.NOT_FOUND
    openai_type = "invalid_request_error"
    default_reason = "NOT_FOUND"


class Aborted(GatewayError):
    grpc_code = grpc.StatusCode.ABORTED
    http_status = HTTPStatus.CONFLICT
    openai_type = "invalid_request_error"
    default_reason = "ABORTED"


class ResourceExhausted(GatewayError):
    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED
    http_status = HTTPStatus.TOO_MANY_REQUESTS
    openai_type = "rate_limit_error"
    default_reason = "RESOURCE_EXHAUSTED"


class Cancelled(GatewayError):
    """The consumer went away before its request was read whole (a REST body cut off):
    recorded as CANCELLED / 499, never as a failure of the gateway."""

    grpc_code = grpc.StatusCode.CANCELLED
    http_status = 499
    default_reason = "CLIENT_DISCONNECTED"


class Internal(GatewayError):
    grpc_code = grpc.StatusCode.INTERNAL
    http_status = HTTPStatus.INTERNAL_SERVER_ERROR
    default_reason = "INTERNAL"


class Unavailable(GatewayError):
    grpc_code = grpc.StatusCode.UNAVAILABLE
    http_status = HTTPStatus.SERVICE_UNAVAILABLE
    default_reason = "UNAVAILABLE"


class DeadlineExceeded(GatewayError):
    grpc_code = grpc.StatusCode.DEADLINE_EXCEEDED
    http_status = HTTPStatus.GATEWAY_TIMEOUT
    default_reason = "DEADLINE_EXCEEDED"


#: Upstream HTTP status → the error class the consumer sees. 401/403 are absent on purpose: a
#: rejected upstream key is the gateway's own fault and becomes Internal, never Unauthenticated.
UPSTREAM_STATUS_ERRORS: dict[int, type[GatewayError]] = {
    HTTPStatus.BAD_REQUEST: InvalidArgument,
    HTTPStatus.NOT_FOUND: NotFound,
    HTTPStatus.REQUEST_TIMEOUT: Unavailable,
    HTTPStatus.CONFLICT: Aborted,
    HTTPStatus.UNPROCESSABLE_ENTITY: InvalidArgument,
    HTTPStatus.TOO_MANY_REQUESTS: ResourceExhausted,
}


def error_for_upstream_status(status: int) -> type[GatewayError]:
    """The error class for a non-2xx upstream status."""
    if status in UPSTREAM_STATUS_ERRORS:
        return UPSTREAM_STATUS_ERRORS[status]
    if status >= HTTPStatus.INTERNAL_SERVER_ERROR:
        return Unavailable
    return Internal
