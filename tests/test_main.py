"""The command line: real processes, loopback only, SIGTERM handled gracefully."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2_grpc as pb_grpc
from gateway.demo import free_port
from tests.conftest import EMULATOR_KEY


def run_gateway(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "gateway", *args],
        env={**os.environ, "OPENAI_API_KEY": EMULATOR_KEY, **(env or {})},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def test_bad_flag_value_exits_2_naming_the_key() -> None:
    proc = run_gateway("serve", "--grpc-listen", "nonsense")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "server.grpc_listen" in err


def test_bad_config_file_exits_2_naming_the_key(tmp_path) -> None:
    path = tmp_path / "g.toml"
    path.write_text("[upstream]\nmax_connections = -1\n")
    proc = run_gateway("serve", "--config", str(path))
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "upstream.max_connections" in err


async def test_serve_logs_one_json_line_per_call_and_stops_on_sigterm(emulator) -> None:
    port = free_port()
    proc = run_gateway("serve", "--grpc-listen", f"127.0.0.1:{port}",
                       "--upstream-url", emulator.base_url)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            deadline = time.monotonic() + 20
            while True:
                try:
                    reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    break
                except grpc.aio.AioRpcError:
                    assert time.monotonic() < deadline, "gateway did not start"
                    await asyncio.sleep(0.1)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
            stub = pb_grpc.MessagesServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError):
                await stub.GetMessage(pb.GetMessageRequest(thread_id="thread_x", message_id="m"),
                                      metadata=(("x-request-id", "consumer-req-1"),), timeout=5)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    calls = [line for line in lines if line.get("event") == "call"]
    assert len(calls) == 1
    (call,) = calls
    assert call["method"] == "GetMessage"
    assert call["code"] == "NOT_FOUND"
    assert call["request_id"] == "consumer-req-1"
    assert call["upstream_status"] == 404
    assert call["upstream_request_id"].startswith("req_")
    assert isinstance(call["duration_ms"], float)
    assert any(line.get("event") == "gateway_stopped" for line in lines)
