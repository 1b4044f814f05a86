"""The four thread operations: create with initial messages, retrieve, modify, delete - request
rules (params named as the live API named them), metadata limits, deletion of everything under a
thread, and the checks every route shares (auth, beta, unknown fields, unknown URLs)."""

from __future__ import annotations

from typing import Any

import httpx
import jsonschema
import pytest

from gateway.emulator import EmulatorServer, ids

from .conftest import HEADERS
from .schemas import validate, validate_response
from .test_emulator_validation import CREATE_CASES, OK, assert_error

FIXED_ID = "thread_" + "F" * 24


@pytest.fixture
def fixed_thread_id(monkeypatch: pytest.MonkeyPatch) -> str:
    """The id the next thread created through the API gets (to prove a rejected create made none)."""
    monkeypatch.setattr(ids, "thread_id", lambda: FIXED_ID)
    return FIXED_ID


def not_found(thread_id: str) -> str:
    return f"No thread found with id '{thread_id}'."


# ---------------------------------------------------------------------- create


async def test_create_with_messages(upstream: EmulatorServer, client: httpx.AsyncClient) -> None:
    messages = [
        {"role": "user", "content": "first", "file_ids": ["file-a", "file-b"], "metadata": {"n": "1"}},
        {"role": "assistant", "content": "second"},
        {"role": "user", "content": "third", "metadata": None},
    ]
    response = await client.post("/threads", json={"messages": messages, "metadata": {"k": "v"}})
    validate_response("createThread", response.status_code, response.json())
    thread = response.json()
    assert ids.THREAD_ID_RE.match(thread["id"]) and thread["metadata"] == {"k": "v"}

    page = (await client.get(f"/threads/{thread['id']}/messages", params={"order": "asc"})).json()
    validate(page, "ListMessagesResponse")
    assert [m["content"][0]["text"]["value"] for m in page["data"]] == ["first", "second", "third"]
    assert [m["role"] for m in page["data"]] == ["user", "assistant", "user"]
    assert [m["metadata"] for m in page["data"]] == [{"n": "1"}, {}, {}]
    assert [m["file_ids"] for m in page["data"]] == [["file-a", "file-b"], [], []]
    assert all(m["run_id"] is None and m["thread_id"] == thread["id"] for m in page["data"])
    assert {m["created_at"] for m in page["data"]} == {thread["created_at"]}
    files = (await client.get(f"/threads/{thread['id']}/messages/{page['first_id']}/files")).json()
    assert [f["id"] for f in files["data"]] == ["file-b", "file-a"]


@pytest.mark.parametrize(
    "request_body",
    [{"content": b""}, {"json": {}}, {"json": {"messages": []}}, {"json": {"metadata": None}},
     {"json": {"metadata": {}}}],
)
async def test_create_empty_thread(client: httpx.AsyncClient, request_body: dict[str, Any]) -> None:
    response = await client.post("/threads", **request_body)
    assert response.status_code == 200, response.text
    thread = response.json()
    assert thread["metadata"] == {}
    assert (await client.get(f"/threads/{thread['id']}/messages")).json()["data"] == []


@pytest.mark.parametrize(("body", "param", "code"), CREATE_CASES)
async def test_initial_messages_are_checked_as_create_message_is(
    upstream: EmulatorServer, client: httpx.AsyncClient, fixed_thread_id: str,
    body: Any, param: str, code: str,
) -> None:
    """Every create-message rule, on the second of two messages: the same error as a create
    message gives, its param (in the code and the wording) named messages[1].<param>; and nothing
    is created (not the thread, not the valid first message)."""
    tid = upstream.store.create_thread(thread_id="thread_direct")["id"]
    direct = assert_error(await client.post(f"/threads/{tid}/messages", json=body), 400, param, code)
    response = await client.post("/threads", json={"messages": [OK, body], "metadata": {"k": "v"}})
    nested = assert_error(response, 400, f"messages[1].{param}", code)
    assert nested["message"] == direct["message"].replace(f"'{param}'", f"'messages[1].{param}'")
    assert not upstream.store.has_thread(fixed_thread_id)


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"messages": None}, "messages", "invalid_type"),
        ({"messages": {"role": "user", "content": "x"}}, "messages", "invalid_type"),
        ({"messages": "hello"}, "messages", "invalid_type"),
        ({"messages": [OK, "hello"]}, "messages[1]", "invalid_type"),
        ({"messages": [None]}, "messages[0]", "invalid_type"),
        ({"messages": [{"role": "user", "content": ""}]}, "messages[0].content", "empty_string"),
        ({"tool_resources": {}}, "tool_resources", "unknown_parameter"),
        ({"assistant_id": "asst_x"}, "assistant_id", "unknown_parameter"),
        ({"metadata": "k=v"}, "metadata", "invalid_type"),
        ({"metadata": []}, "metadata", "invalid_type"),
    ],
)
async def test_create_rules(
    upstream: EmulatorServer, client: httpx.AsyncClient, fixed_thread_id: str, body: Any, param: str, code: str
) -> None:
    assert_error(await client.post("/threads", json=body), 400, param, code)
    assert not upstream.store.has_thread(fixed_thread_id)


