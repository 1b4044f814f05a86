"""Each fault kind does what it says, and rules fire as often as they are told to."""

from __future__ import annotations

import asyncio
import json
import time
import zlib

import httpx
import pytest

from gateway.emulator import EmulatorServer, Faults, ids

from .conftest import API_KEY, HEADERS
from .schemas import validate


@pytest.fixture
async def thread_id(upstream: EmulatorServer) -> str:
    tid = upstream.store.create_thread()["id"]
    upstream.store.seed_messages(tid, 30)
    return tid


async def test_status_429_with_retry_headers_fires_once(
    upstream: EmulatorServer, client: httpx.AsyncClient, thread_id: str
) -> None:
    upstream.faults.add("listMessages", "status", times=1, status=429, retry_after="1", retry_after_ms="300", should_retry=True)
    url = f"/threads/{thread_id}/messages"
    first = await client.get(url)
    assert first.status_code == 429
    assert first.headers["retry-after"] == "1"
    assert first.headers["retry-after-ms"] == "300"
    assert first.headers["x-should-retry"] == "true"
    assert "x-request-id" in first.headers
    validate(first.json(), "ErrorResponse")
    assert first.json()["error"]["code"] == "rate_limit_exceeded"
    assert (await client.get(url)).status_code == 200
    assert [e.fault for e in upstream.log.entries] == ["status", None]


async def test_status_does_not_apply_unless_run_handler(
    upstream: EmulatorServer, client: httpx.AsyncClient, thread_id: str
) -> None:
    url = f"/threads/{thread_id}/messages"
    upstream.faults.add("createMessage", "status", times=1, status=500)
    assert (await client.post(url, json={"role": "user", "content": "a"})).status_code == 500
    upstream.faults.add("createMessage", "status", times=1, status=503, run_handler=True, headers={"x-extra": "1"})
    lost = await client.post(url, json={"role": "user", "content": "b"})
    assert lost.status_code == 503 and lost.headers["x-extra"] == "1"
    contents = [m["content"][0]["text"]["value"] for m in upstream.store.list_messages(thread_id, limit=2).data]
    assert contents[0] == "b"  # created although the answer said 503 (duplicate-on-retry scenario)
    assert "a" not in contents


async def test_reset_before_headers(upstream: EmulatorServer, client: httpx.AsyncClient, thread_id: str) -> None:
    upstream.faults.add("getMessage", "reset", times=1)
    mid = upstream.store.message_ids(thread_id)[0]
    with pytest.raises(httpx.TransportError):
        await client.get(f"/threads/{thread_id}/messages/{mid}")
    assert (await client.get(f"/threads/{thread_id}/messages/{mid}")).status_code == 200
    entry = upstream.log.entries[0]
    assert entry.status is None and entry.fault == "reset" and not entry.disconnected and entry.finished


async def test_reset_mid_body(upstream: EmulatorServer, client: httpx.AsyncClient, thread_id: str) -> None:
    upstream.faults.add("listMessages", "reset_mid_body", times=1, fraction=0.4)
    received = b""
    with pytest.raises(httpx.TransportError):
        async with client.stream("GET", f"/threads/{thread_id}/messages") as response:
            assert response.status_code == 200
            declared = int(response.headers["content-length"])
            async for chunk in response.aiter_raw():
                received += chunk
    assert len(received) < declared
    assert upstream.log.entries[0].status == 200


async def test_slow_headers_trips_a_read_timeout(upstream: EmulatorServer, client: httpx.AsyncClient, thread_id: str) -> None:
    upstream.faults.add("listMessages", "slow_headers", times=1, seconds=2.0)
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        await client.get(f"/threads/{thread_id}/messages", timeout=0.2)
    assert time.monotonic() - started < 1.5
    assert await upstream.log.wait_idle(2.0)
    assert upstream.log.entries[0].disconnected  # the emulator saw the client give up


