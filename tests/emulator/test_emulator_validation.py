"""Each request rule answers 400 with the right ``param`` (and code); auth 401; beta 400; 404s."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from gateway.emulator import EmulatorServer

from .conftest import API_KEY, HEADERS
from .schemas import validate

OK = {"role": "user", "content": "hello"}

CREATE_CASES: list[tuple[Any, str | None, str | None]] = [
    ({"content": "x"}, "role", "missing_required_parameter"),
    ({"role": "user"}, "content", "missing_required_parameter"),
    ({**OK, "role": "system"}, "role", "invalid_value"),
    ({**OK, "role": 1}, "role", "invalid_type"),
    ({**OK, "content": ""}, "content", "empty_string"),
    ({**OK, "content": "x" * 256_001}, "content", "string_above_max_length"),
    ({**OK, "content": ["x"]}, "content", "invalid_type"),
    ({**OK, "file_ids": []}, "file_ids", "empty_array"),
    ({**OK, "file_ids": [f"file-{i}" for i in range(11)]}, "file_ids", "array_above_max_length"),
    ({**OK, "file_ids": "file-a"}, "file_ids", "invalid_type"),
    ({**OK, "file_ids": ["file-a", 3]}, "file_ids[1]", "invalid_type"),
    ({**OK, "metadata": {f"k{i}": "v" for i in range(17)}}, "metadata", "object_above_max_properties"),
    ({**OK, "metadata": {"k" * 65: "v"}}, "metadata", "string_above_max_length"),
    ({**OK, "metadata": {"k": "v" * 513}}, "metadata.k", "string_above_max_length"),
    ({**OK, "metadata": {"k": 1}}, "metadata.k", "invalid_type"),
    ({**OK, "metadata": []}, "metadata", "invalid_type"),
    ({**OK, "attachments": []}, "attachments", "unknown_parameter"),
    ({**OK, "assistant_id": "asst_x"}, "assistant_id", "unknown_parameter"),
]


@pytest.fixture
async def thread_id(upstream: EmulatorServer) -> str:
    return upstream.store.create_thread()["id"]


def assert_error(response: httpx.Response, status: int, param: str | None, code: str | None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    validate(body, "ErrorResponse")
    error = body["error"]
    assert error["param"] == param, error
    assert error["code"] == code, error
    assert error["type"] == "invalid_request_error"
    return error


@pytest.mark.parametrize(("body", "param", "code"), CREATE_CASES)
async def test_create_rules(client: httpx.AsyncClient, thread_id: str, body: Any, param: str, code: str) -> None:
    assert_error(await client.post(f"/threads/{thread_id}/messages", json=body), 400, param, code)


async def test_create_limits_accepted(client: httpx.AsyncClient, thread_id: str) -> None:
    body = {
        "role": "assistant",
        "content": "é" * 256_000,
        "file_ids": [f"file-{i}" for i in range(10)],
        "metadata": {f"{i:064d}": "v" * 512 for i in range(16)},
    }
    response = await client.post(f"/threads/{thread_id}/messages", json=body)
    assert response.status_code == 200, response.text[:300]
    assert response.json()["content"][0]["text"]["value"] == "é" * 256_000


@pytest.mark.parametrize(
    ("raw", "code"),
    [(b"{not json", None), (b"[1, 2]", "invalid_type"), (b'"text"', "invalid_type")],
)
async def test_body_must_be_a_json_object(client: httpx.AsyncClient, thread_id: str, raw: bytes, code: str | None) -> None:
    response = await client.post(
        f"/threads/{thread_id}/messages", content=raw, headers={"Content-Type": "application/json"}
    )
    assert_error(response, 400, None, code)


async def test_modify_rules(upstream: EmulatorServer, client: httpx.AsyncClient, thread_id: str) -> None:
    mid = upstream.store.create_message(thread_id, role="user", content="x", metadata={"a": "1"})["id"]
    url = f"/threads/{thread_id}/messages/{mid}"
    assert_error(await client.post(url, json={"content": "y"}), 400, "content", "unknown_parameter")
    assert_error(await client.post(url, json={"metadata": {"k": 2}}), 400, "metadata.k", "invalid_type")
    assert (await client.post(url, json={})).json()["metadata"] == {"a": "1"}
    assert (await client.post(url, json={"metadata": None})).json()["metadata"] == {"a": "1"}
    assert (await client.post(url, json={"metadata": {"b": "2"}})).json()["metadata"] == {"b": "2"}
    assert (await client.get(url)).json()["metadata"] == {"b": "2"}


async def test_thread_create_rules(client: httpx.AsyncClient) -> None:
    assert_error(await client.post("/threads", json={"tools": []}), 400, "tools", "unknown_parameter")
    assert_error(await client.post("/threads", json={"messages": {}}), 400, "messages", "invalid_type")
    assert_error(
        await client.post("/threads", json={"messages": [OK, {"role": "bot", "content": "x"}]}),
        400, "messages[1].role", "invalid_value",
    )
    assert_error(await client.post("/threads", json={"metadata": {"k": None}}), 400, "metadata.k", "invalid_type")


@pytest.mark.parametrize(
    ("query", "param", "code"),
    [
        ({"limit": "0"}, "limit", "integer_below_min_value"),
        ({"limit": "101"}, "limit", "integer_above_max_value"),
        ({"limit": "-1"}, "limit", "integer_below_min_value"),
        ({"limit": "ten"}, "limit", "invalid_type"),
        ({"limit": "1.5"}, "limit", "invalid_type"),
        ({"limit": ""}, "limit", "invalid_type"),
        ({"limit": "1_0"}, "limit", "invalid_type"),
        ({"order": "ASC"}, "order", "invalid_value"),
        ({"order": ""}, "order", "invalid_value"),
        ({"after": "msg_nope"}, "after", "invalid_value"),
        ({"before": "msg_nope"}, "before", "invalid_value"),
    ],
)
async def test_list_query_rules(client: httpx.AsyncClient, thread_id: str, query: dict, param: str, code: str) -> None:
    assert_error(await client.get(f"/threads/{thread_id}/messages", params=query), 400, param, code)


async def test_list_limit_edges_accepted(client: httpx.AsyncClient, thread_id: str) -> None:
    for limit in ("1", "100"):
        assert (await client.get(f"/threads/{thread_id}/messages", params={"limit": limit})).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer sk-wrong-key-abcdefghijklmnop"},
        {"Authorization": ""},
        {"Authorization": "Basic abc"},
        {"Authorization": "Bearer"},
        {"Authorization": f"Bearer {API_KEY}x"},
    ],
)
async def test_auth(upstream: EmulatorServer, headers: dict[str, str]) -> None:
    async with httpx.AsyncClient(base_url=upstream.base_url) as c:
        response = await c.get("/threads/thread_x/messages", headers={**HEADERS, **headers})
    error = assert_error(response, 401, None, "invalid_api_key")
    assert "sk-wrong" not in error["message"] and API_KEY not in error["message"]
    assert "abcdefghijklmnop"[-4:] not in response.text


async def test_auth_header_missing(upstream: EmulatorServer) -> None:
    async with httpx.AsyncClient(base_url=upstream.base_url) as c:
        response = await c.get("/threads/thread_x/messages", headers={"OpenAI-Beta": "assistants=v1"})
    assert_error(response, 401, None, "invalid_api_key")


@pytest.mark.parametrize("beta", [None, "assistants=v2", "", "assistants=v1x"])
async def test_beta_header(upstream: EmulatorServer, beta: str | None) -> None:
    headers = {"Authorization": HEADERS["Authorization"]}
    if beta is not None:
        headers["OpenAI-Beta"] = beta
    async with httpx.AsyncClient(base_url=upstream.base_url) as c:
        response = await c.get("/threads/thread_x/messages", headers=headers)
    assert_error(response, 400, None, "invalid_beta")


async def test_not_found_messages(upstream: EmulatorServer, client: httpx.AsyncClient, thread_id: str) -> None:
    mid = upstream.store.create_message(thread_id, role="user", content="x", file_ids=["file-a"])["id"]
    other = upstream.store.create_thread()["id"]
    cases = [
        (await client.get("/threads/thread_nope/messages"), "No thread found with id 'thread_nope'."),
        (await client.get(f"/threads/{thread_id}/messages/msg_nope"), "No message found with id 'msg_nope'."),
        (await client.get(f"/threads/{other}/messages/{mid}"), f"No message found with id '{mid}'."),
        (await client.get(f"/threads/{thread_id}/messages/{mid}/files/file-b"), "No file found with id 'file-b'."),
    ]
    for response, message in cases:
        assert assert_error(response, 404, None, None)["message"] == message
