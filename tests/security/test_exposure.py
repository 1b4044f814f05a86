"""Issue 19, case 12: exposure by default.

The production example config (deploy/kubernetes/configmap.yaml) turned reflection on for
everyone without a key; the emulator's admin API (read the request log, wipe the store, inject
faults) had no authentication and bound a non-loopback address without a word. Now the example
has reflection off, and the emulator refuses a non-loopback bind unless given an admin token,
which every admin request must then carry.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import grpc
import httpx
import pytest
import yaml
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from gateway.app import start_gateway
from gateway.config import load_settings
from gateway.emulator.server import EmulatorServer
from tests.conftest import EMULATOR_KEY

CONFIGMAP = Path(__file__).parents[2] / "deploy/kubernetes/configmap.yaml"


def _production_settings(tmp_path: Path):  # type: ignore[no-untyped-def]
    doc = yaml.safe_load(CONFIGMAP.read_text())
    path = tmp_path / "gateway.toml"
    path.write_text(doc["data"]["gateway.toml"])
    return load_settings(path, environ={})


async def test_production_example_serves_no_reflection(
        emulator: EmulatorServer, tmp_path: Path) -> None:
    prod = _production_settings(tmp_path)
    assert prod.server.reflection is False
    settings = dataclasses.replace(
        prod, server=dataclasses.replace(prod.server, grpc_listen="127.0.0.1:0", http_listen="",
                                         metrics_listen=""),
        upstream=dataclasses.replace(prod.upstream, base_url=emulator.base_url,
                                     api_key=EMULATOR_KEY, api_key_file=""),
        auth=dataclasses.replace(prod.auth, enabled=False),
        cache=dataclasses.replace(prod.cache, backend="memory"))
    gw = await start_gateway(settings)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.grpc_port}") as ch:
            stub = reflection_pb2_grpc.ServerReflectionStub(ch)
            call = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(
                list_services="")]))
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                async for _ in call:
                    pass
            assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        await gw.stop(grace=0.1)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "10.0.0.1", "192.0.2.7"])
async def test_emulator_refuses_a_non_loopback_bind_without_an_admin_token(host: str) -> None:
    server = EmulatorServer()
    with pytest.raises(ValueError, match="admin"):
        await server.start(host=host, port=0)
    await server.stop()


async def test_emulator_admin_api_needs_the_token_when_one_is_set() -> None:
    async with EmulatorServer(admin_token="t0ken-for-test") as upstream:
        async with httpx.AsyncClient(timeout=5) as http:
            for method, path in (("GET", "/log"), ("DELETE", "/store"), ("POST", "/faults")):
                for headers in ({}, {"authorization": "Bearer wrong"}):
                    reply = await http.request(method, upstream.admin_url + path, headers=headers,
                                               json={"operation": "*", "kind": "reset"})
                    assert reply.status_code == 401, (method, path, reply.text)
                    assert "t0ken" not in reply.text
            assert upstream.faults.rules == []
            ok = await http.get(upstream.admin_url + "/log",
                                headers={"authorization": "Bearer t0ken-for-test"})
            assert ok.status_code == 200


#: S14: the services the gRPC port serves, as docs/security.md lists them (reflection only when
#: `server.reflection` is on).
INVENTORY = {"messages_gateway.v1.MessagesService", "messages_gateway.v1.ThreadsService",
             "grpc.health.v1.Health"}
REFLECTION = "grpc.reflection.v1alpha.ServerReflection"
#: Services other gRPC servers expose for operators; none may answer here.
NOT_SERVED = ("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
              "/grpc.channelz.v1.Channelz/GetTopChannels", "/grpc.channelz.v1.Channelz/GetServers",
              "/envoy.service.status.v3.ClientStatusDiscoveryService/FetchClientStatus",
              "/grpc.testing.TestService/EmptyCall", "/messages_gateway.v1.AdminService/ListKeys",
              "/messages_gateway.v1.KeysService/CreateKey",
              "/messages_gateway.v1.MessagesService/DeleteMessage",
              "/messages_gateway.v1.ThreadsService/ListThreads")


async def _listed(channel: grpc.aio.Channel) -> set[str]:
    call = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    async for response in call:
        return {s.name for s in response.list_services_response.service}
    return set()


async def test_the_grpc_port_serves_exactly_the_documented_inventory(
        emulator: EmulatorServer, tmp_path: Path) -> None:
    prod = _production_settings(tmp_path)
    settings = dataclasses.replace(
        prod, server=dataclasses.replace(prod.server, grpc_listen="127.0.0.1:0", http_listen="",
                                         metrics_listen=""),
        upstream=dataclasses.replace(prod.upstream, base_url=emulator.base_url,
                                     api_key=EMULATOR_KEY, api_key_file=""),
        auth=dataclasses.replace(prod.auth, enabled=False),
        cache=dataclasses.replace(prod.cache, backend="memory"))
    for reflection in (False, True):
        gw = await start_gateway(settings.replace("server", reflection=reflection,
                                                  drain_delay_seconds=0.0))
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.grpc_port}") as ch:
                if reflection:  # the listing is the inventory, no more and no less
                    assert await _listed(ch) == INVENTORY | {REFLECTION}
                refused = {}
                for path in NOT_SERVED + (() if reflection else (
                        f"/{REFLECTION}/ServerReflectionInfo",)):
                    with pytest.raises(grpc.aio.AioRpcError) as caught:
                        await ch.unary_unary(path)(b"", timeout=2)
                    refused[path] = caught.value.code()
                assert set(refused.values()) == {grpc.StatusCode.UNIMPLEMENTED}, refused
                # The documented services answer (an empty GetMessage is refused, not unknown).
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await ch.unary_unary("/messages_gateway.v1.MessagesService/GetMessage")(
                        b"", timeout=2)
                assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        finally:
            await gw.stop(grace=0.1)
