"""Threads over the REST face with the official SDK (``client.beta.threads``), with and without
consumer keys: no consumer needs an upstream key to make one."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest

from gateway.app import start_gateway
from gateway.credentials import store
from gateway.credentials.store import StoreData
from gateway.emulator.server import EmulatorServer
from gateway.operations.ownership import OWNER_KEY
from tests.credentials.helpers import add_consumer, auth_settings
from tests.rest.conftest import base_url


async def _round_trip(sdk: openai.AsyncOpenAI, emulator: EmulatorServer) -> str:
    thread = await sdk.beta.threads.create(
        messages=[{"role": "user", "content": "first"}, {"role": "user", "content": "second"}],
        metadata={"topic": "sdk"})
    assert thread.object == "thread" and thread.metadata == {"topic": "sdk"}
    page = await sdk.beta.threads.messages.list(thread.id, order="asc")
    assert [m.content[0].text.value for m in page.data] == ["first", "second"]  # type: ignore[union-attr]
    got = await sdk.beta.threads.retrieve(thread.id)
    assert (got.id, got.created_at) == (thread.id, thread.created_at)
    updated = await sdk.beta.threads.update(thread.id, metadata={"topic": "done"})
    assert updated.metadata == {"topic": "done"}
    deleted = await sdk.beta.threads.delete(thread.id)
    assert (deleted.id, deleted.deleted, deleted.object) == (thread.id, True, "thread.deleted")
    with pytest.raises(openai.NotFoundError):
        await sdk.beta.threads.messages.list(thread.id)
    with pytest.raises(openai.NotFoundError):
        await sdk.beta.threads.retrieve(thread.id)
    return thread.id


async def test_sdk_threads_through_the_gateway_without_keys(async_sdk, emulator) -> None:
    await _round_trip(async_sdk, emulator)


async def test_sdk_threads_with_a_gateway_key_under_tenant_ownership(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    path = tmp_path / "credentials.json"
    store.write(path, StoreData())
    key = add_consumer(path, "writer", {"read", "write"})
    settings = auth_settings(emulator, path, thread_access="tenant").replace(
        "server", http_listen="127.0.0.1:0")
    gateway = await start_gateway(settings)
    try:
        async with httpx.AsyncClient() as http:
            sdk = openai.AsyncOpenAI(api_key=key, base_url=base_url(gateway), http_client=http,
                                     max_retries=0)
            made = await sdk.beta.threads.create()
            assert made.metadata == {}  # the owner stamp is the gateway's, never shown
            assert OWNER_KEY in emulator.store.get_thread(made.id)["metadata"]
            await _round_trip(sdk, emulator)
    finally:
        await gateway.stop(grace=0.5)
