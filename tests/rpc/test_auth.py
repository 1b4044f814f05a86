"""The gRPC auth interceptor through a real gateway and a real emulator, both on loopback."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2_grpc as pb_grpc
from gateway.app import start_gateway
from gateway.credentials import store
from gateway.credentials.keys import generate_key
from tests.credentials.helpers import AuthEnv, add_consumer, auth_env, auth_settings, bearer

__all__ = ["auth_env"]  # the fixture, imported so pytest finds it here
from tests.rpc.test_messages_service import details, new_thread


async def assert_status(call, code: grpc.StatusCode) -> grpc.aio.AioRpcError:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == code, caught.value.details()
    return caught.value


async def test_auth_valid_key_serves_every_scope(auth_env: AuthEnv, emulator) -> None:
    thread_id = await new_thread(emulator)
    created = await auth_env.stub.CreateMessage(pb.CreateMessageRequest(
        thread_id=thread_id, role=pb.ROLE_USER, content="hi"), metadata=bearer(auth_env.writer_key))
    got = await auth_env.stub.GetMessage(pb.GetMessageRequest(
        thread_id=thread_id, message_id=created.id), metadata=bearer(auth_env.reader_key))
    assert got.id == created.id
    pages = [p async for p in auth_env.stub.StreamMessages(
        pb.StreamMessagesRequest(thread_id=thread_id), metadata=bearer(auth_env.reader_key))]
    assert [m.id for p in pages for m in p.data] == [created.id]


@pytest.mark.parametrize("metadata", [
    (),
    (("authorization", ""),),
    (("authorization", "   "),),
    (("authorization", "Bearer"),),
    (("authorization", "Bearer "),),
    (("authorization", "Basic dXNlcjpwYXNz"),),
    (("authorization", "Bearer sk-not-a-gateway-key"),),
    (("authorization", "Bearer " + "A" * (7 * 1024)),),
    (("authorization", "Bearer mgw_' OR '1'='1' --"),),
    (("authorization", "Bearer mgw_.*"),),
    (("authorization", "Bearer mgw_0123456789abcdef_" + "%00" * 14 + "a"),),
], ids=["missing", "empty", "whitespace", "scheme-only", "scheme-space", "basic", "wrong-prefix",
        "7KiB", "sql", "regex", "nul-escapes"])
async def test_auth_missing_or_malformed_key_unauthenticated_without_upstream_request(
    auth_env: AuthEnv, emulator, metadata
) -> None:
    before = emulator.log.count()
    err = await assert_status(auth_env.stub.GetMessage(
        pb.GetMessageRequest(thread_id="thread_x", message_id="msg_x"), metadata=metadata),
        grpc.StatusCode.UNAUTHENTICATED)
    assert details(err)["ErrorInfo"].reason == "INVALID_GATEWAY_KEY"
    assert "AAAA" not in err.details() and "OR" not in err.details()
    assert emulator.log.count() == before


async def test_auth_1mb_key_refused_by_grpc_metadata_limit_and_server_stays_healthy(
    auth_env: AuthEnv, emulator
) -> None:
    """S10/S11 on the gRPC face: grpc core refuses metadata over 16 KiB before our code runs;
    the authenticator's own 1 MB handling is tested face-neutrally in tests/credentials."""
    before = emulator.log.count()
    await assert_status(auth_env.stub.GetMessage(
        pb.GetMessageRequest(thread_id="thread_x", message_id="msg_x"),
        metadata=bearer("A" * 1024 * 1024)), grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert emulator.log.count() == before
    thread_id = await new_thread(emulator)
    reply = await auth_env.stub.ListMessages(pb.ListMessagesRequest(thread_id=thread_id),
                                             metadata=bearer(auth_env.reader_key))
    assert list(reply.data) == []


async def test_auth_unknown_well_formed_key_unauthenticated(auth_env: AuthEnv, emulator) -> None:
    before = emulator.log.count()
    await assert_status(auth_env.stub.CreateMessage(
        pb.CreateMessageRequest(thread_id="thread_x", role=pb.ROLE_USER, content="x"),
        metadata=bearer(generate_key().secret)), grpc.StatusCode.UNAUTHENTICATED)
    # A known key id with the wrong secret is just as unknown.
    forged = auth_env.writer_key[:-4] + ("AAAA" if not auth_env.writer_key.endswith("AAAA")
                                         else "BBBB")
    await assert_status(auth_env.stub.CreateMessage(
        pb.CreateMessageRequest(thread_id="thread_x", role=pb.ROLE_USER, content="x"),
        metadata=bearer(forged)), grpc.StatusCode.UNAUTHENTICATED)
    assert emulator.log.count() == before


async def test_auth_two_authorization_entries_unauthenticated(auth_env: AuthEnv) -> None:
    metadata = bearer(auth_env.writer_key) + bearer(auth_env.reader_key)
    await assert_status(auth_env.stub.GetMessage(
        pb.GetMessageRequest(thread_id="thread_x", message_id="msg_x"), metadata=metadata),
        grpc.StatusCode.UNAUTHENTICATED)


async def test_auth_read_only_key_write_permission_denied(auth_env: AuthEnv, emulator) -> None:
    before = emulator.log.count()
    err = await assert_status(auth_env.stub.CreateMessage(
        pb.CreateMessageRequest(thread_id="thread_x", role=pb.ROLE_USER, content="x"),
        metadata=bearer(auth_env.reader_key)), grpc.StatusCode.PERMISSION_DENIED)
    assert details(err)["ErrorInfo"].reason == "SCOPE_MISSING"
    await assert_status(auth_env.stub.UpdateMessage(
        pb.UpdateMessageRequest(thread_id="thread_x", message_id="msg_x"),
        metadata=bearer(auth_env.reader_key)), grpc.StatusCode.PERMISSION_DENIED)
    assert emulator.log.count() == before


async def test_auth_health_and_reflection_open_without_key(auth_env: AuthEnv) -> None:
    health = health_pb2_grpc.HealthStub(auth_env.channel)
    reply = await health.Check(health_pb2.HealthCheckRequest(service=""))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    reflect = reflection_pb2_grpc.ServerReflectionStub(auth_env.channel)
    responses = [r async for r in reflect.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]))]
    names = {s.name for s in responses[0].list_services_response.service}
    assert "messages_gateway.v1.MessagesService" in names


