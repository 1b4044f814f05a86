"""The error envelope: upstream words kept, gateway findings named, internals never leaked."""

from __future__ import annotations

import json

from gateway.errors import (
    FieldViolation,
    Internal,
    InvalidArgument,
    ResourceExhausted,
    Resume,
    Unavailable,
    UpstreamErrorInfo,
)
from gateway.rest.errors import error_envelope, error_headers, error_line


def test_error_envelope_gateway_validation_names_first_field() -> None:
    error = InvalidArgument.for_fields([FieldViolation("limit", "too big"),
                                        FieldViolation("order", "bad")])
    assert error_envelope(error) == {"error": {
        "message": "limit: too big (and 1 more)", "type": "invalid_request_error",
        "param": "limit", "code": "invalid_argument"}}


def test_error_envelope_upstream_error_keeps_upstream_type_code_param() -> None:
    error = InvalidArgument("bad", upstream=UpstreamErrorInfo(
        status=400, type="invalid_request_error", code="invalid_type", param="content"))
    assert error_envelope(error)["error"] == {"message": "bad", "type": "invalid_request_error",
                                              "param": "content", "code": "invalid_type"}


def test_error_envelope_internal_drops_upstream_details() -> None:
    error = Internal("the gateway's upstream credentials were rejected",
                     reason="UPSTREAM_CREDENTIALS_REJECTED",
                     upstream=UpstreamErrorInfo(status=401, type="invalid_request_error",
                                                code="invalid_api_key", message="sk-...abcd"))
    body = error_envelope(error)
    assert body["error"]["type"] == "server_error"
    assert body["error"]["code"] == "upstream_credentials_rejected"
    assert "sk-" not in json.dumps(body)


def test_error_headers_add_retry_after_ms_only_when_upstream_sent_none() -> None:
    assert error_headers(ResourceExhausted("slow down", retry_after=1.5), {}) == {
        "retry-after-ms": "1500"}
    forwarded = {"retry-after-ms": "20", "x-request-id": "req_1"}
    assert error_headers(ResourceExhausted("x", retry_after=9.0), forwarded) == forwarded


def test_error_line_carries_resume_cursor_in_the_walk_direction() -> None:
    error = Unavailable("upstream down")
    error.details.resume = Resume("after", "msg_9")
    line = error_line(error)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == {"error": {"message": "upstream down", "type": "server_error",
                                          "param": None, "code": "unavailable"},
                                "status": 503, "resume_after": "msg_9"}
    error.details.resume = Resume("before", "msg_2")
    assert json.loads(error_line(error))["resume_before"] == "msg_2"
    assert "resume_after" not in json.loads(error_line(error))
    assert set(json.loads(error_line(Unavailable("x")))) == {"error", "status"}
