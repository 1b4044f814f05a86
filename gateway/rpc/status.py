"""GatewayError → grpc.Status with google.rpc details: the one place the gRPC face maps errors."""

from __future__ import annotations

import math

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from gateway.errors import ERROR_DOMAIN, GatewayError
from gateway.headers import RESUME_AFTER, RESUME_BEFORE, RETRY_PUSHBACK


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


def to_grpc_status(error: GatewayError) -> grpc.Status:
    """The status, with ErrorInfo, BadRequest and RetryInfo details as they apply."""
    details = error.details
    metadata = dict(details.metadata)
    upstream = details.upstream
    if upstream is not None:
        for key, value in (
            ("upstream_status", str(upstream.status) if upstream.status else None),
            ("upstream_type", upstream.type),
            ("upstream_code", upstream.code),
            ("upstream_message", upstream.message),
            ("upstream_param", upstream.param),
            ("upstream_request_id", upstream.request_id),
        ):
            if value:
                metadata[key] = value
    packed = [_pack(error_details_pb2.ErrorInfo(reason=details.reason, domain=ERROR_DOMAIN,
                                                metadata=metadata))]
    if details.field_violations:
        packed.append(_pack(error_details_pb2.BadRequest(field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
            for v in details.field_violations
        ])))
    trailing = dict(details.trailing_metadata)
    if details.resume is not None:
        key = RESUME_BEFORE if details.resume.direction == "before" else RESUME_AFTER
        trailing[key] = details.resume.cursor
    if details.retry_after is not None:
        seconds = max(details.retry_after, 0.0)
        whole = math.floor(seconds)
        packed.append(_pack(error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(
            seconds=whole, nanos=int((seconds - whole) * 1e9)))))
        trailing[RETRY_PUSHBACK] = str(int(seconds * 1000))
    status = rpc_status.to_status(
        status_pb2.Status(code=error.grpc_code.value[0], message=error.message, details=packed)
    )
    if not trailing:
        return status
    return _WithTrailers(status, tuple(trailing.items()))


class _WithTrailers(grpc.Status):
    """rpc_status.to_status plus our own trailing metadata (resume cursor, pushback)."""

    def __init__(self, base: grpc.Status, extra: tuple[tuple[str, str], ...]) -> None:
        self.code = base.code
        self.details = base.details
        self.trailing_metadata = tuple(base.trailing_metadata) + extra
