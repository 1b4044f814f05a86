"""Overload and shutdown through a real gateway: fast RESOURCE_EXHAUSTED, never a queue."""

from __future__ import annotations

import asyncio
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from clients.generated.messages_gateway.v1 import messages_pb2 as pb
from tests.reliability.conftest import HarnessFactory


async def test_upstream_admission_excess_gets_resource_exhausted_fast(
        make_harness: HarnessFactory) -> None:
    h = await make_harness(max_upstream_concurrency=2, admission_wait_seconds=0.05)
    thread_id = await h.thread(1)
    message_id = h.emulator.store.message_ids(thread_id)[0]
    h.emulator.faults.set_latency("getMessage", 0.5)
    request = pb.GetMessageRequest(thread_id=thread_id, message_id=message_id)
    started = time.monotonic()
    calls = [asyncio.ensure_future(h.stub.GetMessage(request, timeout=5)) for _ in range(6)]
    done = await asyncio.gather(*calls, return_exceptions=True)
    refused = [r for r in done if isinstance(r, grpc.aio.AioRpcError)]
    assert len(refused) == 4 and len(done) - len(refused) == 2
    assert all(r.code() == grpc.StatusCode.RESOURCE_EXHAUSTED for r in refused)
    assert h.emulator.log.count("getMessage") == 2
    assert time.monotonic() - started < 1.0
    await h.assert_clean()


async def test_rpc_limit_excess_gets_resource_exhausted_fast(
        make_harness: HarnessFactory) -> None:
    h = await make_harness(server={"max_concurrent_rpcs": 3})
    thread_id = await h.thread(1)
    message_id = h.emulator.store.message_ids(thread_id)[0]
    h.emulator.faults.set_latency("getMessage", 0.6)
    request = pb.GetMessageRequest(thread_id=thread_id, message_id=message_id)
    held = [asyncio.ensure_future(h.stub.GetMessage(request, timeout=5)) for _ in range(3)]
    await asyncio.sleep(0.15)
    started = time.monotonic()
    try:
        await h.stub.GetMessage(request, timeout=5)
        raise AssertionError("the fourth RPC was admitted")
    except grpc.aio.AioRpcError as err:
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert time.monotonic() - started < 0.1  # refused, not queued
    assert all(m.id == message_id for m in await asyncio.gather(*held))
    assert h.emulator.log.count("getMessage") == 3
    await h.assert_clean()


async def test_stop_streams_end_unavailable_with_resume_after_health_not_serving(
        make_harness: HarnessFactory) -> None:
    h = await make_harness()
    thread_id = await h.thread(40)
    expected = h.emulator.store.message_ids(thread_id)
    h.emulator.faults.set_latency("listMessages", 0.3)
    health = health_pb2_grpc.HealthStub(h.channel)
    stream = h.stub.StreamMessages(pb.StreamMessagesRequest(
        thread_id=thread_id, limit=10, order=pb.ORDER_ASC), timeout=10)
    first = await stream.read()
    stopping = asyncio.ensure_future(h.gateway.grpc.drain(grace=2.0))
    try:
        while (page := await stream.read()) is not grpc.aio.EOF:
            raise AssertionError(f"page after drain began: {page.page_index}")
    except grpc.aio.AioRpcError as err:
        assert err.code() == grpc.StatusCode.UNAVAILABLE
        assert dict(err.trailing_metadata())["resume-after"] == first.resume_after == expected[9]
    try:
        reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=1)
        assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
    except grpc.aio.AioRpcError as err:  # the listener may already be closed: refused
        assert err.code() == grpc.StatusCode.UNAVAILABLE
    await stopping
    assert await h.emulator.log.wait_idle(2.0)
