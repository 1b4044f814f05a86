"""``server.workers = 2`` against 1: GetMessage cache hits and misses, load from h2load.

Processes on loopback: nginx serving a static ~1 KB v1 message for every path (the upstream; one
process, see ``tests.bench.upstream_transport``), ``python -m gateway serve`` with 1 and then 2
workers, and h2load (C, nghttp2) sending gRPC frames: ``-c CONNECTIONS -m STREAMS`` = 64 calls in
flight over at least 4 connections. A hit is a plain GetMessage (the in-memory cache answers after
the first); a miss carries ``cache-control: no-cache`` (every call goes to nginx).

h2load counts HTTP 200 even when ``grpc-status`` is an error, so each gateway is first checked
with a real gRPC client (a hit and a miss answer the expected message), and after each run the
gateway's own ``gateway_calls_total`` must show no code other than OK.

The ratio is 2 workers' calls/s over 1 worker's, same run, same machine: both gateways run from
the start and are measured in alternating rounds, and the ratio is the median of the REPEATS
per-round ratios, each run with new connections. With 4 connections the kernel's SO_REUSEPORT
hash decides how they split over the workers (4:0 happens one time in 8, and then one worker
does all the work), so every run is shown and a 16-connection row is reported too. On a 2-core
machine h2load and nginx share the cores with the workers: the ratio is what a second core buys
once they have taken their part.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import struct
import subprocess
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2_grpc as pb_grpc
from tests.bench.common import child_env, free_port, python_args, start_process
from tests.bench.upstream_transport import message_body, start_server

BENCHMARK = "workers"
H2LOAD = "/usr/bin/h2load"
SECONDS = 3
WARMUP_SECONDS = 1
#: (connections, streams per connection): 64 calls in flight each time.
SHAPES = ((4, 16), (16, 4))
#: Rounds per figure, each with new connections (a new split over the workers); medians count.
REPEATS = 5
TARGET = ">= 1.5"
THREAD_ID = "thread_abc123def456ghi789jk"
MESSAGE_ID = "msg_abc123def456ghi789jkl012"
PATH = "/messages_gateway.v1.MessagesService/GetMessage"
CASES = {"hit": (), "miss": (("cache-control", "no-cache"),)}
_RPS = re.compile(r"finished in [0-9.]+m?s, ([0-9.]+) req/s")
_DONE = re.compile(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed")


def frame() -> bytes:
    """One gRPC message: uncompressed flag, 4-byte big-endian length, the request."""
    body = pb.GetMessageRequest(thread_id=THREAD_ID, message_id=MESSAGE_ID).SerializeToString()
    return b"\x00" + struct.pack(">I", len(body)) + body


async def start_gateway(stack: ExitStack, upstream: str, workers: int) -> tuple[int, int]:
    """``gateway serve`` with ``workers``; returns (grpc port, metrics port) once it serves."""
    grpc_port, metrics_port = free_port(), free_port()
    env = child_env(
        OPENAI_API_KEY="sk-bench", GATEWAY_UPSTREAM_BASE_URL=upstream,
        GATEWAY_SERVER_GRPC_LISTEN=f"127.0.0.1:{grpc_port}",
        GATEWAY_SERVER_METRICS_LISTEN=f"127.0.0.1:{metrics_port}",
        GATEWAY_SERVER_WORKERS=str(workers), GATEWAY_SERVER_GRACE_SECONDS="1",
        # One log line per call would be measured too; the bench measures the calls.
        GATEWAY_LOGGING_LEVEL="warning")
    proc = start_process(f"gateway ({workers} workers)", python_args("-m", "gateway", "serve"),
                         stack, env=env)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for _ in range(300):
            proc.check_alive()
            try:
                await health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                break
            except grpc.aio.AioRpcError:
                await asyncio.sleep(0.1)
        else:
            raise RuntimeError(f"the gateway did not start: {proc.output()}")
    await asyncio.sleep(1.0 if workers > 1 else 0.0)  # the other workers finish starting
    await check_answers(grpc_port)
    return grpc_port, metrics_port


async def check_answers(port: int) -> None:
    """Real gRPC calls first: h2load would count a grpc-status error as a success."""
    for _ in range(8):  # fresh connections reach every worker
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.MessagesServiceStub(channel)
            for metadata in CASES.values():
                reply = await stub.GetMessage(pb.GetMessageRequest(
                    thread_id=THREAD_ID, message_id=MESSAGE_ID), metadata=metadata, timeout=10)
                assert reply.id.startswith("msg_") and len(reply.content[0].text.value) > 500


async def failed_calls(metrics_port: int) -> dict[str, float]:
    """Calls the gateway answered with anything but OK, by code, from its own metrics.
    CANCELLED is h2load's doing: at the end of ``-D`` it closes connections with calls in
    flight."""
    async with httpx.AsyncClient(trust_env=False) as http:
        text = (await http.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
    codes: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "gateway_calls_total" and s.labels.get("code") != "OK":
                codes[s.labels["code"]] = codes.get(s.labels["code"], 0.0) + s.value
    return codes


def h2load(port: int, frame_file: Path, connections: int, streams: int,
           headers: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    args = [H2LOAD, "-D", str(SECONDS), f"--warm-up-time={WARMUP_SECONDS}",
            "-c", str(connections), "-m", str(streams), "-t", "1", "-d", str(frame_file),
            "-H", "content-type: application/grpc", "-H", "te: trailers"]
    for name, value in headers:
        args += ["-H", f"{name}: {value}"]
    args.append(f"http://127.0.0.1:{port}{PATH}")
    return parse_h2load(subprocess.run(args, capture_output=True, text=True,
                                       timeout=SECONDS + 60).stdout)


def parse_h2load(out: str) -> dict[str, Any]:
    """calls/s, done and failed from h2load's summary."""
    rps, done = _RPS.search(out), _DONE.search(out)
    if rps is None or done is None:
        raise RuntimeError(f"h2load output not understood:\n{out[-2000:]}")
    return {"rps": float(rps.group(1)), "done": int(done.group(1)),
            "failed": int(done.group(3))}


