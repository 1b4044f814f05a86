"""Stripe-style cursor pagination, checked against a ground truth computed here.

The reference below is the NOTES.md definition, written as plainly as possible (linear scans):
list order is (created_at, creation order), reversed for desc; ``after=X`` -> the first ``limit``
items after X; ``before=X`` -> the ``limit`` items immediately before X, still in list order.
"""

from __future__ import annotations

import itertools
import time

import httpx
import pytest

from gateway.emulator import CursorNotFoundError, EmulatorServer, Store

from .schemas import validate


def reference(
    messages: list[tuple[int, int, str]], limit: int, order: str, after: str | None, before: str | None
) -> tuple[list[str], bool]:
    """messages: (created_at, creation index, id), in any order."""
    ids = [m[2] for m in sorted(messages)]
    if order == "desc":
        ids.reverse()
    lo, hi = 0, len(ids)
    if after is not None:
        lo = ids.index(after) + 1
    if before is not None:
        hi = ids.index(before)
    window = ids[lo:hi] if lo < hi else []
    if before is not None:
        return window[-limit:] if window else [], len(window) > limit
    return window[:limit], len(window) > limit


# created_at values with ties (several in one second) and out-of-order inserts.
CREATED_AT = [100, 100, 100, 101, 99, 101, 105, 100, 103, 103, 103, 99, 110, 105, 100, 101, 107, 108, 108, 100]


@pytest.fixture
def seeded() -> tuple[Store, str, list[tuple[int, int, str]]]:
    store = Store()
    tid = store.create_thread()["id"]
    truth = []
    for i, created_at in enumerate(CREATED_AT):
        msg = store.insert_message(
            tid, {"role": "user", "created_at": created_at, "content": [], "run_id": "run_a" if i % 3 == 0 else None}
        )
        truth.append((created_at, i, msg["id"]))
    return store, tid, truth


def test_exhaustive_against_reference(seeded: tuple[Store, str, list[tuple[int, int, str]]]) -> None:
    store, tid, truth = seeded
    ids = [m[2] for m in truth]
    cursors = [None, *ids]
    checked = 0
    for order, limit in itertools.product(("asc", "desc"), (1, 2, 3, 7, 19, 20, 21, 100)):
        for after, before in itertools.chain(
            ((a, None) for a in cursors), ((None, b) for b in ids), ((ids[2], ids[15]), (ids[15], ids[2]))
        ):
            page = store.list_messages(tid, limit=limit, order=order, after=after, before=before)
            expected, has_more = reference(truth, limit, order, after, before)
            assert [m["id"] for m in page.data] == expected, (order, limit, after, before)
            assert page.has_more == has_more, (order, limit, after, before)
            checked += 1
    assert checked > 600


def test_run_id_filter_against_reference(seeded: tuple[Store, str, list[tuple[int, int, str]]]) -> None:
    store, tid, truth = seeded
    in_run = [m for m in truth if m[1] % 3 == 0]
    for order, limit in itertools.product(("asc", "desc"), (1, 2, 5, 20)):
        # Any message of the thread is a valid cursor, even one outside the run.
        for after in [None, *(m[2] for m in truth)]:
            page = store.list_messages(tid, limit=limit, order=order, after=after, run_id="run_a")
            position = [m for m in truth if after is not None and m[2] == after]
            pool = sorted(set(in_run) | set(position))
            expected, has_more = reference(pool, limit, order, after, None)
            assert [m["id"] for m in page.data] == expected
            assert page.has_more == has_more
    assert store.list_messages(tid, run_id="run_none").data == []


def test_ties_keep_creation_order() -> None:
    store = Store(clock=lambda: 1_700_000_000)
    tid = store.create_thread()["id"]
    created = [store.create_message(tid, role="user", content=str(i))["id"] for i in range(5)]
    assert [m["id"] for m in store.list_messages(tid, order="asc").data] == created
    assert [m["id"] for m in store.list_messages(tid).data] == created[::-1]


def test_walk_forward_and_backward(seeded: tuple[Store, str, list[tuple[int, int, str]]]) -> None:
    store, tid, truth = seeded
    for order in ("asc", "desc"):
        everything = store.message_ids(tid, order)
        seen: list[str] = []
        after = None
        while True:  # the v1 SDK's way: ignore has_more, stop on an empty page
            page = store.list_messages(tid, limit=3, order=order, after=after)
            if not page.data:
                break
            seen += [m["id"] for m in page.data]
            after = page.last_id
        assert seen == everything
        back: list[str] = []
        before = everything[-1]
        back = [before]
        while True:
            page = store.list_messages(tid, limit=4, order=order, before=before)
            if not page.data:
                break
            back = [m["id"] for m in page.data] + back
            before = page.first_id
        assert back == everything


