"""The REST face with real consumer keys: the same Authenticator as gRPC, through the SDK."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import openai
import pytest

from gateway.app import Gateway, start_gateway
from gateway.credentials import store
from gateway.credentials.store import StoreData
from gateway.emulator.server import EmulatorServer
from tests.credentials.helpers import add_consumer, auth_settings
from tests.rpc.test_messages_service import new_thread


@pytest.fixture
async def rest_auth(emulator: EmulatorServer, tmp_path: Path) -> AsyncIterator[
        tuple[Gateway, str, str, Path]]:
    path = tmp_path / "credentials.json"
    store.write(path, StoreData())
    writer = add_consumer(path, "writer", {"read", "write"})
    reader = add_consumer(path, "reader", {"read"})
    settings = auth_settings(emulator, path).replace("server", http_listen="127.0.0.1:0")
    gateway = await start_gateway(settings)
    try:
        yield gateway, writer, reader, path
    finally:
        await gateway.stop(grace=0.5)


def sdk(gateway: Gateway, key: str, http: httpx.AsyncClient) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key=key, base_url=f"http://127.0.0.1:{gateway.http_port}/v1",
                              http_client=http, max_retries=0)


async def test_rest_gateway_key_scopes_and_refusals_through_the_sdk(rest_auth, emulator) -> None:
    gateway, writer, reader, _ = rest_auth
    thread_id = await new_thread(emulator)
    async with httpx.AsyncClient() as http:
        created = await sdk(gateway, writer, http).beta.threads.messages.create(
            thread_id, role="user", content="hello")
        got = await sdk(gateway, reader, http).beta.threads.messages.retrieve(
            created.id, thread_id=thread_id)
        assert got.content[0].text.value == "hello"  # type: ignore[union-attr]
        emulator.log.clear()
        with pytest.raises(openai.PermissionDeniedError):
            await sdk(gateway, reader, http).beta.threads.messages.create(
                thread_id, role="user", content="not allowed")
        with pytest.raises(openai.AuthenticationError):
            await sdk(gateway, "mgw_0123456789abcdef_" + "x" * 43, http).beta.threads.messages.list(
                thread_id)
        with pytest.raises(openai.AuthenticationError):
            await sdk(gateway, "sk-upstream-looking-key", http).beta.threads.messages.list(thread_id)
    assert emulator.log.count() == 0  # refused before any upstream request


async def test_rest_revoked_key_is_refused_after_reload(rest_auth, emulator) -> None:
    import asyncio
    import time

    gateway, _, reader, path = rest_auth
    thread_id = await new_thread(emulator)
    async with httpx.AsyncClient() as http:
        client = sdk(gateway, reader, http)
        await client.beta.threads.messages.list(thread_id)
        key_id = reader.split("_")[1]
        store.write(path, store.revoke_key(store.read(path), key_id, time.time()))
        await asyncio.sleep(0.6)  # the test gateways reload every 0.2 s
        with pytest.raises(openai.AuthenticationError):
            await client.beta.threads.messages.list(thread_id)