async def test_slow_body_drips(upstream: EmulatorServer, client: httpx.AsyncClient, thread_id: str) -> None:
    upstream.faults.add("getMessage", "slow_body", times=1, chunk_size=200, delay=0.02)
    mid = upstream.store.message_ids(thread_id)[0]
    chunks = []
    started = time.monotonic()
    async with client.stream("GET", f"/threads/{thread_id}/messages/{mid}") as response:
        async for chunk in response.aiter_raw():
            chunks.append(chunk)
    body = b"".join(chunks)
    validate(json.loads(body), "MessageObject")
    assert len(chunks) >= 3
    assert time.monotonic() - started >= 0.02 * (len(body) // 200)


async def test_truncated_json(upstream: EmulatorServer, client: httpx.AsyncClient, thread_id: str) -> None:
    upstream.faults.add("listMessages", "truncated_json", times=1, fraction=0.5)
    response = await client.get(f"/threads/{thread_id}/messages")
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    assert int(response.headers["content-length"]) == len(response.content)
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)


async def test_non_json(upstream: EmulatorServer, client: httpx.AsyncClient, thread_id: str) -> None:
    upstream.faults.add("*", "non_json", times=1)
    response = await client.get(f"/threads/{thread_id}/messages")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.text.startswith("<html>")


@pytest.mark.parametrize("chunked", [False, True])
async def test_huge_body(upstream: EmulatorServer, client: httpx.AsyncClient, thread_id: str, chunked: bool) -> None:
    size = 3 * 1024 * 1024 + 7
    upstream.faults.add("listMessages", "huge_body", times=1, size=size, chunked=chunked)
    response = await client.get(f"/threads/{thread_id}/messages")
    assert len(response.content) == size
    assert ("content-length" in response.headers) is not chunked
    assert json.loads(response.content)["data"] == []


async def test_huge_body_client_abort_is_logged(upstream: EmulatorServer, client: httpx.AsyncClient, thread_id: str) -> None:
    upstream.faults.add("listMessages", "huge_body", times=1, size=200 * 1024 * 1024)
    async with client.stream("GET", f"/threads/{thread_id}/messages") as response:
        async for _ in response.aiter_raw():
            break  # a byte cap: stop reading and close
    assert await upstream.log.wait_idle(5.0)
    assert upstream.log.entries[0].disconnected


async def test_redirect_to_another_host(upstream: EmulatorServer, client: httpx.AsyncClient, thread_id: str) -> None:
    upstream.faults.add("listMessages", "redirect", times=1)
    response = await client.get(f"/threads/{thread_id}/messages", params={"limit": 2})
    assert response.status_code == 302
    location = httpx.URL(response.headers["location"])
    assert location.host == "127.0.0.2"
    assert location.path == f"/v1/threads/{thread_id}/messages" and location.params["limit"] == "2"


async def test_stale_cursor_never_advances(upstream: EmulatorServer, client: httpx.AsyncClient, thread_id: str) -> None:
    upstream.faults.add("listMessages", "stale_cursor")
    url = f"/threads/{thread_id}/messages"
    first = (await client.get(url, params={"limit": 5})).json()
    second = (await client.get(url, params={"limit": 5, "after": first["last_id"]})).json()
    assert first == second and second["has_more"] is True
    validate(second, "ListMessagesResponse")


async def test_endless_pages_advance_forever(upstream: EmulatorServer, client: httpx.AsyncClient, thread_id: str) -> None:
    """One firing makes the list endless: each page has fresh ids (the cursor advances, unlike
    stale_cursor) and has_more, and a cursor from an endless page keeps it endless."""
    upstream.faults.add("listMessages", "endless_pages", times=1)
    url = f"/threads/{thread_id}/messages"
    real = set(upstream.store.message_ids(thread_id))
    seen: set[str] = set()
    after = None
    for _ in range(5):
        page = (await client.get(url, params={"limit": 7, **({"after": after} if after else {})})).json()
        validate(page, "ListMessagesResponse")
        got = [m["id"] for m in page["data"]]
        assert len(got) == 7 and page["has_more"] is True
        assert all(ids.MESSAGE_ID_RE.match(i) for i in got)
        assert not set(got) & (real | seen)
        assert (page["first_id"], page["last_id"]) == (got[0], got[-1])
        assert all(m["thread_id"] == thread_id for m in page["data"])
        seen.update(got)
        after = page["last_id"]
    assert [r.fired for r in upstream.faults.rules] == [1]
    # Without an endless cursor the list is the real one again.
    assert (await client.get(url, params={"limit": 100})).json()["has_more"] is False


