"""REST face versus gRPC face, same process, same emulator, same run.

* GetMessage: sequential calls on one kept-alive connection (httpx for REST, one aio channel for
  gRPC); p50/p99 latency. Ratio = REST p50 / gRPC p50.
* A 1,000-message list: the REST NDJSON stream and REST paging (limit=100, the SDK's way: pages
  until ``data: []``) against gRPC StreamMessages; wall time per whole list. Ratio = REST / gRPC.

Client and servers share one event loop (as a consumer in another process would not), so the
figures include the client's own cost on both sides alike. Run alone: ``python -m tests.bench.rest``.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import httpx

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2_grpc as pb_grpc
from gateway.app import start_gateway
from gateway.config import ServerSettings, Settings, UpstreamSettings
from gateway.emulator.server import EmulatorServer

KEY = "sk-bench"
GET_CALLS = 400
LIST_SIZE = 1000
LIST_ROUNDS = 8
WARMUP = 20


async def _timed(fn: Callable[[], Awaitable[Any]], count: int) -> list[float]:
    for _ in range(min(WARMUP, count)):
        await fn()
    out = []
    for _ in range(count):
        start = time.perf_counter()
        await fn()
        out.append(time.perf_counter() - start)
    return out


def _ms(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50_ms": round(statistics.median(ordered) * 1000, 3),
            "p99_ms": round(ordered[int(len(ordered) * 0.99) - 1] * 1000, 3),
            "mean_ms": round(statistics.fmean(ordered) * 1000, 3), "n": len(ordered)}


async def run() -> list[dict[str, Any]]:
    async with EmulatorServer(api_keys={KEY}, pretty=False, rate_limit_requests=10**9) as emu:
        settings = Settings(
            server=ServerSettings(grpc_listen="127.0.0.1:0", http_listen="127.0.0.1:0"),
            upstream=UpstreamSettings(base_url=emu.base_url, api_key=KEY),
        )
        gw = await start_gateway(settings)
        try:
            return await _measure(emu, gw.grpc_port, gw.http_port)
        finally:
            await gw.stop(grace=1.0)


async def _measure(emu: EmulatorServer, grpc_port: int, http_port: int) -> list[dict[str, Any]]:
    thread_id = emu.store.create_thread()["id"]
    emu.store.seed_messages(thread_id, LIST_SIZE, spacing=1)
    message_id = emu.store.message_ids(thread_id)[0]
    headers = {"openai-beta": "assistants=v1"}
    async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel, \
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}/v1", headers=headers,
                              timeout=30.0) as http:
        stub = pb_grpc.MessagesServiceStub(channel)

        async def grpc_get() -> None:
            await stub.GetMessage(pb.GetMessageRequest(thread_id=thread_id, message_id=message_id))

        async def rest_get() -> None:
            (await http.get(f"/threads/{thread_id}/messages/{message_id}")).raise_for_status()

        async def grpc_stream() -> None:
            count = 0
            async for page in stub.StreamMessages(pb.StreamMessagesRequest(thread_id=thread_id,
                                                                           limit=100)):
                count += len(page.data)
            assert count == LIST_SIZE

        async def rest_stream() -> None:
            count = 0
            async with http.stream("GET", f"/threads/{thread_id}/messages:stream",
                                   params={"limit": 100}) as response:
                async for line in response.aiter_lines():
                    json.loads(line)
                    count += 1
            assert count == LIST_SIZE

        async def rest_paging() -> None:
            count, after = 0, None
            for _ in range(LIST_SIZE // 100 + 2):
                params: dict[str, Any] = {"limit": 100, **({"after": after} if after else {})}
                page = (await http.get(f"/threads/{thread_id}/messages", params=params)).json()
                if not page["data"]:
                    break
                count += len(page["data"])
                after = page["data"][-1]["id"]
            assert count == LIST_SIZE

        g_get = _ms(await _timed(grpc_get, GET_CALLS))
        r_get = _ms(await _timed(rest_get, GET_CALLS))
        g_list = _ms(await _timed(grpc_stream, LIST_ROUNDS))
        r_stream = _ms(await _timed(rest_stream, LIST_ROUNDS))
        r_paging = _ms(await _timed(rest_paging, LIST_ROUNDS))

    def ratio(a: dict[str, float], b: dict[str, float]) -> float:
        return round(a["p50_ms"] / b["p50_ms"], 2)

    return [
        {"benchmark": "rest_vs_grpc", "case": "GetMessage",
         "figures": {"rest": r_get, "grpc": g_get}, "ratio": ratio(r_get, g_get),
         "target": "REST p50 <= 2.0 x gRPC p50"},
        {"benchmark": "rest_vs_grpc", "case": "list 1,000 (REST NDJSON stream vs StreamMessages)",
         "figures": {"rest_ndjson": r_stream, "grpc_stream": g_list},
         "ratio": ratio(r_stream, g_list), "target": "REST p50 <= 2.0 x gRPC p50"},
        {"benchmark": "rest_vs_grpc", "case": "list 1,000 (REST paging, SDK-style, vs StreamMessages)",
         "figures": {"rest_paging": r_paging, "grpc_stream": g_list},
         "ratio": ratio(r_paging, g_list), "target": "informational (11 round trips vs 1 stream)"},
    ]


if __name__ == "__main__":
    for row in asyncio.run(run()):
        print(json.dumps(row))
