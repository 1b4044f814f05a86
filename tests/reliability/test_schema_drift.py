"""F10, schema drift: upstream answers beyond the schema reach consumers of both faces in a
documented form, with the rest of the page (or stream) intact, instead of failing it whole."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import pytest

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2_grpc as pb_grpc
from gateway.app import start_gateway
from gateway.emulator.server import EmulatorServer
from tests.rest.conftest import BETA, base_url, rest_settings


@dataclass
class Faces:
    stub: pb_grpc.MessagesServiceStub
    http: httpx.AsyncClient


@pytest.fixture
async def faces(emulator: EmulatorServer) -> AsyncIterator[Faces]:
    gw = await start_gateway(rest_settings(emulator))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.grpc_port}") as channel, \
                httpx.AsyncClient(base_url=base_url(gw), headers=BETA, timeout=10.0) as http:
            yield Faces(pb_grpc.MessagesServiceStub(channel), http)
    finally:
        await gw.stop(grace=0.5)


def thread_with(emulator: EmulatorServer, odd: dict[str, Any]) -> tuple[str, list[str]]:
    """A thread of three messages, ascending: plain, ``odd`` (stored exactly as given), plain."""
    store = emulator.store
    thread_id = str(store.create_thread()["id"])
    first = store.create_message(thread_id, role="user", content="before")
    raw = {"role": "assistant", "content": [], "assistant_id": None, "run_id": None,
           "file_ids": [], "metadata": {}, "created_at": first["created_at"], **odd}
    middle = store.insert_message(thread_id, raw)
    last = store.create_message(thread_id, role="user", content="after")
    return thread_id, [first["id"], middle["id"], last["id"]]


async def grpc_list(faces: Faces, thread_id: str) -> list[pb.Message]:
    page = await faces.stub.ListMessages(
        pb.ListMessagesRequest(thread_id=thread_id, order=pb.ORDER_ASC), timeout=5)
    return list(page.data)


async def grpc_stream(faces: Faces, thread_id: str) -> list[pb.Message]:
    call = faces.stub.StreamMessages(
        pb.StreamMessagesRequest(thread_id=thread_id, order=pb.ORDER_ASC, limit=2), timeout=5)
    return [m async for page in call for m in page.data]


async def rest_list(faces: Faces, thread_id: str) -> list[dict[str, Any]]:
    response = await faces.http.get(f"/threads/{thread_id}/messages", params={"order": "asc"})
    assert response.status_code == 200, response.text
    return list(response.json()["data"])


async def rest_stream(faces: Faces, thread_id: str) -> list[dict[str, Any]]:
    response = await faces.http.get(f"/threads/{thread_id}/messages:stream",
                                    params={"order": "asc", "limit": 2})
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.text.splitlines()]


# -- metadata values that are not strings ----------------------------------------------------------


async def test_drift_metadata_number_arrives_as_its_json_text_on_both_faces(
        faces: Faces, emulator: EmulatorServer) -> None:
    thread_id, ids = thread_with(emulator, {"metadata": {"k": 123, "s": "v"}})
    for messages in (await grpc_list(faces, thread_id), await grpc_stream(faces, thread_id)):
        assert [m.id for m in messages] == ids
        assert dict(messages[1].metadata.entries) == {"k": "123", "s": "v"}
        assert messages[2].content[0].text.value == "after"
    for items in (await rest_list(faces, thread_id), await rest_stream(faces, thread_id)):
        assert [m["id"] for m in items] == ids
        assert items[1]["metadata"] == {"k": "123", "s": "v"}
        assert items[0]["content"][0]["text"]["value"] == "before"


# -- content part types and roles the contract does not know --------------------------------------

NEW_PARTS = [
    {"type": "text", "text": {"value": "known", "annotations": []}},
    {"type": "refusal", "refusal": "I cannot", "extra": {"n": 1}},
    {"type": "image_url", "image_url": {"url": "https://example.test/x.png", "detail": "low"}},
]


async def test_drift_new_role_and_part_types_arrive_with_the_rest_of_the_page(
        faces: Faces, emulator: EmulatorServer) -> None:
    thread_id, ids = thread_with(emulator, {"role": "developer", "content": NEW_PARTS})
    for messages in (await grpc_list(faces, thread_id), await grpc_stream(faces, thread_id)):
        assert [m.id for m in messages] == ids
        drifted = messages[1]
        assert drifted.role == pb.ROLE_UNSPECIFIED and drifted.unknown_role == "developer"
        assert [c.WhichOneof("part") for c in drifted.content] == ["text", "unknown", "unknown"]
        assert [c.unknown.type for c in drifted.content[1:]] == ["refusal", "image_url"]
        assert json.loads(drifted.content[1].unknown.json) == NEW_PARTS[1]
        assert [m.role for m in (messages[0], messages[2])] == [pb.ROLE_USER, pb.ROLE_USER]
    for items in (await rest_list(faces, thread_id), await rest_stream(faces, thread_id)):
        assert [m["id"] for m in items] == ids
        assert items[1]["role"] == "developer"
        assert items[1]["content"] == NEW_PARTS  # re-rendered exactly as the upstream sent it
        assert items[2]["content"][0]["text"]["value"] == "after"
    one = await faces.http.get(f"/threads/{thread_id}/messages/{ids[1]}")
    assert one.status_code == 200 and one.json()["content"] == NEW_PARTS


# -- fields the contract does not have, and ids that are not there ----------------------------------


async def test_drift_extra_message_fields_are_not_forwarded_on_either_face(
        faces: Faces, emulator: EmulatorServer) -> None:
    thread_id, ids = thread_with(emulator, {"x_internal_note": "upstream-only", "score": 0.5})
    assert [m.id for m in await grpc_list(faces, thread_id)] == ids
    for items in (await rest_list(faces, thread_id), await rest_stream(faces, thread_id)):
        assert [m["id"] for m in items] == ids
        assert "x_internal_note" not in items[1] and "score" not in items[1]
        assert "upstream-only" not in json.dumps(items)


async def test_drift_a_message_without_an_id_fails_the_page_internal_on_both_faces(
        faces: Faces, emulator: EmulatorServer) -> None:
    thread_id, _ = thread_with(emulator, {"id": None})
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await grpc_list(faces, thread_id)
    assert info.value.code() == grpc.StatusCode.INTERNAL
    response = await faces.http.get(f"/threads/{thread_id}/messages")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "upstream_invalid_response"
