"""What is set once per client: the retry service config, the gateway key, TLS and mTLS."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import Awaitable, Callable

import grpc
import pytest

from messages_gateway_client import (IDEMPOTENT_METHODS, AsyncMessagesGatewayClient,
                                     UnavailableError)
from messages_gateway_client._channel import RETRY_POLICY, ClientConfig, service_config
from gateway.app import Gateway
from gateway.config import ServerSettings
from gateway.rpc.server import GrpcServer
from tests.clients.conftest import new_thread


def test_service_config_balances_and_leaves_retries_to_the_client() -> None:
    parsed = json.loads(service_config())
    assert parsed == {"loadBalancingConfig": [{"round_robin": {}}],
                      "healthCheckConfig": {"serviceName": "messages_gateway.v1.MessagesService"}}


def test_service_config_with_a_policy_retries_only_idempotent_methods() -> None:
    parsed = json.loads(service_config(RETRY_POLICY))
    (config,) = parsed["methodConfig"]
    methods = {(n["service"], n["method"]) for n in config["name"]}
    assert {m for _, m in methods} == set(IDEMPOTENT_METHODS)
    assert not {"CreateMessage", "UpdateMessage", "CreateThread"} & {m for _, m in methods}
    assert ("messages_gateway.v1.ThreadsService", "GetThread") in methods
    assert ("messages_gateway.v1.MessagesService", "GetMessage") in methods
    assert config["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]


class MetadataRecorder(grpc.aio.ServerInterceptor):
    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        if not details.method.startswith("/grpc.health."):  # the client's own health checks
            self.seen.append({k: v for k, v in details.invocation_metadata or ()
                              if isinstance(v, str)})
        return await continuation(details)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes]:
    """A self-signed certificate for 127.0.0.1 (key, cert), made with the openssl CLI."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    folder = tmp_path_factory.mktemp("tls")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(folder / "key.pem"), "-out", str(folder / "cert.pem")],
        check=True, capture_output=True, timeout=60,
    )
    return (folder / "key.pem").read_bytes(), (folder / "cert.pem").read_bytes()


async def _tls_server(gateway: Gateway, credentials: grpc.ServerCredentials,
                      recorder: MetadataRecorder) -> GrpcServer:
    server = GrpcServer(ServerSettings(grpc_listen="127.0.0.1:0", grace_seconds=0.5),
                        gateway.operations, interceptors=[recorder], credentials=credentials)
    await server.start("127.0.0.1:0")
    return server


@pytest.fixture
def recorder() -> MetadataRecorder:
    return MetadataRecorder()


async def test_tls_client_sends_gateway_key_as_bearer_metadata(
    gateway, emulator, certificate, recorder
) -> None:
    key, cert = certificate
    server = await _tls_server(gateway, grpc.ssl_server_credentials([(key, cert)]), recorder)
    thread_id, (message_id,) = new_thread(emulator, 1)
    try:
        async with AsyncMessagesGatewayClient(f"127.0.0.1:{server.port}", api_key="sk-consumer",
                                              root_certificates=cert, timeout=5) as client:
            got = await client.messages.retrieve(message_id, thread_id=thread_id)
            assert got.id == message_id
            assert [m async for m in client.messages.list(thread_id)][0].id == message_id
        assert [s["authorization"] for s in recorder.seen] == ["Bearer sk-consumer"] * 2
        # A plaintext client cannot talk to the TLS port.
        async with AsyncMessagesGatewayClient(f"127.0.0.1:{server.port}", timeout=2) as plain:
            with pytest.raises(UnavailableError):
                await plain.messages.retrieve(message_id, thread_id=thread_id)
    finally:
        await server.drain(0.1)


async def test_mutual_tls_client_certificate_is_presented(
    gateway, emulator, certificate, recorder
) -> None:
    key, cert = certificate
    credentials = grpc.ssl_server_credentials([(key, cert)], root_certificates=cert,
                                              require_client_auth=True)
    server = await _tls_server(gateway, credentials, recorder)
    thread_id, (message_id,) = new_thread(emulator, 1)
    target = f"127.0.0.1:{server.port}"
    try:
        async with AsyncMessagesGatewayClient(target, root_certificates=cert, private_key=key,
                                              certificate_chain=cert, timeout=5) as client:
            assert (await client.messages.retrieve(message_id, thread_id=thread_id)).id
        async with AsyncMessagesGatewayClient(target, root_certificates=cert,
                                              timeout=2) as no_cert:
            with pytest.raises(UnavailableError):
                await no_cert.messages.retrieve(message_id, thread_id=thread_id)
    finally:
        await server.drain(0.1)


def test_client_config_key_metadata_and_tls_switch() -> None:
    assert ClientConfig(target="x:1").metadata() == ()
    assert ClientConfig(target="x:1", api_key="k").metadata() == (("authorization", "Bearer k"),)
    assert not ClientConfig(target="x:1").secure
    assert ClientConfig(target="x:1", tls=True).secure


async def test_round_robin_spreads_calls_over_every_address_of_the_target(
    gateway, emulator
) -> None:
    """What a headless Service gives the client (one address per pod): calls reach them all."""
    recorders = [MetadataRecorder(), MetadataRecorder()]
    servers = []
    for recorder in recorders:
        server = GrpcServer(ServerSettings(grpc_listen="127.0.0.1:0", grace_seconds=0.5),
                            gateway.operations, interceptors=[recorder])
        await server.start("127.0.0.1:0")
        servers.append(server)
    thread_id, (message_id,) = new_thread(emulator, 1)
    target = "ipv4:" + ",".join(f"127.0.0.1:{s.port}" for s in servers)
    try:
        async with AsyncMessagesGatewayClient(target, timeout=5) as client:
            for _ in range(20):
                assert (await client.messages.retrieve(message_id, thread_id=thread_id)).id
        served = [len(r.seen) for r in recorders]
        assert sum(served) == 20 and min(served) >= 5, served
    finally:
        for server in servers:
            await server.drain(0.1)


async def test_client_health_checking_skips_a_not_serving_gateway(gateway, emulator) -> None:
    """healthCheckConfig: a gateway reporting NOT_SERVING (draining, no upstream key) gets no
    calls from the typed client: with no other address they fail UNAVAILABLE at once."""
    thread_id, (message_id,) = new_thread(emulator, 1)
    async with AsyncMessagesGatewayClient(f"127.0.0.1:{gateway.grpc_port}", timeout=5,
                                          max_retries=0) as client:
        assert (await client.messages.retrieve(message_id, thread_id=thread_id)).id
        await gateway.grpc.set_consumer_ready(False)
        await asyncio.sleep(0.2)  # the health watch delivers NOT_SERVING
        with pytest.raises(UnavailableError):  # the gateway would answer it from its cache
            await client.messages.retrieve(message_id, thread_id=thread_id)
        await gateway.grpc.set_consumer_ready(True)
        await asyncio.sleep(0.2)
        assert (await client.messages.retrieve(message_id, thread_id=thread_id)).id
