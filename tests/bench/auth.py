"""Authentication cost: unary GetMessage through a gateway with auth on versus auth off.

One gateway **process** serves two complete gateways (``start_gateway`` twice, one event loop):
one with auth off and one with auth on, both over the same emulator upstream, GetMessage answered
from each one's cache. The consumer (this process) alternates between them in short rounds,
ABBA order (off, on, on, off, ...), and each round's time per call is compared with the adjacent
round of the other arm. Why this shape, measured on this VM:

* its speed swings by ±15 % from one half-second to the next (one process, one load: 455-699 µs of
  CPU per call in successive rounds), so long rounds one after the other differ by more than the
  effect; short adjacent rounds see nearly the same machine;
* a process can run a few per cent faster or slower than its twin for its whole life, and two
  gateway processes loaded at the same time were placed unevenly by the scheduler (one pair of
  identical gateways read 0.86); one process hosting both arms has neither problem.

``ratio`` = median over round pairs of (auth-on time per call ÷ auth-off time per call), over
``PROCESSES`` fresh gateway processes; target ≤ 1.05. Also reported: the same by CPU per call
(consumer + gateway process, every thread). The auth-on gateway runs the whole path: header
parse, key-id lookup, the SHA-256 check (first call) or the comparison with the remembered key,
scope check, the local token bucket (limit high enough never to refuse), the audit decision. The
consumer sends its key as clients/ does (a ``grpc.aio.Metadata`` built once).
Run alone with ``python -m tests.bench.auth``; ``--same`` makes both arms auth-off (the method's
own bias and spread: it should read 1.00). ``run(mode="ownership")`` (``tests.bench.ownership``)
measures thread ownership the same way: both arms auth on, ``thread_access`` "open" against
"tenant" (the thread stamped as the bench consumer's tenant's).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
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

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2_grpc as pb_grpc
from gateway.credentials import store
from gateway.credentials.keys import generate_key
from gateway.credentials.store import Consumer, KeyRecord, StoreData

ROOT = Path(__file__).resolve().parents[2]
UPSTREAM_KEY = "sk-bench-auth"
#: Closed-loop calls in flight.
CONCURRENCY = 16
#: Fresh gateway processes, each hosting both arms (the median over them is reported).
PROCESSES = 5
#: Rounds per arm per process, and their length: short, so adjacent rounds share the machine.
ROUNDS = 40
ROUND_SECONDS = 0.25
WARMUP_SECONDS = 1.0


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


#: What each mode's two arms are: "off" is the baseline, "on" what is measured.
MODES = ("auth", "same", "ownership")


def _serve_both(base: str, store_path: str, ports: dict[str, int], mode: str) -> None:
    """The gateway process: the mode's two gateways (auth off and on, by default) on one
    event loop."""
    from gateway.app import start_gateway
    from gateway.config import (AuthSettings, LoggingSettings, ServerSettings, Settings,
                                UpstreamSettings)
    from gateway.log import configure_logging

    # Error, not warning: the auth-off gateways would print their auth_disabled warning into the
    # bench output; either level skips the same info-level lines on the measured path.
    configure_logging(LoggingSettings(level="error"))

    def settings(name: str) -> Settings:
        if mode == "ownership":
            auth = AuthSettings(enabled=True, store_path=store_path,
                                thread_access="tenant" if name == "on" else "open")
        else:
            # Threads open: this suite measures authentication alone (the thread is made on
            # the emulator directly, so owner checks would refuse it; the ownership suite
            # measures those).
            auth = AuthSettings() if mode == "same" or name == "off" else AuthSettings(
                enabled=True, store_path=store_path, thread_access="open")
        return Settings(server=ServerSettings(grpc_listen=f"127.0.0.1:{ports[name]}"),
                        upstream=UpstreamSettings(base_url=base, api_key=UPSTREAM_KEY),
                        logging=LoggingSettings(level="error"), auth=auth)

    async def main() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        gateways = [await start_gateway(settings(name)) for name in ("off", "on")]
        await stop.wait()
        for gateway in gateways:
            await gateway.stop(grace=0.5)

    asyncio.run(main())


async def _round(stub: pb_grpc.MessagesServiceStub, request: pb.GetMessageRequest,
                 metadata: grpc.aio.Metadata | None, seconds: float,
                 server: psutil.Process) -> dict[str, Any]:
    """One closed-loop round: time per call, and CPU per call of consumer + gateway process."""
    cpu_before = sum(server.cpu_times()[:2]) + time.process_time()
    calls = errors = 0
    latencies: list[float] = []
    started = time.perf_counter()
    end = started + seconds

    async def worker() -> None:
        nonlocal calls, errors
        while (now := time.perf_counter()) < end:
            try:
                await stub.GetMessage(request, metadata=metadata, timeout=5)
            except grpc.aio.AioRpcError:
                errors += 1
            calls += 1
            latencies.append(time.perf_counter() - now)

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    elapsed = time.perf_counter() - started
    cpu = sum(server.cpu_times()[:2]) + time.process_time() - cpu_before
    return {"calls": calls, "errors": errors, "us_per_call": elapsed / calls * 1e6,
            "cpu_us_per_call": cpu / calls * 1e6, "latencies": latencies}


async def _process(path: Path, secret: str, base: str, request: pb.GetMessageRequest,
                mode: str) -> dict[str, list[dict[str, Any]]]:
    """One fresh gateway process hosting both arms, measured in ABBA rounds."""
    ports = {"off": _port(), "on": _port()}
    context = multiprocessing.get_context("spawn")
    server = context.Process(target=_serve_both, args=(base, str(path), ports, mode))
    server.start()
    try:
        for port in ports.values():
            await _ready(port)
        process = psutil.Process(server.pid)
        header = grpc.aio.Metadata(("authorization", f"Bearer {secret}"))
        metadata = {"off": header if mode == "ownership" else None,
                    "on": None if mode == "same" else header}
        channels = {name: grpc.aio.insecure_channel(f"127.0.0.1:{port}")
                    for name, port in ports.items()}
        try:
            stubs = {name: pb_grpc.MessagesServiceStub(ch) for name, ch in channels.items()}
            for name in ("off", "on"):
                await _round(stubs[name], request, metadata[name], WARMUP_SECONDS, process)
            rounds: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
            for index in range(ROUNDS):
                # ABBA: off, on, on, off, ... a linear drift hits both arms alike.
                order = ("off", "on") if index % 2 == 0 else ("on", "off")
                for name in order:
                    rounds[name].append(await _round(stubs[name], request, metadata[name],
                                                     ROUND_SECONDS, process))
            return rounds
        finally:
            for ch in channels.values():
                await ch.close()
    finally:
        if server.pid is not None:
            os.kill(server.pid, signal.SIGTERM)
        server.join(15)
        if server.is_alive():
            server.kill()


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def _owner_metadata() -> dict[str, str]:
    """The stamp the tenant-mode arm expects on the bench consumer's thread."""
    from gateway.context import CallContext
    from gateway.operations.ownership import OWNER_KEY, Ownership

    return {OWNER_KEY: Ownership("tenant").stamp(CallContext(method="bench"))}


