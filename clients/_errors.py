"""Typed errors: one exception class per gRPC status, with the gateway's error details decoded.

The gateway sends a ``google.rpc.Status`` in the ``grpc-status-details-bin`` trailer (AIP-193):
``ErrorInfo`` (stable reason), ``BadRequest`` (the offending fields), ``RetryInfo``. They are
decoded here with googleapis-common-protos, so callers branch on attributes, not on strings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import grpc
from google.rpc import error_details_pb2, status_pb2

#: Trailer carrying the serialized google.rpc.Status.
STATUS_DETAILS_KEY = "grpc-status-details-bin"
#: Trailer naming the last id a failed stream sent (the gateway's resume cursor).
RESUME_AFTER_KEY = "resume-after"
#: Response metadata naming the gateway's id for the call.
GATEWAY_REQUEST_ID_KEY = "x-gateway-request-id"

Metadata = Sequence[tuple[str, str | bytes]]


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """A request field the gateway (or the upstream) rejected."""

    field: str
    description: str


class GatewayError(Exception):
    """A call failed. ``code`` is the gRPC status; the rest comes from the status details."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

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

    def __str__(self) -> str:
        reason = f" ({self.reason})" if self.reason else ""
        return f"{self.code.name}{reason}: {self.message}"


class BadRequestError(GatewayError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class AuthenticationError(GatewayError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDeniedError(GatewayError):
    code = grpc.StatusCode.PERMISSION_DENIED


class NotFoundError(GatewayError):
    code = grpc.StatusCode.NOT_FOUND


class ConflictError(GatewayError):
    code = grpc.StatusCode.ABORTED


class RateLimitError(GatewayError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class APITimeoutError(GatewayError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class UnavailableError(GatewayError):
    code = grpc.StatusCode.UNAVAILABLE


class InternalServerError(GatewayError):
    code = grpc.StatusCode.INTERNAL


class CancelledError(GatewayError):
    code = grpc.StatusCode.CANCELLED


_BY_CODE: dict[grpc.StatusCode, type[GatewayError]] = {
    cls.code: cls
    for cls in (BadRequestError, AuthenticationError, PermissionDeniedError, NotFoundError,
                ConflictError, RateLimitError, APITimeoutError, UnavailableError,
                InternalServerError, CancelledError)
}


def _text(value: str | bytes) -> str:
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def error_from_status(
    code: grpc.StatusCode, message: str, trailers: Metadata | None
) -> GatewayError:
    """The typed error for a status and its trailing metadata."""
    trailers = trailers or ()
    kwargs: dict[str, object] = {}
    violations: list[FieldViolation] = []
    for key, value in trailers:
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                    info = error_details_pb2.ErrorInfo()
                    detail.Unpack(info)
                    kwargs.update(reason=info.reason, domain=info.domain,
                                  error_metadata=dict(info.metadata))
                elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                    bad = error_details_pb2.BadRequest()
                    detail.Unpack(bad)
                    violations.extend(FieldViolation(v.field, v.description)
                                      for v in bad.field_violations)
                elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                    retry = error_details_pb2.RetryInfo()
                    detail.Unpack(retry)
                    kwargs["retry_after"] = retry.retry_delay.ToTimedelta().total_seconds()
        elif key == RESUME_AFTER_KEY:
            kwargs["resume_after"] = _text(value)
        elif key == GATEWAY_REQUEST_ID_KEY:
            kwargs["request_id"] = _text(value)
    cls = _BY_CODE.get(code, GatewayError)
    return cls(message, code=code, field_violations=tuple(violations),
               **kwargs)  # type: ignore[arg-type]


def error_from_rpc(err: grpc.RpcError) -> GatewayError:
    """Translate a grpc (sync or aio) error; the original stays the ``__cause__``."""
    call: grpc.Call = err  # type: ignore[assignment]
    return error_from_status(call.code(), call.details() or "", call.trailing_metadata())
