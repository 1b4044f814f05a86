"""Helpers for the credentials tests: a store with known consumers and an auth-on gateway."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2_grpc as pb_grpc
from gateway.app import Gateway, start_gateway
from gateway.config import AuthSettings, Settings
from gateway.credentials import store
from gateway.credentials.keys import generate_key
from gateway.credentials.store import Consumer, KeyRecord, StoreData
from gateway.emulator.server import EmulatorServer
from tests.conftest import gateway_settings

#: Reload interval of the test gateways: the bound the reload tests assert.
RELOAD_SECONDS = 0.2


def add_consumer(path: Path, consumer: str, scopes: set[str], profile: str = "default",
                 **limits: object) -> str:
    """Add a consumer with one fresh key to the store at ``path``; returns the key."""
    data = store.read(path)
    key = generate_key()
    record = KeyRecord(key.key_id, key.hash, time.time())
    existing = data.consumers.get(consumer)
    keys = (existing.keys if existing else ()) + (record,)
    data = data.with_consumer(Consumer(consumer, frozenset(scopes), profile, keys,
                                       **limits))  # type: ignore[arg-type]
    store.write(path, data)
    return key.secret


def bearer(key: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {key}"),)


def auth_settings(emulator: EmulatorServer, store_path: Path, **auth: object) -> Settings:
    base = gateway_settings(emulator)
    # Limits off unless a test asks: load tests must see auth outcomes, not the limiter's.
    # Threads open unless a test asks: these tests make their threads on the emulator directly
    # (the ownership tests, tests/operations/test_ownership.py, make them through the gateway).
    values = {"enabled": True, "store_path": str(store_path), "reload_seconds": RELOAD_SECONDS,
              "rate_per_second": 0.0, "failed_auth_limit": 0, "thread_access": "open", **auth}
    return dataclasses.replace(base, auth=AuthSettings(**values))  # type: ignore[arg-type]


@dataclass
class AuthEnv:
    store_path: Path
    writer_key: str
    reader_key: str
    gateway: Gateway
    channel: grpc.aio.Channel
    stub: pb_grpc.MessagesServiceStub


@pytest.fixture
async def auth_env(emulator: EmulatorServer, tmp_path: Path) -> AsyncIterator[AuthEnv]:
    path = tmp_path / "credentials.json"
    store.write(path, StoreData())
    writer = add_consumer(path, "writer", {"read", "write"})
    reader = add_consumer(path, "reader", {"read"})
    gw = await start_gateway(auth_settings(emulator, path))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.grpc_port}") as channel:
            yield AuthEnv(path, writer, reader, gw, channel, pb_grpc.MessagesServiceStub(channel))
    finally:
        await gw.stop(grace=0.5)