def median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


async def run() -> list[dict[str, Any]]:
    if not shutil.which(H2LOAD):
        raise RuntimeError(f"{H2LOAD} is not installed (apt-get install nghttp2-client)")
    rows: list[dict[str, Any]] = []
    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        url, server = await start_server(stack, Path(tmp), message_body())
        upstream = url.split("/v1/")[0] + "/v1"
        frame_file = Path(tmp) / "frame.bin"
        frame_file.write_bytes(frame())
        # Both gateways run from the start and are measured in alternating rounds (1, 2, 2, 1,
        # ...), so load drifting during the run lands on both.
        gateways = {w: await start_gateway(stack, upstream, w) for w in (1, 2)}
        for case, headers in CASES.items():
            for connections, streams in SHAPES:
                runs: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
                for round_ in range(REPEATS):
                    for workers in ((1, 2) if round_ % 2 == 0 else (2, 1)):
                        runs[workers].append(await asyncio.to_thread(
                            h2load, gateways[workers][0], frame_file, connections, streams,
                            headers))
                rps = {w: [r["rps"] for r in runs[w]] for w in runs}
                rows.append({
                    "benchmark": BENCHMARK,
                    "case": f"GetMessage {case}, c{connections} x m{streams}",
                    "rps_1_worker": median(rps[1]), "rps_2_workers": median(rps[2]),
                    "runs_1_worker": "/".join(f"{x:.0f}" for x in rps[1]),
                    "runs_2_workers": "/".join(f"{x:.0f}" for x in rps[2]),
                    "h2load_failed": sum(r["failed"] for w in runs for r in runs[w]),
                    "upstream": server,
                    # The median of the per-round ratios.
                    "ratio": round(median([b / a for a, b in zip(rps[1], rps[2]) if a]), 3),
                    "target": TARGET,
                })
        codes: dict[str, float] = {}
        for _, metrics_port in gateways.values():
            for code, count in (await failed_calls(metrics_port)).items():
                codes[code] = codes.get(code, 0.0) + count
    unexpected = {code: n for code, n in codes.items() if code != "CANCELLED"}
    if unexpected:
        raise RuntimeError(f"the gateway answered errors under load: {unexpected}")
    for r in rows:
        r["grpc_errors"] = f"none (CANCELLED at h2load's stop: {codes.get('CANCELLED', 0):.0f})"
    return rows
