"""Benchmark: cache-hit GetMessage against a cache miss and against the floor.

The floor is a minimal grpc.aio server answering GetMessage with the same message from memory:
no interceptor, no validation, no cache. Each server runs in a subprocess of its own (so it has
the same CPU the gateway has). A second floor runs the gateway's gRPC face and call pipeline
(call context, log and audit lines, metrics) around the same in-memory answer, to show which part
of the gap is the cache's.
The load generator runs here with grpc.aio, ``CONCURRENCY``
calls in flight for ``DURATION`` seconds after a warm-up. All on 127.0.0.1.

``SETS`` fresh sets of server processes are measured one after the other; within a set the cases
run in ``ROUNDS`` interleaved rounds (the order rotating each round). A set's ratio is the median
of its rounds' ratios and the reported ratio the median over the sets: background load drifts,
and one process can be ~15 % faster or slower than its identical twin for its whole life.

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
import psutil

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2_grpc as pb_grpc

CONCURRENCY = 32
WARMUP = 0.3
DURATION = 1.5
ROUNDS = 3
#: Fresh sets of server processes: one process can run ~15 % faster or slower than an identical
#: one for its whole life on this VM (the hit ratio read 0.69 with one set, 0.85 with the next).
SETS = 3
TARGET_HIT_VS_FLOOR = 0.70
EMULATOR_KEY = "sk-bench-cache"


# -- servers (run in the subprocess) ------------------------------------------------------------


class _Floor(pb_grpc.MessagesServiceServicer):
    def __init__(self, message: pb.Message) -> None:
        self._message = message

    async def GetMessage(self, request: pb.GetMessageRequest, context: Any) -> pb.Message:
        return self._message


class _MemoryOperations:
    """Every operation answers the same message from memory (only GetMessage is called)."""

    def __init__(self, message: pb.Message) -> None:
        self._message = message

    def __getattr__(self, name: str) -> Any:
        async def answer(request: Any, ctx: Any) -> pb.Message:
            return self._message

        return answer


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
        from gateway.pipeline import Pipeline
        from gateway.rpc.face import SERVICE, GrpcFace

        floor = grpc.aio.server()
        if kind == "floor-interceptor":
            GrpcFace(Pipeline(None, default_timeout=60.0),
                     {SERVICE: _MemoryOperations(message)}).register(floor)
        else:
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


async def _load(port: int, pid: int, req: pb.GetMessageRequest,
                metadata: tuple[tuple[str, str], ...]) -> dict[str, float]:
    """Closed-loop load; throughput, latency and the server's CPU time per call.

    CPU per call is the contention-proof view of the same cost: when something else shares the
    machine the load generator is starved first and rps ratios drift towards 1, CPU per call
    does not."""
    latencies: list[float] = []
    server = psutil.Process(pid)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        stub = pb_grpc.MessagesServiceStub(ch)
        await stub.GetMessage(req, metadata=metadata)

        async def worker(until: float, record: bool) -> None:
            while (now := time.monotonic()) < until:
                await stub.GetMessage(req, metadata=metadata, timeout=10)
                if record:
                    latencies.append(time.monotonic() - now)

        warm_until = time.monotonic() + WARMUP
        await asyncio.gather(*(worker(warm_until, False) for _ in range(CONCURRENCY)))
        cpu_before = sum(server.cpu_times()[:2])
        started = time.monotonic()
        await asyncio.gather(*(worker(started + DURATION, True) for _ in range(CONCURRENCY)))
        elapsed = time.monotonic() - started
        cpu = sum(server.cpu_times()[:2]) - cpu_before
    latencies.sort()
    return {
        "rps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 3),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 3),
        "server_cpu_us": round(cpu / len(latencies) * 1e6, 1),
        "calls": len(latencies),
    }


class _Server:
    """One server subprocess (``--serve kind``), up until ``close``."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._proc: asyncio.subprocess.Process | None = None
        self.port = 0
        self.pid = 0
        self.request = pb.GetMessageRequest()

    async def start(self) -> _Server:
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.bench.cache", "--serve", self.kind,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )
        assert self._proc.stdout is not None
        info = json.loads(await asyncio.wait_for(self._proc.stdout.readline(), 30))
        self.port = info["port"]
        self.pid = self._proc.pid
        self.request = pb.GetMessageRequest(thread_id=info["thread_id"],
                                            message_id=info["message_id"])
        return self

    async def close(self) -> None:
        if self._proc is None:
            return
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            await asyncio.wait_for(self._proc.wait(), 10)
        except TimeoutError:
            self._proc.kill()
            await self._proc.wait()