def test_unknown_cursor_is_an_error() -> None:
    store = Store()
    a, b = store.create_thread()["id"], store.create_thread()["id"]
    other = store.create_message(b, role="user", content="x")["id"]
    for param in ("after", "before"):
        with pytest.raises(CursorNotFoundError) as info:
            store.list_messages(a, **{param: other})
        assert info.value.param == param


async def test_http_table(upstream: EmulatorServer, client: httpx.AsyncClient) -> None:
    store = upstream.store
    tid = store.create_thread()["id"]
    truth = []
    for i, created_at in enumerate(CREATED_AT):
        m = store.insert_message(tid, {"role": "user", "created_at": created_at, "content": [], "status": "completed",
                                       "incomplete_details": None, "completed_at": None, "incomplete_at": None,
                                       "assistant_id": None, "run_id": None, "file_ids": [], "metadata": {}})
        truth.append((created_at, i, m["id"]))
    ids = [m[2] for m in truth]
    asc = [m[2] for m in sorted(truth)]
    cases = [
        ({}, "desc", 20, None, None),
        ({"order": "asc", "limit": "5"}, "asc", 5, None, None),
        ({"order": "asc", "limit": "5", "after": asc[4]}, "asc", 5, asc[4], None),
        ({"order": "desc", "limit": "100", "after": ids[7]}, "desc", 100, ids[7], None),
        ({"order": "asc", "limit": "3", "before": asc[10]}, "asc", 3, None, asc[10]),
        ({"limit": "1", "before": asc[0]}, "desc", 1, None, asc[0]),
        ({"order": "asc", "after": asc[-1]}, "asc", 20, asc[-1], None),
        ({"after": asc[0]}, "desc", 20, asc[0], None),
    ]
    for query, order, limit, after, before in cases:
        response = await client.get(f"/threads/{tid}/messages", params=query)
        assert response.status_code == 200
        body = response.json()
        validate(body, "ListMessagesResponse")
        expected, has_more = reference(truth, limit, order, after, before)
        assert [m["id"] for m in body["data"]] == expected, query
        assert body["has_more"] == has_more
        assert body["first_id"] == (expected[0] if expected else None)
        assert body["last_id"] == (expected[-1] if expected else None)
    end = (await client.get(f"/threads/{tid}/messages", params={"order": "asc", "after": asc[-1]})).json()
    assert end == {"object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False}
    for param in ("after", "before"):
        response = await client.get(f"/threads/{tid}/messages", params={param: "msg_unknown"})
        assert response.status_code == 400
        assert response.json()["error"]["param"] == param


async def test_http_message_files(upstream: EmulatorServer, client: httpx.AsyncClient) -> None:
    tid = upstream.store.create_thread()["id"]
    file_ids = [f"file-{i:024d}" for i in range(10)]
    mid = (await client.post(f"/threads/{tid}/messages", json={"role": "user", "content": "x", "file_ids": file_ids})).json()["id"]
    truth = [(0, i, f) for i, f in enumerate(file_ids)]
    for query, order, limit, after, before in [
        ({}, "desc", 20, None, None),
        ({"order": "asc", "limit": "3"}, "asc", 3, None, None),
        ({"order": "asc", "limit": "3", "after": file_ids[2]}, "asc", 3, file_ids[2], None),
        ({"limit": "4", "before": file_ids[1]}, "desc", 4, None, file_ids[1]),
        ({"after": file_ids[0]}, "desc", 20, file_ids[0], None),
    ]:
        body = (await client.get(f"/threads/{tid}/messages/{mid}/files", params=query)).json()
        validate(body, "ListMessageFilesResponse")
        expected, has_more = reference(truth, limit, order, after, before)
        assert [f["id"] for f in body["data"]] == expected
        assert body["has_more"] == has_more
    response = await client.get(f"/threads/{tid}/messages/{mid}/files", params={"after": "file-unknown"})
    assert response.status_code == 400 and response.json()["error"]["param"] == "after"


def test_large_thread_pages_are_fast() -> None:
    """10,000 messages in one second: deep pages cost bisect + slice, not a scan."""
    store = Store()
    tid = store.create_thread()["id"]
    started = time.perf_counter()
    ids = store.seed_messages(tid, 10_000, created_at=1_700_000_000)
    assert time.perf_counter() - started < 2.0
    started = time.perf_counter()
    for i in range(0, 10_000, 10):
        page = store.list_messages(tid, limit=100, order="asc", after=ids[i])
        assert page.data[0]["id"] == ids[i + 1]
    assert time.perf_counter() - started < 1.0
