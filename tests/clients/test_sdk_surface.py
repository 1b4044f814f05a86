"""The client at the SDK's level: results as the upstream's JSON, errors with the SDK's fields,
retries on UNAVAILABLE and on RESOURCE_EXHAUSTED with RetryInfo bounded by the timeout,
``max_retries`` / ``with_options``, and ``list_page``'s next-page helper. Against a real gateway
and emulator (tests/conftest.py)."""

from __future__ import annotations

import asyncio
import json
import time

import grpc
import pytest
from google.rpc import error_details_pb2

from messages_gateway_client import (
    AsyncMessagesGatewayClient,
    BadRequestError,
    MessagesGatewayClient,
    NotFoundError,
    RateLimitError,
    UnavailableError,
    to_dict,
    to_json,
)
from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from tests.clients.conftest import new_thread


def arm(emulator, operation: str, status: int, times: int | None = 1, **params: object) -> None:
    """An upstream error the gateway passes on as it is (no gateway-side retry)."""
    emulator.faults.add(operation, "status", status=status, should_retry=False, times=times,
                        **params)


async def test_results_render_as_the_upstream_json(aclient, emulator) -> None:
    thread = await aclient.threads.create(metadata={"team": "sdk"})
    assert to_dict(thread) == {"id": thread.id, "object": "thread",
                               "created_at": thread.created_at, "metadata": {"team": "sdk"}}
    created = await aclient.messages.create(thread.id, role="user", content="hi",
                                            file_ids=["file-1"], metadata={"k": "v"})
    body = to_dict(created)
    assert body["role"] == "user" and body["status"] == "completed"
    assert body["metadata"] == {"k": "v"} and body["file_ids"] == ["file-1"]
    assert body["content"] == [{"type": "text", "text": {"value": "hi", "annotations": []}}]
    assert body["assistant_id"] is None and "completed_at" in body
    # The upstream's own object, key for key: what the SDK would have parsed.
    upstream = emulator.store.get_message(thread.id, created.id)
    assert body == {k: upstream[k] for k in body} and set(body) == set(upstream)
    assert json.loads(to_json(created)) == body
    assert to_json(created, indent=None) == json.dumps(body)
    page = await aclient.messages.list_page(thread.id)
    assert page.to_dict() == to_dict(page) == {
        "object": "list", "data": [body], "first_id": created.id, "last_id": created.id,
        "has_more": False}
    file = await aclient.messages.files.retrieve("file-1", thread_id=thread.id,
                                                 message_id=created.id)
    assert to_dict(file)["object"] == "thread.message.file"
    with pytest.raises(TypeError, match="not a Messages Gateway result"):
        to_dict(pb.RequestOptions())


async def test_errors_carry_status_code_reason_request_ids_and_details(aclient, emulator) -> None:
    thread_id, _ = new_thread(emulator)
    with pytest.raises(NotFoundError) as missing:
        await aclient.messages.retrieve("msg_nope", thread_id=thread_id)
    error = missing.value
    assert (error.code, error.status_code) == (grpc.StatusCode.NOT_FOUND, 404)
    assert error.upstream_status == 404 and error.reason == "UPSTREAM_NOT_FOUND"
    assert error.upstream_request_id and error.upstream_request_id.startswith("req_")
    assert error.request_id and error.request_id != error.upstream_request_id
    (info,) = [d for d in error.details if isinstance(d, error_details_pb2.ErrorInfo)]
    assert info.domain == "messages-gateway"
    assert error.to_dict()["status_code"] == 404
    assert error.to_dict()["upstream_request_id"] == error.upstream_request_id
    with pytest.raises(BadRequestError) as bad:
        await aclient.messages.create(thread_id, role="user", content="")
    assert bad.value.status_code == 400 and bad.value.upstream_status is None
    assert any(isinstance(d, error_details_pb2.BadRequest) for d in bad.value.details)


async def test_resource_exhausted_with_retry_info_is_retried_after_the_delay(
    aclient, emulator
) -> None:
    thread_id, (message_id,) = new_thread(emulator, 1)
    arm(emulator, "getMessage", 429, retry_after="0.3")
    started = time.monotonic()
    got = await aclient.messages.retrieve(message_id, thread_id=thread_id)
    assert got.id == message_id and time.monotonic() - started >= 0.3
    assert emulator.log.count("getMessage") == 2


async def test_retry_info_past_the_timeout_is_raised_at_once(aclient, emulator) -> None:
    thread_id, (message_id,) = new_thread(emulator, 1)
    arm(emulator, "getMessage", 429, retry_after="5")
    started = time.monotonic()
    with pytest.raises(RateLimitError) as limited:
        await aclient.messages.retrieve(message_id, thread_id=thread_id, timeout=2)
    assert time.monotonic() - started < 1.5
    assert limited.value.retry_after == 5.0 and limited.value.status_code == 429
    assert emulator.log.count("getMessage") == 1


async def test_resource_exhausted_without_retry_info_and_creates_are_not_retried(
    aclient, emulator
) -> None:
    thread_id, (message_id,) = new_thread(emulator, 1)
    arm(emulator, "getMessage", 429)
    with pytest.raises(RateLimitError) as limited:
        await aclient.messages.retrieve(message_id, thread_id=thread_id)
    assert limited.value.retry_after is None
    assert emulator.log.count("getMessage") == 1
    arm(emulator, "createMessage", 429, retry_after="0.1")
    with pytest.raises(RateLimitError):
        await aclient.messages.create(thread_id, role="user", content="once")
    assert emulator.log.count("createMessage") == 1


