"""Issue 19, case 4: the idempotency marker could be forged through UpdateMessage.

CreateMessage refused ``metadata.gateway_idempotency_key`` but UpdateMessage accepted it: consumer
C put the marker of consumer A's next request id on C's own message, A's keyed create met one
upstream 503, the recovery look-up found C's message and A was answered with it (A's message was
never written). The marker is now reserved on every write, on both faces.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import httpx
import pytest

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from gateway.emulator.server import EmulatorServer
from gateway.operations.idempotency import MARKER_KEY, marker
from tests.credentials.helpers import bearer
from tests.rpc.test_messages_service import details
from tests.security.conftest import secured


async def test_forged_marker_refused_and_a_keyed_create_gets_its_own_message(
        emulator: EmulatorServer, tmp_path: Path) -> None:
    async with secured(emulator, tmp_path, server={"http_listen": "127.0.0.1:0"},
                       consumers=("attacker",)) as env:
        attacker = env.keys["attacker"]
        mine = await env.stub.CreateMessage(pb.CreateMessageRequest(
            thread_id=env.thread_id, role=pb.ROLE_USER, content="attacker's"),
            metadata=bearer(attacker), timeout=5)
        forged = {MARKER_KEY: marker("valid", "req-1")}
        modifies = emulator.log.count("modifyMessage")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await env.stub.UpdateMessage(pb.UpdateMessageRequest(
                thread_id=env.thread_id, message_id=mine.id,
                metadata=pb.Metadata(entries=forged)), metadata=bearer(attacker), timeout=5)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        fields = {v.field for v in details(caught.value)["BadRequest"].field_violations}  # type: ignore[attr-defined]
        assert fields == {f"metadata.{MARKER_KEY}"}
        url = (f"http://127.0.0.1:{env.gateway.http_port}/v1/threads/{env.thread_id}"
               f"/messages/{mine.id}")
        async with httpx.AsyncClient(timeout=5) as http:
            rest = await http.post(url, json={"metadata": forged}, headers={
                "authorization": f"Bearer {attacker}", "openai-beta": "assistants=v1"})
        assert rest.status_code == 400 and rest.json()["error"]["param"] == (
            f"metadata.{MARKER_KEY}")
        assert emulator.log.count("modifyMessage") == modifies
        assert MARKER_KEY not in (emulator.store.get_message(env.thread_id, mine.id)
                                  .get("metadata") or {})

        # The victim's keyed create meets one upstream 503: the look-up finds nothing forged.
        emulator.faults.add("createMessage", "status", times=1, status=503)
        created = await env.stub.CreateMessage(pb.CreateMessageRequest(
            thread_id=env.thread_id, role=pb.ROLE_USER, content="victim's", request_id="req-1"),
            metadata=bearer(env.key), timeout=5)
        assert created.id != mine.id and created.content[0].text.value == "victim's"
        assert created.id in emulator.store.message_ids(env.thread_id)
        assert await env.consumer_ok() and await env.health_ok()
