"""Fidelity: the official SDK (openai==1.20.0) works against the emulator exactly as against the
real service - every method, auto-pagination, raw responses and error classes, sync and async."""

from __future__ import annotations

import httpx
import openai
import pytest
from openai.types.beta.threads import Message
from openai.types.beta.threads.messages import MessageFile

from gateway.emulator import EmulatorServer, ThreadedEmulator

from .conftest import API_KEY


@pytest.fixture
def sync_client(threaded: ThreadedEmulator):
    http = httpx.Client()
    client = openai.OpenAI(api_key=API_KEY, base_url=threaded.base_url, http_client=http, max_retries=0)
    yield client
    http.close()


@pytest.fixture
async def async_client(upstream: EmulatorServer):
    http = httpx.AsyncClient()
    client = openai.AsyncOpenAI(api_key=API_KEY, base_url=upstream.base_url, http_client=http, max_retries=0)
    yield client
    await http.aclose()


def test_sync_every_method(threaded: ThreadedEmulator, sync_client: openai.OpenAI) -> None:
    beta = sync_client.beta
    thread = beta.threads.create(metadata={"t": "1"})
    assert thread.id.startswith("thread_") and thread.metadata == {"t": "1"}
    seeded = beta.threads.create(messages=[{"role": "user", "content": "first"}])
    assert [m.content[0].text.value for m in beta.threads.messages.list(seeded.id)] == ["first"]

    message = beta.threads.messages.create(thread.id, role="user", content="hello", file_ids=["file-a", "file-b"])
    assert isinstance(message, Message)
    assert message.status == "completed" and message.role == "user" and message.run_id is None
    assert message.content[0].type == "text" and message.content[0].text.value == "hello"

    got = beta.threads.messages.retrieve(message.id, thread_id=thread.id)
    assert got == message
    updated = beta.threads.messages.update(message.id, thread_id=thread.id, metadata={"k": "v"})
    assert updated.metadata == {"k": "v"}
    unchanged = beta.threads.messages.update(message.id, thread_id=thread.id)  # sends {}
    assert unchanged.metadata == {"k": "v"}

    files = list(beta.threads.messages.files.list(message.id, thread_id=thread.id))
    assert [f.id for f in files] == ["file-b", "file-a"]
    assert all(isinstance(f, MessageFile) and f.message_id == message.id for f in files)
    file = beta.threads.messages.files.retrieve("file-a", thread_id=thread.id, message_id=message.id)
    assert file.id == "file-a" and file.object == "thread.message.file"

    assert threaded.log.count("createThread") == 2
    assert threaded.log.count("listMessageFiles") == 2  # one page, then the empty page after it


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_sync_auto_pagination(threaded: ThreadedEmulator, sync_client: openai.OpenAI, order: str) -> None:
    thread = sync_client.beta.threads.create()
    for i in range(45):
        sync_client.beta.threads.messages.create(thread.id, role="user", content=f"m{i}")
    seen = [m.id for m in sync_client.beta.threads.messages.list(thread.id, limit=10, order=order)]
    assert seen == threaded.store.message_ids(thread.id, order)
    assert len(seen) == 45 == len(set(seen))
    # 5 pages of data, then the empty page the SDK stops on.
    assert threaded.log.count("listMessages") == 6