async def test_max_retries_and_with_options(target, emulator) -> None:
    thread_id, (message_id,) = new_thread(emulator, 1)
    async with AsyncMessagesGatewayClient(target, timeout=10, max_retries=1) as client:
        arm(emulator, "getMessage", 503, times=None)
        with pytest.raises(UnavailableError):
            await client.messages.retrieve(message_id, thread_id=thread_id)
        assert emulator.log.count("getMessage") == 2
        none = client.with_options(max_retries=0, timeout=5)
        with pytest.raises(UnavailableError):
            await none.messages.retrieve(message_id, thread_id=thread_id)
        assert emulator.log.count("getMessage") == 3
        assert none._config.timeout == 5 and client._config.timeout == 10
        assert client._config.max_retries == 1  # the original keeps its settings
        emulator.faults.clear()
        assert (await none.messages.retrieve(message_id, thread_id=thread_id)).id == message_id
        with pytest.raises(ValueError, match="max_retries"):
            client.with_options(max_retries=-1)


async def test_a_stream_failing_before_its_first_page_is_retried(aclient, emulator) -> None:
    thread_id, ids = new_thread(emulator, 4)
    arm(emulator, "listMessages", 503)
    stream = aclient.messages.list(thread_id, limit=2, order="asc")
    assert [m.id async for m in stream] == ids
    assert stream.resumes == 0 and emulator.log.count("listMessages") == 3  # 1 failed + 2 pages


async def test_list_page_walks_forwards_and_backwards_with_get_next_page(
    aclient, emulator
) -> None:
    thread_id, ids = new_thread(emulator, 7)
    page = await aclient.messages.list_page(thread_id, limit=3, order="asc")
    seen = [m.id for m in page]
    while page.has_next_page():
        assert page.next_page_params() == {"after": page.last_id}
        page = await page.get_next_page()
        seen += [m.id for m in page.data]
    assert seen == ids and not page.has_more and page.next_page_params() is None
    with pytest.raises(RuntimeError, match="no next page"):
        await page.get_next_page()
    back = await aclient.messages.list_page(thread_id, limit=3, order="asc", before=ids[-1])
    assert [m.id for m in back] == ids[3:6]
    assert back.next_page_params() == {"before": ids[3]}
    earlier = await back.get_next_page()
    assert [m.id for m in earlier] == ids[0:3] and not earlier.has_next_page()


async def test_sync_client_retries_with_options_and_next_page(target, emulator) -> None:
    thread_id, ids = new_thread(emulator, 3)
    created = emulator.store.create_message(thread_id, role="user", content="f",
                                            file_ids=["file-a", "file-b"])

    def run() -> None:
        with MessagesGatewayClient(target, timeout=10) as client:
            arm(emulator, "getMessage", 429, retry_after="0.1")
            assert client.messages.retrieve(ids[0], thread_id=thread_id).id == ids[0]
            assert emulator.log.count("getMessage") == 2
            arm(emulator, "getMessage", 503)  # ids[1]: ids[0] is in the gateway's cache now
            with pytest.raises(UnavailableError):
                client.with_options(max_retries=0).messages.retrieve(ids[1],
                                                                     thread_id=thread_id)
            assert emulator.log.count("getMessage") == 3
            files = client.messages.files.list_page(created["id"], thread_id=thread_id,
                                                    limit=1, order="asc")
            following = files.get_next_page()
            assert [f.id for f in (*files, *following)] == ["file-a", "file-b"]
            assert json.loads(following.to_json())["data"][0]["id"] == "file-b"

    await asyncio.to_thread(run)


async def test_with_raw_response_on_lists_gives_headers_at_the_stream_end(
    aclient, emulator
) -> None:
    thread_id, ids = new_thread(emulator, 5)
    raw = aclient.messages.with_raw_response.list(thread_id, limit=2, order="asc")
    with pytest.raises(RuntimeError, match="iterate parse"):
        raw.headers  # noqa: B018 - the trailers have not arrived yet
    assert [m.id async for m in raw.parse()] == ids
    assert raw.request_id and raw.request_id.startswith("req_") and raw.gateway_request_id
    assert "openai-processing-ms" in raw.headers
    created = await aclient.messages.create(thread_id, role="user", content="f",
                                            file_ids=["file-x"])
    files = aclient.messages.files.with_raw_response.list(created.id, thread_id=thread_id)
    assert [f.id async for f in files.parse()] == ["file-x"] and files.gateway_request_id


async def test_sync_with_raw_response_on_lists(target, emulator) -> None:
    thread_id, ids = new_thread(emulator, 3)

    def run() -> None:
        with MessagesGatewayClient(target, timeout=10) as client:
            raw = client.messages.with_raw_response.list(thread_id, order="asc")
            assert [m.id for m in raw.parse()] == ids
            assert raw.headers["x-request-id"] == raw.request_id and raw.gateway_request_id

    await asyncio.to_thread(run)
