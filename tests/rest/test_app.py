"""Routes: the proto's annotations, NDJSON streams, disconnects, unknown paths, the auth hook."""

from __future__ import annotations

import asyncio
import json
import logging

import httpx
import pytest
from google.api import annotations_pb2
from starlette.routing import Route

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from gateway.app import Gateway
from gateway.emulator.server import EmulatorServer
from gateway.operations.messages import MessageOperations
from gateway.pipeline import Pipeline
from gateway.rest import ROUTES, create_app
from gateway.upstream.client import UpstreamClient
from tests.conftest import gateway_settings
from tests.rest.conftest import BETA, base_url, new_thread


SERVICES = ("MessagesService", "ThreadsService")


def _annotated_routes() -> set[tuple[str, str, str]]:
    found = set()
    for name in SERVICES:
        for method in pb.DESCRIPTOR.services_by_name[name].methods:
            rule = method.GetOptions().Extensions[annotations_pb2.http]
            verb = rule.WhichOneof("pattern")
            found.add((method.name, verb.upper(), getattr(rule, verb)))
    return found


async def test_routes_match_the_proto_http_annotations_exactly(emulator: EmulatorServer) -> None:
    annotated = _annotated_routes()
    assert len(annotated) == sum(
        len(pb.DESCRIPTOR.services_by_name[name].methods) for name in SERVICES) == 13
    assert set(ROUTES) == annotated
    upstream = UpstreamClient(gateway_settings(emulator).upstream, default_timeout=5.0)
    try:
        app = create_app(MessageOperations(upstream), Pipeline(None, default_timeout=5.0))
        served = {(r.name, m, r.path) for r in app.routes if isinstance(r, Route)
                  for m in (r.methods or ()) if m != "HEAD"}
    finally:
        await upstream.aclose()
    assert served == annotated