FLOOR = "floor: bare grpc.aio answering from memory"
FRAMED = "floor behind the gateway's gRPC face and call pipeline"
HIT = "GetMessage cache hit (memory backend)"
MISS = "GetMessage cache miss (no-cache: lookup+upstream+store)"


async def _measure_set() -> dict[str, list[dict[str, float]]]:
    """One fresh set of server processes, measured in ROUNDS interleaved rounds."""
    servers: list[_Server] = []
    try:
        for kind in ("floor", "floor-interceptor", "gateway"):
            servers.append(await _Server(kind).start())
        floor, framed, gateway = servers
        cases = {
            FLOOR: (floor, ()),
            FRAMED: (framed, ()),
            HIT: (gateway, ()),
            MISS: (gateway, (("cache-control", "no-cache"),)),
        }
        names = list(cases)
        results: dict[str, list[dict[str, float]]] = {name: [] for name in names}
        for index in range(ROUNDS):
            shift = index % len(names)
            for name in names[shift:] + names[:shift]:
                server, metadata = cases[name]
                results[name].append(
                    await _load(server.port, server.pid, server.request, metadata))
        return results
    finally:
        for server in servers:
            await server.close()


async def run() -> list[dict[str, Any]]:
    sets = [await _measure_set() for _ in range(SETS)]
    results = {name: [r for one in sets for r in one[name]] for name in sets[0]}

    def ratio(mine: str, base: str, field: str = "rps") -> float:
        """Per set: the median round ratio; reported: the median over the sets."""
        def one(s: dict[str, list[dict[str, float]]]) -> float:
            return statistics.median(m[field] / b[field] for m, b in zip(s[mine], s[base]))
        return round(statistics.median(one(s) for s in sets), 3)

    def per_set(mine: str, base: str) -> list[float]:
        return [round(statistics.median(m["rps"] / b["rps"] for m, b in zip(s[mine], s[base])), 3)
                for s in sets]

    def figures(name: str) -> dict[str, Any]:
        rounds = results[name]
        return {
            "rps": round(statistics.median(r["rps"] for r in rounds), 1),
            "p50_ms": round(statistics.median(r["p50_ms"] for r in rounds), 3),
            "p99_ms": round(statistics.median(r["p99_ms"] for r in rounds), 3),
            "server_cpu_us": round(statistics.median(r["server_cpu_us"] for r in rounds), 1),
            "rounds": len(rounds),
            "calls": int(sum(r["calls"] for r in rounds)),
        }

    return [
        {"benchmark": "cache", "case": FLOOR, "figures": figures(FLOOR), "ratio": 1.0,
         "target": None},
        {"benchmark": "cache", "case": f"{FRAMED} vs floor", "figures": figures(FRAMED),
         "ratio": ratio(FRAMED, FLOOR), "target": None},
        {"benchmark": "cache", "case": f"{HIT} vs floor",
         "figures": {**figures(HIT), "per_set": per_set(HIT, FLOOR)},
         "ratio": ratio(HIT, FLOOR), "target": f">= {TARGET_HIT_VS_FLOOR}"},
        {"benchmark": "cache",
         "case": "hit vs floor by server CPU per call (floor's / hit's; contention-proof view)",
         "figures": {"floor_cpu_us": figures(FLOOR)["server_cpu_us"],
                     "hit_cpu_us": figures(HIT)["server_cpu_us"]},
         "ratio": round(1 / ratio(HIT, FLOOR, "server_cpu_us"), 3),
         "target": None},
        {"benchmark": "cache", "case": f"{MISS} vs hit", "figures": figures(MISS),
         "ratio": ratio(MISS, HIT), "target": None},
    ]


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        asyncio.run(_serve(sys.argv[2]))
    else:
        for row in asyncio.run(run()):
            print(json.dumps(row))
