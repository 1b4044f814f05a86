"""A test OTLP/gRPC trace receiver: opentelemetry-proto's ``TraceService`` on loopback, keeping
every span it is sent, and a plain-text rendering of a trace (docs/observability.md shows one)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as svc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as svc_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

_KINDS = {Span.SPAN_KIND_SERVER: "server", Span.SPAN_KIND_CLIENT: "client",
          Span.SPAN_KIND_INTERNAL: "internal"}


def _value(v: AnyValue) -> Any:
    return getattr(v, v.WhichOneof("value")) if v.WhichOneof("value") else None


@dataclass
class Received:
    """One span as it arrived, with its resource's attributes."""

    span: Span
    resource: dict[str, Any]

    @property
    def trace_id(self) -> str:
        return self.span.trace_id.hex()

    @property
    def attributes(self) -> dict[str, Any]:
        return {a.key: _value(a.value) for a in self.span.attributes}


@dataclass
class Receiver(svc_grpc.TraceServiceServicer):
    spans: list[Received] = field(default_factory=list)
    requests: int = 0
    _server: grpc.aio.Server | None = None
    port: int = 0

    async def Export(self, request: svc.ExportTraceServiceRequest,  # noqa: N802 - the proto's
                     context: grpc.aio.ServicerContext) -> svc.ExportTraceServiceResponse:
        self.requests += 1
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope in resource_spans.scope_spans:
                self.spans.extend(Received(s, resource) for s in scope.spans)
        return svc.ExportTraceServiceResponse()

    async def start(self) -> int:
        self._server = grpc.aio.server()
        svc_grpc.add_TraceServiceServicer_to_server(self, self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        await self._server.start()
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(0)

    def trace(self, trace_id: str) -> list[Received]:
        return [r for r in self.spans if r.trace_id == trace_id]


#: Attributes worth showing in the rendered tree (the rest are in the receiver's data).
SHOWN = ("gateway.face", "gateway.consumer", "rpc.grpc.status_code_name",
         "http.response.status_code", "gateway.cache.outcome", "gateway.upstream.attempt",
         "gateway.upstream.retry_reason", "gateway.stream.page", "gateway.stream.items")


def render(spans: list[Received]) -> str:
    """The trace as an indented tree: name, kind, duration, a few attributes."""
    by_parent: dict[bytes, list[Received]] = {}
    ids = {r.span.span_id for r in spans}
    roots = []
    for r in sorted(spans, key=lambda r: r.span.start_time_unix_nano):
        if r.span.parent_span_id in ids:
            by_parent.setdefault(r.span.parent_span_id, []).append(r)
        else:
            roots.append(r)
    start = min(r.span.start_time_unix_nano for r in spans)
    lines: list[str] = []

    def walk(r: Received, depth: int) -> None:
        s = r.span
        attrs = r.attributes
        shown = " ".join(f"{k.split('.')[-1]}={attrs[k]}" for k in SHOWN if k in attrs)
        offset = (s.start_time_unix_nano - start) / 1e6
        took = (s.end_time_unix_nano - s.start_time_unix_nano) / 1e6
        lines.append(f"{'  ' * depth}{s.name} [{_KINDS.get(s.kind, s.kind)}] "
                     f"+{offset:.1f}ms {took:.1f}ms {shown}".rstrip())
        for child in by_parent.get(s.span_id, []):
            walk(child, depth + 1)

    for root in roots:
        walk(root, 0)
    return "\n".join(lines)