async def test_auth_revoked_key_unauthenticated_after_reload(auth_env: AuthEnv, emulator) -> None:
    thread_id = await new_thread(emulator)
    await auth_env.stub.ListMessages(pb.ListMessagesRequest(thread_id=thread_id),
                                     metadata=bearer(auth_env.reader_key))
    data = store.read(auth_env.store_path)
    key_id = next(r.key_id for r in data.consumers["reader"].keys)
    store.write(auth_env.store_path, store.revoke_key(data, key_id, time.time()))
    assert auth_env.gateway.reloader is not None and auth_env.gateway.reloader.load()
    before = emulator.log.count()
    await assert_status(auth_env.stub.ListMessages(pb.ListMessagesRequest(thread_id=thread_id),
                                                   metadata=bearer(auth_env.reader_key)),
                        grpc.StatusCode.UNAUTHENTICATED)
    assert emulator.log.count() == before


async def test_auth_revocation_ends_an_open_stream_at_a_page_boundary_with_resume_point(
    auth_env: AuthEnv, emulator
) -> None:
    thread_id = await new_thread(emulator)
    emulator.store.seed_messages(thread_id, 200)
    call = auth_env.stub.StreamMessages(pb.StreamMessagesRequest(
        thread_id=thread_id, limit=5, order=pb.ORDER_ASC), metadata=bearer(auth_env.reader_key))
    received = [m.id for m in (await call.read()).data]
    data = store.read(auth_env.store_path)
    key_id = next(r.key_id for r in data.consumers["reader"].keys)
    store.write(auth_env.store_path, store.revoke_key(data, key_id, time.time()))
    assert auth_env.gateway.reloader is not None and auth_env.gateway.reloader.load()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        while (page := await call.read()) is not grpc.aio.EOF:
            received.extend(m.id for m in page.data)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # Pages already in flow-control buffers still arrive; the walk stops well short of the end.
    assert len(received) < 200
    assert received == emulator.store.message_ids(thread_id)[: len(received)]
    assert dict(caught.value.trailing_metadata())["resume-after"] == received[-1]


async def test_auth_audit_line_names_consumer_key_method_ids_outcome(
    auth_env: AuthEnv, emulator
) -> None:
    thread_id = await new_thread(emulator)
    key_id = store.read(auth_env.store_path).consumers["writer"].keys[0].key_id
    with structlog.testing.capture_logs() as logs:
        created = await auth_env.stub.CreateMessage(pb.CreateMessageRequest(
            thread_id=thread_id, role=pb.ROLE_USER, content="x"),
            metadata=bearer(auth_env.writer_key))
        await assert_status(auth_env.stub.GetMessage(
            pb.GetMessageRequest(thread_id=thread_id, message_id="msg_x"), metadata=()),
            grpc.StatusCode.UNAUTHENTICATED)
    audits = [e for e in logs if e["event"] == "audit"]
    assert audits[0] | {"duration_ms": 0, "request_id": "r"} == {
        "event": "audit", "log_level": "info", "consumer": "writer", "key_id": key_id,
        "profile": "default", "method": "CreateMessage", "face": "grpc", "thread_id": thread_id,
        "message_id": created.id, "outcome": "OK", "duration_ms": 0, "request_id": "r"}
    assert audits[1]["consumer"] is None and audits[1]["outcome"] == "UNAUTHENTICATED"
    assert audits[1]["message_id"] == "msg_x"
    rpc_line = next(e for e in logs if e["event"] == "call")
    assert rpc_line["consumer"] == "writer"


