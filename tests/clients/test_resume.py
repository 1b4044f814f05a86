"""Broken streams resume from the last page received: no gaps, no duplicates, no replays.

Faults are injected in the emulator after the first page has reached the client, so the
gateway's stream fails mid-way with UNAVAILABLE (and the ``resume-after`` trailer)."""

from __future__ import annotations

import asyncio

import pytest

from messages_gateway_client import InternalServerError, MessagesGatewayClient, UnavailableError
from tests.clients.conftest import PAGE_LATENCY, arm_mid_stream_failure, new_thread


async def test_async_list_resumes_after_mid_stream_failure_without_gaps(
    aclient, emulator, gateway
) -> None:
    thread_id, ids = new_thread(emulator, 9)
    emulator.faults.set_latency("listMessages", PAGE_LATENCY)
    emulator.log.clear()
    stream = aclient.messages.list(thread_id, limit=3, order="asc")
    got: list[str] = []
    async for message in stream:
        if not got:
            arm_mid_stream_failure(emulator)
        got.append(message.id)
    assert got == ids
    assert stream.resumes == 1
    # 3 pages + the one that failed: nothing fetched twice.
    assert emulator.log.count("listMessages") == 4


async def test_async_pages_keep_counting_across_a_resume(aclient, emulator) -> None:
    thread_id, ids = new_thread(emulator, 9)
    emulator.faults.set_latency("listMessages", PAGE_LATENCY)
    pages = []
    async for page in aclient.messages.list(thread_id, limit=3, order="asc").pages():
        if not pages:
            arm_mid_stream_failure(emulator)
        pages.append(page)
    assert [p.page_index for p in pages] == [0, 1, 2]
    assert [m.id for p in pages for m in p.data] == ids


async def test_async_list_resume_respects_max_items(aclient, emulator) -> None:
    thread_id, ids = new_thread(emulator, 12)
    emulator.faults.set_latency("listMessages", PAGE_LATENCY)
    stream = aclient.messages.list(thread_id, limit=3, order="asc", max_items=7)
    got: list[str] = []
    async for message in stream:
        if not got:
            arm_mid_stream_failure(emulator)
        got.append(message.id)
    assert got == ids[:7] and stream.resumes == 1


async def test_async_backward_stream_resumes_before_first_id_of_last_page(
    aclient, emulator
) -> None:
    thread_id, ids = new_thread(emulator, 10)
    # Ground truth: the same backward walk with no fault.
    expected = [m.id async for m in aclient.messages.list(
        thread_id, limit=3, order="asc", before=ids[-1])]
    assert sorted(expected) == sorted(ids[:-1]) and len(expected) == 9
    emulator.faults.set_latency("listMessages", PAGE_LATENCY)
    stream = aclient.messages.list(thread_id, limit=3, order="asc", before=ids[-1])
    got: list[str] = []
    async for message in stream:
        if not got:
            arm_mid_stream_failure(emulator)
        got.append(message.id)
    assert got == expected and stream.resumes == 1


async def test_async_non_retryable_mid_stream_failure_is_raised_with_cursor(
    aclient, emulator
) -> None:
    thread_id, ids = new_thread(emulator, 9)
    emulator.faults.set_latency("listMessages", PAGE_LATENCY)
    stream = aclient.messages.list(thread_id, limit=3, order="asc")
    got: list[str] = []
    with pytest.raises(InternalServerError) as err:
        async for message in stream:
            if not got:
                emulator.faults.add("listMessages", "non_json", times=10)  # outlasts retries
            got.append(message.id)
    assert stream.resumes == 0
    assert got == ids[: len(got)] and got  # what arrived is a prefix, nothing invented
    assert err.value.resume_after == got[-1]


async def test_async_resume_budget_is_bounded(target, emulator) -> None:
    from messages_gateway_client import AsyncMessagesGatewayClient

    thread_id, _ = new_thread(emulator, 9)
    emulator.faults.set_latency("listMessages", PAGE_LATENCY)
    async with AsyncMessagesGatewayClient(target, max_resumes=0) as client:
        stream = client.messages.list(thread_id, limit=3, order="asc")
        got: list[str] = []
        with pytest.raises(UnavailableError):
            async for message in stream:
                if not got:
                    arm_mid_stream_failure(emulator)
                got.append(message.id)
    assert 3 <= len(got) < 9


async def test_sync_list_resumes_after_mid_stream_failure_without_gaps(
    target, emulator
) -> None:
    thread_id, ids = new_thread(emulator, 9)
    emulator.faults.set_latency("listMessages", PAGE_LATENCY)
    emulator.log.clear()

    def consume() -> tuple[list[str], int]:
        with MessagesGatewayClient(target, timeout=10.0) as client:
            stream = client.messages.list(thread_id, limit=3, order="asc")
            got: list[str] = []
            for message in stream:
                if not got:
                    arm_mid_stream_failure(emulator)
                got.append(message.id)
            return got, stream.resumes

    got, resumes = await asyncio.to_thread(consume)
    assert got == ids and resumes == 1
    assert emulator.log.count("listMessages") == 4
