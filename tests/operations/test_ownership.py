"""Threads belong to their owner: the access matrix over both faces and every thread mode, the
stamp a consumer can neither see nor write, adoption, and deletion reaching every cache."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog

from gateway.app import Gateway, start_gateway
from gateway.config import CacheSettings, ProfileSettings, Settings
from gateway.credentials import store
from gateway.credentials.store import StoreData
from gateway.emulator.server import EmulatorServer
from gateway.operations.ownership import OWNER_KEY
from tests.conftest import EMULATOR_KEY
from tests.credentials.helpers import add_consumer, auth_settings
from tests.pipeline.faces import Call, Driver, Outcome
from tests.pipeline.test_parity import connect
from tests.rest.conftest import new_thread

#: Every call on a thread, the thread's deletion last; (rpc, needs write).
CALLS = (
    ("GetThread", False), ("ListMessages", False), ("StreamMessages", False),
    ("GetMessage", False), ("ListMessageFiles", False), ("StreamMessageFiles", False),
    ("GetMessageFile", False), ("UpdateThread", True), ("CreateMessage", True),
    ("UpdateMessage", True), ("DeleteThread", True),
)
#: Who calls: the owner (made the thread), another consumer of its profile, a consumer of
#: another profile, and a read-only consumer of the owner's profile.
CALLERS = ("owner", "same_tenant", "other_tenant", "reader")


@dataclass
class Keys:
    owner: str
    same_tenant: str
    other_tenant: str
    reader: str
    admin: str


def ownership_settings(emulator: EmulatorServer, path: Path, access: str, **cache: object
                       ) -> Settings:
    settings = auth_settings(emulator, path, thread_access=access)
    settings = settings.replace("server", http_listen="127.0.0.1:0")
    return dataclasses.replace(settings, profiles=(ProfileSettings(
        name="tenant-b", base_url=emulator.base_url, api_key=EMULATOR_KEY),),
        cache=CacheSettings(**cache))  # type: ignore[arg-type]


def make_keys(path: Path) -> Keys:
    store.write(path, StoreData())
    return Keys(
        owner=add_consumer(path, "owner", {"read", "write"}),
        same_tenant=add_consumer(path, "colleague", {"read", "write"}),
        other_tenant=add_consumer(path, "stranger", {"read", "write"}, profile="tenant-b"),
        reader=add_consumer(path, "reader", {"read"}),
        admin=add_consumer(path, "admin", {"read", "write", "admin"}),
    )


@pytest.fixture(params=["tenant", "consumer", "open"])
async def owned(request: pytest.FixtureRequest, emulator: EmulatorServer,
                tmp_path: Path) -> AsyncIterator[tuple[str, Gateway, Keys]]:
    path = tmp_path / "credentials.json"
    keys = make_keys(path)
    gateway = await start_gateway(ownership_settings(emulator, path, request.param))
    try:
        yield request.param, gateway, keys
    finally:
        await gateway.stop(grace=0.5)


def expected(access: str, caller: str, write: bool) -> str:
    if caller == "reader" and write:
        return "PERMISSION_DENIED"  # the scope is checked before anything else
    if access == "open":
        return "OK"
    if caller == "other_tenant" or (access == "consumer" and caller != "owner"):
        return "NOT_FOUND"
    return "OK"


async def _thread_with_file(face: Driver, key: str) -> tuple[str, str]:
    made = await face.call(Call("CreateThread", {}, {"messages": [
        {"role": "user", "content": "first"}]}, key=key))
    assert made.code == "OK", made
    (thread_id,) = made.ids
    created = await face.call(Call("CreateMessage", {"thread_id": thread_id}, {
        "role": "user", "content": "with a file", "file_ids": ["file-abc"]}, key=key))
    assert created.code == "OK", created
    return thread_id, created.ids[0]


def _call(rpc: str, thread_id: str, message_id: str, key: str) -> Call:
    ids = {"thread_id": thread_id}
    body = None
    if "Message" in rpc and rpc not in ("ListMessages", "StreamMessages", "CreateMessage"):
        ids["message_id"] = message_id
    if rpc == "GetMessageFile":
        ids["file_id"] = "file-abc"
    if rpc == "CreateMessage":
        body = {"role": "user", "content": "more"}
    elif rpc in ("UpdateThread", "UpdateMessage"):
        body = {"metadata": {"touched": "yes"}}
    return Call(rpc, ids, body, key=key)


@pytest.mark.parametrize("face_name", ["grpc", "rest"])
async def test_access_matrix_every_call_every_caller(owned, emulator, face_name) -> None:
    access, gateway, keys = owned
    connected = await connect(gateway)
    face = connected.drivers[face_name]
    try:
        seen: dict[tuple[str, str], str] = {}
        want: dict[tuple[str, str], str] = {}
        for caller in CALLERS:
            thread_id, message_id = await _thread_with_file(face, keys.owner)
            for rpc, write in CALLS:
                call = _call(rpc, thread_id, message_id, getattr(keys, caller))
                outcome = (await face.stream(call) if rpc.startswith("Stream")
                           else await face.call(call))
                seen[(caller, rpc)] = outcome.code
                want[(caller, rpc)] = expected(access, caller, write)
                if outcome.code == "NOT_FOUND":
                    # Exactly what a missing thread answers: no existence oracle.
                    missing = _call(rpc, "thread_nope", message_id, getattr(keys, caller))
                    other = await (face.stream(missing) if rpc.startswith("Stream")
                                   else face.call(missing))
                    assert (outcome.reason, outcome.field) == (other.reason, other.field)
        assert seen == want
    finally:
        await connected.close()


@dataclass
class TenantOwned:
    gateway: Gateway
    keys: Keys
    connected: Any


@pytest.fixture
async def tenant_owned(emulator: EmulatorServer, tmp_path: Path) -> AsyncIterator[TenantOwned]:
    path = tmp_path / "credentials.json"
    keys = make_keys(path)
    gateway = await start_gateway(ownership_settings(emulator, path, "tenant"))
    connected = await connect(gateway)
    try:
        yield TenantOwned(gateway, keys, connected)
    finally:
        await connected.close()
        await gateway.stop(grace=0.5)


async def test_stamp_is_invisible_and_no_write_can_set_change_or_remove_it(
    emulator: EmulatorServer, tenant_owned: TenantOwned
) -> None:
    gateway, keys, connected = tenant_owned.gateway, tenant_owned.keys, tenant_owned.connected
    for face in connected.drivers.values():
        made = await face.call(Call("CreateThread", {}, {"metadata": {"team": "a"}},
                                    key=keys.owner))
        (thread_id,) = made.ids
        stored = emulator.store.get_thread(thread_id)["metadata"]
        assert stored["team"] == "a" and OWNER_KEY in stored
        before = dict(stored)
        emulator.log.clear()
        for call in (
            Call("CreateThread", {}, {"metadata": {OWNER_KEY: "forged"}}, key=keys.owner),
            Call("UpdateThread", {"thread_id": thread_id},
                 {"metadata": {OWNER_KEY: "forged"}}, key=keys.owner),
            Call("CreateThread", {}, {}, key=keys.owner,
                 extra_body={"metadata": {OWNER_KEY: "forged"}}),
        ):
            refused = await face.call(call)
            assert refused.code == "INVALID_ARGUMENT", (face.face, call, refused)
        assert emulator.log.count() == 0  # refused before any upstream request
        assert emulator.store.get_thread(thread_id)["metadata"] == before
        # Updates replace the metadata wholesale, and the stamp goes back in every time:
        # emptying the metadata does not remove it; none is ever shown.
        emptied = await face.call(Call("UpdateThread", {"thread_id": thread_id},
                                       {"metadata": {}}, key=keys.owner))
        assert emptied.code == "OK"
        assert emptied_metadata(emulator, thread_id) == {OWNER_KEY: before[OWNER_KEY]}
        updated = await face.call(Call("UpdateThread", {"thread_id": thread_id},
                                       {"metadata": {"team": "b"}}, key=keys.owner))
        assert updated.code == "OK"
        stored = emulator.store.get_thread(thread_id)["metadata"]
        assert stored == {"team": "b", OWNER_KEY: before[OWNER_KEY]}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}/v1",
                                     headers={"openai-beta": "assistants=v1"}) as http:
            shown = await http.get(f"/threads/{thread_id}",
                                   headers={"authorization": f"Bearer {keys.same_tenant}"})
        assert shown.status_code == 200 and shown.json()["metadata"] == {"team": "b"}


def emptied_metadata(emulator: EmulatorServer, thread_id: str) -> dict[str, str]:
    return dict(emulator.store.get_thread(thread_id)["metadata"])


async def test_threads_made_outside_are_refused_until_an_admin_adopts_them(
    emulator: EmulatorServer, tenant_owned: TenantOwned
) -> None:
    keys, connected = tenant_owned.keys, tenant_owned.connected
    face = connected.drivers["grpc"]
    outside = await new_thread(emulator)
    get = Call("ListMessages", {"thread_id": outside}, key=keys.owner)
    assert (await face.call(get)).code == "NOT_FOUND"
    adopt = Call("AdoptThread", {"thread_id": outside}, {}, key=keys.owner)
    assert (await face.call(adopt)).code == "PERMISSION_DENIED"
    with structlog.testing.capture_logs() as logs:
        adopt.key = keys.admin
        assert (await face.call(adopt)).code == "OK"
    audit = next(e for e in logs if e["event"] == "audit")
    assert (audit["method"], audit["consumer"], audit["thread_id"]) == (
        "AdoptThread", "admin", outside)
    assert any(e["event"] == "thread_adopted" for e in logs)
    assert (await face.call(get)).code == "OK"  # the admin's tenant: the owner's too
    assert (await connected.drivers["rest"].call(Call(
        "ListMessages", {"thread_id": outside}, key=keys.other_tenant))).code == "NOT_FOUND"


@pytest.mark.redis
async def test_deleting_a_thread_empties_every_replicas_cache(
    emulator: EmulatorServer, tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    path = tmp_path / "credentials.json"
    keys = make_keys(path)
    settings = ownership_settings(emulator, path, "tenant", backend="redis", redis_url=redis_url,
                                  redis_key_prefix=redis_prefix)
    replicas = [await start_gateway(settings) for _ in range(2)]
    connections = [await connect(g) for g in replicas]
    try:
        a, b = (c.drivers["grpc"] for c in connections)
        thread_id, message_id = await _thread_with_file(a, keys.owner)
        get = _call("GetMessage", thread_id, message_id, keys.owner)
        assert [(await b.call(get)).cache for _ in range(2)] == ["miss", "hit"]
        deleted = await a.call(Call("DeleteThread", {"thread_id": thread_id}, key=keys.owner))
        assert deleted.code == "OK"
        after: Outcome = await b.call(get)
        assert after.code == "NOT_FOUND"
    finally:
        for c in connections:
            await c.close()
        for g in replicas:
            await g.stop(grace=0.5)


@pytest.mark.parametrize("content", [None, b"", b"  \n"])
async def test_an_unreadable_or_empty_owner_secret_file_stops_the_start(
    emulator: EmulatorServer, tmp_path: Path, content: bytes | None
) -> None:
    """Stamps keyed with nothing (or a key that differs per replica) would lose every owner:
    the start is refused naming the setting."""
    from gateway.config import ConfigError

    path = tmp_path / "credentials.json"
    make_keys(path)
    secret = tmp_path / "owner-secret"
    if content is not None:
        secret.write_bytes(content)
    settings = auth_settings(emulator, path, thread_access="tenant",
                             owner_secret_file=str(secret))
    with pytest.raises(ConfigError, match="auth.owner_secret_file"):
        await start_gateway(settings)


async def test_stamps_follow_the_configured_secret(emulator: EmulatorServer,
                                                   tmp_path: Path) -> None:
    """Two replicas with the same secret agree on owners; a replica with another secret does
    not recognise the stamps (so the secret must be the same everywhere)."""
    path = tmp_path / "credentials.json"
    keys = make_keys(path)
    secret = tmp_path / "owner-secret"
    secret.write_text("s3cret-one\n")
    base = ownership_settings(emulator, path, "tenant")
    same = base.replace("auth", owner_secret_file=str(secret))
    other = base.replace("auth", owner_secret="s3cret-two")
    gateways = [await start_gateway(s) for s in (same, same, other)]
    connections = [await connect(g) for g in gateways]
    try:
        a, b, c = (conn.drivers["grpc"] for conn in connections)
        made = await a.call(Call("CreateThread", {}, {}, key=keys.owner))
        (thread_id,) = made.ids
        get = Call("GetThread", {"thread_id": thread_id}, key=keys.owner)
        assert [(await d.call(get)).code for d in (a, b, c)] == ["OK", "OK", "NOT_FOUND"]
    finally:
        for conn in connections:
            await conn.close()
        for g in gateways:
            await g.stop(grace=0.5)


async def test_another_owners_thread_and_a_missing_one_answer_byte_for_byte_alike(
    emulator: EmulatorServer, tenant_owned: TenantOwned
) -> None:
    """No existence oracle: status, details, trailers / body and headers are the same (the
    gateway's own request id aside), the first time and once the owner is cached."""
    import grpc

    from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
    from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2_grpc as pb_grpc

    gateway, keys = tenant_owned.gateway, tenant_owned.keys
    made = await tenant_owned.connected.drivers["grpc"].call(
        Call("CreateThread", {}, {}, key=keys.owner))
    (owned,) = made.ids
    missing = "thread_" + "x" * 24
    stranger = (("authorization", f"Bearer {keys.other_tenant}"),)

    async def grpc_answer(thread_id: str) -> tuple[object, ...]:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.grpc_port}") as channel:
            stub = pb_grpc.MessagesServiceStub(channel)
            call = stub.ListMessages(pb.ListMessagesRequest(thread_id=thread_id),
                                     metadata=stranger, timeout=5)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call
        err = caught.value
        trailers = tuple((k, v) for k, v in (err.trailing_metadata() or ())
                         if k != "x-gateway-request-id")
        return (err.code(), err.details().replace(thread_id, "<id>"),
                tuple((k, v.replace(thread_id.encode(), b"<id>") if isinstance(v, bytes) else v)
                      for k, v in trailers))

    async def rest_answer(thread_id: str) -> tuple[object, ...]:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}/v1") as http:
            response = await http.get(f"/threads/{thread_id}/messages", headers={
                "openai-beta": "assistants=v1", "authorization": f"Bearer {keys.other_tenant}"})
        headers = sorted((k, v) for k, v in response.headers.items()
                         if k not in {"x-gateway-request-id", "date", "content-length"})
        return response.status_code, response.text.replace(thread_id, "<id>"), tuple(headers)

    for answer in (grpc_answer, rest_answer):
        first = await answer(owned), await answer(missing)
        again = await answer(owned), await answer(missing)
        assert first[0] == first[1] == again[0] == again[1], answer.__name__


async def test_an_adoption_on_one_replica_is_seen_by_another_at_once(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    path = tmp_path / "credentials.json"
    keys = make_keys(path)
    settings = ownership_settings(emulator, path, "tenant")
    replicas = [await start_gateway(settings) for _ in range(2)]
    connections = [await connect(g) for g in replicas]
    try:
        a, b = (c.drivers["grpc"] for c in connections)
        outside = await new_thread(emulator)
        listing = Call("ListMessages", {"thread_id": outside}, key=keys.owner)
        assert (await b.call(listing)).code == "NOT_FOUND"
        assert (await a.call(Call("AdoptThread", {"thread_id": outside}, {},
                                  key=keys.admin))).code == "OK"
        assert (await b.call(listing)).code == "OK"
    finally:
        for c in connections:
            await c.close()
        for g in replicas:
            await g.stop(grace=0.5)