async def test_auth_rate_limit_resource_exhausted_with_retry_info(emulator, tmp_path) -> None:
    path = tmp_path / "s.json"
    key = add_consumer(path, "bursty", {"read"}, rate_per_second=0.5, burst=3)
    gw = await start_gateway(auth_settings(emulator, path))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.grpc_port}") as channel:
            stub = pb_grpc.MessagesServiceStub(channel)
            thread_id = await new_thread(emulator)
            for _ in range(3):
                await stub.ListMessages(pb.ListMessagesRequest(thread_id=thread_id),
                                        metadata=bearer(key), timeout=5)
            before = emulator.log.count()
            started = time.monotonic()
            err = await assert_status(stub.ListMessages(
                pb.ListMessagesRequest(thread_id=thread_id), metadata=bearer(key), timeout=5),
                grpc.StatusCode.RESOURCE_EXHAUSTED)
            assert time.monotonic() - started < 1.0  # refused at once, never queued
            retry = details(err)["RetryInfo"].retry_delay
            assert 0 < retry.seconds + retry.nanos / 1e9 <= 2.0
            assert details(err)["ErrorInfo"].reason == "CONSUMER_RATE_LIMITED"
            assert emulator.log.count() == before
    finally:
        await gw.stop(grace=0.5)


async def test_auth_stream_limit_refuses_second_stream_then_frees_slot(emulator, tmp_path) -> None:
    path = tmp_path / "s.json"
    key = add_consumer(path, "streamer", {"read"}, max_streams=1)
    gw = await start_gateway(auth_settings(emulator, path))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.grpc_port}") as channel:
            stub = pb_grpc.MessagesServiceStub(channel)
            thread_id = await new_thread(emulator)
            emulator.faults.add("listMessages", "latency", times=1, seconds=1.0)
            first = stub.StreamMessages(pb.StreamMessagesRequest(thread_id=thread_id),
                                        metadata=bearer(key), timeout=5)
            await asyncio.sleep(0.2)  # the first stream holds its slot, waiting on upstream
            second = stub.StreamMessages(pb.StreamMessagesRequest(thread_id=thread_id),
                                         metadata=bearer(key), timeout=5)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                [p async for p in second]
            assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert details(caught.value)["ErrorInfo"].reason == "CONSUMER_STREAM_LIMIT"
            assert [p async for p in first] == []  # empty thread: the stream ends OK
            third = [p async for p in stub.StreamMessages(
                pb.StreamMessagesRequest(thread_id=thread_id), metadata=bearer(key), timeout=5)]
            assert third == []
    finally:
        await gw.stop(grace=0.5)


async def test_auth_failed_attempts_per_peer_refused_but_a_valid_key_admitted(
    emulator, tmp_path
) -> None:
    path = tmp_path / "s.json"
    key = add_consumer(path, "ok", {"read"})
    gw = await start_gateway(auth_settings(emulator, path, failed_auth_limit=5,
                                           failed_auth_window_seconds=30.0))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.grpc_port}") as channel:
            stub = pb_grpc.MessagesServiceStub(channel)
            request = pb.GetMessageRequest(thread_id="thread_x", message_id="msg_x")
            for _ in range(5):
                await assert_status(stub.GetMessage(request, metadata=bearer("nope")),
                                    grpc.StatusCode.UNAUTHENTICATED)
            started = time.monotonic()
            err = await assert_status(stub.GetMessage(request, metadata=bearer("nope")),
                                      grpc.StatusCode.RESOURCE_EXHAUSTED)
            assert details(err)["ErrorInfo"].reason == "AUTH_FAILURES_EXCEEDED"
            retry = details(err)["RetryInfo"].retry_delay
            assert 25 <= retry.seconds <= 30
            assert time.monotonic() - started < 1.0
            # A valid key from the blocked address is still checked, and admitted (the message
            # does not exist: NOT_FOUND, not RESOURCE_EXHAUSTED). Issue 19, case 5.
            await assert_status(stub.GetMessage(request, metadata=bearer(key)),
                                grpc.StatusCode.NOT_FOUND)
        # Health stays open for the blocked peer.
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.grpc_port}") as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await gw.stop(grace=0.5)


async def test_auth_many_invalid_keys_rejected_fast(auth_env: AuthEnv) -> None:
    """S11: bad keys, some 4 KiB, each answered UNAUTHENTICATED within a bound."""
    durations = []
    request = pb.GetMessageRequest(thread_id="thread_x", message_id="msg_x")
    for i in range(19):  # stays under the default per-peer limit of 20
        started = time.monotonic()
        await assert_status(auth_env.stub.GetMessage(
            request, metadata=bearer(generate_key().secret if i % 2 else "x" * 4096)),
            grpc.StatusCode.UNAUTHENTICATED)
        durations.append(time.monotonic() - started)
    assert max(durations) < 0.5