def test_sync_raw_response_and_errors(threaded: ThreadedEmulator, sync_client: openai.OpenAI) -> None:
    thread = sync_client.beta.threads.create()
    raw = sync_client.beta.threads.messages.with_raw_response.create(thread.id, role="user", content="x")
    assert raw.headers["x-request-id"].startswith("req_")
    assert raw.headers["openai-version"] == "2020-10-01"
    assert raw.parse().content[0].text.value == "x"
    listed = sync_client.beta.threads.messages.with_raw_response.list(thread.id)
    assert "x-ratelimit-remaining-requests" in listed.headers and len(listed.parse().data) == 1

    with pytest.raises(openai.NotFoundError) as not_found:
        sync_client.beta.threads.messages.retrieve("msg_nope", thread_id=thread.id)
    assert not_found.value.status_code == 404
    with pytest.raises(openai.BadRequestError) as bad:
        sync_client.beta.threads.messages.create(thread.id, role="user", content="")
    assert bad.value.param == "content" and bad.value.code == "empty_string"
    with pytest.raises(openai.BadRequestError) as bad_limit:
        sync_client.beta.threads.messages.list(thread.id, limit=101)
    assert bad_limit.value.param == "limit"

    wrong = openai.OpenAI(api_key="sk-wrong", base_url=threaded.base_url, http_client=httpx.Client(), max_retries=0)
    with pytest.raises(openai.AuthenticationError) as auth:
        wrong.beta.threads.create()
    assert auth.value.code == "invalid_api_key" and "sk-wrong" not in str(auth.value)
    wrong.close()

    with pytest.raises(openai.BadRequestError) as beta:
        sync_client.beta.threads.messages.list(thread.id, extra_headers={"OpenAI-Beta": "assistants=v2"})
    assert beta.value.code == "invalid_beta"


def test_sync_retries_on_429_like_the_real_service(threaded: ThreadedEmulator) -> None:
    """The SDK's retry rule works off our headers: x-should-retry and retry-after-ms are obeyed."""
    http = httpx.Client()
    client = openai.OpenAI(api_key=API_KEY, base_url=threaded.base_url, http_client=http, max_retries=2)
    thread = client.beta.threads.create()
    threaded.faults.add("listMessages", "status", times=2, status=429, retry_after_ms="10")
    assert client.beta.threads.messages.list(thread.id).data == []
    assert threaded.log.count("listMessages") == 3
    threaded.faults.add("listMessages", "status", times=1, status=503, should_retry=False)
    with pytest.raises(openai.InternalServerError):
        client.beta.threads.messages.list(thread.id)
    assert threaded.log.count("listMessages") == 4
    http.close()


async def test_async_every_method(upstream: EmulatorServer, async_client: openai.AsyncOpenAI) -> None:
    beta = async_client.beta
    thread = await beta.threads.create()
    message = await beta.threads.messages.create(thread.id, role="assistant", content="hi", file_ids=["file-z"],
                                                  metadata={"a": "b"})
    assert message.role == "assistant" and message.metadata == {"a": "b"}
    assert (await beta.threads.messages.retrieve(message.id, thread_id=thread.id)).id == message.id
    assert (await beta.threads.messages.update(message.id, thread_id=thread.id, metadata={})).metadata == {}
    files = [f async for f in beta.threads.messages.files.list(message.id, thread_id=thread.id)]
    assert [f.id for f in files] == ["file-z"]
    assert (await beta.threads.messages.files.retrieve("file-z", thread_id=thread.id, message_id=message.id)).id == "file-z"

    upstream.store.seed_messages(thread.id, 44)
    seen = [m.id async for m in beta.threads.messages.list(thread.id, limit=10)]
    assert seen == upstream.store.message_ids(thread.id, "desc") and len(set(seen)) == 45

    raw = await beta.threads.messages.with_raw_response.retrieve(message.id, thread_id=thread.id)
    assert raw.headers["x-request-id"].startswith("req_")
    with pytest.raises(openai.NotFoundError):
        await beta.threads.messages.list("thread_nope")
    with pytest.raises(openai.BadRequestError):
        await beta.threads.messages.create(thread.id, role="user", content="x", extra_body={"bogus": 1})


async def test_async_connection_reset_surfaces_as_connection_error(
    upstream: EmulatorServer, async_client: openai.AsyncOpenAI
) -> None:
    thread = await async_client.beta.threads.create()
    upstream.faults.add("listMessages", "reset", times=1)
    with pytest.raises(openai.APIConnectionError):
        await async_client.beta.threads.messages.list(thread.id)
