"""The pipeline on its own: the header pass, unexpected errors, the record of a stream."""

from __future__ import annotations

import time

import pytest
import structlog

from gateway.context import CallContext
from gateway.errors import Internal, InvalidArgument
from gateway.pipeline import Pipeline, open_call


def _open(metadata: list[tuple[str, str | bytes]], timeout: float | None = None) -> CallContext:
    return open_call("GetMessage", "rest", metadata, peer="127.0.0.1", default_timeout=60.0,
                     timeout=timeout, forward=frozenset({"x-tag"}))


def test_timeout_header_replaces_the_default_and_a_shorter_transport_deadline_wins() -> None:
    assert _open([]).remaining() == pytest.approx(60.0, abs=0.5)
    assert _open([("x-gateway-timeout", "120")]).remaining() == pytest.approx(120.0, abs=0.5)
    assert _open([("x-gateway-timeout", "120")], timeout=5.0).remaining() == pytest.approx(
        5.0, abs=0.5)
    assert _open([("x-gateway-timeout", "2")], timeout=5.0).remaining() == pytest.approx(
        2.0, abs=0.5)
    for bad in ("0", "-1", "nan", "inf", "soon", "1e9"):
        rejected = _open([("x-gateway-timeout", bad)]).rejected
        assert isinstance(rejected, InvalidArgument)
        assert rejected.details.field_violations[0].field == "x-gateway-timeout"


def test_ambiguous_credentials_and_keys_are_blanked_not_guessed() -> None:
    twice = _open([("authorization", "Bearer a"), ("authorization", "Bearer a")])
    assert twice.authorization == ""
    assert _open([("authorization", b"Bearer a")]).authorization == ""
    assert _open([("authorization", "Bearer a")]).authorization == "Bearer a"
    assert _open([("idempotency-key", "k1"), ("idempotency-key", "k1")]).idempotency_key == ""
    assert "Bearer" not in repr(_open([("authorization", "Bearer secret")]))


def test_only_allow_listed_headers_are_kept_and_their_values_checked() -> None:
    ctx = _open([("x-tag", "t"), ("x-other", "o"), ("cache-control", "No-Cache")])
    assert ctx.forward_headers == {"x-tag": "t"} and ctx.cache_control == "no-cache"
    bad = _open([("x-tag", "caf\u00e9")]).rejected
    assert isinstance(bad, InvalidArgument)
    assert bad.details.field_violations[0].field == "x-tag"


async def test_an_unexpected_exception_is_a_generic_internal_with_the_traceback_logged() -> None:
    pipeline = Pipeline(None, default_timeout=5.0)

    async def broken(request: object, ctx: CallContext) -> None:
        raise KeyError("secret-detail")

    ctx = pipeline.open("GetMessage", "grpc", (), peer="")
    with structlog.testing.capture_logs() as logs, pytest.raises(Internal) as caught:
        await pipeline.unary(ctx, broken, None)
    assert caught.value.message == "internal error"
    assert "secret-detail" not in repr(caught.value.details)
    assert [e["event"] for e in logs] == ["call_unexpected_error", "call", "audit"]
    assert logs[1]["code"] == "INTERNAL" and logs[1]["http_status"] == 500


async def test_a_stream_closed_by_its_face_is_recorded_cancelled_and_its_walk_closed() -> None:
    pipeline = Pipeline(None, default_timeout=5.0)
    closed: list[float] = []

    class Page:
        def __init__(self, i: int) -> None:
            self.data = [i]
            self.resume_after, self.resume_before = f"m{i}", ""

    async def walk(request: object, ctx: CallContext):  # type: ignore[no-untyped-def]
        try:
            for i in range(10):
                yield Page(i)
        finally:
            closed.append(time.monotonic())

    ctx = pipeline.open("StreamMessages", "grpc", (), peer="")
    with structlog.testing.capture_logs() as logs:
        stream = pipeline.stream(ctx, walk, None)
        assert (await anext(stream)).data == [0]
        await anext(stream)
        await stream.aclose()  # type: ignore[attr-defined]
    assert closed
    (line,) = [e for e in logs if e["event"] == "call"]
    assert (line["code"], line["items"], line["pages"]) == ("CANCELLED", 2, 2)
