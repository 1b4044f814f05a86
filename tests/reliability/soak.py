"""Soak: bounded mixed traffic with 5 % injected faults and random client cancels against
emulator + gateway subprocesses, gated on leaks.

    python -m tests.reliability.soak [--seconds 600] [--concurrency 16] [--fault-rate 0.05]

Everything on 127.0.0.1. The traffic runs a warm-up (a tenth of the run, at least 15 s), pauses
until nothing is in flight to sample the gateway process, runs the rest while it reads the
gateway's memory every second, and samples again once idle. Memory is judged on the medians of
the first and last third of those readings, the rest on the two samples. Reports requests,
outcomes by status, both samples and both medians; exits 1 with one ``FAIL:`` line per reason
when a gate in ``soak_gates`` fails (RSS growth of 5 % or more, native heap growth of 20 % or
more, file descriptors, upstream sockets or asyncio tasks left over, upstream requests in flight
at the end, a call ended UNKNOWN).
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
from collections.abc import Callable

import grpc
import psutil
from prometheus_client.parser import text_string_to_metric_families

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2_grpc as pb_grpc
from tests.reliability.soak_gates import (
    Sample,
    failures,
    heap_growth,
    plateaus,
    rss_growth,
    settled,
)

KEY = "sk-soak"
#: The gateway's cap on an upstream body in the soak (16 MiB by default): the largest page the
#: soak asks for is ~25 KB, and a huge body held up to a 16 MiB cap when a sample is taken
#: would swamp the RSS figure (glibc returns such memory to the kernel when it pleases).
BODY_CAP = 1024 * 1024
#: A huge body: beyond the cap.
HUGE = 2 * BODY_CAP
#: Faults drawn for the 5 %: (operation, kind, params), each an equal share.
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
    # A page of 20 messages drips in ~1.5 s, one of 50 in ~4 s: slow, within the deadlines.
    ("*", "slow_body", {"chunk_size": 256, "delay": 0.05}),
    ("*", "huge_body", {"size": HUGE}),  # refused on its content-length
    ("*", "huge_body", {"size": HUGE, "chunked": True}),  # refused while read, at the cap
    ("*", "redirect", {}),
    # Fresh cursors forever: a stream ends at its max_items or its deadline.
    ("listMessages", "endless_pages", {}),
]
#: Share of calls the soak cancels itself, at a random point in their first CANCEL_WITHIN s:
#: before the headers, during an upstream fetch, during a write.
CANCEL_RATE = 0.03
CANCEL_WITHIN = 0.05
#: The pool's keep-alive expiry in the soak (upstream.keepalive_expiry_seconds, 30 s by
#: default): idle connections close a second or two after the last call, so both samples are
#: taken with an empty pool (its buffers are native heap), and a socket to the upstream still
#: open then is a leaked connection.
KEEPALIVE = 1.0
#: How long the soak waits for the upstream requests to end, and then as long again for fds and
#: tasks to come back within tolerance, before it judges (``--patience``).
PATIENCE_SECONDS = 10.0
#: Seconds a phase's last calls get to finish before they are cancelled.
PHASE_GRACE = 1.0
#: The warm-up: a tenth of the run, at least this (the bounded structures fill meanwhile).
WARMUP_SECONDS = 15.0
#: Memory readings under traffic after warm-up: every this many seconds, or 30 in all if the
#: run is shorter.
READ_EVERY_SECONDS = 1.0


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


async def one_call(stub: pb_grpc.MessagesServiceStub, thread_id: str, kind: float,
                   rng: random.Random, mix: tuple[float, float]) -> None:
    create_below, list_below = mix
    if kind < create_below:
        await stub.CreateMessage(pb.CreateMessageRequest(
            thread_id=thread_id, role=pb.ROLE_USER, content="soak",
            request_id=f"soak-{rng.getrandbits(64)}"), timeout=5)
    elif kind < list_below:
        await stub.ListMessages(pb.ListMessagesRequest(thread_id=thread_id, limit=20),
                                timeout=5)
    else:
        # One stream in four walks the whole thread (or an endless list until its deadline).
        max_items = 0 if rng.random() < 0.25 else 200
        async for _ in stub.StreamMessages(pb.StreamMessagesRequest(
                thread_id=thread_id, limit=50, max_items=max_items), timeout=10):
            pass


async def traffic(stub: pb_grpc.MessagesServiceStub, threads: list[str], stop: float,
                  counts: collections.Counter[str], rng: random.Random,
                  mix: tuple[float, float] = MIXES["all"]) -> None:
    while time.monotonic() < stop:
        call = one_call(stub, rng.choice(threads), rng.random(), rng, mix)
        try:
            if rng.random() < CANCEL_RATE:
                try:
                    await asyncio.wait_for(call, rng.uniform(0, CANCEL_WITHIN))
                except TimeoutError:
                    counts["CANCELLED by the soak"] += 1
                    continue
            else:
                await call
            counts["OK"] += 1
        except grpc.aio.AioRpcError as err:
            counts[err.code().name] += 1


def scrape(metrics_port: int) -> dict[str, float]:
    """The gateway's gauges the gates read (its asyncio tasks and its native heap), the cache's
    bytes, and the calls it saw end CANCELLED (the soak's cancels arriving)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    wanted = ("gateway_event_loop_tasks", "gateway_malloc_in_use_bytes")
    families = list(text_string_to_metric_families(text))
    found = {family.name: family.samples[0].value for family in families
             if family.name in (*wanted, "gateway_cache_bytes") and family.samples}
    found["cancelled"] = sum(s.value for family in families if family.name == "gateway_calls"
                             for s in family.samples
                             if s.name == "gateway_calls_total" and s.labels["code"] == "CANCELLED")
    missing = set(wanted) - set(found)
    if missing:
        raise RuntimeError(f"the gateway exports no {', '.join(sorted(missing))}")
    return found


def sample(proc: psutil.Process, emu_port: int, metrics_port: int) -> Sample:
    pool = sum(1 for c in proc.net_connections(kind="tcp")
               if c.raddr and c.raddr.port == emu_port)
    gauges = scrape(metrics_port)
    return Sample(rss=proc.memory_info().rss, fds=proc.num_fds() - pool, pool=pool,
                  tasks=int(gauges["gateway_event_loop_tasks"]),
                  heap=int(gauges["gateway_malloc_in_use_bytes"]))


async def quiet_sample(proc: psutil.Process, emu_port: int, metrics_port: int, seconds: float,
                       ready: Callable[[Sample], bool]) -> Sample:
    """A sample once ``ready`` holds for it (the idle pool closed, work finishing just after
    the last call done), or the last one after ``seconds``."""
    deadline = time.monotonic() + seconds
    now = sample(proc, emu_port, metrics_port)
    while not ready(now) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        now = sample(proc, emu_port, metrics_port)
    return now


async def idle(base: str, seconds: float) -> int:
    """Wait until the emulator has no request in flight; the number still in flight."""
    deadline = time.monotonic() + seconds
    while True:
        log = admin(base, "GET", "/log?operation=none")
        in_flight = int(log["in_flight"])  # type: ignore[index]
        if not in_flight or time.monotonic() >= deadline:
            return in_flight
        await asyncio.sleep(0.1)


async def run_phase(stub: pb_grpc.MessagesServiceStub, threads: list[str], until: float,
                    counts: collections.Counter[str], concurrency: int, seed: int,
                    mix: str) -> None:
    """Traffic until ``until``; calls still running ``PHASE_GRACE`` s later (a stream on an
    endless list, a dripping body) are cancelled, so that a phase ends on time."""
    workers = [asyncio.ensure_future(traffic(stub, threads, until, counts,
                                             random.Random(seed + i), MIXES[mix]))
               for i in range(concurrency)]
    _, late = await asyncio.wait(workers, timeout=max(0.0, until - time.monotonic()) + PHASE_GRACE)
    for worker in late:
        worker.cancel()
    if late:
        await asyncio.wait(late)
        counts["CANCELLED at phase end"] += len(late)


async def read_memory(proc: psutil.Process, metrics_port: int, every: float,
                      readings: list[tuple[int, int]]) -> None:
    """Append (RSS, native heap) every ``every`` seconds until cancelled."""
    while True:
        await asyncio.sleep(every)
        gauges = await asyncio.to_thread(scrape, metrics_port)
        readings.append((proc.memory_info().rss, int(gauges["gateway_malloc_in_use_bytes"])))


async def print_memory(proc: psutil.Process, metrics_port: int, every: float,
                       started: float) -> None:
    """Print the gateway's RSS and native heap every ``every`` seconds (a leak climbs, a bound
    filling up levels off)."""
    while True:
        await asyncio.sleep(every)
        rss = proc.memory_info().rss / 2**20
        gauges = await asyncio.to_thread(scrape, metrics_port)
        print(f"  t={time.monotonic() - started:6.1f} s  RSS {rss:7.1f} MiB  native heap "
              f"{gauges['gateway_malloc_in_use_bytes'] / 2**20:7.1f} MiB  response cache "
              f"{gauges.get('gateway_cache_bytes', 0) / 2**20:5.1f} MiB", flush=True)


async def main(seconds: float, concurrency: int, fault_rate: float, mix: str = "all",
               every: float = 0.0, warmup: float | None = None,
               patience: float = PATIENCE_SECONDS) -> int:
    emu_port, gw_port, metrics_port = free_port(), free_port(), free_port()
    env = {**os.environ, "EMULATOR_API_KEYS": KEY, "GATEWAY_UPSTREAM_API_KEY": KEY,
           "GATEWAY_SERVER_GRPC_LISTEN": f"127.0.0.1:{gw_port}",
           "GATEWAY_SERVER_METRICS_LISTEN": f"127.0.0.1:{metrics_port}",
           "GATEWAY_UPSTREAM_BASE_URL": f"http://127.0.0.1:{emu_port}/v1",
           "GATEWAY_UPSTREAM_KEEPALIVE_EXPIRY_SECONDS": str(KEEPALIVE),
           "GATEWAY_UPSTREAM_MAX_BODY_BYTES": str(BODY_CAP),
           "GATEWAY_LOGGING_LEVEL": "error",
           # The bounded structures are kept small so that they are full before warm-up ends
           # (20-odd keyed creates/s on a loaded 2-core machine fill 300 idempotency entries in
           # 15 s): any growth measured after warm-up is then a leak, not a cache filling up to
           # its bound.
           "GATEWAY_RELIABILITY_IDEMPOTENCY_MAX_ENTRIES": "300",
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
        await wait_port(metrics_port)
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
        if warmup is None:
            warmup = max(WARMUP_SECONDS, seconds / 10)
        started = time.monotonic()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gw_port}") as channel:
            stub = pb_grpc.MessagesServiceStub(channel)
            printer = (asyncio.ensure_future(print_memory(proc, metrics_port, every, started))
                       if every > 0 else None)
            await run_phase(stub, threads, started + warmup, counts, concurrency, 0, mix)
            await idle(base, patience)
            warm = await quiet_sample(proc, emu_port, metrics_port, patience,
                                      lambda now: not now.pool)
            readings: list[tuple[int, int]] = []
            every_read = max(0.05, min(READ_EVERY_SECONDS, (seconds - warmup) / 30))
            reader = asyncio.ensure_future(read_memory(proc, metrics_port, every_read, readings))
            await run_phase(stub, threads, started + seconds, counts, concurrency, 1000, mix)
            reader.cancel()
            in_flight = await idle(base, patience)
            end = await quiet_sample(proc, emu_port, metrics_port, patience,
                                     lambda now: not now.pool and settled(warm, now))
            if printer is not None:
                printer.cancel()
        total = sum(counts.values())
        print(f"soak: {seconds:.0f} s, {concurrency} workers, {fault_rate:.0%} faults of "
              f"{len(FAULTS)} kinds, {CANCEL_RATE:.0%} of calls cancelled by the soak")
        print(f"requests: {total} ({total / seconds:.0f}/s)")
        for code, n in counts.most_common():
            print(f"  {code:<22} {n:>8}  {n / total:6.2%}")
        print(f"calls the gateway saw end CANCELLED: {scrape(metrics_port)['cancelled']:.0f}")
        print(f"upstream in flight at the end: {in_flight}")
        print(f"gateway after warm-up ({warmup:.0f} s): {warm.describe()}")
        print(f"gateway at the end:          {end.describe()}")
        warm, end = plateaus(warm, end, readings)
        print(f"memory under traffic, medians of {len(readings) // 3} of {len(readings)} "
              f"readings: first third RSS {warm.rss / 2**20:.1f} MiB, heap "
              f"{warm.heap / 2**20:.1f} MiB; last third RSS {end.rss / 2**20:.1f} MiB, heap "
              f"{end.heap / 2**20:.1f} MiB")
        print(f"RSS growth {rss_growth(warm, end):+.2f} %, native heap growth "
              f"{heap_growth(warm, end):+.2f} %, fds {end.fds - warm.fds:+d}, "
              f"tasks {end.tasks - warm.tasks:+d}")
        reasons = failures(warm, end, in_flight=in_flight, unknown=counts["UNKNOWN"],
                           pool_bound=0)
        for reason in reasons:
            print(f"FAIL: {reason}")
        print("PASS" if not reasons else "FAIL", flush=True)
        return 0 if not reasons else 1
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
                        help="print the gateway's RSS and native heap every this many seconds "
                             "(0: never)")
    parser.add_argument("--warmup", type=float, default=None,
                        help="seconds of warm-up (default: a tenth of the run, at least "
                             f"{WARMUP_SECONDS:.0f})")
    parser.add_argument("--patience", type=float, default=PATIENCE_SECONDS,
                        help="seconds to wait for idle, and again for fds and tasks to settle")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.seconds, args.concurrency, args.fault_rate, args.mix,
                              args.sample, args.warmup, args.patience)))
