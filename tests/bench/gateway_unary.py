"""GetMessage through the gateway versus the same GET made directly to the emulator.

Three processes on loopback: the emulator (``python -m gateway emulator``), the gateway
(``python -m gateway serve``) and this one, the load generator. Each figure is measured at 1 and 32
concurrent callers, bounded in count and time:

* direct: an httpx client on the gateway's default transport sends the upstream GET to
  the emulator and parses the JSON, as a service calling the upstream itself would (the baseline);
* gateway: a grpc.aio client calls GetMessage on the gateway, which validates, makes that GET,
  converts the JSON to protobuf and answers.

The ratio is the gateway's throughput as a share of the direct path's. On a 2-core machine the
three processes share two cores, so the ratio is what one extra process hop costs in CPU, not in
network time. Both processes are stopped (SIGTERM, then SIGKILL) whatever happens.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import ExitStack
from typing import Any

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2_grpc as pb_grpc
from gateway.config import UpstreamSettings
from gateway.upstream.http import build_transport
from tests.bench.common import (
    ManagedProcess,
    child_env,
    compare,
    fixed,
    free_port,
    python_args,
    row,
    start_process,
    wait_http,
)

BENCHMARK = "gateway_unary"
UPSTREAM_KEY = "sk-bench-upstream-key"
TOTAL = {1: 1000, 32: 3000}
MAX_SECONDS = 15.0
WARMUP = 50
#: Interleaved rounds per comparison (see common.compare).
ROUNDS = 3
CONCURRENCIES = (1, 32)
CALL_TIMEOUT = 10.0
#: The gateway's GetMessage must keep at least this share of the direct GET's throughput.
GATEWAY_TARGET = ">= 0.25"
#: A message body close to the 1 KB of the transport benchmark once the envelope is added.
CONTENT = "benchmark message " * 40
DIRECT = "direct GET to the emulator (httpx, the gateway's transport)"
GATEWAY = "GetMessage through the gateway (grpc.aio)"
TARGETS = {DIRECT: "baseline", GATEWAY: GATEWAY_TARGET}


async def wait_serving(target: str, proc: ManagedProcess, timeout: float = 20.0) -> None:
    """Wait until the gateway's health service says SERVING."""
    end = time.monotonic() + timeout
    async with grpc.aio.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < end:
            proc.check_alive()
            try:
                reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError(f"gateway did not become SERVING within {timeout} s: {proc.output()}")


def start_services(stack: ExitStack) -> tuple[ManagedProcess, ManagedProcess, str, str]:
    """The emulator and the gateway as processes; returns them, the upstream URL and gRPC target."""
    emulator_port, grpc_port = free_port(), free_port()
    env = child_env(EMULATOR_API_KEYS=UPSTREAM_KEY, OPENAI_API_KEY=UPSTREAM_KEY,
                    GATEWAY_LOGGING_LEVEL="warning")
    base_url = f"http://127.0.0.1:{emulator_port}/v1"
    target = f"127.0.0.1:{grpc_port}"
    emulator = start_process(
        "emulator", python_args("-m", "gateway", "emulator", "--listen",
                                f"127.0.0.1:{emulator_port}"), stack, env=env)
    gateway = start_process(
        "gateway", python_args("-m", "gateway", "serve", "--grpc-listen", target,
                               "--upstream-url", base_url), stack, env=env)
    return emulator, gateway, base_url, target


async def seed_message(client: httpx.AsyncClient, base_url: str) -> tuple[str, str]:
    thread = (await client.post(f"{base_url}/threads", json={})).raise_for_status().json()
    message = (await client.post(
        f"{base_url}/threads/{thread['id']}/messages",
        json={"role": "user", "content": CONTENT, "metadata": {"source": "bench"}},
    )).raise_for_status().json()
    return str(thread["id"]), str(message["id"])


async def run() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with ExitStack() as stack:
        emulator, gateway, base_url, target = start_services(stack)
        await wait_http(base_url.removesuffix("/v1") + "/_emulator/health", emulator)
        await wait_serving(target, gateway)
        headers = {"authorization": f"Bearer {UPSTREAM_KEY}", "openai-beta": "assistants=v1"}
        async with httpx.AsyncClient(transport=build_transport(UpstreamSettings()),
                                     headers=headers, trust_env=False,
                                     timeout=CALL_TIMEOUT) as http, \
                grpc.aio.insecure_channel(target) as channel:
            thread_id, message_id = await seed_message(http, base_url)
            url = f"{base_url}/threads/{thread_id}/messages/{message_id}"
            size = len((await http.get(url)).content)
            stub = pb_grpc.MessagesServiceStub(channel)
            request = pb.GetMessageRequest(thread_id=thread_id, message_id=message_id)

            async def direct() -> None:
                response = await http.get(url)
                if response.status_code != 200 or response.json()["id"] != message_id:
                    raise RuntimeError(f"direct GET answered HTTP {response.status_code}")

            async def through_gateway() -> None:
                message = await stub.GetMessage(request, timeout=CALL_TIMEOUT)
                if message.id != message_id:
                    raise RuntimeError("the gateway answered another message")

            cases = {DIRECT: lambda: fixed(direct), GATEWAY: lambda: fixed(through_gateway)}
            for concurrency in CONCURRENCIES:
                comparison = await compare(cases, baseline=DIRECT, concurrency=concurrency,
                                           total=TOTAL[concurrency], max_seconds=MAX_SECONDS,
                                           rounds=ROUNDS, warmup=WARMUP)
                for name in cases:
                    rows.append(row(BENCHMARK, name, comparison.results[name],
                                    ratio=comparison.ratios[name], target=TARGETS[name],
                                    vs="direct", body_bytes=size))
        for proc in (gateway, emulator):
            proc.check_alive()  # a crash during the run would make every figure meaningless
    return rows