async def run(same: bool = False, mode: str | None = None) -> list[dict[str, Any]]:
    mode = mode or ("same" if same else "auth")
    assert mode in MODES
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
                        thread = (await http.post("/threads", json={
                            "metadata": _owner_metadata() if mode == "ownership" else {}}
                        )).json()["id"]
                        break
                    except httpx.TransportError:
                        await asyncio.sleep(0.05)
                else:
                    raise RuntimeError("the emulator did not start")
                message = (await http.post(f"/threads/{thread}/messages",
                                           json={"role": "user", "content": "bench"})).json()["id"]
            request = pb.GetMessageRequest(thread_id=thread, message_id=message)
            processes = [await _process(path, key.secret, base, request, mode)
                         for _ in range(PROCESSES)]
        finally:
            _stop(emulator)

    failed = sum(r["errors"] for p in processes for arm in ("off", "on") for r in p[arm])
    if failed:
        # A ratio of failing calls measures the failure path: the suite fails instead.
        raise RuntimeError(f"{failed} calls failed during the {mode} bench")

    def ratios(field: str) -> list[float]:
        """Per process: the median over adjacent round pairs of on ÷ off."""
        return [statistics.median(on[field] / off[field] for on, off in zip(p["on"], p["off"]))
                for p in processes]

    time_ratios, cpu_ratios = ratios("us_per_call"), ratios("cpu_us_per_call")
    label = {"auth": {"off": "auth off", "on": "auth on"},
             "same": {"off": "auth off", "on": "auth off (twin)"},
             "ownership": {"off": "threads open", "on": "threads owned by tenant"}}[mode]
    bench = "ownership" if mode == "ownership" else "auth"
    rows = []
    for arm in ("off", "on"):
        measured = [r for p in processes for r in p[arm]]
        latencies = sorted(x for r in measured for x in r["latencies"])
        rows.append({
            "benchmark": bench, "case": f"GetMessage unary, {label[arm]}",
            "concurrency": CONCURRENCY, "rounds": ROUNDS * PROCESSES,
            "requests": sum(r["calls"] for r in measured),
            "errors": sum(r["errors"] for r in measured),
            "rps": round(1e6 / statistics.median(r["us_per_call"] for r in measured), 1),
            "p50_ms": round(latencies[len(latencies) // 2] * 1000, 2),
            "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 2),
            "cpu_us_per_call": round(statistics.median(r["cpu_us_per_call"] for r in measured), 1),
            "ratio": round(statistics.median(time_ratios), 3) if arm == "on" else 1.0,
            "target": ("~1.00" if mode == "same" else "<= 1.05") if arm == "on" else "baseline",
            **({"process_ratios": [round(r, 3) for r in time_ratios]} if arm == "on" else {}),
        })
    rows.append({
        "benchmark": bench,
        "case": f"GetMessage unary, {label['on']} / {label['off']} by CPU per call "
                "(consumer + gateway process)",
        "process_ratios": [round(r, 3) for r in cpu_ratios],
        "ratio": round(statistics.median(cpu_ratios), 3), "target": "-",
    })
    return rows


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run(same="--same" in sys.argv)), indent=2))
