"""The server's infrastructure: health, reflection, draining."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2_grpc as pb_grpc
from gateway.app import start_gateway
from gateway.config import ServerSettings
from gateway.rpc.server import SERVICE_NAME, connection_age_options
from tests.cache.proxy import TcpProxy
from tests.conftest import gateway_settings


async def test_reflection_lists_the_messages_service(channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)

    async def requests():  # type: ignore[no-untyped-def]
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    async for response in stub.ServerReflectionInfo(requests()):
        names = {s.name for s in response.list_services_response.service}
        break
    assert {SERVICE_NAME, "grpc.health.v1.Health"} <= names
    assert SERVICE_NAME == "messages_gateway.v1.MessagesService"


async def test_health_is_serving_then_not_serving_while_draining(gateway, emulator) -> None:
    target = f"127.0.0.1:{gateway.grpc_port}"
    thread_id = emulator.store.create_thread()["id"]
    message = emulator.store.create_message(thread_id, role="user", content="x")
    emulator.faults.add("getMessage", "latency", seconds=1.0, times=1)
    async with grpc.aio.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest(service=SERVICE_NAME)
        assert (await health.Check(request)).status == health_pb2.HealthCheckResponse.SERVING
        watch = health.Watch(request)
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
        from messages_gateway_client.generated.messages_gateway.v1 import (
            messages_pb2_grpc as pb_grpc)

        slow = asyncio.ensure_future(pb_grpc.MessagesServiceStub(channel).GetMessage(
            pb.GetMessageRequest(thread_id=thread_id, message_id=message["id"]), timeout=10))
        await asyncio.sleep(0.2)  # the call is in flight upstream
        drain = asyncio.ensure_future(gateway.grpc.drain(grace=5.0))
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING
        answered = await slow  # the in-flight unary call finishes inside the grace period
        assert answered.id == message["id"]
        watch.cancel()  # an open Watch stream would hold the server for the whole grace
        await drain


def test_generated_code_imports_without_the_server() -> None:
    code = ("import sys; from messages_gateway_client.generated.messages_gateway.v1 import "
            "messages_pb2, messages_pb2_grpc; "
            "assert not [m for m in sys.modules if m.startswith('gateway')], 'server imported'; "
            "print(messages_pb2.Message.DESCRIPTOR.full_name)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "messages_gateway.v1.Message"


async def test_stream_opened_while_draining_ends_unavailable_without_an_upstream_request(
        gateway, emulator) -> None:
    thread_id = emulator.store.create_thread()["id"]
    emulator.store.create_message(thread_id, role="user", content="x")
    gateway.pipeline.draining.set()  # what drain() does once its delay has passed
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.grpc_port}") as channel:
        from messages_gateway_client.generated.messages_gateway.v1 import (
            messages_pb2_grpc as pb_grpc)

        stream = pb_grpc.MessagesServiceStub(channel).StreamMessages(
            pb.StreamMessagesRequest(thread_id=thread_id), timeout=5)
        try:
            async for _ in stream:
                raise AssertionError("a page was sent by a draining server")
            raise AssertionError("the stream ended without a status")
        except grpc.aio.AioRpcError as err:
            assert err.code() == grpc.StatusCode.UNAVAILABLE
            assert "shutting down" in (err.details() or "")
    assert emulator.log.count("listMessages") == 0


class CountingProxy(TcpProxy):
    """The TCP proxy in front of the gateway, counting the client connections it accepted."""

    def __init__(self, port: int) -> None:
        super().__init__("127.0.0.1", port)
        self.accepted = 0

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        await super()._accept(reader, writer)


def test_connection_age_options_follow_the_settings() -> None:
    assert connection_age_options(ServerSettings(max_connection_age_seconds=0)) == []
    assert dict(connection_age_options(ServerSettings())) == {
        "grpc.max_connection_age_ms": 300_000, "grpc.max_connection_age_grace_ms": 30_000}


async def test_an_aged_connection_is_replaced_without_a_failed_call(emulator) -> None:
    """GOAWAY after max_connection_age: the channel reconnects, and no unary call fails, not
    even one in flight when the GOAWAY came (it finishes within the grace)."""
    settings = gateway_settings(emulator)
    settings = settings.replace("server", max_connection_age_seconds=0.5,
                                max_connection_age_grace_seconds=5.0)
    thread_id = emulator.store.create_thread()["id"]
    message = emulator.store.create_message(thread_id, role="user", content="x")
    request = pb.GetMessageRequest(thread_id=thread_id, message_id=message["id"])
    gw = await start_gateway(settings)
    proxy = CountingProxy(gw.grpc_port)
    await proxy.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{proxy.port}") as channel:
            stub = pb_grpc.MessagesServiceStub(channel)
            # Every call is a miss with upstream latency, so calls are in flight at each GOAWAY.
            emulator.faults.add("getMessage", "latency", seconds=0.05, times=1000)
            metadata = (("cache-control", "no-cache"),)
            answered, end = 0, asyncio.get_running_loop().time() + 2.5
            while asyncio.get_running_loop().time() < end and answered < 400:
                replies = await asyncio.gather(*(stub.GetMessage(request, metadata=metadata,
                                                                 timeout=10) for _ in range(4)))
                assert {r.id for r in replies} == {message["id"]}
                answered += len(replies)
            assert answered >= 40
            assert proxy.accepted >= 3  # 2.5 s of calls over connections living ~0.5 s
    finally:
        await proxy.close()
        await gw.stop(grace=0.5)