# Bodies with the spec's verdict on them (components/schemas/CreateThreadRequest) and the service's.
# They differ only where the limits live in the description, not in the schema (metadata).
SPEC_CASES: list[tuple[Any, bool]] = [
    ({}, True),
    ({"messages": []}, True),
    ({"messages": [OK, {**OK, "role": "assistant", "file_ids": ["file-a"]}]}, True),
    ({"metadata": None}, True),
    ({"messages": None}, False),
    ({"messages": [{"role": "user"}]}, False),
    ({"messages": [{**OK, "file_ids": []}]}, False),
    ({"messages": [{**OK, "file_ids": ["f"] * 11}]}, False),
    ({"messages": [{**OK, "content": "x" * 256_001}]}, False),
    ({"messages": [{**OK, "role": "system"}]}, False),
    ({"messages": [{**OK, "attachments": []}]}, False),
    ({"tool_resources": {}}, False),
    ({"metadata": 3}, False),
]


@pytest.mark.parametrize(("body", "spec_accepts"), SPEC_CASES)
async def test_create_accepts_what_the_spec_accepts(
    client: httpx.AsyncClient, body: Any, spec_accepts: bool
) -> None:
    try:
        validate(body, "CreateThreadRequest", "threads")
    except jsonschema.ValidationError:
        assert not spec_accepts
    else:
        assert spec_accepts
    response = await client.post("/threads", json=body)
    assert response.status_code == (200 if spec_accepts else 400), response.text[:300]


async def test_create_has_no_maximum_number_of_messages(upstream: EmulatorServer, client: httpx.AsyncClient) -> None:
    response = await client.post("/threads", json={"messages": [{**OK, "content": f"m{i}"} for i in range(150)]})
    assert response.status_code == 200
    assert len(upstream.store.message_ids(response.json()["id"])) == 150


# ---------------------------------------------------------------------- metadata limits

LIMIT_CASES: list[tuple[dict[str, Any], str, str]] = [
    ({f"k{i}": "v" for i in range(17)}, "metadata", "object_above_max_properties"),
    ({"k" * 65: "v"}, "metadata", "string_above_max_length"),
    ({"k": "v" * 513}, "metadata.k", "string_above_max_length"),
    ({"k": 1}, "metadata.k", "invalid_type"),
    ({"k": None}, "metadata.k", "invalid_type"),
    ({"k": {"nested": "x"}}, "metadata.k", "invalid_type"),
    ({"k": True}, "metadata.k", "invalid_type"),
]
AT_THE_LIMITS = {f"{i:064d}": "v" * 512 for i in range(16)}


@pytest.mark.parametrize(("metadata", "param", "code"), LIMIT_CASES)
async def test_metadata_limits_on_create(client: httpx.AsyncClient, metadata: dict, param: str, code: str) -> None:
    assert_error(await client.post("/threads", json={"metadata": metadata}), 400, param, code)
    nested = await client.post("/threads", json={"messages": [{**OK, "metadata": metadata}]})
    assert_error(nested, 400, f"messages[0].{param}", code)


@pytest.mark.parametrize(("metadata", "param", "code"), LIMIT_CASES)
async def test_metadata_limits_on_modify(
    upstream: EmulatorServer, client: httpx.AsyncClient, metadata: dict, param: str, code: str
) -> None:
    tid = upstream.store.create_thread(metadata={"keep": "me"})["id"]
    assert_error(await client.post(f"/threads/{tid}", json={"metadata": metadata}), 400, param, code)
    assert upstream.store.get_thread(tid)["metadata"] == {"keep": "me"}


