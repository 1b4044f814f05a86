"""Tracing (gateway/tracing.py) through the one pipeline, with the SDK's in-memory exporter:
the consumer's W3C trace is continued on both faces, every call has its spans (authentication,
cache look-up, each upstream attempt, each stream page), the upstream receives each attempt's
traceparent, the call's log and audit lines name the trace, and hostile trace headers start a new
trace instead of being followed. The OTLP exporter is tested against a real receiver in
tests/test_tracing_otlp.py."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from structlog.testing import capture_logs

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2_grpc as pb_grpc
from gateway.app import Gateway, start_gateway
from gateway.config import ConfigError, TracingSettings
from gateway.context import CallContext
from gateway.emulator.server import EmulatorServer
from gateway.pipeline import open_call
from gateway.tracing import build_tracing
from tests.credentials.helpers import add_consumer, auth_settings, bearer
from tests.rest.conftest import BETA, new_thread

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


@dataclasses.dataclass
class Traced:
    gateway: Gateway
    exporter: InMemorySpanExporter
    key: str
    emulator: EmulatorServer

    def spans(self, trace_id: str = TRACE_ID) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans()
                if f"{s.context.trace_id:032x}" == trace_id]


@pytest.fixture
async def traced(emulator: EmulatorServer, tmp_path: Path) -> AsyncIterator[Traced]:
    path = tmp_path / "store.json"
    key = add_consumer(path, "svc-a", {"read", "write"})
    settings = auth_settings(emulator, path).replace("server", http_listen="127.0.0.1:0")
    exporter = InMemorySpanExporter()
    gw = await start_gateway(settings, span_exporter=exporter)
    try:
        yield Traced(gw, exporter, key, emulator)
    finally:
        await gw.stop(grace=0.5)


def _by_name(spans: list[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def _hex(span_id: int) -> str:
    return f"{span_id:016x}"


async def test_a_grpc_call_continues_the_consumer_trace_with_every_span(traced: Traced) -> None:
    thread_id = await new_thread(traced.emulator)
    # The first attempt fails with a retryable 500: two attempt spans, each with its own
    # traceparent sent upstream.
    traced.emulator.faults.add("createMessage", "status", times=1, status=500)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{traced.gateway.grpc_port}") as channel:
        stub = pb_grpc.MessagesServiceStub(channel)
        metadata = (*bearer(traced.key), ("traceparent", TRACEPARENT),
                    ("tracestate", "vendor=abc"))
        created = await stub.CreateMessage(pb.CreateMessageRequest(
            thread_id=thread_id, role=pb.ROLE_USER, content="hi", request_id="idem-1"),
            metadata=metadata)
        with capture_logs() as logs:
            await stub.GetMessage(pb.GetMessageRequest(thread_id=thread_id,
                                                       message_id=created.id), metadata=metadata)
    spans = traced.spans()
    calls = [s for s in spans if s.kind is SpanKind.SERVER]
    assert [s.name for s in calls] == ["CreateMessage", "GetMessage"]
    create = calls[0]
    assert create.parent is not None and _hex(create.parent.span_id) == PARENT_ID
    assert create.attributes["gateway.face"] == "grpc"
    assert create.attributes["gateway.consumer"] == "svc-a"
    assert create.attributes["gateway.thread_id"] == thread_id
    assert create.attributes["gateway.message_id"] == created.id
    assert create.attributes["rpc.grpc.status_code_name"] == "OK"
    children = [s for s in spans if s.parent and s.parent.span_id == create.context.span_id]
    # Before re-sending a create, the gateway looks for the first one (idempotent creates).
    assert {s.name for s in children} == {"authenticate",
                                          "upstream POST /threads/{thread_id}/messages",
                                          "upstream GET /threads/{thread_id}/messages"}
    attempts = sorted((s for s in children if s.name.startswith("upstream POST")),
                      key=lambda s: s.attributes["gateway.upstream.attempt"])
    assert [(a.attributes["gateway.upstream.attempt"], a.attributes["http.response.status_code"])
            for a in attempts] == [(1, 500), (2, 200)]
    assert attempts[0].attributes["gateway.upstream.retry_reason"] == "http_500"
    assert attempts[0].attributes["http.route"] == "POST /threads/{thread_id}/messages"
    # The upstream got each attempt's own traceparent, and the consumer's tracestate.
    sent = [e.headers for e in traced.emulator.log.entries if e.operation == "createMessage"]
    assert [h["traceparent"] for h in sent] == [
        f"00-{TRACE_ID}-{_hex(a.context.span_id)}-01" for a in attempts]
    assert all(h["tracestate"] == "vendor=abc" for h in sent)
    # The read: a cache look-up span saying miss (the create invalidated nothing cached yet).
    get = calls[1]
    lookups = [s for s in _by_name(spans, "cache.lookup") if s.parent.span_id == get.context.span_id]
    assert [s.attributes["gateway.cache.outcome"] for s in lookups] == ["miss"]
    assert get.attributes["gateway.cache.outcome"] == "miss"
    # The call's log and audit lines name the trace.
    lines = [e for e in logs if e["event"] in {"call", "audit"}]
    assert {e["event"] for e in lines} == {"call", "audit"}
    assert all(e["trace_id"] == TRACE_ID for e in lines)


async def test_a_rest_stream_has_one_span_per_page(traced: Traced) -> None:
    thread_id = await new_thread(traced.emulator)
    headers = {**BETA, "authorization": f"Bearer {traced.key}", "traceparent": TRACEPARENT}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{traced.gateway.http_port}/v1",
                                 headers=headers, timeout=10.0) as http:
        for n in range(5):
            assert (await http.post(f"/threads/{thread_id}/messages",
                                    json={"role": "user", "content": f"m{n}"})).status_code == 200
        response = await http.get(f"/threads/{thread_id}/messages:stream", params={"limit": 2})
        assert response.status_code == 200
    spans = traced.spans()
    stream = [s for s in spans if s.name == "StreamMessages"]
    assert len(stream) == 1 and stream[0].attributes["gateway.face"] == "rest"
    assert stream[0].attributes["gateway.stream.items"] == 5
    under = [s for s in spans if s.parent and s.parent.span_id == stream[0].context.span_id]
    pages = sorted(_by_name(under, "stream.page"), key=lambda s: s.attributes["gateway.stream.page"])
    assert [p.attributes["gateway.stream.items"] for p in pages][:3] == [2, 2, 1]
    assert len([s for s in under if s.kind is SpanKind.CLIENT]) == 3  # one request per page


async def test_without_a_traceparent_the_call_starts_a_trace_of_its_own(traced: Traced) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{traced.gateway.grpc_port}") as channel:
        stub = pb_grpc.MessagesServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.GetMessage(pb.GetMessageRequest(thread_id="thread_x", message_id="m"),
                                  metadata=bearer(traced.key))
    [call] = [s for s in traced.exporter.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert call.parent is None and call.attributes["rpc.grpc.status_code_name"] == "NOT_FOUND"


@pytest.mark.parametrize("metadata", [
    (("traceparent", "00-zzzz-00f067aa0ba902b7-01"),),
    (("traceparent", f"00-{'0' * 32}-{PARENT_ID}-01"),),  # all-zero trace id: invalid
    (("traceparent", TRACEPARENT), ("traceparent", f"00-{'1' * 32}-{PARENT_ID}-01")),
    (("traceparent", "x" * 10_000),),
], ids=["garbled", "zero-trace-id", "repeated", "huge"])
def test_a_hostile_traceparent_is_not_followed(metadata: tuple[tuple[str, str], ...]) -> None:
    tracing = build_tracing(TracingSettings(enabled=True), InMemorySpanExporter())
    assert tracing is not None
    ctx = open_call("GetMessage", "grpc", metadata, peer="p", default_timeout=1.0)
    trace = tracing.start_call(ctx)
    assert trace.span.parent is None
    assert trace.trace_id not in {TRACE_ID, "1" * 32, "0" * 32}


def test_an_oversized_tracestate_is_dropped_and_the_parent_kept() -> None:
    tracing = build_tracing(TracingSettings(enabled=True), InMemorySpanExporter())
    assert tracing is not None
    ctx = open_call("GetMessage", "grpc", (("traceparent", TRACEPARENT),
                                           ("tracestate", "a=" + "b" * 600)),
                    peer="p", default_timeout=1.0)
    trace = tracing.start_call(ctx)
    assert trace.trace_id == TRACE_ID and trace.tracestate == ""


def test_tracing_off_costs_the_call_nothing() -> None:
    assert build_tracing(TracingSettings()) is None
    ctx = open_call("GetMessage", "grpc", (("x-request-id", "r"),), peer="p", default_timeout=1.0)
    assert ctx.trace is None and ctx.trace_carrier is None
    assert CallContext.internal().trace is None


def test_sampling_ratio_zero_records_nothing_but_still_propagates() -> None:
    exporter = InMemorySpanExporter()
    tracing = build_tracing(TracingSettings(enabled=True, sampling_ratio=0.0), exporter)
    assert tracing is not None
    trace = tracing.start_call(CallContext(method="GetMessage"))
    child = trace.start("upstream GET /x")
    flags = int(trace.upstream_headers(child)["traceparent"][-2:], 16)
    assert flags & 1 == 0  # not sampled (W3C level 2 may set the random bit)
    child.end()
    trace.finish("OK", 200, {})
    assert exporter.get_finished_spans() == ()


def test_resource_attributes_and_service_name_reach_the_spans() -> None:
    exporter = InMemorySpanExporter()
    tracing = build_tracing(TracingSettings(
        enabled=True, service_name="gw-eu", resource_attributes=(
            "deployment.environment=prod", "team=plat%20form")), exporter)
    assert tracing is not None
    tracing.start_call(CallContext(method="GetMessage")).finish("OK", 200, {})
    [span] = exporter.get_finished_spans()
    assert span.resource.attributes["service.name"] == "gw-eu"
    assert span.resource.attributes["deployment.environment"] == "prod"
    assert span.resource.attributes["team"] == "plat form"


def test_enabled_without_the_exporter_installed_is_refused(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
                        None)
    with pytest.raises(ConfigError, match="otlp"):
        build_tracing(TracingSettings(enabled=True))


async def test_an_allow_listed_traceparent_is_replaced_by_the_attempts_own(
        emulator: EmulatorServer) -> None:
    """With tracing on the upstream sees the gateway's span as the parent, never the consumer's
    value passed through (which would skip the gateway in the trace)."""
    from tests.conftest import gateway_settings

    settings = gateway_settings(emulator, allowed_extra_headers=("traceparent",))
    exporter = InMemorySpanExporter()
    gw = await start_gateway(settings, span_exporter=exporter)
    try:
        thread_id = str(emulator.store.create_thread()["id"])
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.grpc_port}") as channel:
            await pb_grpc.MessagesServiceStub(channel).ListMessages(
                pb.ListMessagesRequest(thread_id=thread_id),
                metadata=(("traceparent", TRACEPARENT),))
    finally:
        await gw.stop(grace=0.5)
    [attempt] = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.CLIENT]
    [sent] = [e.headers for e in emulator.log.entries if e.operation == "listMessages"]
    assert sent["traceparent"] == f"00-{TRACE_ID}-{_hex(attempt.context.span_id)}-01"


def test_a_consumer_that_does_not_sample_is_followed() -> None:
    exporter = InMemorySpanExporter()
    tracing = build_tracing(TracingSettings(enabled=True, sampling_ratio=1.0), exporter)
    assert tracing is not None
    ctx = open_call("GetMessage", "grpc", (("traceparent", f"00-{TRACE_ID}-{PARENT_ID}-00"),),
                    peer="p", default_timeout=1.0)
    trace = tracing.start_call(ctx)
    child = trace.start("upstream GET /x")
    assert trace.upstream_headers(child)["traceparent"].startswith(f"00-{TRACE_ID}-")
    assert int(trace.upstream_headers(child)["traceparent"][-2:], 16) & 1 == 0
    child.end()
    trace.finish("OK", 200, {})
    assert exporter.get_finished_spans() == ()
