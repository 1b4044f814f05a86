"""Authentication cost: unary GetMessage through a gateway with auth on versus auth off.

Both gateways and the emulator run as separate processes on loopback (the load generator never
shares their loop or GIL); both gateways get the same upstream and the same load. Rounds alternate
(on, off, off, on, ...) so drift (CPU frequency, other work) hits both alike. ``PAIRS`` fresh
pairs of gateway processes are measured one after the other and the ratio is the median of the
pairs' ratios: a single process can be ~15 % faster or slower than its identical twin for its
whole life on this VM.
The auth-on gateway runs the whole path — header parse, key-id lookup, SHA-256 + compare_digest,
scope check, the local token bucket (limit set high enough never to refuse), the audit line.

``ratio`` = auth-on time per request ÷ auth-off time per request (throughput inverse), target
≤ 1.05. Run alone with ``python -m tests.bench.auth``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
import httpx
import psutil

from clients.generated.messages_gateway.v1 import messages_pb2 as pb
from clients.generated.messages_gateway.v1 import messages_pb2_grpc as pb_grpc
from gateway.credentials import store
from gateway.credentials.keys import generate_key
from gateway.credentials.store import Consumer, KeyRecord, StoreData

ROOT = Path(__file__).resolve().parents[2]
UPSTREAM_KEY = "sk-bench-auth"
HEADER_ONLY = "auth off + header"
CONCURRENCY = 32
#: Fresh gateway process pairs: one process can run ~15 % faster or slower than an identical
#: one for its whole life (where the VM places it), so one pair's ratio swung 0.89-1.17.
PAIRS = 5
ROUNDS = 4
ROUND_SECONDS = 1.0
WARMUP_SECONDS = 0.5


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "gateway", *args], cwd=ROOT,
                            env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


async def _ready(port: int, timeout: float = 20.0) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        await asyncio.wait_for(channel.channel_ready(), timeout)


async def _round(stub: pb_grpc.MessagesServiceStub, request: pb.GetMessageRequest,
                 metadata: tuple[tuple[str, str], ...], seconds: float,
                 server: psutil.Process | None = None) -> dict[str, Any]:
    """One closed-loop round; ``server_cpu_us`` is the gateway's CPU time per call (user +
    system, every thread), the figure that contention for the machine cannot blur."""
    cpu_before = sum(server.cpu_times()[:2]) if server else 0.0
    latencies: list[float] = []
    errors = 0
    end = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal errors
        while time.monotonic() < end and len(latencies) < 1_000_000:
            started = time.perf_counter()
            try:
                await stub.GetMessage(request, metadata=metadata, timeout=5)
            except grpc.aio.AioRpcError:
                errors += 1
            latencies.append(time.perf_counter() - started)

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    elapsed = time.monotonic() - started
    cpu = sum(server.cpu_times()[:2]) - cpu_before if server else 0.0
    ordered = sorted(latencies)
    return {"requests": len(latencies), "errors": errors, "rps": len(latencies) / elapsed,
            "server_cpu_us": cpu / max(len(latencies), 1) * 1e6,
            "p50_ms": ordered[len(ordered) // 2] * 1000,
            "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000}


async def _pair(path: Path, secret: str, base: str, request: pb.GetMessageRequest
                ) -> dict[str, list[dict[str, Any]]]:
    """One fresh (auth off, auth on) pair of gateway processes, measured in alternating rounds."""
    off_port, on_port = _port(), _port()
    common = {"OPENAI_API_KEY": UPSTREAM_KEY, "GATEWAY_LOGGING_LEVEL": "warning"}
    procs = [
        _spawn(["serve", "--grpc-listen", f"127.0.0.1:{off_port}", "--upstream-url", base],
               common),
        _spawn(["serve", "--grpc-listen", f"127.0.0.1:{on_port}", "--upstream-url", base],
               {**common, "GATEWAY_AUTH_ENABLED": "true", "GATEWAY_AUTH_STORE_PATH": str(path)}),
    ]
    try:
        await _ready(off_port)
        await _ready(on_port)
        header = (("authorization", f"Bearer {secret}"),)
        cases = {"auth off": (off_port, ()), "auth on": (on_port, header),
                 # The auth-off gateway sent the same header it ignores: what carrying the
                 # header alone costs grpc (HPACK, metadata objects), before any auth code runs.
                 HEADER_ONLY: (off_port, header)}
        servers = {"auth off": psutil.Process(procs[0].pid),
                   "auth on": psutil.Process(procs[1].pid),
                   HEADER_ONLY: psutil.Process(procs[0].pid)}
        rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in cases}
        channels = {name: grpc.aio.insecure_channel(f"127.0.0.1:{port}")
                    for name, (port, _) in cases.items()}
        try:
            stubs = {name: pb_grpc.MessagesServiceStub(ch) for name, ch in channels.items()}
            for name, (_, metadata) in cases.items():
                await _round(stubs[name], request, metadata, WARMUP_SECONDS)
            for index in range(ROUNDS):
                order = list(cases.items())
                shift = index % len(order)
                for name, (_, metadata) in order[shift:] + order[:shift]:
                    rounds[name].append(await _round(
                        stubs[name], request, metadata, ROUND_SECONDS, servers[name]))
        finally:
            for ch in channels.values():
                await ch.close()
        return rounds
    finally:
        _stop(procs)


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


async def run() -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        key = generate_key()
        path = Path(tmp) / "credentials.json"
        store.write(path, StoreData({"bench": Consumer(
            "bench", frozenset({"read"}), "default", (KeyRecord(key.key_id, key.hash, time.time()),),
            rate_per_second=1e9, burst=1_000_000_000)}))
        emu_port = _port()
        base = f"http://127.0.0.1:{emu_port}/v1"
        emulator = [_spawn(["emulator", "--listen", f"127.0.0.1:{emu_port}"],
                           {"EMULATOR_API_KEYS": UPSTREAM_KEY})]
        try:
            headers = {"authorization": f"Bearer {UPSTREAM_KEY}", "openai-beta": "assistants=v1"}
            async with httpx.AsyncClient(base_url=base, headers=headers, trust_env=False) as http:
                for _ in range(200):
                    try:
                        thread = (await http.post("/threads", json={})).json()["id"]
                        break
                    except httpx.TransportError:
                        await asyncio.sleep(0.05)
                else:
                    raise RuntimeError("the emulator did not start")
                message = (await http.post(f"/threads/{thread}/messages",
                                           json={"role": "user", "content": "bench"})).json()["id"]
            request = pb.GetMessageRequest(thread_id=thread, message_id=message)
            pairs = [await _pair(path, key.secret, base, request) for _ in range(PAIRS)]
        finally:
            _stop(emulator)

    def median_of(pair: dict[str, list[dict[str, Any]]], name: str, field: str) -> float:
        return statistics.median(r[field] for r in pair[name])

    # Per pair: auth-on time per request / auth-off time per request (medians of its rounds);
    # the reported ratio is the median over pairs, so no one process's luck decides it.
    time_ratios = [median_of(p, "auth off", "rps") / median_of(p, "auth on", "rps") for p in pairs]
    cpu_ratios = [median_of(p, "auth on", "server_cpu_us") / median_of(p, "auth off", "server_cpu_us")
                  for p in pairs]
    rows = []
    for name in ("auth off", "auth on"):
        measured = [r for p in pairs for r in p[name]]
        rows.append({
            "benchmark": "auth", "case": f"GetMessage unary, {name}",
            "concurrency": CONCURRENCY, "rounds": ROUNDS * PAIRS,
            "requests": sum(r["requests"] for r in measured),
            "errors": sum(r["errors"] for r in measured),
            "rps": round(statistics.median(r["rps"] for r in measured), 1),
            "p50_ms": round(statistics.median(r["p50_ms"] for r in measured), 2),
            "p99_ms": round(statistics.median(r["p99_ms"] for r in measured), 2),
            "server_cpu_us": round(statistics.median(r["server_cpu_us"] for r in measured), 1),
            "ratio": round(statistics.median(time_ratios), 3) if name == "auth on" else 1.0,
            "target": "<= 1.05" if name == "auth on" else "baseline",
            **({"pair_ratios": [round(r, 3) for r in time_ratios]} if name == "auth on" else {}),
        })
    header_ratios = [median_of(p, "auth off", "rps") / median_of(p, HEADER_ONLY, "rps")
                     for p in pairs]
    rows.append({
        "benchmark": "auth",
        "case": "reference: auth off, consumer still sends the header / auth off (grpc's share)",
        "pair_ratios": [round(r, 3) for r in header_ratios],
        "ratio": round(statistics.median(header_ratios), 3), "target": "-",
    })
    code_ratios = [median_of(p, HEADER_ONLY, "rps") / median_of(p, "auth on", "rps")
                   for p in pairs]
    rows.append({
        "benchmark": "auth",
        "case": "reference: auth on / auth off + header (the gateway's auth code alone)",
        "pair_ratios": [round(r, 3) for r in code_ratios],
        "ratio": round(statistics.median(code_ratios), 3), "target": "-",
    })
    rows.append({
        "benchmark": "auth",
        "case": "GetMessage unary, auth on / off by gateway CPU per call (contention-proof view)",
        "pair_ratios": [round(r, 3) for r in cpu_ratios],
        "ratio": round(statistics.median(cpu_ratios), 3), "target": "-",
    })
    return rows


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run()), indent=2))
