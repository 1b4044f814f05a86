"""Call admission on the gRPC face: what a call may hold before and after its request arrives.

grpc.aio's own ``maximum_concurrent_rpcs`` counts a call from the moment its headers arrive, and
a unary handler only starts once the request message has arrived. A client that sends headers and
never a message (no key needed, no deadline) therefore held a slot for ever: at the limit every
other call, a valid key's and ``grpc.health.v1.Health/Check`` included, was refused, and nothing
was logged. ``CallAdmission`` replaces that limit with three bounds, wrapping every method's
handler when it is registered (``GrpcServer``):

* **Waiting for the request.** Every unary-request method is served through a handler that
  reads the request itself, so the wait is bounded: ``server.request_timeout_seconds`` (DEADLINE_EXCEEDED), and at
  most ``server.max_pending_calls`` calls may wait at once. When that budget is full the call that
  has waited longest is ended (RESOURCE_EXHAUSTED) to make room: a real client sends its request
  with its headers, so the oldest waiter is the likeliest attacker, and a flood cannot keep a new
  call out (the rule Linux applies to a full SYN queue).
* **Serving.** Consumer calls that delivered their request count toward
  ``server.max_concurrent_rpcs``; beyond it they are refused at once (RESOURCE_EXHAUSTED).
* **Infrastructure.** Health has budgets of its own, which consumer traffic never competes
  with: its own waiting budget, and a cap on its long-lived streams (``Watch``);
  ``Health/Check`` itself takes no serving slot. Reflection (client-streaming, off in
  production) is not wrapped: it holds no slot of anyone's, only its HTTP/2 stream.

Every refusal writes an ``rpc_refused`` line (method, reason, peer; at most 50 a second) and
counts in ``gateway_calls_refused_total{reason}``. A request that cannot be decoded is refused with
INVALID_ARGUMENT the same way (grpc.aio answered UNKNOWN, with nothing in the gateway's log).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import structlog

from gateway import metrics
from gateway.cancellation import cancel_and_wait
from gateway.config import ServerSettings

log = structlog.get_logger("gateway.rpc")

#: Services with budgets of their own (never shared with consumer calls).
INFRA_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")
#: Calls of those services that may wait for their request at once.
INFRA_MAX_PENDING = 32
#: Long-lived infrastructure streams (Health/Watch) served at once.
INFRA_MAX_STREAMS = 64
#: The request timeout is enforced to within this many seconds (or a quarter of it).
SWEEP_SECONDS = 0.25


@dataclass(eq=False, slots=True)
class _Waiter:
    """One call waiting for its request message (its RPC task, and since when)."""

    task: asyncio.Task[Any]
    since: float
    #: Why it was ended, once it was: "request_timeout" or "pending_evicted".
    ended: str | None = None

    def end(self, reason: str) -> None:
        if self.ended is None:
            self.ended = reason
            self.task.cancel()


@dataclass(slots=True)
class _Budget:
    max_pending: int
    max_serving: int  # 0 = no cap
    waiting: OrderedDict[_Waiter, None] = field(default_factory=OrderedDict)
    serving: int = 0


class _Refused(Exception):
    def __init__(self, code: grpc.StatusCode, reason: str, details: str) -> None:
        super().__init__(details)
        self.code, self.reason, self.details = code, reason, details


class CallAdmission:
    """Wraps method handlers (when they are registered, so no interceptor runs per call: each
    installed grpc.aio interceptor costs an ``intercept_service`` round on every call) into ones
    that read their own request under the bounds above."""

    def __init__(self, settings: ServerSettings) -> None:
        self._timeout = settings.request_timeout_seconds
        self._consumer = _Budget(settings.max_pending_calls, settings.max_concurrent_rpcs)
        self._infra = _Budget(INFRA_MAX_PENDING, INFRA_MAX_STREAMS)
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def waiting(self) -> int:
        """Calls waiting for their request message now (both budgets)."""
        return len(self._consumer.waiting) + len(self._infra.waiting)

    @property
    def serving(self) -> int:
        """Consumer calls holding a serving slot now."""
        return self._consumer.serving

    async def _sweep(self) -> None:
        """End the calls that have waited longer than the request timeout (oldest first: the
        waiting lists are in arrival order). Precision: a quarter of the timeout, at most
        ``SWEEP_SECONDS``."""
        loop = asyncio.get_running_loop()
        tick = min(self._timeout / 4, SWEEP_SECONDS)
        while True:
            await asyncio.sleep(tick)
            overdue = loop.time() - self._timeout
            for budget in (self._consumer, self._infra):
                while budget.waiting:
                    oldest = next(iter(budget.waiting))
                    if oldest.since > overdue:
                        break
                    del budget.waiting[oldest]
                    oldest.end("request_timeout")

    async def close(self) -> None:
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None:
            await cancel_and_wait(sweeper)

    def wrap_all(self, service: str, handlers: dict[str, grpc.RpcMethodHandler]
                 ) -> dict[str, grpc.RpcMethodHandler]:
        """The admitting handlers of one service's methods (client-streaming ones unchanged:
        the contract has none, and reflection holds no slot of anyone's)."""
        return {name: handler if handler.request_streaming
                else self._wrap(f"/{service}/{name}", handler)
                for name, handler in handlers.items()}

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        infra = method.startswith(INFRA_PREFIXES)
        budget = self._infra if infra else self._consumer
        name = method.rsplit("/", 1)[-1]
        decode = handler.request_deserializer or (lambda raw: raw)
        # Infrastructure unary calls (Health/Check) take no serving slot: they end at once.
        takes_slot = not (infra and handler.unary_unary is not None)
        receive = self._receive
        inner = handler.unary_unary or handler.unary_stream

        async def admitted(request_iterator: Any, context: grpc.aio.ServicerContext) -> Any:
            del request_iterator  # read through the context, under the bounds above
            try:
                request = await receive(budget, context, decode)
                if takes_slot and budget.max_serving and budget.serving >= budget.max_serving:
                    raise _Refused(grpc.StatusCode.RESOURCE_EXHAUSTED, "concurrency",
                                   "the gateway is at its concurrent call limit; retry later")
            except _Refused as refused:
                await _refuse(context, name, refused)
                raise AssertionError("unreachable: abort raises") from None  # pragma: no cover
            if not takes_slot:
                return await inner(request, context)
            budget.serving += 1
            try:
                return await inner(request, context)
            finally:
                budget.serving -= 1

        if handler.unary_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                admitted, request_deserializer=None,
                response_serializer=handler.response_serializer)
        return grpc.stream_stream_rpc_method_handler(
            admitted, request_deserializer=None, response_serializer=handler.response_serializer)

    async def _receive(self, budget: _Budget, context: grpc.aio.ServicerContext,
                       decode: Callable[[bytes], Any]) -> Any:
        """The call's request message, read within the waiting bounds.

        No timer per call (one cost ~8 % of a cached GetMessage): the sweeper task ends the
        waiters that are over time, by cancelling their RPC task, which this catches."""
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        waiter = _Waiter(task, loop.time())
        if len(budget.waiting) >= budget.max_pending:
            oldest, _ = budget.waiting.popitem(last=False)
            oldest.end("pending_evicted")
        budget.waiting[waiter] = None
        if self._sweeper is None:
            self._sweeper = loop.create_task(self._sweep(), name="rpc-request-timeouts")
        try:
            raw = await context.read()
        except asyncio.CancelledError:
            if waiter.ended is None:
                raise  # the consumer went away, or the server is stopping
            task.uncancel()
            if waiter.ended == "pending_evicted":
                raise _Refused(grpc.StatusCode.RESOURCE_EXHAUSTED, "pending_evicted",
                               "too many calls are waiting to send their request") from None
            raise _Refused(grpc.StatusCode.DEADLINE_EXCEEDED, "request_timeout",
                           f"the request message did not arrive within {self._timeout:g} s"
                           ) from None
        finally:
            budget.waiting.pop(waiter, None)
        if raw is grpc.aio.EOF:
            raise _Refused(grpc.StatusCode.INVALID_ARGUMENT, "no_request",
                           "the call ended without a request message")
        try:
            return decode(raw)
        except Exception:  # DecodeError (corrupt bytes, bad UTF-8 in a string) or worse
            # grpc.aio answered UNKNOWN and logged nothing the gateway's logs would show.
            raise _Refused(grpc.StatusCode.INVALID_ARGUMENT, "undecodable_request",
                           "the request message could not be decoded as the method's request "
                           "type (corrupt protobuf, or a string field that is not UTF-8)"
                           ) from None


#: Refusal lines written per second at most (a flood must not become a log flood); the metric
#: counts every refusal, and the next line written says how many were left out.
MAX_REFUSAL_LINES_PER_SECOND = 50
_lines = {"second": 0, "written": 0, "skipped": 0}


async def _refuse(context: grpc.aio.ServicerContext, method: str, refused: _Refused) -> None:
    metrics.CALLS_REFUSED.labels(refused.reason).inc()
    second = int(asyncio.get_running_loop().time())
    if second != _lines["second"]:
        _lines["second"], _lines["written"] = second, 0
    if _lines["written"] < MAX_REFUSAL_LINES_PER_SECOND:
        _lines["written"] += 1
        skipped, _lines["skipped"] = _lines["skipped"], 0
        log.warning("rpc_refused", method=method, reason=refused.reason, code=refused.code.name,
                    peer=context.peer(), **({"not_logged_before": skipped} if skipped else {}))
    else:
        _lines["skipped"] += 1
    await context.abort(refused.code, refused.details)
