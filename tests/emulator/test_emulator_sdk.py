"""Fidelity: the official SDK (openai==1.20.0) works against the emulator exactly as against the
real service - every method, auto-pagination, raw responses and error classes, sync and async."""

from __future__ import annotations

import httpx
import openai
import pytest
from openai.types.beta import Thread, ThreadDeleted
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


def test_sync_thread_lifecycle(threaded: ThreadedEmulator, sync_client: openai.OpenAI) -> None:
    """create(messages, metadata) -> retrieve -> update -> delete, then the thread and its
    messages are NotFoundError, as the real service answered."""
    threads = sync_client.beta.threads
    thread = threads.create(
        messages=[{"role": "user", "content": "hello", "file_ids": ["file-a"], "metadata": {"n": "1"}},
                  {"role": "assistant", "content": "hi there"}],
        metadata={"topic": "greeting"},
    )
    assert isinstance(thread, Thread) and thread.object == "thread" and thread.metadata == {"topic": "greeting"}
    listed = list(threads.messages.list(thread.id, order="asc"))
    assert [(m.role, m.content[0].text.value) for m in listed] == [("user", "hello"), ("assistant", "hi there")]
    assert listed[0].file_ids == ["file-a"] and listed[0].metadata == {"n": "1"} and listed[0].run_id is None

    assert threads.retrieve(thread.id) == thread
    updated = threads.update(thread.id, metadata={"topic": "farewell", "extra": "x"})
    assert updated.metadata == {"topic": "farewell", "extra": "x"} and updated.created_at == thread.created_at
    assert threads.update(thread.id, metadata={"only": "this"}).metadata == {"only": "this"}  # wholesale
    assert threads.update(thread.id).metadata == {"only": "this"}  # sends {}

    deleted = threads.delete(thread.id)
    assert isinstance(deleted, ThreadDeleted)
    assert (deleted.id, deleted.object, deleted.deleted) == (thread.id, "thread.deleted", True)

    message = f"No thread found with id '{thread.id}'."
    for call in (
        lambda: threads.messages.list(thread.id),
        lambda: threads.retrieve(thread.id),
        lambda: threads.update(thread.id, metadata={}),
        lambda: threads.delete(thread.id),
        lambda: threads.messages.retrieve(listed[0].id, thread_id=thread.id),
        lambda: threads.messages.files.list(listed[0].id, thread_id=thread.id),
    ):
        with pytest.raises(openai.NotFoundError) as not_found:
            call()
        assert not_found.value.status_code == 404 and message in not_found.value.message
        assert not_found.value.body == {"message": message, "type": "invalid_request_error", "param": None, "code": None}
    assert [threaded.log.count(op) for op in ("createThread", "getThread", "modifyThread", "deleteThread")] == [1, 2, 4, 2]


def test_sync_thread_errors_name_params(threaded: ThreadedEmulator, sync_client: openai.OpenAI) -> None:
    threads = sync_client.beta.threads
    with pytest.raises(openai.BadRequestError) as bad:
        threads.create(messages=[{"role": "user", "content": "ok"}, {"role": "user", "content": ""}])
    assert bad.value.param == "messages[1].content" and bad.value.code == "empty_string"
    with pytest.raises(openai.BadRequestError) as bad_meta:
        threads.create(metadata={f"k{i}": "v" for i in range(17)})
    assert bad_meta.value.param == "metadata" and bad_meta.value.code == "object_above_max_properties"
    thread = threads.create()
    assert thread.metadata == {}
    with pytest.raises(openai.BadRequestError) as bad_value:
        threads.update(thread.id, metadata={"k": "v" * 513})
    assert bad_value.value.param == "metadata.k"
    with pytest.raises(openai.BadRequestError) as unknown:
        threads.update(thread.id, extra_body={"tool_resources": {}})
    assert unknown.value.param == "tool_resources" and unknown.value.code == "unknown_parameter"
    raw = threads.with_raw_response.delete(thread.id)
    assert raw.headers["x-request-id"].startswith("req_") and raw.parse().deleted is True


def test_sync_thread_retries_obey_faults(threaded: ThreadedEmulator) -> None:
    """The SDK retries a faulted thread call and succeeds; a delete applied but answered 500 is
    retried into a 404 (the consumer-visible hazard of retried deletes)."""
    http = httpx.Client()
    client = openai.OpenAI(api_key=API_KEY, base_url=threaded.base_url, http_client=http, max_retries=2)
    thread = client.beta.threads.create()
    threaded.faults.add("getThread", "status", times=2, status=503, retry_after_ms="10")
    assert client.beta.threads.retrieve(thread.id).id == thread.id
    assert threaded.log.count("getThread") == 3
    threaded.faults.add("deleteThread", "status", times=1, status=500, run_handler=True, retry_after_ms="10")
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.delete(thread.id)
    assert threaded.log.count("deleteThread") == 2
    http.close()


async def test_async_thread_lifecycle(upstream: EmulatorServer, async_client: openai.AsyncOpenAI) -> None:
    threads = async_client.beta.threads
    thread = await threads.create(messages=[{"role": "user", "content": "a"}], metadata={"k": "v"})
    assert (await threads.retrieve(thread.id)).metadata == {"k": "v"}
    assert (await threads.update(thread.id, metadata={"k2": "v2"})).metadata == {"k2": "v2"}
    assert (await threads.delete(thread.id)).deleted is True
    with pytest.raises(openai.NotFoundError) as not_found:
        await threads.messages.list(thread.id)
    assert not_found.value.body["message"] == f"No thread found with id '{thread.id}'."
    assert upstream.log.count("deleteThread") == 1
