"""The official SDK (openai==1.20.0), pointed at the gateway's REST face instead of the upstream:
every method, raw responses, auto-pagination and the SDK's error classes, sync and async."""

from __future__ import annotations

import httpx
import openai
import pytest
from openai.types.beta.threads import Message
from openai.types.beta.threads.messages import MessageFile

from gateway.emulator.server import EmulatorServer
from tests.rest.conftest import GatewayThread, new_thread

# -- sync: the gateway runs on its own loop in another thread ------------------------------------


def test_sdk_sync_every_method_matches_the_upstream(
    threaded: GatewayThread, sync_sdk: openai.OpenAI
) -> None:
    thread_id = threaded.new_thread()
    messages = sync_sdk.beta.threads.messages
    created = messages.create(thread_id, role="user", content="hello", file_ids=["file-a", "file-b"],
                              metadata={"k": "v"})
    assert isinstance(created, Message)
    assert created.id.startswith("msg_") and created.thread_id == thread_id
    assert created.content[0].text.value == "hello" and created.metadata == {"k": "v"}

    assert messages.retrieve(created.id, thread_id=thread_id) == created
    updated = messages.update(created.id, thread_id=thread_id, metadata={"k": "w"})
    assert updated.metadata == {"k": "w"}
    assert messages.update(created.id, thread_id=thread_id).metadata == {"k": "w"}  # body {}

    assert [m.id for m in messages.list(thread_id)] == [created.id]
    files = list(messages.files.list(created.id, thread_id=thread_id))
    assert [f.id for f in files] == ["file-b", "file-a"]
    assert all(isinstance(f, MessageFile) and f.message_id == created.id for f in files)
    file = messages.files.retrieve("file-a", thread_id=thread_id, message_id=created.id)
    assert file.id == "file-a" and file.object == "thread.message.file"

    log = threaded.emulator.log
    assert log.count("createMessage") == 1 and log.count("getMessage") == 1
    assert log.count("modifyMessage") == 2 and log.count("getMessageFile") == 1
    # One page each, then the empty page the SDK's auto-pagination stops on.
    assert log.count("listMessages") == 2 and log.count("listMessageFiles") == 2


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_sdk_sync_auto_pagination_over_five_pages_sees_every_message_once(
    threaded: GatewayThread, sync_sdk: openai.OpenAI, order: str
) -> None:
    thread_id = threaded.new_thread()
    threaded.emulator.store.seed_messages(thread_id, 45, spacing=1)
    seen = [m.id for m in sync_sdk.beta.threads.messages.list(thread_id, limit=10, order=order)]
    assert seen == threaded.emulator.store.message_ids(thread_id, order)
    assert len(set(seen)) == 45
    # 5 pages of data, then the `data: []` page the SDK stops on.
    assert threaded.emulator.log.count("listMessages") == 6


def test_sdk_sync_raw_response_carries_upstream_and_gateway_headers(
    threaded: GatewayThread, sync_sdk: openai.OpenAI
) -> None:
    thread_id = threaded.new_thread()
    raw = sync_sdk.beta.threads.messages.with_raw_response.create(
        thread_id, role="user", content="x", extra_headers={"x-request-id": "consumer-42"})
    assert raw.status_code == 200
    assert raw.headers["x-request-id"].startswith("req_")  # the upstream's id
    assert raw.headers["x-gateway-request-id"] == "consumer-42"
    assert raw.headers["openai-processing-ms"].isdigit()
    assert raw.headers["x-ratelimit-limit-requests"] == "5000"
    assert raw.parse().content[0].text.value == "x"
    listed = sync_sdk.beta.threads.messages.with_raw_response.list(thread_id)
    assert listed.headers["x-request-id"].startswith("req_")
    assert [m.content[0].text.value for m in listed.parse().data] == ["x"]


