"""The response cache end to end: a real gRPC gateway, a real emulator, upstream calls counted
from the emulator's request log (and real Redis for the shared backend)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import grpc
import pytest
import redis

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2_grpc as pb_grpc
from gateway.app import Gateway, start_gateway
from gateway.config import CacheSettings, Settings
from gateway.emulator.server import EmulatorServer
from tests.cache.proxy import TcpProxy
from tests.conftest import gateway_settings
from tests.rpc.test_messages_service import new_thread


async def get_with_metadata(
    stub: pb_grpc.MessagesServiceStub, req: pb.GetMessageRequest, **kwargs: object
) -> tuple[pb.Message, dict[str, str]]:
    call = stub.GetMessage(req, **kwargs)
    message = await call
    return message, dict(await call.trailing_metadata())


async def seeded(emulator: EmulatorServer, stub: pb_grpc.MessagesServiceStub) -> pb.Message:
    thread_id = await new_thread(emulator)
    return await stub.CreateMessage(pb.CreateMessageRequest(
        thread_id=thread_id, role=pb.ROLE_USER, content="hello", file_ids=["file-a", "file-b"]))


def get_req(message: pb.Message, **kwargs: object) -> pb.GetMessageRequest:
    return pb.GetMessageRequest(thread_id=message.thread_id, message_id=message.id, **kwargs)


# -- the in-process default -------------------------------------------------------------------


async def test_get_message_twice_makes_one_upstream_call(stub, emulator) -> None:
    message = await seeded(emulator, stub)
    first, md1 = await get_with_metadata(stub, get_req(message))
    second, md2 = await get_with_metadata(stub, get_req(message))
    assert first == second == message
    assert emulator.log.count("getMessage") == 1
    assert (md1["x-cache"], md2["x-cache"]) == ("miss", "hit")
    assert md2["age"].isdigit() and int(md2["age"]) <= 1
    assert "x-request-id" not in md2  # no upstream exchange to report on a hit


async def test_get_message_hit_reports_entry_age(stub, emulator) -> None:
    message = await seeded(emulator, stub)
    await stub.GetMessage(get_req(message))
    await asyncio.sleep(1.05)
    _, md = await get_with_metadata(stub, get_req(message))
    assert md["x-cache"] == "hit" and md["age"] == "1"


async def test_get_message_100_concurrent_cold_gets_make_one_upstream_call(stub, emulator) -> None:
    message = await seeded(emulator, stub)
    emulator.faults.set_latency("getMessage", 0.1)  # keep the flight open while all arrive
    results = await asyncio.gather(*(stub.GetMessage(get_req(message)) for _ in range(100)))
    assert all(r == message for r in results)
    assert emulator.log.count("getMessage") == 1


async def test_update_message_then_get_refetches(stub, emulator) -> None:
    message = await seeded(emulator, stub)
    await stub.GetMessage(get_req(message))
    await stub.UpdateMessage(pb.UpdateMessageRequest(
        thread_id=message.thread_id, message_id=message.id,
        metadata=pb.Metadata(entries={"k": "v2"})))
    after, md = await get_with_metadata(stub, get_req(message))
    assert dict(after.metadata.entries) == {"k": "v2"}
    assert md["x-cache"] == "miss"
    assert emulator.log.count("getMessage") == 2


async def test_create_message_invalidates_cached_list_pages(stub, emulator) -> None:
    message = await seeded(emulator, stub)
    req = pb.ListMessagesRequest(thread_id=message.thread_id, order=pb.ORDER_ASC)
    assert len((await stub.ListMessages(req)).data) == 1
    assert len((await stub.ListMessages(req)).data) == 1
    assert emulator.log.count("listMessages") == 1
    await stub.CreateMessage(pb.CreateMessageRequest(
        thread_id=message.thread_id, role=pb.ROLE_USER, content="second"))
    assert len((await stub.ListMessages(req)).data) == 2
    assert emulator.log.count("listMessages") == 2


async def test_update_message_invalidates_list_pages_holding_it(stub, emulator) -> None:
    message = await seeded(emulator, stub)
    req = pb.ListMessagesRequest(thread_id=message.thread_id)
    await stub.ListMessages(req)
    await stub.UpdateMessage(pb.UpdateMessageRequest(
        thread_id=message.thread_id, message_id=message.id,
        metadata=pb.Metadata(entries={"k": "new"})))
    page = await stub.ListMessages(req)
    assert dict(page.data[0].metadata.entries) == {"k": "new"}


async def test_in_progress_message_is_refetched_every_time(stub, emulator) -> None:
    thread_id = await new_thread(emulator)
    running = emulator.store.insert_message(thread_id, {
        "status": "in_progress", "role": "assistant", "content": [],
        "incomplete_details": None, "completed_at": None, "incomplete_at": None,
        "assistant_id": "asst_1", "run_id": "run_1", "file_ids": [], "metadata": {},
    })
    req = pb.GetMessageRequest(thread_id=thread_id, message_id=running["id"])
    for _ in range(3):
        got = await stub.GetMessage(req)
        assert got.status == pb.MESSAGE_STATUS_IN_PROGRESS
    assert emulator.log.count("getMessage") == 3
    page_req = pb.ListMessagesRequest(thread_id=thread_id)
    await stub.ListMessages(page_req)
    await stub.ListMessages(page_req)
    assert emulator.log.count("listMessages") == 2


async def test_errors_are_never_cached(stub, emulator) -> None:
    thread_id = await new_thread(emulator)
    req = pb.GetMessageRequest(thread_id=thread_id, message_id="msg_missing")
    for _ in range(2):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.GetMessage(req)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert emulator.log.count("getMessage") == 2


async def test_cache_control_no_cache_refetches_and_stores(stub, emulator) -> None:
    message = await seeded(emulator, stub)
    await stub.GetMessage(get_req(message))
    _, md = await get_with_metadata(stub, get_req(message),
                                    metadata=(("cache-control", "no-cache"),))
    assert md["x-cache"] == "miss"
    assert emulator.log.count("getMessage") == 2
    _, md = await get_with_metadata(stub, get_req(message))
    assert md["x-cache"] == "hit"
    assert emulator.log.count("getMessage") == 2


async def test_cache_control_no_store_neither_reads_nor_writes(stub, emulator) -> None:
    message = await seeded(emulator, stub)
    for _ in range(2):
        _, md = await get_with_metadata(stub, get_req(message),
                                        metadata=(("cache-control", "no-store"),))
        assert md["x-cache"] == "bypass" and "age" not in md
    assert emulator.log.count("getMessage") == 2
    _, md = await get_with_metadata(stub, get_req(message))
    assert md["x-cache"] == "miss"


async def test_extra_query_is_part_of_the_key(stub, emulator) -> None:
    message = await seeded(emulator, stub)
    plain = get_req(message)
    extra = get_req(message, options=pb.RequestOptions(extra_query={"include": "x"}))
    await stub.GetMessage(plain)
    await stub.GetMessage(extra)
    await stub.GetMessage(extra)
    assert emulator.log.count("getMessage") == 2


async def test_extra_headers_bypass_the_cache(emulator) -> None:
    settings = gateway_settings(emulator, allowed_extra_headers=("x-trace",))
    gw = await start_gateway(settings)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.grpc_port}") as ch:
            stub = pb_grpc.MessagesServiceStub(ch)
            message = await seeded(emulator, stub)
            req = get_req(message, options=pb.RequestOptions(extra_headers={"x-trace": "1"}))
            for _ in range(2):
                _, md = await get_with_metadata(stub, req)
                assert md["x-cache"] == "bypass"
            assert emulator.log.count("getMessage") == 2
    finally:
        await gw.stop(grace=0.5)


async def test_message_files_get_and_list_are_cached(stub, emulator) -> None:
    message = await seeded(emulator, stub)
    file_req = pb.GetMessageFileRequest(thread_id=message.thread_id, message_id=message.id,
                                        file_id="file-a")
    list_req = pb.ListMessageFilesRequest(thread_id=message.thread_id, message_id=message.id)
    for _ in range(3):
        assert (await stub.GetMessageFile(file_req)).id == "file-a"
        assert len((await stub.ListMessageFiles(list_req)).data) == 2
    assert emulator.log.count("getMessageFile") == 1
    assert emulator.log.count("listMessageFiles") == 1


async def test_streams_are_not_cached(stub, emulator) -> None:
    message = await seeded(emulator, stub)
    req = pb.StreamMessagesRequest(thread_id=message.thread_id)
    for _ in range(2):
        pages = [page async for page in stub.StreamMessages(req)]
        assert pages[0].data[0].id == message.id
    assert emulator.log.count("listMessages") == 2


async def test_cache_off_sends_every_call_upstream(emulator) -> None:
    settings = gateway_settings(emulator)
    settings = Settings(server=settings.server, upstream=settings.upstream,
                        cache=CacheSettings(backend="off"))
    gw = await start_gateway(settings)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.grpc_port}") as ch:
            stub = pb_grpc.MessagesServiceStub(ch)
            message = await seeded(emulator, stub)
            for _ in range(2):
                _, md = await get_with_metadata(stub, get_req(message))
                assert md["x-cache"] == "bypass"
            assert emulator.log.count("getMessage") == 2
    finally:
        await gw.stop(grace=0.5)


async def test_tenant_b_never_receives_tenant_a_entry(emulator, tmp_path) -> None:
    """Two consumers bound to two upstream profiles: the cache never crosses them (S3)."""
    import dataclasses

    from gateway.config import ProfileSettings
    from gateway.credentials import store
    from gateway.credentials.store import StoreData
    from tests.conftest import EMULATOR_KEY
    from tests.credentials.helpers import add_consumer, auth_settings, bearer

    path = tmp_path / "credentials.json"
    store.write(path, StoreData())
    key_a = add_consumer(path, "consumer-a", {"read", "write"}, profile="default")
    key_b = add_consumer(path, "consumer-b", {"read"}, profile="tenant-b")
    settings = dataclasses.replace(auth_settings(emulator, path), profiles=(ProfileSettings(
        name="tenant-b", base_url=emulator.base_url, api_key=EMULATOR_KEY),))
    gw = await start_gateway(settings)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.grpc_port}") as channel:
            stub = pb_grpc.MessagesServiceStub(channel)
            thread_id = await new_thread(emulator)
            message = await stub.CreateMessage(pb.CreateMessageRequest(
                thread_id=thread_id, role=pb.ROLE_USER, content="tenant a's"), metadata=bearer(key_a))
            emulator.log.clear()
            outcomes = []
            for key in (key_a, key_a, key_b, key_b):
                call = stub.GetMessage(get_req(message), metadata=bearer(key))
                assert await call == message
                outcomes.append(dict(await call.trailing_metadata())["x-cache"])
    finally:
        await gw.stop(grace=0.5)
    assert outcomes == ["miss", "hit", "miss", "hit"]
    assert emulator.log.count("getMessage") == 2


async def test_leader_cancelled_followers_still_succeed_with_one_upstream_call(
    stub, emulator
) -> None:
    # The fault plan's R3: 500 requests for one cold key, the leader cancelled halfway.
    message = await seeded(emulator, stub)
    # A leader cancelled before any follower joined ends its fetch (no one wants it), so the
    # followers get time to arrive, on a loaded machine too, before the leader goes.
    emulator.faults.set_latency("getMessage", 2.0)
    leader = stub.GetMessage(get_req(message))
    await asyncio.sleep(0.1)  # the leader's fetch is in flight
    followers = [stub.GetMessage(get_req(message)) for _ in range(499)]
    await asyncio.sleep(1.0)
    leader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leader
    assert all(r == message for r in await asyncio.gather(*followers))
    assert emulator.log.count("getMessage") == 1


async def test_leader_deadline_exceeded_follower_takes_over(stub, emulator) -> None:
    message = await seeded(emulator, stub)
    emulator.faults.set_latency("getMessage", 0.4)
    leader = stub.GetMessage(get_req(message), timeout=0.2)
    await asyncio.sleep(0.05)
    follower = stub.GetMessage(get_req(message), timeout=5)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await leader
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert await follower == message
    assert emulator.log.count("getMessage") == 2


# -- Redis, shared by replicas ------------------------------------------------------------------


def redis_settings(emulator: EmulatorServer, url: str, prefix: str, **cache: object) -> Settings:
    base = gateway_settings(emulator)
    return Settings(server=base.server, upstream=base.upstream,
                    cache=CacheSettings(backend="redis", redis_url=url, redis_key_prefix=prefix,
                                        **cache))  # type: ignore[arg-type]


@pytest.fixture
async def replicas(
    emulator: EmulatorServer, redis_url: str, redis_prefix: str
) -> AsyncIterator[list[pb_grpc.MessagesServiceStub]]:
    # A generous Redis op timeout: these tests are about sharing and single-flight, and a loaded
    # machine must not turn a slow Redis reply into the (separately tested) bypass path.
    gateways = [await start_gateway(redis_settings(emulator, redis_url, redis_prefix,
                                                   redis_op_timeout_seconds=1.0))
                for _ in range(2)]
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{gw.grpc_port}") for gw in gateways]
    try:
        yield [pb_grpc.MessagesServiceStub(ch) for ch in channels]
    finally:
        for ch in channels:
            await ch.close()
        for gw in gateways:
            await gw.stop(grace=0.5)


@pytest.mark.redis
async def test_redis_replicas_share_entries_and_invalidation(replicas, emulator) -> None:
    a, b = replicas
    message = await seeded(emulator, a)
    await a.GetMessage(get_req(message))
    _, md = await get_with_metadata(b, get_req(message))
    assert md["x-cache"] == "hit"
    assert emulator.log.count("getMessage") == 1
    await a.UpdateMessage(pb.UpdateMessageRequest(
        thread_id=message.thread_id, message_id=message.id,
        metadata=pb.Metadata(entries={"k": "fresh"})))
    got, md = await get_with_metadata(b, get_req(message))
    assert dict(got.metadata.entries) == {"k": "fresh"} and md["x-cache"] == "miss"
    list_req = pb.ListMessagesRequest(thread_id=message.thread_id)
    await b.ListMessages(list_req)
    await a.CreateMessage(pb.CreateMessageRequest(
        thread_id=message.thread_id, role=pb.ROLE_USER, content="next"))
    assert len((await b.ListMessages(list_req)).data) == 2


@pytest.mark.redis
async def test_redis_100_concurrent_cold_gets_make_one_upstream_call(replicas, emulator) -> None:
    a, _ = replicas
    message = await seeded(emulator, a)
    emulator.faults.set_latency("getMessage", 1.0)  # every call joins, even on a loaded machine
    results = await asyncio.gather(*(a.GetMessage(get_req(message)) for _ in range(100)))
    assert all(r == message for r in results)
    assert emulator.log.count("getMessage") == 1


@pytest.mark.redis
async def test_redis_stopped_mid_test_calls_still_succeed(
    emulator, redis_proxy: TcpProxy, redis_prefix: str
) -> None:
    gw = await start_gateway(redis_settings(emulator, redis_proxy.url, redis_prefix))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.grpc_port}") as ch:
            stub = pb_grpc.MessagesServiceStub(ch)
            message = await seeded(emulator, stub)
            await stub.GetMessage(get_req(message))
            _, md = await get_with_metadata(stub, get_req(message))
            assert md["x-cache"] == "hit"
            await redis_proxy.close()
            started = time.monotonic()
            for _ in range(20):
                got, md = await get_with_metadata(stub, get_req(message), timeout=5)
                assert got == message and md["x-cache"] == "bypass"
            assert time.monotonic() - started < 5
            assert emulator.log.count("getMessage") == 21
    finally:
        await gw.stop(grace=0.5)


@pytest.mark.redis
async def test_redis_corrupted_value_is_a_miss(
    replicas, emulator, redis_sync: redis.Redis, redis_prefix: str
) -> None:
    a, _ = replicas
    message = await seeded(emulator, a)
    await a.GetMessage(get_req(message))
    values = list(redis_sync.scan_iter(match=f"{redis_prefix}v:*"))
    assert len(values) == 1
    redis_sync.set(values[0], b"MGWC\x01not-a-valid-envelope")
    got, md = await get_with_metadata(a, get_req(message))
    assert got == message and md["x-cache"] == "miss"
    assert emulator.log.count("getMessage") == 2
    _, md = await get_with_metadata(a, get_req(message))
    assert md["x-cache"] == "hit"
