"""AsyncMessagesGatewayClient against a real gateway and emulator: every method, raw
responses, timeouts, typed errors, retries through the service config."""

from __future__ import annotations

import time

import grpc
import pytest

from messages_gateway_client import (
    APITimeoutError,
    AsyncMessagesGatewayClient,
    BadRequestError,
    NotFoundError,
    UnavailableError,
)
from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from tests.clients.conftest import new_thread


async def test_async_create_retrieve_update_round_trip(aclient, emulator) -> None:
    thread_id, _ = new_thread(emulator)
    created = await aclient.messages.create(thread_id, role="assistant", content="hello",
                                            metadata={"k": "v"}, file_ids=["file-a"])
    assert created.id.startswith("msg_") and created.thread_id == thread_id
    assert created.role == pb.ROLE_ASSISTANT and created.content[0].text.value == "hello"
    assert dict(created.metadata.entries) == {"k": "v"} and list(created.file_ids) == ["file-a"]
    assert await aclient.messages.retrieve(created.id, thread_id=thread_id) == created
    updated = await aclient.messages.update(created.id, thread_id=thread_id,
                                            metadata={"k": "w"})
    assert dict(updated.metadata.entries) == {"k": "w"}
    assert emulator.log.count("createMessage") == 1
    assert emulator.log.count("getMessage") == 1
    assert emulator.log.count("modifyMessage") == 1


async def test_async_list_iterates_every_message_over_one_stream(aclient, emulator) -> None:
    thread_id, ids = new_thread(emulator, 23)
    emulator.log.clear()
    got = [m.id async for m in aclient.messages.list(thread_id, limit=5, order="asc")]
    assert got == ids
    assert emulator.log.count("listMessages") == 5


async def test_async_list_pages_gives_upstream_pages_in_order(aclient, emulator) -> None:
    thread_id, ids = new_thread(emulator, 12)
    pages = [p async for p in aclient.messages.list(thread_id, limit=5).pages()]
    assert [len(p.data) for p in pages] == [5, 5, 2]
    assert [p.page_index for p in pages] == [0, 1, 2]
    assert [m.id for p in pages for m in p.data] == ids[::-1]  # the upstream default: desc
    assert [p.resume_after for p in pages] == [p.data[-1].id for p in pages]


async def test_async_list_with_max_items_and_after_cursor(aclient, emulator) -> None:
    thread_id, ids = new_thread(emulator, 10)
    got = [m.id async for m in aclient.messages.list(
        thread_id, order="asc", after=ids[2], limit=3, max_items=4)]
    assert got == ids[3:7]


async def test_async_stream_is_iterated_once(aclient, emulator) -> None:
    thread_id, _ = new_thread(emulator, 1)
    stream = aclient.messages.list(thread_id)
    assert len([m async for m in stream]) == 1
    with pytest.raises(RuntimeError, match="iterated once"):
        stream.pages()


async def test_async_list_page_returns_one_page_with_cursors(aclient, emulator) -> None:
    thread_id, ids = new_thread(emulator, 7)
    first = await aclient.messages.list_page(thread_id, limit=3, order="asc")
    assert [m.id for m in first.data] == ids[:3]
    assert first.has_more and first.last_id == ids[2]
    second = await aclient.messages.list_page(thread_id, limit=3, order="asc",
                                              after=first.last_id)
    assert [m.id for m in second.data] == ids[3:6]


async def test_async_files_list_retrieve_and_list_page(aclient, emulator) -> None:
    thread_id, _ = new_thread(emulator)
    created = await aclient.messages.create(thread_id, role="user", content="files",
                                            file_ids=["file-a", "file-b", "file-c"])
    files = [f async for f in aclient.messages.files.list(created.id, thread_id=thread_id,
                                                          limit=1, order="asc")]
    assert sorted(f.id for f in files) == ["file-a", "file-b", "file-c"]
    assert all(f.message_id == created.id for f in files)
    page = await aclient.messages.files.list_page(created.id, thread_id=thread_id, limit=2)
    assert len(page.data) == 2 and page.has_more
    one = await aclient.messages.files.retrieve("file-b", thread_id=thread_id,
                                                message_id=created.id)
    assert one.id == "file-b" and one.object == "thread.message.file"


