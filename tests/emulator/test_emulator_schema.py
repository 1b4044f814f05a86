"""Every answer of every route, success or error, matches the spec's schemas and carries the
OpenAI headers."""

from __future__ import annotations

import re

import httpx
import pytest

from gateway.emulator import EmulatorServer
from gateway.emulator.ids import REQUEST_ID_RE

from .conftest import HEADERS
from .schemas import operation_ids, validate, validate_response

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


@pytest.mark.parametrize("name", ["MessageObject", "ListMessagesResponse", "MessageFileObject", "ErrorResponse"])
def test_validator_rejects_wrong_shapes(name: str) -> None:
    """Guard against a validator that accepts anything (e.g. an unresolved $ref)."""
    import jsonschema

    with pytest.raises(jsonschema.ValidationError):
        validate({"unexpected": True}, name)


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