async def test_latency_rule_and_setting(upstream: EmulatorServer, client: httpx.AsyncClient, thread_id: str) -> None:
    url = f"/threads/{thread_id}/messages"
    # Delays far apart, so a loaded machine cannot blur which ones were applied.
    upstream.faults.set_latency("listMessages", 0.3)
    upstream.faults.add("listMessages", "latency", times=1, seconds=0.6)
    started = time.monotonic()
    await client.get(url)
    assert time.monotonic() - started >= 0.9
    started = time.monotonic()
    await client.get(url)
    elapsed = time.monotonic() - started
    assert 0.3 <= elapsed < 0.9
    upstream.faults.clear()
    started = time.monotonic()
    await client.get(url)
    assert time.monotonic() - started < 0.3


async def test_client_cancel_during_latency_is_observed(upstream: EmulatorServer, client: httpx.AsyncClient, thread_id: str) -> None:
    upstream.faults.add("listMessages", "latency", seconds=5.0)
    task = asyncio.create_task(client.get(f"/threads/{thread_id}/messages"))
    for _ in range(200):
        if upstream.log.in_flight:
            break
        await asyncio.sleep(0.005)
    assert upstream.log.in_flight == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await upstream.log.wait_idle(2.0)
    assert upstream.log.entries[0].disconnected and upstream.log.entries[0].status is None


def test_probability_is_seeded_and_replayable() -> None:
    def run(seed: int) -> list[str | None]:
        faults = Faults(seed)
        faults.add("getMessage", "status", probability=0.3, status=500)
        return [faults.decide("getMessage").kind for _ in range(200)]

    first = run(7)
    assert first == run(7)
    assert 30 < first.count("status") < 90


def test_rules_match_operation_and_first_wins() -> None:
    faults = Faults()
    faults.add("listMessages", "stale_cursor", times=1)
    faults.add("*", "status", times=2)
    faults.add("*", "reset")
    assert faults.decide("getMessage").kind == "status"  # stale_cursor applies to lists only
    assert faults.decide("listMessages").kind == "stale_cursor"
    assert faults.decide("listMessages").kind == "status"
    assert faults.decide("createMessage").kind == "reset"
    assert [r.fired for r in faults.rules] == [1, 2, 1]


@pytest.mark.parametrize(
    ("operation", "kind", "params"),
    [("nope", "status", {}), ("*", "explode", {}), ("getMessage", "stale_cursor", {}), ("getMessage", "endless_pages", {}), ("*", "status", {"seconds": 1}),
     ("*", "reset_mid_body", {"fraction": 2})],
)
def test_bad_rules_are_refused(operation: str, kind: str, params: dict) -> None:
    with pytest.raises(ValueError):
        Faults().add(operation, kind, **params)


async def test_faults_via_admin_api(upstream: EmulatorServer, admin: httpx.AsyncClient, client: httpx.AsyncClient, thread_id: str) -> None:
    rule = (await admin.post("/faults", json={"operation": "listMessages", "kind": "status", "status": 503, "times": 1})).json()
    assert rule["kind"] == "status" and rule["times"] == 1
    assert (await admin.post("/faults", json={"operation": "listMessages", "kind": "bogus"})).status_code == 400
    assert (await admin.put("/latency", json={"operation": "listMessages", "seconds": 0.01})).json()["latency"] == {"listMessages": 0.01}
    listed = (await admin.get("/faults")).json()
    assert len(listed["rules"]) == 1 and listed["latency"] == {"listMessages": 0.01}
    assert (await client.get(f"/threads/{thread_id}/messages")).status_code == 503
    assert (await admin.delete("/faults")).status_code == 200
    assert upstream.faults.rules == [] and upstream.faults.latency == {}
    assert (await client.get(f"/threads/{thread_id}/messages", headers=HEADERS)).status_code == 200