async def test_async_with_raw_response_exposes_upstream_and_gateway_headers(
    aclient, emulator
) -> None:
    thread_id, (message_id,) = new_thread(emulator, 1)
    raw = await aclient.messages.with_raw_response.retrieve(message_id, thread_id=thread_id)
    assert raw.parse().id == message_id
    assert raw.request_id and raw.request_id.startswith("req_")
    assert raw.headers["x-request-id"] == raw.request_id
    assert "openai-processing-ms" in raw.headers
    assert any(k.startswith("x-ratelimit-") for k in raw.headers)
    assert raw.gateway_request_id
    created = await aclient.messages.with_raw_response.create(thread_id, role="user",
                                                              content="x")
    assert created.parse().content[0].text.value == "x" and created.request_id
    page = await aclient.messages.with_raw_response.list_page(thread_id)
    assert len(page.parse().data) == 2 and page.headers["x-request-id"]
    files = await aclient.messages.files.with_raw_response.list_page(message_id,
                                                                     thread_id=thread_id)
    assert list(files.parse().data) == [] and files.request_id


async def test_async_per_call_timeout_raises_api_timeout(aclient, emulator) -> None:
    thread_id, (message_id,) = new_thread(emulator, 1)
    emulator.faults.add("getMessage", "latency", seconds=2.0, times=1)
    started = time.monotonic()
    with pytest.raises(APITimeoutError):
        await aclient.messages.retrieve(message_id, thread_id=thread_id, timeout=0.3)
    assert time.monotonic() - started < 1.5


async def test_async_client_default_timeout_applies_to_streams(target, emulator) -> None:
    thread_id, _ = new_thread(emulator, 3)
    emulator.faults.set_latency("listMessages", 2.0)
    async with AsyncMessagesGatewayClient(target, timeout=0.3) as client:
        started = time.monotonic()
        with pytest.raises(APITimeoutError):
            [m async for m in client.messages.list(thread_id)]
    assert time.monotonic() - started < 1.5


async def test_async_errors_are_typed_with_details(aclient, emulator) -> None:
    thread_id, _ = new_thread(emulator)
    with pytest.raises(NotFoundError) as missing:
        await aclient.messages.retrieve("msg_nope", thread_id=thread_id)
    assert missing.value.code == grpc.StatusCode.NOT_FOUND
    assert missing.value.reason == "UPSTREAM_NOT_FOUND"
    assert missing.value.domain == "messages-gateway"
    assert missing.value.request_id  # x-gateway-request-id, to quote in a bug report
    with pytest.raises(BadRequestError) as bad:
        await aclient.messages.retrieve("a/b", thread_id=thread_id)
    assert [v.field for v in bad.value.field_violations] == ["message_id"]
    with pytest.raises(ValueError, match="order"):
        aclient.messages.list(thread_id, order="sideways")  # type: ignore[arg-type]


async def test_async_idempotent_call_is_retried_on_unavailable(aclient, emulator) -> None:
    thread_id, (message_id,) = new_thread(emulator, 1)
    emulator.faults.add("getMessage", "status", status=503, should_retry=False, times=1)
    got = await aclient.messages.retrieve(message_id, thread_id=thread_id)
    assert got.id == message_id
    assert emulator.log.count("getMessage") == 2


async def test_async_create_is_never_retried(aclient, emulator) -> None:
    thread_id, _ = new_thread(emulator)
    emulator.faults.add("createMessage", "status", status=503, should_retry=False, times=1)
    with pytest.raises(UnavailableError):
        await aclient.messages.create(thread_id, role="user", content="once")
    assert emulator.log.count("createMessage") == 1


async def test_async_retries_stop_after_the_policy_attempts(aclient, emulator) -> None:
    thread_id, (message_id,) = new_thread(emulator, 1)
    emulator.faults.add("getMessage", "status", status=503, should_retry=False)
    with pytest.raises(UnavailableError):
        await aclient.messages.retrieve(message_id, thread_id=thread_id)
    assert emulator.log.count("getMessage") == 4  # 1 + max_retries (3)
