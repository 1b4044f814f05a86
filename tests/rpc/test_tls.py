"""TLS and mutual TLS on the gRPC port, with certificates made here by the openssl CLI
(the ``cryptography`` package is not a dependency; openssl is on every build image)."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2_grpc as pb_grpc
from gateway.app import Gateway, start_gateway
from tests.conftest import gateway_settings
from tests.rpc.test_messages_service import new_thread

if shutil.which("openssl") is None:  # pragma: no cover - a real external condition
    pytest.skip("the openssl CLI is needed to make test certificates", allow_module_level=True)


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def _ca(directory: Path, name: str) -> None:
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
             "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN={name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory)


def _leaf(directory: Path, name: str, ca: str, extension: str) -> None:
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
             f"{name}.csr", "-subj", f"/CN={name}", cwd=directory)
    (directory / f"{name}.ext").write_text(extension)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
             "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext",
             cwd=directory)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("certs")
    _ca(d, "ca")
    _ca(d, "rogue-ca")
    _leaf(d, "server", "ca", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    _leaf(d, "client", "ca", "extendedKeyUsage=clientAuth\n")
    _leaf(d, "rogue", "rogue-ca", "extendedKeyUsage=clientAuth\n")
    return d


async def _start(emulator, certs: Path, *, mutual: bool) -> Gateway:  # type: ignore[no-untyped-def]
    base = gateway_settings(emulator)
    server = dataclasses.replace(
        base.server, tls_cert=str(certs / "server.pem"), tls_key=str(certs / "server.key"),
        tls_client_ca=str(certs / "ca.pem") if mutual else "")
    return await start_gateway(dataclasses.replace(base, server=server))


@pytest.fixture
async def tls_gateway(emulator, certs: Path) -> AsyncIterator[Gateway]:
    gw = await _start(emulator, certs, mutual=False)
    yield gw
    await gw.stop(grace=0.5)


@pytest.fixture
async def mtls_gateway(emulator, certs: Path) -> AsyncIterator[Gateway]:
    gw = await _start(emulator, certs, mutual=True)
    yield gw
    await gw.stop(grace=0.5)


def _creds(certs: Path, client: str | None = None) -> grpc.ChannelCredentials:
    chain = key = None
    if client is not None:
        chain, key = (certs / f"{client}.pem").read_bytes(), (certs / f"{client}.key").read_bytes()
    return grpc.ssl_channel_credentials((certs / "ca.pem").read_bytes(), key, chain)


async def _check(port: int, creds: grpc.ChannelCredentials | None) -> health_pb2.HealthCheckResponse:
    target = f"127.0.0.1:{port}"
    channel = (grpc.aio.secure_channel(target, creds) if creds is not None
               else grpc.aio.insecure_channel(target))
    async with channel:
        return await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=3)


async def test_tls_server_serves_rpcs_over_tls(tls_gateway: Gateway, emulator, certs) -> None:
    thread_id = await new_thread(emulator)
    async with grpc.aio.secure_channel(f"127.0.0.1:{tls_gateway.grpc_port}",
                                       _creds(certs)) as channel:
        reply = await pb_grpc.MessagesServiceStub(channel).ListMessages(
            pb.ListMessagesRequest(thread_id=thread_id), timeout=5)
    assert list(reply.data) == []


async def test_tls_server_refuses_plaintext_client(tls_gateway: Gateway) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _check(tls_gateway.grpc_port, None)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_mtls_client_with_ca_signed_certificate_accepted(mtls_gateway: Gateway,
                                                               certs) -> None:
    reply = await _check(mtls_gateway.grpc_port, _creds(certs, "client"))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("client", [None, "rogue"], ids=["no-client-cert", "wrong-ca-cert"])
async def test_mtls_client_without_trusted_certificate_rejected(
    mtls_gateway: Gateway, certs, client: str | None
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _check(mtls_gateway.grpc_port, _creds(certs, client))
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
