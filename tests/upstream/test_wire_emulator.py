"""Every kind of emulator response survives JSON → proto → JSON unchanged, through the gateway."""

from __future__ import annotations

import json
from typing import Any

import httpx

from gateway.upstream import wire
from tests.conftest import EMULATOR_KEY

HEADERS = {"authorization": f"Bearer {EMULATOR_KEY}", "openai-beta": "assistants=v1"}

ASSISTANT_MESSAGE: dict[str, Any] = {
    "status": "incomplete",
    "incomplete_details": {"reason": "max_tokens"},
    "completed_at": None,
    "incomplete_at": 1700000100,
    "role": "assistant",
    "content": [
        {"type": "image_file", "image_file": {"file_id": "file-img"}},
        {"type": "text", "text": {"value": "see【1】 and sandbox:/x.csv", "annotations": [
            {"type": "file_citation", "text": "【1】", "file_citation":
                {"file_id": "file-cite", "quote": "a quote"}, "start_index": 4, "end_index": 7},
            {"type": "file_path", "text": "sandbox:/x.csv", "file_path": {"file_id": "file-out"},
             "start_index": 12, "end_index": 26},
        ]}},
    ],
    "assistant_id": "asst_1",
    "run_id": "run_1",
    "file_ids": ["file-cite"],
    "metadata": {"a": "1", "b": "2"},
}
V1_ERA_MESSAGE: dict[str, Any] = {  # before 2024-03-27: no status & co.
    "role": "user",
    "content": [{"type": "text", "text": {"value": "old", "annotations": []}}],
    "assistant_id": None,
    "run_id": None,
    "file_ids": [],
    "metadata": None,
}


def assert_round_trip(parse, render, body: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    again = render(parse(body))
    assert again == body
    assert json.dumps(again, sort_keys=True) == json.dumps(body, sort_keys=True)


async def test_every_emulator_response_round_trips(emulator) -> None:
    thread = emulator.store.create_thread()
    thread_id = thread["id"]
    emulator.store.insert_message(thread_id, ASSISTANT_MESSAGE)
    emulator.store.insert_message(thread_id, V1_ERA_MESSAGE)
    emulator.store.insert_message(thread_id, {**ASSISTANT_MESSAGE, "status": "in_progress",
                                              "incomplete_details": None, "incomplete_at": None})
    base = emulator.base_url
    async with httpx.AsyncClient(headers=HEADERS) as http:
        created = (await http.post(f"{base}/threads/{thread_id}/messages", json={
            "role": "user", "content": "hi", "file_ids": ["file-a", "file-b"],
            "metadata": {"k": "v"}})).json()
        assert_round_trip(wire.message_from_json, wire.message_to_json, created)
        for order in ("asc", "desc"):
            page = (await http.get(f"{base}/threads/{thread_id}/messages",
                                   params={"order": order, "limit": 100})).json()
            assert len(page["data"]) == 4
            assert_round_trip(wire.message_list_from_json, wire.message_list_to_json, page)
            one = (await http.get(f"{base}/threads/{thread_id}/messages/{page['data'][0]['id']}"
                                  )).json()
            assert_round_trip(wire.message_from_json, wire.message_to_json, one)
        end = (await http.get(f"{base}/threads/{thread_id}/messages",
                              params={"after": page["last_id"]})).json()
        assert end["data"] == [] and end["first_id"] is None
        assert_round_trip(wire.message_list_from_json, wire.message_list_to_json, end)
        files = (await http.get(f"{base}/threads/{thread_id}/messages/{created['id']}/files")
                 ).json()
        assert len(files["data"]) == 2
        assert_round_trip(wire.message_file_list_from_json, wire.message_file_list_to_json, files)
        one_file = (await http.get(
            f"{base}/threads/{thread_id}/messages/{created['id']}/files/file-a")).json()
        assert_round_trip(wire.message_file_from_json, wire.message_file_to_json, one_file)


async def test_messages_through_the_gateway_equal_the_upstream_json(emulator, stub) -> None:
    from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb

    thread_id = emulator.store.create_thread()["id"]
    for raw in (ASSISTANT_MESSAGE, V1_ERA_MESSAGE):
        emulator.store.insert_message(thread_id, raw)
    async with httpx.AsyncClient(headers=HEADERS) as http:
        upstream = (await http.get(f"{emulator.base_url}/threads/{thread_id}/messages",
                                   params={"order": "asc"})).json()
    page = await stub.ListMessages(pb.ListMessagesRequest(thread_id=thread_id, order=pb.ORDER_ASC))
    assert wire.message_list_to_json(page) == upstream
    v1_era = page.data[1]
    assert not v1_era.HasField("status")
    assert v1_era.WhichOneof("completed_at_state") is None  # absent, not null
    assert not v1_era.HasField("metadata")  # null
    assert page.data[0].WhichOneof("completed_at_state") == "completed_at_null"