async def test_metadata_at_the_limits_is_accepted(client: httpx.AsyncClient) -> None:
    created = await client.post("/threads", json={"metadata": AT_THE_LIMITS})
    assert created.status_code == 200 and created.json()["metadata"] == AT_THE_LIMITS
    tid = created.json()["id"]
    modified = await client.post(f"/threads/{tid}", json={"metadata": {"é" * 64: "✓" * 512}})
    assert modified.status_code == 200 and modified.json()["metadata"] == {"é" * 64: "✓" * 512}


# ---------------------------------------------------------------------- retrieve and modify


async def test_retrieve(upstream: EmulatorServer, client: httpx.AsyncClient) -> None:
    created = (await client.post("/threads", json={"metadata": {"a": "1"}})).json()
    assert (await client.get(f"/threads/{created['id']}")).json() == created
    seeded = upstream.store.create_thread(thread_id="thread_seeded", created_at=1700000000)
    assert (await client.get("/threads/thread_seeded")).json() == seeded
    response = await client.get("/threads/thread_nope")
    assert assert_error(response, 404, None, None)["message"] == not_found("thread_nope")


async def test_modify_replaces_metadata_wholesale(upstream: EmulatorServer, client: httpx.AsyncClient) -> None:
    created = (await client.post("/threads", json={"metadata": {"a": "1", "b": "2"}})).json()
    url = f"/threads/{created['id']}"
    handed_out = upstream.store.get_thread(created["id"])
    replaced = (await client.post(url, json={"metadata": {"c": "3"}})).json()
    assert replaced == {**created, "metadata": {"c": "3"}}
    assert handed_out["metadata"] == {"a": "1", "b": "2"}  # replaced, not mutated
    assert (await client.post(url, json={})).json()["metadata"] == {"c": "3"}
    assert (await client.post(url, json={"metadata": None})).json()["metadata"] == {"c": "3"}
    assert (await client.post(url, content=b"")).json()["metadata"] == {"c": "3"}
    assert (await client.post(url, json={"metadata": {}})).json()["metadata"] == {}
    assert (await client.get(url)).json() == {**created, "metadata": {}}


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [({"messages": []}, "messages", "unknown_parameter"),
     ({"tool_resources": {}}, "tool_resources", "unknown_parameter"),
     ({"metadata": {}, "id": "thread_other"}, "id", "unknown_parameter"),
     ({"metadata": []}, "metadata", "invalid_type")],
)
async def test_modify_rules(upstream: EmulatorServer, client: httpx.AsyncClient, body: Any, param: str, code: str) -> None:
    tid = upstream.store.create_thread()["id"]
    assert_error(await client.post(f"/threads/{tid}", json=body), 400, param, code)
    # The body is checked before the path: a bad body on an unknown thread is still a 400.
    assert_error(await client.post("/threads/thread_nope", json=body), 400, param, code)


async def test_modify_unknown_thread(client: httpx.AsyncClient) -> None:
    response = await client.post("/threads/thread_nope", json={"metadata": {"a": "b"}})
    assert assert_error(response, 404, None, None)["message"] == not_found("thread_nope")


@pytest.mark.parametrize(
    ("raw", "code"), [(b"{not json", None), (b"[1, 2]", "invalid_type"), (b"null", "invalid_type")]
)
async def test_bodies_must_be_json_objects(upstream: EmulatorServer, client: httpx.AsyncClient, raw: bytes,
                                           code: str | None) -> None:
    tid = upstream.store.create_thread()["id"]
    for url in ("/threads", f"/threads/{tid}"):
        response = await client.post(url, content=raw, headers={"Content-Type": "application/json"})
        assert_error(response, 400, None, code)


# ---------------------------------------------------------------------- delete