def test_sdk_sync_error_classes_match_the_failures(
    threaded: GatewayThread, sync_sdk: openai.OpenAI
) -> None:
    thread_id = threaded.new_thread()
    messages = sync_sdk.beta.threads.messages
    with pytest.raises(openai.NotFoundError) as missing:
        messages.retrieve("msg_unknown", thread_id=thread_id)
    assert missing.value.status_code == 404 and "msg_unknown" in missing.value.message

    with pytest.raises(openai.BadRequestError) as bad_limit:
        messages.list(thread_id, limit=101)
    assert bad_limit.value.param == "limit"
    with pytest.raises(openai.BadRequestError) as bad_body:
        messages.create(thread_id, role="user", content="x", extra_body={"colour": "red"})
    assert bad_body.value.param == "colour" and bad_body.value.code == "unknown_parameter"
    assert threaded.emulator.log.count("listMessages") == 0
    assert threaded.emulator.log.count("createMessage") == 0

    # should_retry=False (x-should-retry: false): the gateway's read retries pass it straight on.
    threaded.emulator.faults.add("getMessage", "status", times=1, status=429, retry_after="7",
                                 should_retry=False)
    with pytest.raises(openai.RateLimitError) as limited:
        messages.retrieve("msg_unknown", thread_id=thread_id)
    assert limited.value.response.headers["retry-after"] == "7"


# -- async: the gateway runs in the test's loop --------------------------------------------------


async def test_sdk_async_every_method_matches_the_upstream(
    emulator: EmulatorServer, async_sdk: openai.AsyncOpenAI
) -> None:
    thread_id = await new_thread(emulator)
    messages = async_sdk.beta.threads.messages
    created = await messages.create(thread_id, role="assistant", content="hi", file_ids=["file-a"])
    assert created.role == "assistant" and created.file_ids == ["file-a"]
    assert await messages.retrieve(created.id, thread_id=thread_id) == created
    updated = await messages.update(created.id, thread_id=thread_id, metadata={"a": "b"})
    assert updated.metadata == {"a": "b"}
    assert [m.id async for m in messages.list(thread_id)] == [created.id]
    files = [f async for f in messages.files.list(created.id, thread_id=thread_id)]
    assert [f.id for f in files] == ["file-a"]
    file = await messages.files.retrieve("file-a", thread_id=thread_id, message_id=created.id)
    assert file.message_id == created.id
    assert emulator.log.count("listMessages") == 2 and emulator.log.count("listMessageFiles") == 2


async def test_sdk_async_auto_pagination_over_four_pages_sees_every_message_once(
    emulator: EmulatorServer, async_sdk: openai.AsyncOpenAI
) -> None:
    thread_id = await new_thread(emulator)
    emulator.store.seed_messages(thread_id, 31, spacing=1)
    seen = [m.id async for m in async_sdk.beta.threads.messages.list(thread_id, limit=8)]
    assert seen == emulator.store.message_ids(thread_id, "desc")
    assert emulator.log.count("listMessages") == 5  # 4 pages, then `data: []`


async def test_sdk_async_raw_response_has_headers(
    emulator: EmulatorServer, async_sdk: openai.AsyncOpenAI
) -> None:
    thread_id = await new_thread(emulator)
    created = await async_sdk.beta.threads.messages.create(thread_id, role="user", content="x")
    raw = await async_sdk.beta.threads.messages.with_raw_response.retrieve(
        created.id, thread_id=thread_id)
    assert raw.headers["x-request-id"].startswith("req_")
    assert raw.headers["x-gateway-request-id"]
    assert raw.parse().id == created.id  # the legacy raw response parses synchronously


async def test_sdk_async_error_classes_match_the_failures(
    emulator: EmulatorServer, async_sdk: openai.AsyncOpenAI
) -> None:
    thread_id = await new_thread(emulator)
    messages = async_sdk.beta.threads.messages
    with pytest.raises(openai.NotFoundError):
        await messages.files.retrieve("file-x", thread_id=thread_id, message_id="msg_unknown")
    with pytest.raises(openai.BadRequestError) as bad:
        await messages.list(thread_id, limit=0)
    assert bad.value.param == "limit"
    with pytest.raises(openai.BadRequestError) as bad_role:
        await messages.create(thread_id, role="system", content="x")  # type: ignore[arg-type]
    assert bad_role.value.param == "role"
    emulator.faults.add("listMessages", "status", times=1, status=429, should_retry=False)
    with pytest.raises(openai.RateLimitError):
        await messages.list(thread_id)
    emulator.faults.add("getMessage", "status", times=1, status=503, should_retry=False)
    with pytest.raises(openai.InternalServerError) as unavailable:
        await messages.retrieve("msg_x", thread_id=thread_id)
    assert unavailable.value.status_code == 503
