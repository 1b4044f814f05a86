"""MessagesGatewayClient (blocking) against a real gateway: each test body runs in a worker
thread so the gateway's event loop keeps serving."""

from __future__ import annotations

import asyncio
import time

import pytest

from messages_gateway_client import (APITimeoutError, MessagesGatewayClient, NotFoundError,
                                     UnavailableError)
from tests.clients.conftest import new_thread


async def test_sync_every_method_against_the_gateway(target, emulator) -> None:
    thread_id, ids = new_thread(emulator, 7)

    def run() -> None:
        with MessagesGatewayClient(target, timeout=10.0) as client:
            m = client.messages
            created = m.create(thread_id, role="user", content="hi", file_ids=["file-1", "file-2"])
            assert m.retrieve(created.id, thread_id=thread_id) == created
            assert dict(m.update(created.id, thread_id=thread_id,
                                 metadata={"a": "1"}).metadata.entries) == {"a": "1"}
            assert [x.id for x in m.list(thread_id, order="asc", limit=3)] == [*ids, created.id]
            page = m.list_page(thread_id, limit=2, order="asc")
            assert [x.id for x in page.data] == ids[:2] and page.has_more
            assert [len(p.data) for p in m.list(thread_id, limit=3).pages()] == [3, 3, 2]
            files = list(m.files.list(created.id, thread_id=thread_id, order="asc"))
            assert sorted(f.id for f in files) == ["file-1", "file-2"]
            assert len(m.files.list_page(created.id, thread_id=thread_id, limit=1).data) == 1
            one = m.files.retrieve("file-2", thread_id=thread_id, message_id=created.id)
            assert one.id == "file-2" and one.message_id == created.id

    await asyncio.to_thread(run)
    assert emulator.log.count("createMessage") == 1
    assert emulator.log.count("getMessageFile") == 1


async def test_sync_with_raw_response_and_errors(target, emulator) -> None:
    thread_id, (message_id,) = new_thread(emulator, 1)

    def run() -> None:
        with MessagesGatewayClient(target) as client:
            raw = client.messages.with_raw_response.retrieve(message_id, thread_id=thread_id)
            assert raw.parse().id == message_id
            assert raw.headers["x-request-id"].startswith("req_") and raw.gateway_request_id
            raw_update = client.messages.with_raw_response.update(message_id,
                                                                  thread_id=thread_id)
            assert raw_update.parse().id == message_id and raw_update.request_id
            raw_file = client.messages.files.with_raw_response.list_page(message_id,
                                                                         thread_id=thread_id)
            assert raw_file.parse().object == "list" and raw_file.request_id
            with pytest.raises(NotFoundError) as err:
                client.messages.retrieve("msg_missing", thread_id=thread_id)
            assert err.value.reason == "UPSTREAM_NOT_FOUND"

    await asyncio.to_thread(run)


async def test_sync_timeout_per_call_and_no_retry_for_create(target, emulator) -> None:
    thread_id, (message_id,) = new_thread(emulator, 1)
    emulator.faults.add("getMessage", "latency", seconds=2.0, times=1)
    emulator.faults.add("createMessage", "status", status=503, should_retry=False, times=1)
    emulator.faults.add("modifyMessage", "status", status=503, should_retry=False, times=1)

    def run() -> float:
        with MessagesGatewayClient(target) as client:
            started = time.monotonic()
            with pytest.raises(APITimeoutError):
                client.messages.retrieve(message_id, thread_id=thread_id, timeout=0.3)
            elapsed = time.monotonic() - started
            with pytest.raises(UnavailableError):
                client.messages.create(thread_id, role="user", content="x")
            # UpdateMessage replaces metadata: safe in effect, but not in the retry list either.
            with pytest.raises(UnavailableError):
                client.messages.update(message_id, thread_id=thread_id, metadata={"a": "b"})
            return elapsed

    assert await asyncio.to_thread(run) < 1.5
    assert emulator.log.count("createMessage") == 1
    assert emulator.log.count("modifyMessage") == 1


def test_client_config_rejects_bad_values_and_hides_the_key() -> None:
    with pytest.raises(ValueError, match="timeout"):
        MessagesGatewayClient("127.0.0.1:1", timeout=0)
    with pytest.raises(ValueError, match="api_key"):
        MessagesGatewayClient("127.0.0.1:1", api_key="sk-\nx")
    client = MessagesGatewayClient("127.0.0.1:1", api_key="sk-canary-secret")
    try:
        assert "sk-canary-secret" not in repr(client)
        with pytest.raises(ValueError, match="timeout"):
            client.messages.retrieve("m", thread_id="t", timeout=-1)
    finally:
        client.close()
