"""OpenTelemetry tracing of every call, OFF by default (``[tracing]``).

The pipeline starts one ``CallTrace`` per call when tracing is on (``Tracing.start_call``) and
leaves ``CallContext.trace`` at None when it is off: that one None is all any layer looks at, so
a gateway without tracing allocates nothing per call for it. With it on, a call is:

- ``<Method>`` (SERVER): the call, continued from the consumer's W3C ``traceparent`` /
  ``tracestate`` (gRPC metadata or HTTP headers) or a new trace; face, status, consumer, profile,
  cache outcome, the thread and message ids of the audit line;
- ``authenticate``; ``cache.lookup`` (``gateway.cache.outcome``: hit, miss or bypass);
- ``upstream <route template>`` (CLIENT), one per attempt: attempt number, HTTP status, the
  retry reason of a failed attempt; the upstream gets this span's ``traceparent`` (and the
  consumer's ``tracestate``) on every attempt;
- ``stream.page``, one per page of a server stream: page number and items.

Attributes never carry a key, a header value or anything but the ids the audit line already
names. Failures set the span status to the gRPC code name and the error's reason, never its
message (an upstream message may quote what the consumer sent).

Spans are parented explicitly from the call's context, never through OpenTelemetry's current-
span contextvar: a stream's pages are consumed from another task on the REST face, and an
attached context would be detached in the wrong one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import unquote, urlsplit

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from gateway.config import ConfigError, TracingSettings
from gateway.config_checks import check_resource_attribute
from gateway.errors import GatewayError

if TYPE_CHECKING:  # pragma: no cover
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

    from gateway.context import CallContext

__all__ = ["CallTrace", "Tracing", "build_tracing", "traced_attempts", "traceparent_of"]

T = TypeVar("T")

#: The instrumentation scope's name on every span.
SCOPE = "messages_gateway"
_PROPAGATOR = TraceContextTextMapPropagator()


def traceparent_of(span: Span) -> str:
    """The W3C ``traceparent`` naming ``span`` (version 00)."""
    c = span.get_span_context()
    return f"00-{c.trace_id:032x}-{c.span_id:016x}-{int(c.trace_flags):02x}"


class CallTrace:
    """The spans of one call; built only when tracing is on."""

    __slots__ = ("_tracer", "span", "_context", "trace_id", "tracestate")

    def __init__(self, tracer: trace.Tracer, span: Span) -> None:
        self._tracer = tracer
        self.span = span
        self._context = trace.set_span_in_context(span)
        context = span.get_span_context()
        #: For the call's log and audit lines (32 hex digits).
        self.trace_id = f"{context.trace_id:032x}"
        #: The consumer's tracestate, passed on upstream unchanged ("" when none).
        self.tracestate = context.trace_state.to_header()

    def start(self, name: str, attributes: Mapping[str, Any] | None = None,
              kind: SpanKind = SpanKind.INTERNAL) -> Span:
        """A child of the call span; the caller ends it."""
        return self._tracer.start_span(name, context=self._context, kind=kind,
                                       attributes=attributes)

    @contextlib.contextmanager
    def child(self, name: str, attributes: Mapping[str, Any] | None = None,
              kind: SpanKind = SpanKind.INTERNAL) -> Iterator[Span]:
        """A child span around a block; an exception marks it failed (by kind, never text)."""
        span = self.start(name, attributes, kind)
        try:
            yield span
        except BaseException as exc:
            fail(span, exc)
            raise
        finally:
            span.end()

    def upstream_headers(self, span: Span) -> dict[str, str]:
        """The trace headers of an upstream request made under ``span``."""
        headers = {"traceparent": traceparent_of(span)}
        if self.tracestate:
            headers["tracestate"] = self.tracestate
        return headers

    def finish(self, code: str, http_status: int, attributes: Mapping[str, Any]) -> None:
        """End the call span with its outcome."""
        span = self.span
        if span.is_recording():
            span.set_attributes(attributes)
            span.set_attribute("rpc.grpc.status_code_name", code)
            span.set_attribute("http.response.status_code", http_status)
            if http_status >= 500:
                span.set_status(Status(StatusCode.ERROR, code))
        span.end()


def traced_attempts(ctx: CallContext, method: str, route: str,
                    headers: Mapping[str, str] | None,
                    send: Callable[[Mapping[str, str]], Awaitable[T]]
                    ) -> Callable[[], Awaitable[T]]:
    """The attempts of one upstream exchange, each in a CLIENT span: ``send(headers)`` makes one
    with the span's ``traceparent`` (and the consumer's ``tracestate``) added. A span has the
    attempt's number (from 1), the HTTP status when an answer came, and the retry reason of a
    failed attempt."""
    trace = ctx.trace
    assert trace is not None
    number = 0

    async def attempt() -> T:
        nonlocal number
        number += 1
        calls = ctx.upstream_calls
        with trace.child(f"upstream {route}", {
                "http.request.method": method, "http.route": route,
                "gateway.upstream.attempt": number, "gateway.profile": ctx.tenant},
                kind=SpanKind.CLIENT) as span:
            try:
                return await send({**(headers or {}), **trace.upstream_headers(span)})
            except Exception as exc:
                reason = getattr(exc, "reason", None)  # an AttemptFailed's, e.g. "http_503"
                if isinstance(reason, str):
                    span.set_attribute("gateway.upstream.retry_reason", reason)
                raise
            finally:
                if ctx.upstream_calls > calls and ctx.upstream_status is not None:
                    span.set_attribute("http.response.status_code", ctx.upstream_status)

    return attempt


def fail(span: Span, exc: BaseException) -> None:
    """Mark ``span`` failed: the gRPC code and reason of a GatewayError, else the exception's
    type name. Never the message."""
    if not span.is_recording():
        return
    exc = getattr(exc, "error", exc)  # an upstream attempt's failure carries its GatewayError
    if isinstance(exc, GatewayError):
        span.set_attribute("gateway.error.reason", exc.details.reason)
        span.set_status(Status(StatusCode.ERROR, exc.grpc_code.name))
    else:
        span.set_status(Status(StatusCode.ERROR, type(exc).__name__))


class Tracing:
    """The process's tracer provider (its own, never OpenTelemetry's global one)."""

    def __init__(self, settings: TracingSettings, exporter: SpanExporter | None = None) -> None:
        """``exporter``: where spans go (tests pass an in-memory one); default: OTLP/gRPC to
        ``settings.otlp_endpoint``, batched."""
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

        attributes: dict[str, str] = {}
        for pair in settings.resource_attributes:
            name, value = check_resource_attribute(pair, "tracing.resource_attributes")
            attributes[name] = unquote(value)  # W3C baggage encoding, as OTel specifies
        attributes["service.name"] = settings.service_name
        self.provider: TracerProvider = TracerProvider(
            resource=Resource(attributes),
            sampler=ParentBased(TraceIdRatioBased(settings.sampling_ratio)))
        if exporter is None:
            self.provider.add_span_processor(BatchSpanProcessor(
                otlp_exporter(settings), export_timeout_millis=int(
                    settings.export_timeout_seconds * 1000)))
        else:
            self.provider.add_span_processor(SimpleSpanProcessor(exporter))
        self.tracer = self.provider.get_tracer(SCOPE)

    def start_call(self, ctx: CallContext) -> CallTrace:
        carrier = ctx.trace_carrier
        parent = _PROPAGATOR.extract(carrier) if carrier else None
        span = self.tracer.start_span(ctx.method, context=parent, kind=SpanKind.SERVER,
                                      attributes={"rpc.method": ctx.method,
                                                  "gateway.face": ctx.face,
                                                  "gateway.request_id": ctx.request_id})
        return CallTrace(self.tracer, span)

    def shutdown(self) -> None:
        """Export what is left and stop (blocking: run it in a thread)."""
        self.provider.shutdown()


def otlp_exporter(settings: TracingSettings) -> SpanExporter:
    try:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    except ImportError:
        raise ConfigError("tracing.enabled needs the OTLP exporter: install the 'otlp' extra "
                          "(pip install 'messages-gateway[otlp]')") from None
    url = urlsplit(settings.otlp_endpoint)
    return OTLPSpanExporter(endpoint=url.netloc, insecure=url.scheme == "http",
                            timeout=settings.export_timeout_seconds)


def build_tracing(settings: TracingSettings,
                  exporter: SpanExporter | None = None) -> Tracing | None:
    """None when tracing is off (and no exporter is given): the pipeline then starts nothing."""
    if not settings.enabled and exporter is None:
        return None
    return Tracing(settings, exporter)
