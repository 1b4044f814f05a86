"""Every answer of every route, success or error, matches the spec's schemas and carries the
OpenAI headers."""

from __future__ import annotations

import re

import httpx
import pytest

from gateway.emulator import OPERATIONS, Emulator, EmulatorServer
from gateway.emulator.ids import REQUEST_ID_RE, THREAD_ID_RE

from .conftest import HEADERS
from .schemas import operation_ids, schema, spec, validate, validate_response

REQUIRED_HEADERS = (
    "x-request-id",
    "openai-processing-ms",
    "openai-version",
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
)


def check(operation: str, response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    for name in REQUIRED_HEADERS:
        assert name in response.headers, name
    assert REQUEST_ID_RE.match(response.headers["x-request-id"])
    assert response.headers["openai-version"] == "2020-10-01"
    assert response.headers["openai-processing-ms"].isdigit()
    assert re.fullmatch(r"[0-9.]+m?s", response.headers["x-ratelimit-reset-requests"])
    body = response.json()
    validate_response(operation, status, body)
    return body


def test_spec_operation_ids_are_the_six() -> None:
    assert sorted(operation_ids().values()) == sorted(
        ["listMessages", "createMessage", "getMessage", "modifyMessage", "listMessageFiles", "getMessageFile"]
    )


def test_threads_spec_operation_ids_are_the_four() -> None:
    assert operation_ids("threads") == {
        ("POST", "/threads"): "createThread",
        ("GET", "/threads/{thread_id}"): "getThread",
        ("POST", "/threads/{thread_id}"): "modifyThread",
        ("DELETE", "/threads/{thread_id}"): "deleteThread",
    }


def test_every_spec_operation_is_served_and_faultable() -> None:
    """The fault operations and the emulator's dispatch table are exactly the specs' operationIds."""
    spec_ids = set(operation_ids("messages").values()) | set(operation_ids("threads").values())
    assert set(OPERATIONS) == spec_ids and len(OPERATIONS) == len(spec_ids)
    assert set(Emulator()._operations) == spec_ids


@pytest.mark.parametrize("name", ["CreateMessageRequest", "Error", "ErrorResponse"])
def test_definitions_shared_by_the_two_specs_are_identical(name: str) -> None:
    assert schema(name, "threads") == schema(name, "messages")


def test_specs_share_beta_header_and_auth() -> None:
    threads, messages = spec("threads"), spec("messages")
    assert threads["components"]["parameters"] == messages["components"]["parameters"]
    assert threads["components"]["securitySchemes"] == messages["components"]["securitySchemes"]
    assert threads["security"] == messages["security"] and threads["servers"] == messages["servers"]


async def test_thread_routes_success_and_errors_match_schema(client: httpx.AsyncClient) -> None:
    empty = check("createThread", await client.post("/threads"), 200)
    assert THREAD_ID_RE.match(empty["id"]) and empty["object"] == "thread" and empty["metadata"] == {}
    created = check(
        "createThread",
        await client.post(
            "/threads",
            json={"messages": [{"role": "user", "content": "hi", "file_ids": ["file-a"], "metadata": {"m": "1"}}],
                  "metadata": {"k": "v"}},
        ),
        200,
    )
    tid = created["id"]
    assert created["metadata"] == {"k": "v"}
    assert check("getThread", await client.get(f"/threads/{tid}"), 200) == created
    modified = check("modifyThread", await client.post(f"/threads/{tid}", json={"metadata": {"x": "y"}}), 200)
    assert modified == {**created, "metadata": {"x": "y"}}
    check("modifyThread", await client.post(f"/threads/{tid}", json={}), 200)
    deleted = check("deleteThread", await client.delete(f"/threads/{tid}"), 200)
    assert deleted == {"id": tid, "object": "thread.deleted", "deleted": True}

    check("createThread", await client.post("/threads", json={"messages": [{"role": "user"}]}), 400)
    check("createThread", await client.post("/threads", json={"metadata": {"k": 1}}), 400)
    check("getThread", await client.get(f"/threads/{tid}"), 404)
    check("modifyThread", await client.post(f"/threads/{tid}", json={}), 404)
    check("modifyThread", await client.post(f"/threads/{empty['id']}", json={"tool_resources": {}}), 400)
    check("deleteThread", await client.delete(f"/threads/{tid}"), 404)
    bad_key = {"Authorization": "Bearer nope"}
    check("getThread", await client.get(f"/threads/{empty['id']}", headers=bad_key), 401)
    check("modifyThread", await client.post(f"/threads/{empty['id']}", json={}, headers=bad_key), 401)
    check("deleteThread", await client.delete(f"/threads/{empty['id']}", headers={"OpenAI-Beta": "assistants=v2"}), 400)


async def test_every_route_success_and_errors_match_schema(
    upstream: EmulatorServer, client: httpx.AsyncClient
) -> None:
    thread = check("createThread", await client.post("/threads", json={"metadata": {"k": "v"}}), 200)
    tid = thread["id"]
    check("createThread", await client.post("/threads"), 200)  # no body at all
    check(
        "createThread",
        await client.post("/threads", json={"messages": [{"role": "user", "content": "hi"}]}),
        200,
    )

    msg = check(
        "createMessage",
        await client.post(
            f"/threads/{tid}/messages",
            json={"role": "user", "content": "hello", "file_ids": ["file-a", "file-b"], "metadata": {"a": "1"}},
        ),
        200,
    )
    mid = msg["id"]
    assert msg["status"] == "completed" and msg["completed_at"] is None and msg["metadata"] == {"a": "1"}
    assistant = check(
        "createMessage",
        await client.post(f"/threads/{tid}/messages", json={"role": "assistant", "content": "yo", "metadata": None}),
        200,
    )
    assert assistant["metadata"] == {} and assistant["file_ids"] == []

    check("getMessage", await client.get(f"/threads/{tid}/messages/{mid}"), 200)
    modified = check("modifyMessage", await client.post(f"/threads/{tid}/messages/{mid}", json={"metadata": {"b": "2"}}), 200)
    assert modified["metadata"] == {"b": "2"}
    check("listMessages", await client.get(f"/threads/{tid}/messages"), 200)
    check("listMessages", await client.get(f"/threads/{tid}/messages", params={"run_id": "run_x"}), 200)
    files = check("listMessageFiles", await client.get(f"/threads/{tid}/messages/{mid}/files"), 200)
    assert [f["id"] for f in files["data"]] == ["file-b", "file-a"]  # desc: last created first
    check("getMessageFile", await client.get(f"/threads/{tid}/messages/{mid}/files/file-a"), 200)
    empty = check("listMessageFiles", await client.get(f"/threads/{tid}/messages/{assistant['id']}/files"), 200)
    assert empty == {"object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False}

    # Errors on every route.
    check("createThread", await client.post("/threads", json={"bogus": 1}), 400)
    check("createMessage", await client.post(f"/threads/{tid}/messages", json={"role": "user"}), 400)
    check("createMessage", await client.post("/threads/thread_nope/messages", json={"role": "user", "content": "x"}), 404)
    check("listMessages", await client.get("/threads/thread_nope/messages"), 404)
    check("listMessages", await client.get(f"/threads/{tid}/messages", params={"limit": 0}), 400)
    check("getMessage", await client.get(f"/threads/{tid}/messages/msg_nope"), 404)
    check("modifyMessage", await client.post(f"/threads/{tid}/messages/{mid}", json={"role": "user"}), 400)
    check("modifyMessage", await client.post(f"/threads/{tid}/messages/msg_nope", json={}), 404)
    check("listMessageFiles", await client.get(f"/threads/{tid}/messages/msg_nope/files"), 404)
    check("listMessageFiles", await client.get(f"/threads/{tid}/messages/{mid}/files", params={"order": "x"}), 400)
    check("getMessageFile", await client.get(f"/threads/{tid}/messages/{mid}/files/file-nope"), 404)
    check("getMessageFile", await client.get(f"/threads/thread_nope/messages/{mid}/files/file-a"), 404)
    check("getMessage", await client.get(f"/threads/{tid}/messages/{mid}", headers={"Authorization": "Bearer nope"}), 401)
    check("getMessage", await client.get(f"/threads/{tid}/messages/{mid}", headers={"OpenAI-Beta": "assistants=v2"}), 400)
    check("getMessage", await client.get(f"/threads/{tid}/bogus"), 404)


async def test_seeded_shapes_match_schema(upstream: EmulatorServer, client: httpx.AsyncClient) -> None:
    """Raw assistant messages with annotations and images, as seeded for gateway tests."""
    tid = upstream.store.create_thread()["id"]
    raw = {
        "created_at": 1700000000,
        "status": "in_progress",
        "incomplete_details": None,
        "completed_at": None,
        "incomplete_at": None,
        "role": "assistant",
        "assistant_id": "asst_abc",
        "run_id": "run_abc",
        "file_ids": ["file-x"],
        "metadata": {},
        "content": [
            {"type": "image_file", "image_file": {"file_id": "file-img"}},
            {
                "type": "text",
                "text": {
                    "value": "See [1] and [2]",
                    "annotations": [
                        {"type": "file_citation", "text": "[1]", "start_index": 4, "end_index": 7,
                         "file_citation": {"file_id": "file-x", "quote": "q"}},
                        {"type": "file_path", "text": "[2]", "start_index": 12, "end_index": 15,
                         "file_path": {"file_id": "file-y"}},
                    ],
                },
            },
        ],
    }
    upstream.store.insert_message(tid, raw)
    page = check("listMessages", await client.get(f"/threads/{tid}/messages"), 200)
    assert page["data"][0]["content"] == raw["content"]
    # A v1-era message (no status & co.) is served as stored, without the newer fields.
    old = upstream.store.insert_message(tid, {"role": "user", "content": raw["content"][1:], "file_ids": [],
                                               "assistant_id": None, "run_id": None, "metadata": {}})
    response = await client.get(f"/threads/{tid}/messages/{old['id']}", headers=HEADERS)
    assert response.status_code == 200
    assert "status" not in response.json() and "completed_at" not in response.json()


async def test_headers_on_ratelimit_count_down(client: httpx.AsyncClient) -> None:
    first = await client.post("/threads")
    second = await client.post("/threads")
    assert int(second.headers["x-ratelimit-remaining-requests"]) == int(first.headers["x-ratelimit-remaining-requests"]) - 1
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


@pytest.mark.parametrize(
    ("spec_name", "name"),
    [("messages", "MessageObject"), ("messages", "ListMessagesResponse"), ("messages", "MessageFileObject"),
     ("messages", "ErrorResponse"), ("threads", "ThreadObject"), ("threads", "DeleteThreadResponse"),
     ("threads", "ErrorResponse")],
)
def test_validator_rejects_wrong_shapes(spec_name: str, name: str) -> None:
    """Guard against a validator that accepts anything (e.g. an unresolved $ref)."""
    import jsonschema

    with pytest.raises(jsonschema.ValidationError):
        validate({"unexpected": True}, name, spec_name)


@pytest.mark.parametrize(
    "thread",
    [{"id": "thread_a", "object": "thread", "created_at": 1},  # metadata is required
     {"id": "thread_a", "object": "thread.deleted", "created_at": 1, "metadata": {}},
     {"id": "thread_a", "object": "thread", "created_at": "1", "metadata": {}}],
)
def test_thread_schema_is_strict_where_the_spec_is(thread: dict) -> None:
    import jsonschema

    with pytest.raises(jsonschema.ValidationError):
        validate(thread, "ThreadObject", "threads")
    validate({"id": "thread_a", "object": "thread", "created_at": 1, "metadata": None}, "ThreadObject", "threads")


@pytest.mark.parametrize("pretty", [True, False])
def test_encoder_matches_json_dumps(pretty: bool) -> None:
    """The cached fast path is byte-identical to json.dumps, before and after a modify."""
    import json

    from gateway.emulator import Store
    from gateway.emulator.encoding import Encoder

    store = Store()
    encoder = Encoder(pretty)
    tid = store.create_thread()["id"]
    store.seed_messages(tid, 5, content="naïve \"quoted\"\nline {i} ✓")
    store.insert_message(tid, {"role": "assistant", "content": [{"type": "image_file", "image_file": {"file_id": "f"}}]})

    def dumps(obj: object) -> bytes:
        if pretty:
            return json.dumps(obj, indent=2, ensure_ascii=False).encode()
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()

    for _ in range(2):  # second round hits the cache
        for page in (store.list_messages(tid), store.list_messages(tid, limit=2), store.list_messages(tid, run_id="x")):
            payload = page.to_json()
            assert encoder.encode(payload) == dumps(payload)
            payload["has_more"] = True
            assert encoder.encode(payload) == dumps(payload)
    first = store.message_ids(tid)[0]
    store.modify_message(tid, first, {"k": "v"})
    payload = store.list_messages(tid, order="asc").to_json()
    assert encoder.encode(payload) == dumps(payload)
    assert encoder.encode({"error": {"message": "x", "type": "t", "param": None, "code": None}}) == dumps(
        {"error": {"message": "x", "type": "t", "param": None, "code": None}}
    )
