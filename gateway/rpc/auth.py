"""The gRPC auth interceptor: every MessagesService call is authenticated before it does anything.

It is installed *after* ``CallInterceptor``, so it runs inside the call record and its errors are
mapped to statuses in that one place. Health and reflection are never wrapped (they stay open for
probes and tooling). Authentication, scope and rate checks happen before the handler runs, so no
cache lookup and no upstream request is ever made for a rejected call. Streams also take a
concurrent-stream lease, released when the stream ends however it ends.

Each call writes one ``audit`` line (logger ``gateway.audit``): consumer, key id, method, thread
and message ids, outcome. It is separate from the ``rpc`` line so that it can be shipped to an
audit sink on its own; it never carries a key, a hash or a header value.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import grpc
import structlog

from gateway.call import Call, current_call
from gateway.credentials.authenticator import Authenticator, Principal
from gateway.errors import GatewayError, Unauthenticated
from gateway.log import enabled as log_enabled
from gateway.rpc.wrapping import Handler, WrappingInterceptor

audit = structlog.get_logger("gateway.audit")

#: Methods that only read; every other method (including ones added later) needs "write".
READ_PREFIXES = ("Get", "List", "Stream")


def scope_for(method: str) -> str:
    name = method.rsplit("/", 1)[-1]
    return "read" if name.startswith(READ_PREFIXES) else "write"


def _outcome(exc: BaseException | None) -> str:
    if exc is None:
        return "OK"
    if isinstance(exc, GatewayError):
        return exc.grpc_code.name
    if isinstance(exc, Exception):
        return "INTERNAL"
    return "CANCELLED"


class AuthInterceptor(WrappingInterceptor):
    def __init__(self, authenticator: Authenticator) -> None:
        super().__init__()
        self._auth = authenticator

    def wrap_unary(self, method: str, inner: Handler) -> Handler:
        return self._unary(scope_for(method), inner)

    def wrap_stream(self, method: str, inner: Handler) -> Handler:
        return self._stream(scope_for(method), inner)

    def _unary(self, scope: str, inner: Handler) -> Handler:
        remembered = self._auth.admit_remembered
        authenticate = self._auth.authenticate

        # The hot path of every authenticated call: a key seen before is admitted without a
        # coroutine; the credential comes from the call record the call interceptor filled in
        # its one pass over the metadata.
        async def behavior(request: Any, context: grpc.aio.ServicerContext) -> Any:
            call = current_call()
            credential, call.authorization = call.authorization, None
            failure: BaseException | None = None
            response = None
            try:
                principal = (remembered(credential, scope)
                             or await authenticate(credential, context.peer, scope))
                call.consumer, call.key_id, call.tenant = (
                    principal.consumer, principal.key_id, principal.profile)
                response = await inner(request, context)
                return response
            except BaseException as exc:
                failure = exc
                raise
            finally:
                _audit(call, request, response, failure)

        return behavior

    def _stream(self, scope: str, inner: Handler) -> Handler:
        async def behavior(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            failure: BaseException | None = None
            lease: str | None = None
            principal: Principal | None = None
            call = current_call()
            credential, call.authorization = call.authorization, None
            try:
                principal = (self._auth.admit_remembered(credential, scope)
                             or await self._auth.authenticate(credential, context.peer, scope))
                call.consumer, call.key_id, call.tenant = (
                    principal.consumer, principal.key_id, principal.profile)
                left = call.remaining()
                lease = await self._auth.open_stream(principal, 3600.0 if left is None else left)
                async with contextlib.aclosing(inner(request, context)) as items:
                    async for item in items:
                        # Between pages: a key revoked (or expired) since the stream opened ends
                        # it here, with the resume trailer, within the store's reload bound.
                        if not self._auth.still_valid(principal):
                            raise Unauthenticated("the gateway key is no longer valid",
                                                  reason="GATEWAY_KEY_REVOKED")
                        yield item
            except BaseException as exc:
                failure = exc
                raise
            finally:
                if lease is not None and principal is not None:
                    # Shielded: a cancelled stream must still give its slot back.
                    with contextlib.suppress(Exception):
                        await _shielded(self._auth.close_stream(principal, lease))
                _audit(call, request, None, failure)

        return behavior


async def _shielded(coro: Awaitable[None]) -> None:
    await asyncio.shield(coro)


def _id(value: Any) -> str | None:
    """A consumer-supplied id for the audit line: bounded, printable (validation comes later)."""
    if not isinstance(value, str) or not value:
        return None
    value = value[:128]
    return value if value.isprintable() else repr(value)


def _audit(call: Call, request: Any, response: Any, failure: BaseException | None) -> None:
    if not log_enabled(logging.INFO):
        return
    message_id = _id(getattr(request, "message_id", "")) or _id(getattr(response, "id", ""))
    audit.info(
        "audit",
        consumer=call.consumer,
        key_id=call.key_id,
        profile=call.tenant if call.consumer else None,
        method=call.method,
        thread_id=_id(getattr(request, "thread_id", "")),
        message_id=message_id,
        outcome=_outcome(failure),
        duration_ms=round((time.monotonic() - call.started) * 1000, 2),
    )
