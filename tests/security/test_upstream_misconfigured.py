"""Issue 19, case 8: a misconfigured upstream was found by the first consumer, not at start.

No upstream key (or an ``api_key_file`` that does not exist): the gateway started silently, health
said SERVING and every call was INTERNAL ``UPSTREAM_CREDENTIALS_REJECTED``. A base URL without
``/v1``: every call NOT_FOUND. Now the key is checked at start (and until it appears: the consumer
service's health is NOT_SERVING meanwhile, with an error line and a gauge saying why), and a base
URL that is not the API root is refused.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2_grpc as pb_grpc
from gateway.app import start_gateway
from gateway.config import ConfigError, load_settings
from gateway.emulator.server import EmulatorServer
from gateway.rpc.server import SERVICE_NAME
from gateway.upstream import startup
from tests.conftest import EMULATOR_KEY, gateway_settings
from tests.rpc.test_messages_service import details
from tests.security.conftest import metric

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def _health(port: int, service: str) -> int:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        reply = await health_pb2_grpc.HealthStub(ch).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=2)
    return int(reply.status)


async def _wait_status(port: int, service: str, status: int, seconds: float) -> bool:
    import asyncio
    for _ in range(int(seconds / 0.05)):
        if await _health(port, service) == status:
            return True
        await asyncio.sleep(0.05)
    return False


#: What the start-up log line says for each way of having no key.
REASONS = {"nothing": "upstream_key_missing", "unset_env": "upstream_key_missing",
           "missing_file": "upstream_key_file_missing", "directory": "upstream_key_file_unreadable",
           "not_utf8": "upstream_key_file_unreadable"}


@pytest.mark.parametrize("source", list(REASONS))
async def test_missing_upstream_key_is_not_serving_until_it_appears(
        emulator: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        source: str) -> None:
    monkeypatch.setattr(startup, "KEY_RECHECK_SECONDS", 0.1)
    monkeypatch.delenv("MGW_TEST_UNSET_KEY", raising=False)
    key_file = tmp_path / "api-key"
    upstream = {"nothing": {"api_key": "", "api_key_env": ""},
                "unset_env": {"api_key": "", "api_key_env": "MGW_TEST_UNSET_KEY"},
                "missing_file": {"api_key": "", "api_key_file": str(key_file)},
                "directory": {"api_key": "", "api_key_file": str(tmp_path)},
                "not_utf8": {"api_key": "", "api_key_file": str(key_file)}}[source]
    if source == "not_utf8":
        key_file.write_bytes(b"\xff\xfe" + EMULATOR_KEY.encode())
    settings = gateway_settings(emulator).replace("upstream", **upstream)
    with structlog.testing.capture_logs() as logs:
        gw = await start_gateway(settings)
    try:
        missing = [e for e in logs if e["event"] == "upstream_misconfigured"]
        assert len(missing) == 1 and missing[0]["log_level"] == "error"
        assert missing[0]["reason"] == REASONS[source]
        assert missing[0]["profile"] == "default"
        assert EMULATOR_KEY not in str(logs)
        assert metric("gateway_upstream_key_missing", profile="default") == 1
        assert await _health(gw.grpc_port, SERVICE_NAME) == NOT_SERVING
        assert await _health(gw.grpc_port, "") == SERVING  # the process itself is alive
        # A call meanwhile is refused before any upstream request (it went out without a key and
        # came back INTERNAL UPSTREAM_CREDENTIALS_REJECTED).
        thread = emulator.store.create_thread()
        before = emulator.log.count()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.grpc_port}") as ch:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await pb_grpc.MessagesServiceStub(ch).ListMessages(
                    pb.ListMessagesRequest(thread_id=str(thread["id"])), timeout=5)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert details(caught.value)["ErrorInfo"].reason == "UPSTREAM_KEY_MISSING"  # type: ignore[attr-defined]
        assert emulator.log.count() == before
        if source in {"missing_file", "not_utf8"}:
            key_file.write_text(EMULATOR_KEY + "\n")
        elif source == "unset_env":
            monkeypatch.setenv("MGW_TEST_UNSET_KEY", EMULATOR_KEY)
        else:
            return  # a key set nowhere cannot appear
        assert await _wait_status(gw.grpc_port, SERVICE_NAME, SERVING, 3.0)
        assert metric("gateway_upstream_key_missing", profile="default") == 0
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.grpc_port}") as ch:
            page = await pb_grpc.MessagesServiceStub(ch).ListMessages(
                pb.ListMessagesRequest(thread_id=str(thread["id"])), timeout=5)
        assert list(page.data) == []
    finally:
        await gw.stop(grace=0.1)


async def test_configured_key_serves_at_once(emulator: EmulatorServer) -> None:
    gw = await start_gateway(gateway_settings(emulator))
    try:
        assert await _health(gw.grpc_port, SERVICE_NAME) == SERVING
    finally:
        await gw.stop(grace=0.1)


@pytest.mark.parametrize("path", ["", "/", "/v2", "/v1/threads", "/api"])
async def test_base_url_that_is_not_the_v1_root_is_refused(
        emulator: EmulatorServer, tmp_path: Path, path: str) -> None:
    root = emulator.base_url.removesuffix("/v1")
    with pytest.raises(ConfigError, match="upstream.base_url"):
        load_settings(None, environ={"GATEWAY_UPSTREAM_BASE_URL": root + path})
    with pytest.raises(ConfigError, match="upstream.base_url"):
        gw = await start_gateway(gateway_settings(emulator).replace("upstream",
                                                                    base_url=root + path))
        await gw.stop(grace=0.1)


@pytest.mark.parametrize("url", ["https://api.example.com/v1", "https://api.example.com/v1/",
                                 "http://127.0.0.1:8099/openai/v1"])
def test_v1_roots_are_accepted(url: str) -> None:
    assert load_settings(None, environ={"GATEWAY_UPSTREAM_BASE_URL": url}).upstream.base_url == url


def test_kubernetes_readiness_asks_for_the_consumer_service() -> None:
    """A readiness probe on "" would keep routing consumers to a pod without an upstream key."""
    import yaml

    path = Path(__file__).parents[2] / "deploy/kubernetes/deployment.yaml"
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d and d["kind"] == "Deployment"]
    (container,) = docs[0]["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["grpc"]["service"] == SERVICE_NAME
    assert container["livenessProbe"]["grpc"].get("service", "") == ""


def test_a_key_file_that_turns_binary_keeps_the_last_good_key(tmp_path: Path) -> None:
    """A rotation that writes garbage raised UnicodeDecodeError on every call (INTERNAL)."""
    from gateway.config import UpstreamSettings
    from gateway.upstream.client import KeySource

    key_file = tmp_path / "api-key"
    key_file.write_text("sk-good\n")
    keys = KeySource(UpstreamSettings(api_key_file=str(key_file)))
    assert keys.current() == "sk-good"
    key_file.write_bytes(b"\xff\xfe")
    assert keys.refresh() == "sk-good"
