"""``client.threads`` and ``python -m messages_gateway_client threads``: threads without any
upstream key."""

from __future__ import annotations

import grpc
import pytest

from messages_gateway_client import AsyncMessagesGatewayClient
from messages_gateway_client._errors import GatewayError
from tests.clients.test_cli import cli, lines


async def test_async_threads_create_retrieve_update_delete(aclient: AsyncMessagesGatewayClient,
                                                           emulator) -> None:
    thread = await aclient.threads.create(
        messages=[{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi"}],
        metadata={"team": "a"})
    assert thread.id.startswith("thread_") and dict(thread.metadata.entries) == {"team": "a"}
    listed = [m.content[0].text.value async for m in aclient.messages.list(thread.id, order="asc")]
    assert listed == ["hello", "hi"]
    assert (await aclient.threads.retrieve(thread.id)).created_at == thread.created_at
    updated = await aclient.threads.update(thread.id, metadata={"team": "b"})
    assert dict(updated.metadata.entries) == {"team": "b"}
    deleted = await aclient.threads.delete(thread.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (thread.id, "thread.deleted", True)
    with pytest.raises(GatewayError) as gone:
        await aclient.threads.retrieve(thread.id)
    assert gone.value.code == grpc.StatusCode.NOT_FOUND
    assert emulator.store.has_thread(thread.id) is False


async def test_cli_threads_create_retrieve_update_delete(target, emulator) -> None:
    code, out, _ = await cli("threads", "create", "--message", "one", "--message", "two",
                             "--metadata", "k=v", "--target", target)
    assert code == 0
    (thread,) = lines(out)
    assert thread["object"] == "thread" and thread["metadata"] == {"k": "v"}
    code, out, _ = await cli("messages", "list", str(thread["id"]), "--order", "asc",
                             "--target", target)
    assert [m["content"][0]["text"]["value"] for m in lines(out)] == ["one", "two"]
    code, out, _ = await cli("threads", "update", str(thread["id"]), "--metadata", "k=w",
                             "--target", target)
    assert lines(out)[0]["metadata"] == {"k": "w"}
    code, out, _ = await cli("threads", "delete", str(thread["id"]), "--target", target)
    assert lines(out) == [{"id": thread["id"], "object": "thread.deleted", "deleted": True}]
    code, _, err = await cli("threads", "retrieve", str(thread["id"]), "--target", target)
    assert code == 1 and "NOT_FOUND" in err