async def test_delete_removes_the_thread_and_everything_under_it(
    upstream: EmulatorServer, client: httpx.AsyncClient
) -> None:
    tid = (await client.post("/threads", json={"messages": [{**OK, "file_ids": ["file-a"]}]})).json()["id"]
    mid = upstream.store.message_ids(tid)[0]
    other = upstream.store.create_thread()["id"]
    other_mid = upstream.store.create_message(other, role="user", content="stays", file_ids=["file-a"])["id"]

    response = await client.delete(f"/threads/{tid}")
    assert response.status_code == 200
    assert response.json() == {"id": tid, "object": "thread.deleted", "deleted": True}
    validate_response("deleteThread", 200, response.json())

    after = [
        await client.get(f"/threads/{tid}"),
        await client.post(f"/threads/{tid}", json={"metadata": {"a": "b"}}),
        await client.delete(f"/threads/{tid}"),
        await client.get(f"/threads/{tid}/messages"),
        await client.post(f"/threads/{tid}/messages", json=OK),
        await client.get(f"/threads/{tid}/messages/{mid}"),
        await client.post(f"/threads/{tid}/messages/{mid}", json={}),
        await client.get(f"/threads/{tid}/messages/{mid}/files"),
        await client.get(f"/threads/{tid}/messages/{mid}/files/file-a"),
    ]
    for answer in after:
        assert assert_error(answer, 404, None, None)["message"] == not_found(tid)
    assert not upstream.store.has_thread(tid)
    # Another thread, its message and the same file id attached there are untouched.
    assert (await client.get(f"/threads/{other}/messages/{other_mid}/files/file-a")).status_code == 200
    assert upstream.store.message_ids(other) == [other_mid]
    assert upstream.log.count("deleteThread") == 2


async def test_a_deleted_id_seeded_again_is_a_new_empty_thread(
    upstream: EmulatorServer, admin: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    assert (await admin.post("/threads", json={"id": "thread_reused"})).status_code == 200
    upstream.store.seed_messages("thread_reused", 3)
    assert (await client.delete("/threads/thread_reused")).status_code == 200
    assert (await admin.post("/threads", json={"id": "thread_reused"})).status_code == 200
    assert (await client.get("/threads/thread_reused/messages")).json()["data"] == []


async def test_delete_ignores_a_body(upstream: EmulatorServer, client: httpx.AsyncClient) -> None:
    tid = upstream.store.create_thread()["id"]
    response = await client.request("DELETE", f"/threads/{tid}", content=b"{not json")
    assert response.status_code == 200 and response.json()["deleted"] is True


# ---------------------------------------------------------------------- shared checks

ROUTES = [("POST", "/threads"), ("GET", "/threads/{tid}"), ("POST", "/threads/{tid}"), ("DELETE", "/threads/{tid}")]


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [({"Authorization": "Bearer sk-wrong"}, 401, "invalid_api_key"),
     ({"Authorization": ""}, 401, "invalid_api_key"),
     ({"OpenAI-Beta": "assistants=v2"}, 400, "invalid_beta"),
     ({"OpenAI-Beta": ""}, 400, "invalid_beta")],
)
async def test_auth_and_beta_on_every_thread_route(
    upstream: EmulatorServer, method: str, path: str, headers: dict, status: int, code: str
) -> None:
    tid = upstream.store.create_thread(metadata={"k": "v"})["id"]
    async with httpx.AsyncClient(base_url=upstream.base_url) as c:
        response = await c.request(method, path.format(tid=tid), headers={**HEADERS, **headers},
                                   json={"metadata": {"k": "changed"}} if method == "POST" else None)
    assert_error(response, status, None, code)
    assert "sk-wrong" not in response.text
    # Nothing was applied: the thread is still there, unchanged, and no other thread was made.
    assert upstream.store.get_thread(tid)["metadata"] == {"k": "v"}
    assert upstream.log.count() == 1


@pytest.mark.parametrize(("method", "path"), [("PUT", "/threads/{tid}"), ("PATCH", "/threads/{tid}"),
                                              ("GET", "/threads"), ("DELETE", "/threads"), ("POST", "/threads/")])
async def test_other_methods_and_paths_are_invalid_urls(
    upstream: EmulatorServer, client: httpx.AsyncClient, method: str, path: str
) -> None:
    tid = upstream.store.create_thread()["id"]
    response = await client.request(method, path.format(tid=tid))
    error = assert_error(response, 404, None, None)
    assert error["message"] == f"Invalid URL ({method} /v1{path.format(tid=tid)})"
    assert upstream.store.has_thread(tid)
