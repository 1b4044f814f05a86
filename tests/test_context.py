"""The call context's copy for shared work: everything but the upstream outcome carried over."""

from __future__ import annotations

import dataclasses

from gateway.context import CallContext

OUTCOME = {"upstream_status": None, "upstream_request_id": None, "upstream_calls": 0,
           "response_headers": {}}


def _filled() -> CallContext:
    ctx = CallContext(method="GetMessage", face="grpc", deadline=12.5, peer="ipv4:127.0.0.1:9",
                      consumer="team-a", key_id="k1", tenant="p2", idempotency_key="idem",
                      cache_control="no-cache", authorization="Bearer x",
                      forward_headers={"x-a": "1"}, thread_id="thread_1", message_id="msg_1",
                      upstream_status=503, upstream_request_id="req_9", upstream_calls=2,
                      cache="miss", response_headers={"x-cache": "miss"},
                      trace_carrier={"traceparent": "00-1-2-01"})
    for f in dataclasses.fields(CallContext):  # a field added later must be set here too
        assert getattr(ctx, f.name) != getattr(CallContext(method="m"), f.name) or f.name in {
            "rejected", "trace", "request_id", "started"}, f.name
    return ctx


def test_flight_copy_keeps_every_field_but_the_upstream_outcome() -> None:
    ctx = _filled()
    copy = ctx.flight_copy()
    for f in dataclasses.fields(CallContext):
        expected = OUTCOME[f.name] if f.name in OUTCOME else getattr(ctx, f.name)
        assert getattr(copy, f.name) == expected, f.name


def test_flight_copy_has_its_own_response_headers() -> None:
    ctx = _filled()
    copy = ctx.flight_copy()
    copy.response_headers["age"] = "0"
    copy.upstream_calls += 1
    assert ctx.response_headers == {"x-cache": "miss"}
    assert ctx.upstream_calls == 2


def test_flight_copy_equals_the_replace_it_stands_for() -> None:
    ctx = _filled()
    assert ctx.flight_copy() == dataclasses.replace(
        ctx, response_headers={}, upstream_calls=0, upstream_status=None,
        upstream_request_id=None)