async def test_huge_body_with_lying_content_length(upstream: EmulatorServer, client: httpx.AsyncClient, thread_id: str) -> None:
    upstream.faults.add("listMessages", "huge_body", times=1, size=100_000, content_length=500 * 1024 * 1024)
    received = 0
    with pytest.raises(httpx.TransportError):
        async with client.stream("GET", f"/threads/{thread_id}/messages") as response:
            assert int(response.headers["content-length"]) == 500 * 1024 * 1024
            async for chunk in response.aiter_raw():
                received += len(chunk)
    assert received == 100_000
    assert await upstream.log.wait_idle(2.0)
    assert upstream.log.entries[0].status == 200 and not upstream.log.entries[0].disconnected


async def test_huge_body_gzip_is_a_bomb_that_decodes_to_size(upstream: EmulatorServer, client: httpx.AsyncClient, thread_id: str) -> None:
    size = 64 * 1024 * 1024 + 3
    upstream.faults.add("listMessages", "huge_body", times=1, size=size, gzip=True)
    async with client.stream("GET", f"/threads/{thread_id}/messages") as response:
        assert response.headers["content-encoding"] == "gzip"
        wire = b"".join([chunk async for chunk in response.aiter_raw()])
    assert len(wire) < size // 500  # ~1 KiB per MiB
    decoded = zlib.decompress(wire, zlib.MAX_WBITS | 16)  # checks the CRC and length too
    assert len(decoded) == size and json.loads(decoded)["data"] == []


async def test_huge_body_with_short_lying_content_length_sends_the_rest_anyway(upstream: EmulatorServer, thread_id: str) -> None:
    upstream.faults.add("listMessages", "huge_body", times=1, size=5000, content_length=100)
    reader, writer = await asyncio.open_connection(upstream.host, upstream.port)
    try:
        writer.write(f"GET /v1/threads/{thread_id}/messages HTTP/1.1\r\nHost: x\r\n"
                     f"Authorization: Bearer {API_KEY}\r\nOpenAI-Beta: assistants=v1\r\n\r\n"
                     .encode())
        head = await reader.readuntil(b"\r\n\r\n")
        assert b"Content-Length: 100\r\n" in head
        body = await asyncio.wait_for(reader.readexactly(5000), 5)
        assert json.loads(body)["data"] == []  # the whole body, past the declared 100 bytes
    finally:
        writer.close()


# ---------------------------------------------------------------------- the thread operations

THREAD_CALLS = {
    "createThread": ("POST", "/threads", {"metadata": {"k": "v"}}),
    "getThread": ("GET", "/threads/{tid}", None),
    "modifyThread": ("POST", "/threads/{tid}", {"metadata": {"k": "changed"}}),
    "deleteThread": ("DELETE", "/threads/{tid}", None),
}


async def _call(client: httpx.AsyncClient, operation: str, tid: str, **kwargs) -> httpx.Response:
    method, path, body = THREAD_CALLS[operation]
    return await client.request(method, path.format(tid=tid), json=body, **kwargs)


@pytest.mark.parametrize("operation", list(THREAD_CALLS))
async def test_status_fault_on_each_thread_operation(
    upstream: EmulatorServer, client: httpx.AsyncClient, thread_id: str, operation: str
) -> None:
    """The rule targets its operation only, fires as often as told, and the log counts the calls."""
    others = [op for op in THREAD_CALLS if op != operation]
    upstream.faults.add(operation, "status", times=1, status=503, retry_after_ms="20")
    faulted = await _call(client, operation, thread_id)
    assert faulted.status_code == 503 and faulted.headers["retry-after-ms"] == "20"
    validate(faulted.json(), "ErrorResponse")
    assert upstream.store.get_thread(thread_id)["metadata"] == {}  # not applied
    assert (await _call(client, operation, thread_id)).status_code == 200
    assert [(e.operation, e.fault, e.status) for e in upstream.log.entries] == [
        (operation, "status", 503), (operation, None, 200)
    ]
    assert upstream.log.count(operation) == 2 and all(upstream.log.count(op) == 0 for op in others)


