"""Issue 19, case 3: ids that are only dots.

``.`` passed the id allow-list and the HTTP client removes a dot segment from the path, so an
update of message ``.`` became ``POST /threads/T/messages`` (a create), and ``%2e`` on the REST
face is the same id once the path is decoded. Every such id is refused, naming the field, before
any upstream request.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import httpx
import pytest
from google.protobuf import struct_pb2

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from gateway.emulator.server import EmulatorServer
from tests.credentials.helpers import bearer
from tests.rpc.test_messages_service import details
from tests.security.conftest import secured

DOTS = [".", "..", "..."]


def _violations(err: grpc.aio.AioRpcError) -> set[str]:
    return {v.field for v in details(err)["BadRequest"].field_violations}  # type: ignore[attr-defined]


@pytest.mark.parametrize("dots", DOTS)
async def test_update_of_a_dot_message_creates_nothing(
        emulator: EmulatorServer, tmp_path: Path, dots: str) -> None:
    async with secured(emulator, tmp_path) as env:
        body = struct_pb2.Struct()
        body.update({"role": "user", "content": "smuggled"})
        before = emulator.log.count()
        messages = len(emulator.store.message_ids(env.thread_id))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await env.stub.UpdateMessage(pb.UpdateMessageRequest(
                thread_id=env.thread_id, message_id=dots,
                options=pb.RequestOptions(extra_body=body)), metadata=bearer(env.key), timeout=5)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "message_id" in _violations(caught.value)
        assert emulator.log.count() == before
        assert len(emulator.store.message_ids(env.thread_id)) == messages
        assert await env.consumer_ok()


@pytest.mark.parametrize("field", ["thread_id", "message_id"])
@pytest.mark.parametrize("dots", DOTS)
async def test_get_with_a_dot_id_is_invalid_argument_naming_the_field(
        emulator: EmulatorServer, tmp_path: Path, field: str, dots: str) -> None:
    async with secured(emulator, tmp_path) as env:
        ids = {"thread_id": env.thread_id, "message_id": env.message_id, field: dots}
        before = emulator.log.count()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await env.stub.GetMessage(pb.GetMessageRequest(**ids), metadata=bearer(env.key),
                                      timeout=5)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert _violations(caught.value) == {field}
        assert emulator.log.count() == before


@pytest.mark.parametrize("encoded", ["%2e", "%2E", "%2e%2e"])
async def test_rest_percent_encoded_dot_ids_are_400(
        emulator: EmulatorServer, tmp_path: Path, encoded: str) -> None:
    async with secured(emulator, tmp_path, server={"http_listen": "127.0.0.1:0"}) as env:
        before = emulator.log.count()
        messages = len(emulator.store.message_ids(env.thread_id))
        base = f"http://127.0.0.1:{env.gateway.http_port}/v1/threads/{env.thread_id}/messages"
        headers = {"authorization": f"Bearer {env.key}", "openai-beta": "assistants=v1"}
        async with httpx.AsyncClient(timeout=5) as http:
            # Sent as written: httpx would resolve a literal '.' segment itself.
            url = httpx.URL(base + "/" + encoded)
            got = await http.get(url, headers=headers)
            posted = await http.post(url, headers=headers,
                                     json={"role": "user", "content": "smuggled"})
        assert got.status_code == 400 and posted.status_code == 400, (got.text, posted.text)
        assert got.json()["error"]["param"] == "message_id"
        assert emulator.log.count() == before
        assert len(emulator.store.message_ids(env.thread_id)) == messages


async def test_rest_percent_encoded_dot_thread_id_is_400(
        emulator: EmulatorServer, tmp_path: Path) -> None:
    async with secured(emulator, tmp_path, server={"http_listen": "127.0.0.1:0"}) as env:
        before = emulator.log.count()
        url = httpx.URL(f"http://127.0.0.1:{env.gateway.http_port}/v1/threads/%2e/messages")
        headers = {"authorization": f"Bearer {env.key}", "openai-beta": "assistants=v1"}
        async with httpx.AsyncClient(timeout=5) as http:
            listed = await http.get(url, headers=headers)
            posted = await http.post(url, headers=headers, json={"role": "user", "content": "x"})
        assert listed.status_code == 400 and posted.status_code == 400
        assert listed.json()["error"]["param"] == posted.json()["error"]["param"] == "thread_id"
        assert emulator.log.count() == before
