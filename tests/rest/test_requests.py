"""Bad HTTP input is a 400 in the error envelope naming the field, before any upstream call."""

from __future__ import annotations

import httpx
import pytest

from gateway.emulator.server import EmulatorServer
from gateway.rest.requests import MAX_BODY_BYTES
from tests.rest.conftest import new_thread


async def _create(http: httpx.AsyncClient, thread_id: str, **kwargs: object) -> httpx.Response:
    return await http.post(f"/threads/{thread_id}/messages", **kwargs)  # type: ignore[arg-type]


def _error(response: httpx.Response) -> dict[str, object]:
    assert response.status_code == 400, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["type"] == "invalid_request_error"
    return body["error"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(("kwargs", "code"), [
    ({"content": b"{not json", "headers": {"content-type": "application/json"}}, "invalid_json"),
    ({"content": b'{"role": NaN}', "headers": {"content-type": "application/json"}},
     "invalid_json"),
    ({"content": b"[1, 2]", "headers": {"content-type": "application/json"}}, "invalid_type"),
    ({"content": b'{"role": "user"}', "headers": {"content-type": "text/plain"}},
     "invalid_content_type"),
    ({"data": {"role": "user", "content": "x"}}, "invalid_content_type"),  # a form post
])
async def test_create_unparseable_body_is_400(
    http: httpx.AsyncClient, emulator: EmulatorServer, kwargs: dict[str, object], code: str
) -> None:
    error = _error(await _create(http, "thread_1", **kwargs))
    assert error["code"] == code and error["param"] is None
    assert emulator.log.count("createMessage") == 0


@pytest.mark.parametrize(("body", "param", "code"), [
    ({"role": "user", "content": "x", "colour": "red"}, "colour", "unknown_parameter"),
    ({"role": "user", "content": 5}, "content", "invalid_type"),
    ({"role": "user", "content": [{"type": "text", "text": "x"}]}, "content", "invalid_type"),
    ({"role": 1, "content": "x"}, "role", "invalid_type"),
    ({"role": "system", "content": "x"}, "role", "invalid_value"),
    ({"content": "x"}, "role", "invalid_argument"),
    ({"role": "user"}, "content", "invalid_argument"),
    ({"role": "user", "content": ""}, "content", "invalid_argument"),
    ({"role": "user", "content": "x", "file_ids": "file-a"}, "file_ids", "invalid_type"),
    # The spec: minItems 1, not nullable; a proto cannot tell an empty repeated field from none.
    ({"role": "user", "content": "x", "file_ids": []}, "file_ids", "empty_array"),
    ({"role": "user", "content": "x", "file_ids": None}, "file_ids", "invalid_type"),
    ({"role": "user", "content": "x", "file_ids": ["f"] * 11}, "file_ids", "invalid_argument"),
    ({"role": "user", "content": "x", "file_ids": ["ok", 3]}, "file_ids[1]", "invalid_type"),
    ({"role": "user", "content": "x", "metadata": {"k": 1}}, "metadata", "invalid_type"),
    ({"role": "user", "content": "x", "metadata": ["k"]}, "metadata", "invalid_type"),
    # The contract has no null metadata: refused, never silently sent as none.
    ({"role": "user", "content": "x", "metadata": None}, "metadata", "invalid_type"),
])
async def test_create_invalid_field_is_400_naming_it(
    http: httpx.AsyncClient, emulator: EmulatorServer, body: dict[str, object], param: str,
    code: str,
) -> None:
    error = _error(await _create(http, "thread_1", json=body))
    assert (error["param"], error["code"]) == (param, code)
    assert emulator.log.count("createMessage") == 0


async def test_create_lone_surrogate_is_400_naming_the_field(http: httpx.AsyncClient) -> None:
    error = _error(await _create(http, "thread_1", content=b'{"role":"user","content":"\\ud800"}',
                                 headers={"content-type": "application/json"}))
    assert (error["param"], error["code"]) == ("content", "invalid_value")


async def test_update_null_metadata_is_400_naming_it(
    http: httpx.AsyncClient, emulator: EmulatorServer
) -> None:
    error = _error(await http.post("/threads/thread_1/messages/msg_1", json={"metadata": None}))
    assert (error["param"], error["code"]) == ("metadata", "invalid_type")
    assert "Leave 'metadata' out" in str(error["message"])
    assert emulator.log.count("modifyMessage") == 0


async def test_update_unknown_field_is_400(http: httpx.AsyncClient) -> None:
    error = _error(await http.post("/threads/thread_1/messages/msg_1",
                                   json={"metadata": {}, "content": "x"}))
    assert error["param"] == "content" and error["code"] == "unknown_parameter"


async def test_oversized_body_is_400_without_reading_it_all(
    http: httpx.AsyncClient, emulator: EmulatorServer
) -> None:
    big = b'{"role": "user", "content": "' + b"x" * MAX_BODY_BYTES + b'"}'
    error = _error(await _create(http, "thread_1", content=big,
                                 headers={"content-type": "application/json"}))
    assert error["code"] == "request_too_large"

    async def chunks():  # no content-length: the cap applies while reading
        for _ in range(MAX_BODY_BYTES // 65536 + 2):
            yield b"x" * 65536

    error = _error(await _create(http, "thread_1", content=chunks(),
                                 headers={"content-type": "application/json"}))
    assert error["code"] == "request_too_large"
    assert emulator.log.count("createMessage") == 0


async def test_largest_valid_create_is_accepted(
    http: httpx.AsyncClient, emulator: EmulatorServer
) -> None:
    thread_id = await new_thread(emulator)
    response = await _create(http, thread_id, json={"role": "user", "content": "\u00e9" * 256_000})
    assert response.status_code == 200
    assert len(response.json()["content"][0]["text"]["value"]) == 256_000


@pytest.mark.parametrize(("query", "param", "code"), [
    ({"limit": "0"}, "limit", "integer_below_min_value"),
    ({"limit": "-3"}, "limit", "integer_below_min_value"),
    ({"limit": "101"}, "limit", "invalid_argument"),
    ({"limit": "99999999999"}, "limit", "invalid_argument"),
    ({"limit": "ten"}, "limit", "invalid_type"),
    ({"limit": " 5"}, "limit", "invalid_type"),
    ({"order": "up"}, "order", "invalid_value"),
    ({"after": "../../admin"}, "after", "invalid_argument"),
    ({"run_id": "a b"}, "run_id", "invalid_argument"),
])
async def test_list_invalid_query_is_400_naming_it(
    http: httpx.AsyncClient, emulator: EmulatorServer, query: dict[str, str], param: str,
    code: str,
) -> None:
    for path in ("/threads/thread_1/messages", "/threads/thread_1/messages:stream"):
        error = _error(await http.get(path, params=query))
        assert (error["param"], error["code"]) == (param, code)
    assert emulator.log.count("listMessages") == 0


async def test_stream_max_items_zero_is_400(http: httpx.AsyncClient) -> None:
    error = _error(await http.get("/threads/thread_1/messages:stream", params={"max_items": "0"}))
    assert error["param"] == "max_items"


async def test_bad_path_id_is_400_naming_it(
    http: httpx.AsyncClient, emulator: EmulatorServer
) -> None:
    error = _error(await http.get("/threads/thread_1/messages/a%20b"))
    assert error["param"] == "message_id"
    assert emulator.log.count("getMessage") == 0


async def test_unmodelled_query_passes_through_like_extra_query(
    http: httpx.AsyncClient, emulator: EmulatorServer
) -> None:
    thread_id = await new_thread(emulator)
    response = await http.get(f"/threads/{thread_id}/messages", params={"flavour": "x"})
    assert response.status_code == 200
    assert emulator.log.entries[-1].query == {"flavour": "x"}


async def test_timeout_header_must_be_positive_seconds(http: httpx.AsyncClient) -> None:
    error = _error(await http.get("/threads/thread_1/messages/msg_1",
                                  headers={"x-gateway-timeout": "soon"}))
    assert error["param"] == "x-gateway-timeout"