@pytest.mark.parametrize("operation", list(THREAD_CALLS))
async def test_latency_on_each_thread_operation(
    upstream: EmulatorServer, client: httpx.AsyncClient, thread_id: str, operation: str
) -> None:
    """An added-latency rule and the per-operation response time both apply (and stack)."""
    upstream.faults.set_latency(operation, 0.2)
    upstream.faults.add(operation, "latency", times=1, seconds=0.3)
    started = time.monotonic()
    assert (await _call(client, operation, thread_id)).status_code == 200
    assert time.monotonic() - started >= 0.5
    if operation == "deleteThread":
        thread_id = upstream.store.create_thread()["id"]
    started = time.monotonic()
    assert (await _call(client, operation, thread_id)).status_code == 200
    assert time.monotonic() - started >= 0.2
    assert upstream.log.count(operation) == 2


@pytest.mark.parametrize("operation", list(THREAD_CALLS))
async def test_reset_and_truncated_json_on_each_thread_operation(
    upstream: EmulatorServer, client: httpx.AsyncClient, thread_id: str, operation: str
) -> None:
    upstream.faults.add(operation, "reset", times=1)
    upstream.faults.add(operation, "truncated_json", times=1, fraction=0.5)
    with pytest.raises(httpx.TransportError):
        await _call(client, operation, thread_id)
    assert upstream.store.has_thread(thread_id)  # a reset before the handler applies nothing
    cut = await _call(client, operation, thread_id)  # applied, but the answer is cut
    with pytest.raises(json.JSONDecodeError):
        json.loads(cut.content)
    assert [e.fault for e in upstream.log.entries] == ["reset", "truncated_json"]


async def test_delete_applied_but_answer_lost_then_retry_is_404(
    upstream: EmulatorServer, client: httpx.AsyncClient, thread_id: str
) -> None:
    """The retry hazard of a delete: a 500 after the handler ran leaves the thread gone, so the
    consumer's retry answers 404."""
    upstream.faults.add("deleteThread", "status", times=1, status=500, run_handler=True)
    assert (await client.delete(f"/threads/{thread_id}")).status_code == 500
    assert not upstream.store.has_thread(thread_id)
    retry = await client.delete(f"/threads/{thread_id}")
    assert retry.status_code == 404
    assert retry.json()["error"]["message"] == f"No thread found with id '{thread_id}'."


async def test_create_thread_applied_but_answer_lost(
    upstream: EmulatorServer, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    minted = iter(["thread_" + c * 24 for c in "AB"])
    monkeypatch.setattr(ids, "thread_id", lambda: next(minted))
    upstream.faults.add("createThread", "reset", times=1, run_handler=True)
    with pytest.raises(httpx.TransportError):
        await client.post("/threads", json={"messages": [{"role": "user", "content": "lost"}]})
    upstream.faults.add("createThread", "reset", times=1)
    with pytest.raises(httpx.TransportError):
        await client.post("/threads", json={"messages": [{"role": "user", "content": "never"}]})
    # Only the first create reached the store, whole: the thread with its message.
    page = upstream.store.list_messages("thread_" + "A" * 24).data
    assert [m["content"][0]["text"]["value"] for m in page] == ["lost"]
    assert not upstream.store.has_thread("thread_" + "B" * 24)


async def test_thread_faults_via_admin_api(
    upstream: EmulatorServer, admin: httpx.AsyncClient, client: httpx.AsyncClient, thread_id: str
) -> None:
    for operation in THREAD_CALLS:
        response = await admin.post("/faults", json={"operation": operation, "kind": "status", "status": 429, "times": 1})
        assert response.status_code == 200, response.text
        assert (await admin.put("/latency", json={"operation": operation, "seconds": 0.01})).status_code == 200
    assert (await admin.post("/faults", json={"operation": "listThreads", "kind": "status"})).status_code == 400
    for operation in THREAD_CALLS:
        assert (await _call(client, operation, thread_id)).status_code == 429
    assert (await admin.get("/log", params={"operation": "deleteThread"})).json()["count"] == 1
    assert set((await admin.get("/faults")).json()["latency"]) == set(THREAD_CALLS)
