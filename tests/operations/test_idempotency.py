"""The idempotency window, and keyed creates through a real gateway and emulator."""

from __future__ import annotations

import asyncio
from unittest.mock import Mock

import grpc
import pytest

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2_grpc as pb_grpc
from gateway.app import start_gateway
from gateway.cache import ResponseCache
from gateway.cache.policy import CachePolicy
from gateway.config import CacheSettings, UpstreamSettings
from gateway.errors import InvalidArgument, NotFound, Unavailable, UpstreamErrorInfo
from gateway.operations.idempotency import IdempotencyStore, fingerprint, may_have_happened
from gateway.operations.messages import MessageOperations
from tests.conftest import gateway_settings


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def unbounded() -> None:  # no deadline
    return None


def req(content: str = "hi", key: str = "k") -> pb.CreateMessageRequest:
    return pb.CreateMessageRequest(thread_id="thread_1", role=pb.ROLE_USER, content=content,
                                   request_id=key)


async def test_store_same_key_returns_the_first_result_within_the_window() -> None:
    clock = Clock()
    store = IdempotencyStore(window=10, clock=clock)
    made: list[bool] = []

    async def create(recover: bool) -> pb.Message:
        made.append(recover)
        return pb.Message(id=f"msg_{len(made)}")

    first = await store.run("c", "k", fingerprint(req()), create, remaining=unbounded)
    again = await store.run("c", "k", fingerprint(req()), create, remaining=unbounded)
    other_consumer = await store.run("c2", "k", fingerprint(req()), create, remaining=unbounded)
    assert first.id == again.id == "msg_1" and other_consumer.id == "msg_2"
    clock.now = 11
    third = await store.run("c", "k", fingerprint(req()), create, remaining=unbounded)
    assert third.id == "msg_3"


async def test_store_key_reused_with_another_request_invalid_argument() -> None:
    store = IdempotencyStore()

    async def create(recover: bool) -> pb.Message:
        return pb.Message(id="msg_1")

    await store.run("c", "k", fingerprint(req("a")), create, remaining=unbounded)
    with pytest.raises(InvalidArgument) as info:
        await store.run("c", "k", fingerprint(req("b")), create, remaining=unbounded)
    assert info.value.details.field_violations[0].field == "request_id"


async def test_store_concurrent_duplicates_wait_for_the_first() -> None:
    store = IdempotencyStore()
    calls = 0

    async def create(recover: bool) -> pb.Message:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return pb.Message(id="msg_1")

    results = await asyncio.gather(
        *(store.run("c", "k", "f", create, remaining=unbounded) for _ in range(10)))
    assert calls == 1 and {m.id for m in results} == {"msg_1"}


async def test_store_ambiguous_failure_next_call_recovers_first() -> None:
    store = IdempotencyStore()
    seen: list[bool] = []

    async def failing(recover: bool) -> pb.Message:
        seen.append(recover)
        raise Unavailable("lost")

    with pytest.raises(Unavailable) as info:
        await store.run("c", "k", "f", failing, remaining=unbounded)
    assert info.value.details.metadata["request_id"] == "k"

    async def create(recover: bool) -> pb.Message:
        seen.append(recover)
        return pb.Message(id="msg_1")

    await store.run("c", "k", "f", create, remaining=unbounded)
    assert seen == [False, True]


async def test_store_definite_failure_forgets_the_key() -> None:
    store = IdempotencyStore()

    async def failing(recover: bool) -> pb.Message:
        raise NotFound("no thread", upstream=UpstreamErrorInfo(status=404))

    with pytest.raises(NotFound):
        await store.run("c", "k", "f", failing, remaining=unbounded)
    assert len(store) == 0


async def test_store_bounded_in_count() -> None:
    store = IdempotencyStore(max_entries=3)

    async def create(recover: bool) -> pb.Message:
        return pb.Message(id="m")

    for i in range(10):
        await store.run("c", f"k{i}", "f", create, remaining=unbounded)
    assert len(store) <= 4


async def test_configured_window_bound_is_the_one_used(emulator) -> None:  # type: ignore[no-untyped-def]
    # An empty store has len() 0, so it is falsy: the operations once replaced it with a default
    # (100,000 entries, one hour), and the configured bound never applied (the soak's growth).
    settings = gateway_settings(emulator)
    settings = settings.replace("reliability", idempotency_max_entries=3,
                                idempotency_window_seconds=60.0)
    gw = await start_gateway(settings)
    try:
        store = gw.operations._idempotency
        assert (store.max_entries, store.window) == (3, 60.0)
        thread_id = emulator.store.create_thread()["id"]
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.grpc_port}") as channel:
            stub = pb_grpc.MessagesServiceStub(channel)
            for i in range(10):
                await stub.CreateMessage(pb.CreateMessageRequest(
                    thread_id=thread_id, role=pb.ROLE_USER, content="x", request_id=f"k{i}"),
                    timeout=5)
        assert len(store) <= 4
    finally:
        await gw.stop(grace=0.1)


def test_operations_keep_an_empty_store_they_are_given() -> None:
    store = IdempotencyStore(max_entries=3)
    assert len(store) == 0
    operations = MessageOperations(Mock(settings=UpstreamSettings()), store,
                                   ResponseCache(None, CachePolicy(CacheSettings())))
    assert operations._idempotency is store


def test_may_have_happened_classification() -> None:
    assert may_have_happened(Unavailable("x", upstream=UpstreamErrorInfo(status=500)))
    assert may_have_happened(asyncio.CancelledError())
    assert not may_have_happened(Unavailable("x", reason="UPSTREAM_CIRCUIT_OPEN"))
    assert not may_have_happened(InvalidArgument("x", upstream=UpstreamErrorInfo(status=400)))


# -- through the gateway ---------------------------------------------------------------------------


async def test_create_concurrent_duplicates_one_upstream_create(stub, emulator) -> None:  # type: ignore[no-untyped-def]
    thread_id = emulator.store.create_thread()["id"]
    emulator.faults.set_latency("createMessage", 0.2)
    request = pb.CreateMessageRequest(thread_id=thread_id, role=pb.ROLE_USER, content="x",
                                      request_id="dup")
    results = await asyncio.gather(*(stub.CreateMessage(request, timeout=5) for _ in range(8)))
    assert len({m.id for m in results}) == 1
    assert emulator.log.count("createMessage") == 1
    assert len(emulator.store.message_ids(thread_id)) == 1


async def test_create_key_header_and_field_disagree_invalid_argument(stub, emulator) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.CreateMessage(pb.CreateMessageRequest(
            thread_id="thread_1", role=pb.ROLE_USER, content="x", request_id="a"),
            metadata=(("idempotency-key", "b"),), timeout=5)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "request_id" in info.value.details()
    assert emulator.log.count() == 0


async def test_create_reserved_marker_key_invalid_argument(stub, emulator) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.CreateMessage(pb.CreateMessageRequest(
            thread_id="thread_1", role=pb.ROLE_USER, content="x",
            metadata=pb.Metadata(entries={"gateway_idempotency_key": "spoof"})), timeout=5)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert emulator.log.count() == 0
