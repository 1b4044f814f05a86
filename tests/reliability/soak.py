"""Soak: bounded mixed traffic with 5 % injected faults against emulator + gateway subprocesses.

    python -m tests.reliability.soak [--seconds 600] [--concurrency 16] [--fault-rate 0.05]

Everything on 127.0.0.1. Reports requests, outcomes by status, and the gateway's RSS after a
warm-up (a tenth of the run, at least 5 s) against RSS at the end; exits 1 if RSS grew by 5 % or
more, or if any call ended UNKNOWN.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import socket
import sys
import time
import urllib.request

import grpc
import psutil

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2_grpc as pb_grpc

KEY = "sk-soak"
#: Faults drawn for the 5 %: (operation, kind, params).
FAULTS = [
    ("*", "status", {"status": 503}),
    ("*", "status", {"status": 500}),
    ("*", "status", {"status": 429, "retry_after_ms": "50"}),
    ("*", "reset", {}),
    ("listMessages", "reset_mid_body", {"fraction": 0.4}),
    ("*", "truncated_json", {"fraction": 0.5}),
    ("*", "non_json", {}),
    ("*", "slow_headers", {"seconds": 0.2}),
    ("createMessage", "status", {"status": 500, "run_handler": True}),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def admin(base: str, method: str, path: str, body: object | None = None) -> object:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method,
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


async def wait_port(port: int) -> None:
    for _ in range(200):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise TimeoutError(f"port {port} never opened")


#: Share of each kind of call in the traffic: (create, list) cut points on [0, 1).
MIXES = {"all": (0.2, 0.6), "create": (1.0, 1.0), "list": (0.0, 1.0), "stream": (0.0, 0.0)}


async def traffic(stub: pb_grpc.MessagesServiceStub, threads: list[str], stop: float,
                  counts: collections.Counter[str], rng: random.Random,
                  mix: tuple[float, float] = MIXES["all"]) -> None:
    create_below, list_below = mix
    while time.monotonic() < stop:
        thread_id = rng.choice(threads)
        kind = rng.random()
        try:
            if kind < create_below:
                await stub.CreateMessage(pb.CreateMessageRequest(
                    thread_id=thread_id, role=pb.ROLE_USER, content="soak",
                    request_id=f"soak-{rng.getrandbits(64)}"), timeout=5)
            elif kind < list_below:
                await stub.ListMessages(pb.ListMessagesRequest(thread_id=thread_id, limit=20),
                                        timeout=5)
            else:
                async for _ in stub.StreamMessages(pb.StreamMessagesRequest(
                        thread_id=thread_id, limit=50, max_items=200), timeout=10):
                    pass
            counts["OK"] += 1
        except grpc.aio.AioRpcError as err:
            counts[err.code().name] += 1


async def sample_rss(proc: psutil.Process, every: float, started: float) -> None:
    """Print the gateway's RSS every ``every`` seconds (to see a plateau from a leak)."""
    while True:
        await asyncio.sleep(every)
        rss = proc.memory_info().rss / 2**20
        print(f"  t={time.monotonic() - started:6.1f} s  RSS {rss:7.1f} MiB", flush=True)


async def main(seconds: float, concurrency: int, fault_rate: float, mix: str = "all",
               sample: float = 0.0) -> int:
    emu_port, gw_port = free_port(), free_port()
    env = {**os.environ, "EMULATOR_API_KEYS": KEY, "GATEWAY_UPSTREAM_API_KEY": KEY,
           "GATEWAY_SERVER_GRPC_LISTEN": f"127.0.0.1:{gw_port}",
           "GATEWAY_UPSTREAM_BASE_URL": f"http://127.0.0.1:{emu_port}/v1",
           "GATEWAY_LOGGING_LEVEL": "error",
           # The bounded structures are kept small so that they are full before warm-up ends
           # (27 keyed creates/s fill 1,000 idempotency entries in under a minute): any growth
           # measured after warm-up is then a leak, not a cache filling up to its bound.
           "GATEWAY_RELIABILITY_IDEMPOTENCY_MAX_ENTRIES": "1000",
           "GATEWAY_CACHE_MAX_ENTRIES": "500",
           "GATEWAY_CACHE_MAX_BYTES": str(4 * 1024 * 1024)}
    emulator = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "emulator", "--listen", f"127.0.0.1:{emu_port}",
        env=env, stdout=asyncio.subprocess.DEVNULL)
    # SOAK_GATEWAY_WRAP: a command prefix for diagnosis (``python -m memray run --native -o
    # out.bin``); it must run the gateway in the same process so that RSS is the gateway's.
    wrap = os.environ.get("SOAK_GATEWAY_WRAP", "").split()
    command = wrap or [sys.executable]
    gateway = await asyncio.create_subprocess_exec(
        *command, "-m", "gateway", "serve", env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    try:
        await wait_port(emu_port)
        await wait_port(gw_port)
        base = f"http://127.0.0.1:{emu_port}/_emulator"
        threads = []
        for _ in range(8):
            thread = admin(base, "POST", "/threads", {})
            admin(base, "POST", f"/threads/{thread['id']}/seed", {"count": 300})  # type: ignore[index]
            threads.append(thread["id"])  # type: ignore[index]
        share = fault_rate / len(FAULTS)
        for operation, kind, params in FAULTS:
            admin(base, "POST", "/faults",
                  {"operation": operation, "kind": kind, "probability": share, **params})
        proc = psutil.Process(gateway.pid)
        counts: collections.Counter[str] = collections.Counter()
        warmup = max(5.0, seconds / 10)
        started = time.monotonic()
        stop = started + seconds
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gw_port}") as channel:
            stub = pb_grpc.MessagesServiceStub(channel)
            workers = [asyncio.ensure_future(traffic(stub, threads, stop, counts,
                                                     random.Random(i), MIXES[mix]))
                       for i in range(concurrency)]
            sampler = (asyncio.ensure_future(sample_rss(proc, sample, started))
                       if sample > 0 else None)
            await asyncio.sleep(warmup)
            rss_warm = proc.memory_info().rss
            await asyncio.gather(*workers)
            if sampler is not None:
                sampler.cancel()
            rss_end = proc.memory_info().rss
        log = admin(base, "GET", "/log?operation=none")
        total = sum(counts.values())
        growth = (rss_end - rss_warm) / rss_warm * 100
        print(f"soak: {seconds:.0f} s, {concurrency} workers, {fault_rate:.0%} faults")
        print(f"requests: {total} ({total / seconds:.0f}/s)")
        for code, n in counts.most_common():
            print(f"  {code:<20} {n:>8}  {n / total:6.2%}")
        print(f"upstream in flight at the end: {log['in_flight']}")  # type: ignore[index]
        print(f"gateway RSS after warm-up {rss_warm / 2**20:.1f} MiB, at the end "
              f"{rss_end / 2**20:.1f} MiB, growth {growth:+.2f} %")
        ok = growth < 5 and counts["UNKNOWN"] == 0
        print("PASS" if ok else "FAIL")
        return 0 if ok else 1
    finally:
        for process in (gateway, emulator):
            if process.returncode is None:
                process.terminate()
                try:
                    await asyncio.wait_for(process.wait(), 15)
                except TimeoutError:
                    process.kill()
                    await process.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--fault-rate", type=float, default=0.05)
    parser.add_argument("--mix", choices=sorted(MIXES), default="all",
                        help="only one kind of call, to find which one a growth comes from")
    parser.add_argument("--sample", type=float, default=0.0,
                        help="print the gateway's RSS every this many seconds (0: never)")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.seconds, args.concurrency, args.fault_rate, args.mix,
                              args.sample)))