async def test_stream_messages_sends_one_json_message_per_line_in_order(
    http: httpx.AsyncClient, emulator: EmulatorServer
) -> None:
    thread_id = await new_thread(emulator)
    emulator.store.seed_messages(thread_id, 250, spacing=1)
    response = await http.get(f"/threads/{thread_id}/messages:stream", params={"order": "asc"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-ndjson"
    assert response.headers["x-request-id"].startswith("req_")
    lines = response.text.splitlines()
    assert [json.loads(line)["id"] for line in lines] == emulator.store.message_ids(thread_id)
    assert all(json.loads(line)["object"] == "thread.message" for line in lines)
    assert emulator.log.count("listMessages") == 3  # pages of 100: 100, 100, 50


async def test_stream_messages_max_items_and_limit_bound_the_pages(
    http: httpx.AsyncClient, emulator: EmulatorServer
) -> None:
    thread_id = await new_thread(emulator)
    emulator.store.seed_messages(thread_id, 30, spacing=1)
    response = await http.get(f"/threads/{thread_id}/messages:stream",
                              params={"limit": 10, "max_items": 15})
    assert len(response.text.splitlines()) == 15
    assert emulator.log.count("listMessages") == 2


async def test_stream_message_files_lists_every_file(
    http: httpx.AsyncClient, emulator: EmulatorServer
) -> None:
    thread_id = await new_thread(emulator)
    created = await http.post(f"/threads/{thread_id}/messages", json={
        "role": "user", "content": "x", "file_ids": ["file-a", "file-b", "file-c"]})
    message_id = created.json()["id"]
    response = await http.get(f"/threads/{thread_id}/messages/{message_id}/files:stream",
                              params={"limit": 2})
    assert [json.loads(x)["id"] for x in response.text.splitlines()] == [
        "file-c", "file-b", "file-a"]


async def test_stream_empty_thread_is_200_with_no_lines(
    http: httpx.AsyncClient, emulator: EmulatorServer
) -> None:
    thread_id = await new_thread(emulator)
    response = await http.get(f"/threads/{thread_id}/messages:stream")
    assert response.status_code == 200 and response.content == b""


async def test_stream_error_before_first_line_is_an_error_status(
    http: httpx.AsyncClient, emulator: EmulatorServer
) -> None:
    # x-should-retry: false, so the gateway's read retries pass the 429 straight on.
    emulator.faults.add("listMessages", "status", times=1, status=429, should_retry=False)
    response = await http.get("/threads/thread_missing/messages:stream")
    assert response.status_code == 429
    assert response.json()["error"]["type"] == "requests"  # the upstream's own words, kept


async def test_stream_error_after_first_line_ends_with_error_line_and_resume_cursor(
    http: httpx.AsyncClient, emulator: EmulatorServer
) -> None:
    thread_id = await new_thread(emulator)
    ids = emulator.store.seed_messages(thread_id, 30, spacing=1)
    # Each page waits 0.3 s in the emulator before it is handled: the thread vanishes while the
    # prefetched second page waits, so that page is a 404 after the first was sent.
    emulator.faults.set_latency("listMessages", 0.3)
    lines: list[dict[str, object]] = []
    async with http.stream("GET", f"/threads/{thread_id}/messages:stream",
                           params={"limit": 10, "order": "asc"}) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if not lines:
                emulator.store.reset()
            lines.append(json.loads(line))
    assert [x["id"] for x in lines[:10]] == ids[:10]
    assert lines[10] == {
        "error": {"message": lines[10]["error"]["message"],  # type: ignore[index]
                  "type": "invalid_request_error", "param": None, "code": None},
        "status": 404, "resume_after": ids[9],
    }
    assert len(lines) == 11


async def test_stream_client_disconnect_cancels_upstream_paging(
    rest_gateway: Gateway, emulator: EmulatorServer
) -> None:
    thread_id = await new_thread(emulator)
    emulator.store.seed_messages(thread_id, 1000, spacing=1)
    emulator.faults.set_latency("listMessages", 0.2)
    async with httpx.AsyncClient(base_url=base_url(rest_gateway), headers=BETA) as client:
        async with client.stream("GET", f"/threads/{thread_id}/messages:stream",
                                 params={"limit": 10}) as response:
            async for _ in response.aiter_lines():
                break  # one line read, then the connection closes
    await asyncio.sleep(0.6)  # three page latencies: a walker still running would ask again
    requested = emulator.log.count("listMessages")
    assert requested <= 2  # the first page and at most the prefetch in flight at the disconnect
    assert emulator.log.in_flight == 0
    await asyncio.sleep(0.5)
    assert emulator.log.count("listMessages") == requested
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()
             and "walk_pages" in repr(t.get_coro())]
    assert tasks == []


async def test_unknown_path_is_404_in_the_error_envelope(http: httpx.AsyncClient) -> None:
    response = await http.get("/threads/thread_1/runs")
    assert response.status_code == 404
    assert response.json() == {"error": {"message": "Invalid URL (GET /v1/threads/thread_1/runs)",
                                         "type": "invalid_request_error", "param": None,
                                         "code": None}}


async def test_wrong_method_is_405_in_the_error_envelope(http: httpx.AsyncClient) -> None:
    response = await http.delete("/threads/thread_1/messages/msg_1")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


async def test_missing_beta_header_is_400_invalid_beta_before_any_upstream_call(
    rest_gateway: Gateway, emulator: EmulatorServer
) -> None:
    async with httpx.AsyncClient(base_url=base_url(rest_gateway)) as client:
        missing = await client.get("/threads/thread_1/messages/msg_1")
        wrong = await client.get("/threads/thread_1/messages/msg_1",
                                 headers={"openai-beta": "assistants=v2"})
        several = await client.get("/threads/thread_1/messages/msg_1",
                                   headers={"openai-beta": "tools=v1, assistants=v1"})
    assert missing.status_code == wrong.status_code == 400
    assert missing.json()["error"]["code"] == wrong.json()["error"]["code"] == "invalid_beta"
    assert several.status_code == 404  # accepted; the upstream has no such thread
    assert emulator.log.count("getMessage") == 1


async def test_sigterm_ends_an_open_stream_with_a_resumable_error_line_and_no_traceback(
    emulator: EmulatorServer, caplog: pytest.LogCaptureFixture
) -> None:
    from gateway.app import start_gateway
    from tests.rest.conftest import rest_settings

    gateway = await start_gateway(rest_settings(emulator))
    thread_id = await new_thread(emulator)
    ids = emulator.store.seed_messages(thread_id, 40, spacing=1)
    emulator.faults.set_latency("listMessages", 0.25)
    lines: list[dict[str, object]] = []
    stopping = None
    async with httpx.AsyncClient(base_url=base_url(gateway), headers=BETA, timeout=10) as http:
        async with http.stream("GET", f"/threads/{thread_id}/messages:stream",
                               params={"limit": 5, "order": "asc"}) as response:
            async for line in response.aiter_lines():
                lines.append(json.loads(line))
                if stopping is None:
                    stopping = asyncio.ensure_future(gateway.stop(grace=3.0))
    assert stopping is not None
    await stopping
    *items, last = lines
    assert [x["id"] for x in items] == ids[:len(items)] and 0 < len(items) < 40
    assert last["error"]["code"] == "gateway_draining"  # type: ignore[index]
    assert (last["status"], last["resume_after"]) == (503, items[-1]["id"])
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
