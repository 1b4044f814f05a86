"""``Pipeline.unary`` and ``Pipeline.stream``: what happens to every call below its face.

Order, for both faces:

1. the caller is authenticated and its scope and rate checked (``Authenticator``) before any
   other work, so a refused call makes no cache look-up and no upstream request;
2. an input the face's header pass refused (``CallContext.rejected``) is raised;
3. streams: refused while the gateway drains, then take a concurrent-stream lease, released
   however the stream ends;
4. the operation runs with the call's context;
5. streams, between pages: a key revoked or expired since the stream opened ends it
   (UNAUTHENTICATED ``GATEWAY_KEY_REVOKED``); the gateway starting to drain ends it at once, even
   while a page is being fetched (UNAVAILABLE ``GATEWAY_DRAINING``). Either way, and on any other
   failure after a page was delivered, the error carries the stream's ``Resume`` point;
6. one log line, one audit line and the metrics (``records.finish``).

Every failure leaves as a ``GatewayError``: anything else becomes a generic ``Internal`` (the
traceback logged, never sent). Cancellation is never caught for good: grpc.aio leaks on
server-streaming handlers that swallow ``CancelledError`` (grpc/grpc#43360).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import structlog

from gateway import metrics
from gateway.cancellation import cancel_and_wait
from gateway.context import CallContext
from gateway.credentials.authenticator import Authenticator, Principal
from gateway.credentials.scopes import scope_for
from gateway.errors import GatewayError, Internal, Resume, Unauthenticated, Unavailable
from gateway.log import bind_call_fields, unbind_call_fields
from gateway.pipeline import records
from gateway.pipeline.opening import open_call
from gateway.tracing import Tracing

log = structlog.get_logger("gateway.pipeline")

T = TypeVar("T")
R = TypeVar("R")
#: Stream leases expire after at most this many seconds (a call without a deadline, or with a
#: longer one, renews nothing: its slot is released when it ends).
UNBOUNDED_STREAM_LEASE_SECONDS = 3600.0


class Pipeline:
    """The policies every call goes through, whichever face it came in by."""

    def __init__(
        self,
        authenticator: Authenticator | None,
        *,
        default_timeout: float,
        forward_headers: frozenset[str] = frozenset(),
        tracing: Tracing | None = None,
    ) -> None:
        self._auth = authenticator
        self._tracing = tracing
        #: Admission, chosen once: with tracing off a call runs exactly what it ran without it.
        self._admit = self._authenticate if tracing is None else self._admit_traced
        self.default_timeout = default_timeout
        #: Allow-listed header names a consumer may pass through to the upstream.
        self.forward_headers = forward_headers
        #: Set once shutdown begins: open streams end UNAVAILABLE with their resume point.
        self.draining = asyncio.Event()
        self._scopes: dict[str, str] = {}

    def open(self, method: str, face: str, metadata: Any, *, peer: Any,
             timeout: float | None = None, thread_id: str = "",
             message_id: str = "") -> CallContext:
        """A face's one step in: see ``gateway.pipeline.opening.open_call``."""
        return open_call(method, face, metadata, peer=peer, default_timeout=self.default_timeout,
                         timeout=timeout, forward=self.forward_headers, thread_id=thread_id,
                         message_id=message_id)

    # -- admission --------------------------------------------------------------------------------

    def _scope(self, method: str) -> str:
        scope = self._scopes.get(method)
        if scope is None:
            scope = self._scopes[method] = scope_for(method)
        return scope

    async def _admit_traced(self, ctx: CallContext) -> Principal | None:
        """``_admit`` with tracing on: the call's span starts, authentication has its own."""
        assert self._tracing is not None
        trace = ctx.trace = self._tracing.start_call(ctx)
        if self._auth is None:
            return await self._authenticate(ctx)
        with trace.child("authenticate") as span:
            principal = await self._authenticate(ctx)
            if span.is_recording():
                span.set_attribute("gateway.consumer", ctx.consumer or "anonymous")
                span.set_attribute("gateway.profile", ctx.tenant)
        return principal

    async def _authenticate(self, ctx: CallContext) -> Principal | None:
        principal = None
        auth = self._auth
        if auth is not None:
            credential, ctx.authorization = ctx.authorization, None
            scope = self._scope(ctx.method)
            # The hot path of every authenticated call: a key seen before is admitted without
            # awaiting anything.
            principal = (auth.admit_remembered(credential, scope)
                         or await auth.authenticate(credential, ctx.peer, scope))
            ctx.consumer, ctx.key_id, ctx.tenant = (
                principal.consumer, principal.key_id, principal.profile)
        if ctx.rejected is not None:
            raise ctx.rejected
        return principal

    # -- unary --------------------------------------------------------------------------------------

    async def unary(self, ctx: CallContext, operation: Callable[[R, CallContext], Awaitable[T]],
                    request: R) -> T:
        """Admit the call, run ``operation(request, ctx)``, record the outcome; raises
        GatewayError."""
        token = bind_call_fields(ctx.request_id, ctx.method, ctx.face)
        code, status, response = "OK", 200, None
        try:
            await self._admit(ctx)
            response = await operation(request, ctx)
            return response
        except GatewayError as exc:
            code, status = exc.grpc_code.name, int(exc.http_status)
            raise
        except Exception as exc:
            error = _unexpected()
            code, status = error.grpc_code.name, int(error.http_status)
            raise error from exc
        except BaseException:
            code, status = "CANCELLED", 499
            raise
        finally:
            records.finish(ctx, code, status, response)
            unbind_call_fields(token)

    # -- streams --------------------------------------------------------------------------------

    async def stream(
        self, ctx: CallContext, operation: Callable[[R, CallContext], AsyncIterator[Any]],
        request: R,
    ) -> AsyncIterator[Any]:
        """Admit the stream and yield the pages of ``operation(request, ctx)`` (each has ``data`` and
        its ``resume_after``/``resume_before``); raises GatewayError, with ``Resume`` in
        ``details.resume`` once a page was delivered.

        Close it with ``contextlib.aclosing`` in the task that consumes it: a consumer that
        stops early (cancelled, gone) then ends the upstream walk at once, and the call is
        recorded as CANCELLED."""
        code, status = "OK", 200
        resume: Resume | None = None
        items = pages = 0
        principal: Principal | None = None
        lease: str | None = None
        drained: asyncio.Future[Any] | None = None
        open_gauge: Any = None
        # Bound around each step, not across yields: a face may consume the stream from
        # another task (Starlette sends a response from one of its own).
        token = bind_call_fields(ctx.request_id, ctx.method, ctx.face)
        try:
            try:
                principal = await self._admit(ctx)
                if self.draining.is_set():
                    raise _draining_error()
                if principal is not None:
                    assert self._auth is not None
                    # A lease outlives its stream only if releasing it failed (a replica gone,
                    # a cancellation mid-script): bounded, whatever deadline the call has.
                    left = ctx.remaining()
                    lease = await self._auth.open_stream(
                        principal, UNBOUNDED_STREAM_LEASE_SECONDS if left is None
                        else min(left, UNBOUNDED_STREAM_LEASE_SECONDS))
                walk = operation(request, ctx)
                open_gauge = _open_streams(ctx.face, ctx.method)
                open_gauge.inc()
            finally:
                unbind_call_fields(token)
            async with contextlib.aclosing(walk) as walker:  # type: ignore[type-var]
                # The first page is awaited without the drain race: nothing has reached the
                # consumer yet (no resume point to hand over; the server's grace covers the
                # wait), and the race's task and wait cost ~0.5-1 ms of the time to first page.
                page = await self._step(ctx, anext(walker, _END), 1)
                while page is not _END:
                    if principal is not None and not self._auth.still_valid(  # type: ignore[union-attr]
                            principal):
                        raise Unauthenticated("the gateway key is no longer valid",
                                              reason="GATEWAY_KEY_REVOKED")
                    # Counted as it is handed over: the face asks for the next page only once
                    # this one is written, so any error raised below comes after it arrived.
                    resume = _resume_of(page)
                    items += len(page.data)
                    pages += 1
                    yield page
                    if drained is None:
                        drained = asyncio.ensure_future(self.draining.wait())
                    page = await self._step(ctx, self._next_page(walker, drained), pages + 1)
        except GatewayError as exc:
            code, status = exc.grpc_code.name, int(exc.http_status)
            exc.details.resume = resume
            raise
        except GeneratorExit:
            code, status = "CANCELLED", 499  # the face stopped consuming: the consumer left
            raise
        except Exception as exc:
            error = _unexpected()
            error.details.resume = resume
            code, status = error.grpc_code.name, int(error.http_status)
            raise error from exc
        except BaseException:
            code, status = "CANCELLED", 499
            raise
        finally:
            if open_gauge is not None:
                open_gauge.dec()
            if drained is not None:
                drained.cancel()
            if lease is not None and principal is not None:
                assert self._auth is not None
                # Shielded: a cancelled stream must still give its slot back.
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._auth.close_stream(principal, lease))
            records.finish(ctx, code, status, items=items, pages=pages)

    @staticmethod
    async def _step(ctx: CallContext, step: Awaitable[Any], number: int) -> Any:
        """The stream's next page (``number``: its position), or ``_END``."""
        token = bind_call_fields(ctx.request_id, ctx.method, ctx.face)
        try:
            if ctx.trace is None:
                return await step
            with ctx.trace.child("stream.page", {"gateway.stream.page": number}) as span:
                page = await step
                if page is _END:
                    span.update_name("stream.end")  # the wait for the walk to say it is over
                elif span.is_recording():
                    span.set_attribute("gateway.stream.items", len(page.data))
                return page
        finally:
            unbind_call_fields(token)

    async def _next_page(self, pages: AsyncIterator[Any], drained: asyncio.Future[Any]) -> Any:
        """The next page, or UNAVAILABLE as soon as the server starts draining (a stream may
        wait long for its next upstream page; shutdown must not).

        ``drained`` is the stream's one waiter on the draining event, reused for every page (one
        task per page fewer than a waiter per page)."""
        if drained.done() or self.draining.is_set():
            raise _draining_error()
        fetch = asyncio.ensure_future(_anext(pages))
        try:
            await asyncio.wait((fetch, drained), return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not fetch.done():
                # Not closed while the fetch still runs inside the walk: that would raise
                # "asynchronous generator is already running" (the call became INTERNAL).
                await cancel_and_wait(fetch)
        if fetch.cancelled():
            raise _draining_error()
        return fetch.result()


_END: Any = object()


@functools.cache
def _open_streams(face: str, method: str) -> Any:
    """The open-streams gauge child of one (face, method): ``labels()`` takes a lock."""
    return metrics.STREAMS_OPEN.labels(face, method)


async def _anext(pages: AsyncIterator[Any]) -> Any:
    return await anext(pages, _END)


def _resume_of(page: Any) -> Resume:
    if page.resume_before:
        return Resume("before", page.resume_before)
    return Resume("after", page.resume_after)


def _draining_error() -> Unavailable:
    return Unavailable("the gateway is shutting down; call again to resume",
                       reason="GATEWAY_DRAINING")


def _unexpected() -> Internal:
    log.exception("call_unexpected_error")
    return Internal("internal error", reason="INTERNAL")
