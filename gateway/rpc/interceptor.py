"""The call interceptor: opens the per-call record, maps every error, writes one log line.

It is the only code in the gRPC face that ends a call with an error status: handlers raise
``GatewayError`` (or anything else, which becomes a generic INTERNAL with the traceback logged and
never sent). Cancellation is never caught: grpc.aio leaks on server-streaming handlers that
swallow ``CancelledError`` (grpc/grpc#43360).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc
import structlog

from gateway import metrics
from gateway.call import Call, bind_call, unbind_call
from gateway.errors import GatewayError, Unavailable
from gateway.log import enabled as log_enabled
from gateway.rpc.status import internal_status, to_grpc_status
from gateway.rpc.wrapping import Handler, WrappingInterceptor

log = structlog.get_logger("gateway.rpc")

#: Metadata key carrying the last id a failed stream delivered (resume with after=<it>).
RESUME_AFTER_KEY = "resume-after"
#: The same for streams walking backwards (started with ``before``): resume with before=<it>.
RESUME_BEFORE_KEY = "resume-before"
#: Response metadata key carrying the gateway's own id for the call.
GATEWAY_REQUEST_ID_KEY = "x-gateway-request-id"
#: Request metadata key carrying an idempotency key (CreateMessage's ``request_id`` alike).
IDEMPOTENCY_KEY_HEADER = "idempotency-key"



class CallInterceptor(WrappingInterceptor):
    def __init__(
        self,
        default_timeout: float,
        draining: asyncio.Event | None = None,
        inner: Sequence[WrappingInterceptor] = (),
    ) -> None:
        super().__init__(inner)
        self._default_timeout = default_timeout
        #: Set when the server starts shutting down: streams end with UNAVAILABLE + resume-after.
        self._draining = draining

    def _open(self, method: str, context: grpc.aio.ServicerContext) -> Call:
        remaining = context.time_remaining()
        timeout = self._default_timeout if remaining is None else min(remaining, 10**7)
        call = Call(method=method.rsplit("/", 1)[-1], deadline=time.monotonic() + timeout)
        # One pass over the consumer's metadata for every key the gateway reads.
        for key, value in context.invocation_metadata() or ():
            if key == "x-request-id":
                if isinstance(value, str) and value.isprintable():
                    call.request_id = value[:128]
            elif key == IDEMPOTENCY_KEY_HEADER:
                call.idempotency_key = (
                    value if isinstance(value, str) else value.decode("utf-8", "replace"))
            elif key == "cache-control":
                if isinstance(value, str) and value.isprintable():
                    call.cache_control = value[:128].lower()
            elif key == "authorization":
                # Several values are ambiguous: "" fails authentication like a missing one.
                call.authorization = (
                    value if call.authorization is None and isinstance(value, str) else "")
        return call

    @staticmethod
    def _metadata(call: Call) -> tuple[tuple[str, str], ...]:
        return ((GATEWAY_REQUEST_ID_KEY, call.request_id), *call.response_headers.items())

    async def _fail(
        self, context: grpc.aio.ServicerContext, call: Call, exc: Exception,
        extra: dict[str, str] | None = None,
    ) -> grpc.StatusCode:
        if isinstance(exc, GatewayError):
            if extra:
                exc.details.trailing_metadata.update(extra)
            status = to_grpc_status(exc)
        else:
            log.exception("rpc_unexpected_error")
            status = internal_status()
        trailing = tuple(status.trailing_metadata) + self._metadata(call)
        await context.abort(status.code, status.details, trailing)
        raise AssertionError("unreachable: abort raises")  # pragma: no cover

    def wrap_unary(self, method: str, inner: Handler) -> Handler:
        async def behavior(request: Any, context: grpc.aio.ServicerContext) -> Any:
            call = self._open(method, context)
            token = bind_call(call)
            code = grpc.StatusCode.OK
            try:
                response = await inner(request, context)
                # Trailing, not initial: grpc.aio then sends metadata, message and status in
                # one batch. send_initial_metadata() is a batch of its own, ~10 % of a cache hit.
                context.set_trailing_metadata(self._metadata(call))
                return response
            except Exception as exc:
                code = exc.grpc_code if isinstance(exc, GatewayError) else grpc.StatusCode.INTERNAL
                if isinstance(exc, grpc.aio.AbortError):
                    raise
                await self._fail(context, call, exc)
            except BaseException:
                code = grpc.StatusCode.CANCELLED
                raise
            finally:
                _log_call(call, code)
                unbind_call(token)

        return behavior

    async def _next_page(self, pages: AsyncIterator[Any], drained: asyncio.Future[Any] | None
                         ) -> Any:
        """The next page, or UNAVAILABLE as soon as the server starts draining (a stream may
        wait long for its next upstream page; shutdown must not).

        ``drained`` is the stream's one waiter on the draining event, reused for every page (one
        task per page fewer than a waiter per page; the caller cancels it when the stream ends)."""
        if drained is None:
            return await anext(pages, _END)
        if drained.done() or (self._draining is not None and self._draining.is_set()):
            raise _draining_error()
        fetch = asyncio.ensure_future(_anext(pages))
        try:
            await asyncio.wait((fetch, drained), return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not fetch.done():
                fetch.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await fetch
        if fetch.cancelled():
            raise _draining_error()
        return fetch.result()

    def wrap_stream(self, method: str, inner: Handler) -> Handler:
        # A coroutine writing with context.write, not an async generator: when the consumer
        # cancels (or its deadline passes) while a write waits on flow control, the cancellation
        # lands here, inside this task, and the aclosing() below closes the page walker at once.
        # An async generator suspended at `yield` would instead be finalised later by the loop's
        # asyncgen hook, in another task and context - the upstream fetch outliving the call.
        async def behavior(request: Any, context: grpc.aio.ServicerContext) -> None:
            call = self._open(method, context)
            token = bind_call(call)
            code = grpc.StatusCode.OK
            resume: dict[str, str] = {}
            items = 0
            drained: asyncio.Future[Any] | None = None
            try:
                async with contextlib.aclosing(inner(request, context)) as pages:
                    if self._draining is not None and self._draining.is_set():
                        raise _draining_error()
                    # The first page is awaited without the drain race: nothing has reached the
                    # consumer yet (no resume point to hand over; the server's grace covers the
                    # wait), and the race's task and wait cost ~0.5-1 ms of the time to first
                    # page (README, Streaming).
                    page = await anext(pages, _END)
                    if page is not _END:
                        # Trailers, as on unary calls: an explicit initial-metadata batch ahead
                        # of the first page is one more write and wake-up before the consumer
                        # sees any data. The first page's upstream headers are the stream's.
                        context.set_trailing_metadata(self._metadata(call))
                    while page is not _END:
                        await context.write(page)
                        resume = _resume_metadata(page)
                        items += len(page.data)
                        if drained is None and self._draining is not None:
                            drained = asyncio.ensure_future(self._draining.wait())
                        page = await self._next_page(pages, drained)
            except Exception as exc:
                if isinstance(exc, grpc.aio.InternalError) or context.cancelled():
                    # The consumer went away while a write waited: grpc core fails the write
                    # (ExecuteBatchError, an aio InternalError) before it cancels this task, and
                    # no status can reach the consumer any more. grpc's own handler wrapper
                    # treats that error as the cancellation it is, so it is re-raised, unmapped.
                    code = grpc.StatusCode.CANCELLED
                    raise
                code = exc.grpc_code if isinstance(exc, GatewayError) else grpc.StatusCode.INTERNAL
                if isinstance(exc, grpc.aio.AbortError):
                    raise
                await self._fail(context, call, exc, resume or None)
            except BaseException:
                # Re-raised, never swallowed: grpc.aio leaks on handlers that return normally
                # after a cancellation (grpc/grpc#43360).
                code = grpc.StatusCode.CANCELLED
                raise
            finally:
                if drained is not None:
                    drained.cancel()
                _log_call(call, code, items=items)
                unbind_call(token)

        return behavior


_END: Any = object()


async def _anext(pages: AsyncIterator[Any]) -> Any:
    return await anext(pages, _END)


def _draining_error() -> Unavailable:
    return Unavailable("the gateway is shutting down; call again to resume",
                       reason="GATEWAY_DRAINING")


def _resume_metadata(page: Any) -> dict[str, str]:
    """The trailing metadata naming where a failed stream resumes: the cursor of the last page
    written, ``resume-after`` on forward walks, ``resume-before`` on backward ones."""
    if page.resume_before:
        return {RESUME_BEFORE_KEY: page.resume_before}
    return {RESUME_AFTER_KEY: page.resume_after}


def _log_call(call: Call, code: grpc.StatusCode, **extra: Any) -> None:
    duration = time.monotonic() - call.started
    calls, latency, items = _series(call.method, code)
    calls.inc()
    latency.observe(duration)
    if "items" in extra:
        items.inc(extra["items"])
    if not log_enabled(logging.INFO):
        return
    log.info(
        "rpc",
        code=code.name,
        duration_ms=round(duration * 1000, 2),
        upstream_status=call.upstream_status,
        upstream_request_id=call.upstream_request_id,
        upstream_calls=call.upstream_calls,
        cache=call.cache,
        consumer=call.consumer,
        **extra,
    )


@functools.cache
def _series(method: str, code: grpc.StatusCode) -> tuple[Any, Any, Any]:
    """The metric children of one (method, code): ``labels()`` looks them up under a lock on
    every call otherwise. Bounded: methods come from the contract, codes from grpc."""
    return (metrics.CALLS.labels("grpc", method, code.name),
            metrics.CALL_LATENCY.labels("grpc", method),
            metrics.STREAM_ITEMS.labels(method))
