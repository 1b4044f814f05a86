"""The gateway's own Python per call, with nothing under it: an in-process floor of its logic.

``GetMessage`` through everything the gateway runs per call above the network - the call
admission's handler (``gateway/rpc/admission.py``), the gRPC face, the call pipeline, the
operation (validation, cache look-up, single-flight, store), the upstream client (retry policy,
circuit breaker, upstream admission, the deadline-bound exchange, the ``httpx.Request``, the capped
body read, JSON -> protobuf) - on a stand-in gRPC context and an **instant transport** that answers
the static upstream's 1 KB message without any I/O. Auth off, logging at ``warning``, as in the
server-side suites. One call at a time in a loop of the gateway's default kind (in a thread of its
own), ``time.thread_time`` over 2,000 calls, the least of 12 rounds (the machine's noise only
adds). The instant transport's own cost (an ``httpx.Response`` and its body read) is measured the
same way and reported beside.

What it says: how much of a proxied call's CPU (``proxy_grpc``) is the gateway's logic, which no
transport or server change can remove. ``python -m tests.bench.gateway_logic`` runs it alone.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from tests.bench.static_upstream import MESSAGE, THREAD, compact, message

BENCHMARK = "gateway_logic"
CALLS, ROUNDS = 2000, 12
BODY = compact(message(MESSAGE, THREAD, 1_700_000_000))
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


class InstantTransport(httpx.AsyncBaseTransport):
    """Answers every request at once with the 1 KB message."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers=HEADERS, stream=httpx.ByteStream(BODY),
                              request=request)


class StandInContext:
    """What the gateway asks of ``grpc.aio.ServicerContext`` on a successful unary call."""

    def __init__(self, request: bytes, metadata: tuple[tuple[str, str], ...]) -> None:
        self._request, self._metadata = request, metadata
        self.trailers: Any = ()

    async def read(self) -> bytes:
        return self._request

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def time_remaining(self) -> float:
        return 30.0

    def peer(self) -> str:
        return "ipv4:127.0.0.1:1"

    def set_trailing_metadata(self, metadata: Any) -> None:
        self.trailers = metadata

    async def abort(self, code: Any, details: str, *_: Any) -> None:
        raise RuntimeError(f"the call failed: {code} {details}")


async def _least(call: Callable[[], Awaitable[None]]) -> float:
    """Seconds of this thread's CPU per call, the least of the rounds."""
    for _ in range(200):  # warm-up: caches, first connections of nothing, lazy imports
        await call()
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.thread_time()
        for _ in range(CALLS):
            await call()
        best = min(best, time.thread_time() - started)
    return best / CALLS


@dataclasses.dataclass
class Assembled:
    """The gateway's per-call stack over the instant transport, and how to call it."""

    handler: Any
    request: bytes
    operations: Any
    admission: Any
    upstream: Any

    def call(self, metadata: tuple[tuple[str, str], ...] = ()) -> Callable[[], Awaitable[Any]]:
        async def call() -> Any:
            context = StandInContext(self.request, metadata)
            response = await self.handler.stream_unary(None, context)
            self.handler.response_serializer(response)
            assert context.trailers, "no trailers: the call did not succeed"
            return response
        return call

    def serving(self, operations: Any) -> Assembled:
        """The same stack (one admission) over other operations (``floors``' constant ones)."""
        from gateway.pipeline import Pipeline
        from gateway.rpc.face import SERVICE, GrpcFace

        face = GrpcFace(Pipeline(None, default_timeout=60.0), {SERVICE: operations})
        handler = self.admission.wrap_all(SERVICE.full_name, face.handlers(SERVICE))["GetMessage"]
        return dataclasses.replace(self, handler=handler)

    async def close(self) -> None:
        await self.admission.close()
        await self.operations.cache.close()
        await self.upstream.aclose()


def assemble() -> Assembled:
    """Admission, face, pipeline and operations as the server builds them (call in a loop)."""
    from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
    from gateway.app import build_idempotency, build_ownership
    from gateway.cache import build_cache
    from gateway.config import Settings
    from gateway.log import configure_logging
    from gateway.operations.messages import MessageOperations
    from gateway.rpc.admission import CallAdmission
    from gateway.upstream.pool import UpstreamPool

    settings = Settings()
    configure_logging(dataclasses.replace(settings.logging, level="warning"))
    upstream = UpstreamPool(settings, transport=InstantTransport())
    operations = MessageOperations(upstream, build_idempotency(settings),
                                   build_cache(settings.cache), build_ownership(settings.auth))
    request = pb.GetMessageRequest(thread_id=THREAD, message_id=MESSAGE).SerializeToString()
    return Assembled(None, request, operations, CallAdmission(settings.server),
                     upstream).serving(operations)


async def _measure() -> dict[str, float]:
    stack = assemble()
    transport = InstantTransport()
    probe = httpx.Request("GET", "http://127.0.0.1/v1/x")

    async def transport_call() -> None:
        response = await transport.handle_async_request(probe)
        async for _ in response.stream:  # type: ignore[union-attr]
            pass
        await response.aclose()

    try:
        return {
            "hit": await _least(stack.call()),
            "miss": await _least(stack.call((("cache-control", "no-cache"),))),
            "transport": await _least(transport_call),
        }
    finally:
        await stack.close()


def _in_thread() -> dict[str, float]:
    from gateway.config import ServerSettings
    from gateway.loop import LOOP_FACTORIES

    os.environ.setdefault("OPENAI_API_KEY", "sk-bench")
    with asyncio.Runner(loop_factory=LOOP_FACTORIES[ServerSettings().event_loop]) as runner:
        return runner.run(_measure())


async def run() -> list[dict[str, Any]]:
    figures = await asyncio.to_thread(_in_thread)
    cases = (("GetMessage hit: the gateway's logic, instant transport", "hit"),
             ("GetMessage miss (no-cache): the gateway's logic, instant transport", "miss"),
             ("the instant transport alone (its httpx.Response and body read)", "transport"))
    return [{"benchmark": BENCHMARK, "case": case, "concurrency": 1, "calls": CALLS,
             "rounds": ROUNDS, "cpu_us_per_call": round(figures[key] * 1e6, 1),
             "ratio": round(figures[key] / figures["transport"], 2), "vs": "instant transport",
             "target": "info"} for case, key in cases]


if __name__ == "__main__":
    from tests.bench import format_table

    print(format_table(asyncio.run(run())))
