"""Benchmark: cache-hit GetMessage against a cache miss and against the floor.

The floor is a minimal grpc.aio server answering GetMessage with the same message from memory:
no interceptor, no validation, no cache. Each server runs in a subprocess of its own (so it has
the same CPU the gateway has). A second floor runs the gateway's CallInterceptor (per-call record,
log line, metrics) around the same in-memory answer, to show which part of the gap is the cache's.
The load generator runs here with grpc.aio, ``CONCURRENCY``
calls in flight for ``DURATION`` seconds after a warm-up. All on 127.0.0.1.

``run()`` returns rows (benchmark, case, figures, ratio, target) for the bench runner;
``python -m tests.bench.cache`` prints them.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import time
from typing import Any

import grpc

from clients.generated.messages_gateway.v1 import messages_pb2 as pb
from clients.generated.messages_gateway.v1 import messages_pb2_grpc as pb_grpc

CONCURRENCY = 32
WARMUP = 0.5
DURATION = 3.0
TARGET_HIT_VS_FLOOR = 0.70
EMULATOR_KEY = "sk-bench-cache"


# -- servers (run in the subprocess) ------------------------------------------------------------


class _Floor(pb_grpc.MessagesServiceServicer):
    def __init__(self, message: pb.Message) -> None:
        self._message = message

    async def GetMessage(self, request: pb.GetMessageRequest, context: Any) -> pb.Message:
        return self._message


async def _serve(kind: str) -> None:
    from gateway.app import start_gateway
    from gateway.config import CacheSettings, LoggingSettings, ServerSettings, Settings, UpstreamSettings
    from gateway.emulator.server import EmulatorServer
    from gateway.log import configure_logging

    emulator = EmulatorServer(api_keys={EMULATOR_KEY})
    await emulator.start(host="127.0.0.1", port=0)
    thread = emulator.store.create_thread(thread_id="thread_bench")
    created = emulator.store.create_message(thread["id"], role="user", content="x" * 512)
    settings = Settings(
        server=ServerSettings(grpc_listen="127.0.0.1:0", max_concurrent_rpcs=10_000),
        upstream=UpstreamSettings(base_url=emulator.base_url, api_key=EMULATOR_KEY),
        logging=LoggingSettings(level="warning"),
        cache=CacheSettings(backend="memory"),
    )
    configure_logging(settings.logging)
    gateway = await start_gateway(settings)
    port = gateway.grpc_port
    floor = None
    if kind in {"floor", "floor-interceptor"}:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            message = await pb_grpc.MessagesServiceStub(ch).GetMessage(
                pb.GetMessageRequest(thread_id=thread["id"], message_id=created["id"]))
        from gateway.rpc.interceptor import CallInterceptor

        interceptors = [CallInterceptor(60.0)] if kind == "floor-interceptor" else []
        floor = grpc.aio.server(interceptors=interceptors)
        pb_grpc.add_MessagesServiceServicer_to_server(_Floor(message), floor)
        port = floor.add_insecure_port("127.0.0.1:0")
        await floor.start()
    print(json.dumps({"port": port, "thread_id": thread["id"], "message_id": created["id"]}),
          flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until closed
    if floor is not None:
        await floor.stop(0)
    await gateway.stop(grace=0.1)
    await emulator.stop()


# -- load (run here) ------------------------------------------------------------------------------


async def _load(port: int, req: pb.GetMessageRequest, metadata: tuple[tuple[str, str], ...]
                ) -> dict[str, float]:
    latencies: list[float] = []
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        stub = pb_grpc.MessagesServiceStub(ch)
        await stub.GetMessage(req, metadata=metadata)
        stop_at = time.monotonic() + WARMUP + DURATION
        start_at = time.monotonic() + WARMUP

        async def worker() -> None:
            while (now := time.monotonic()) < stop_at:
                await stub.GetMessage(req, metadata=metadata, timeout=10)
                done = time.monotonic()
                if now >= start_at:
                    latencies.append(done - now)

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    latencies.sort()
    return {
        "rps": round(len(latencies) / DURATION, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 3),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 3),
        "calls": len(latencies),
    }


async def _case(kind: str, metadata: tuple[tuple[str, str], ...]) -> dict[str, float]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.bench.cache", "--serve", kind,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        info = json.loads(line)
        req = pb.GetMessageRequest(thread_id=info["thread_id"], message_id=info["message_id"])
        return await _load(info["port"], req, metadata)
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def run() -> list[dict[str, Any]]:
    floor = await _case("floor", ())
    framed = await _case("floor-interceptor", ())
    hit = await _case("gateway", ())
    miss = await _case("gateway", (("cache-control", "no-cache"),))
    return [
        {"benchmark": "cache", "case": "floor: bare grpc.aio answering from memory",
         "figures": floor, "ratio": 1.0, "target": None},
        {"benchmark": "cache", "case": "floor behind the gateway's CallInterceptor vs floor",
         "figures": framed, "ratio": round(framed["rps"] / floor["rps"], 3), "target": None},
        {"benchmark": "cache", "case": "GetMessage cache hit (memory backend) vs floor",
         "figures": hit, "ratio": round(hit["rps"] / floor["rps"], 3),
         "target": f">= {TARGET_HIT_VS_FLOOR}"},
        {"benchmark": "cache", "case": "GetMessage cache miss (no-cache: lookup+upstream+store) vs hit",
         "figures": miss, "ratio": round(miss["rps"] / hit["rps"], 3), "target": None},
    ]


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        asyncio.run(_serve(sys.argv[2]))
    else:
        for row in asyncio.run(run()):
            print(json.dumps(row))
