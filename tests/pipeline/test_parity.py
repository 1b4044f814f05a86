"""Both faces behave the same: one table of scenarios, each run over gRPC and over REST.

Every scenario returns what a consumer sees (``Outcome``: status, reason, field, ids, resume
point, cache outcome, plus scenario figures such as upstream request counts from the emulator's
log). The test asserts the expected outcome on the gRPC face and then that the REST face gives
exactly the same one, so both faces cannot agree on a wrong answer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import structlog

from gateway.app import Gateway, start_gateway
from gateway.config import Settings
from gateway.credentials import store
from gateway.credentials.store import StoreData
from gateway.emulator.server import EmulatorServer
from gateway.rest import ROUTES
from tests.credentials.helpers import add_consumer, auth_settings
from tests.pipeline.faces import Call, Driver, GrpcDriver, Outcome, RestDriver
from tests.rest.conftest import new_thread

TAG = "x-trace-tag"


@dataclass
class Env:
    emulator: EmulatorServer
    store_path: Path
    settings: Settings
    gateway: Gateway
    writer: str
    reader: str

    def consumer(self, name: str, scopes: set[str], **limits: object) -> str:
        """A fresh consumer (one per face and scenario), live in the gateway at once."""
        key = add_consumer(self.store_path, name, scopes, **limits)
        assert self.gateway.reloader is not None and self.gateway.reloader.load()
        return key

    def expire_soon(self, consumer: str, seconds: float) -> float:
        data = store.read(self.store_path)
        found = data.consumers[consumer]
        expires = time.time() + seconds
        keys = tuple(dataclasses.replace(k, expires=expires) for k in found.keys)
        store.write(self.store_path, data.with_consumer(dataclasses.replace(found, keys=keys)))
        assert self.gateway.reloader is not None and self.gateway.reloader.load()
        return expires

    def revoke(self, consumer: str) -> None:
        data = store.read(self.store_path)
        for record in data.consumers[consumer].keys:
            data = store.revoke_key(data, record.key_id, time.time())
        store.write(self.store_path, data)
        assert self.gateway.reloader is not None and self.gateway.reloader.load()


def parity_settings(emulator: EmulatorServer, path: Path) -> Settings:
    settings = auth_settings(emulator, path)
    settings = settings.replace("server", http_listen="127.0.0.1:0")
    return settings.replace("upstream", allowed_extra_headers=(TAG,))


@pytest.fixture
async def env(emulator: EmulatorServer, tmp_path: Path) -> AsyncIterator[Env]:
    path = tmp_path / "credentials.json"
    store.write(path, StoreData())
    writer = add_consumer(path, "writer", {"read", "write"})
    reader = add_consumer(path, "reader", {"read"})
    settings = parity_settings(emulator, path)
    gateway = await start_gateway(settings)
    try:
        yield Env(emulator, path, settings, gateway, writer, reader)
    finally:
        await gateway.stop(grace=0.5)


@dataclass
class Connected:
    drivers: dict[str, Driver]
    close: Callable[[], Awaitable[None]]


async def connect(gateway: Gateway) -> Connected:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{gateway.grpc_port}")
    client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}", timeout=20)

    async def close() -> None:
        await client.aclose()
        await channel.close()

    return Connected({"grpc": GrpcDriver(channel), "rest": RestDriver(client)}, close)


def seed(env: Env, thread_id: str, count: int) -> list[str]:
    return env.emulator.store.seed_messages(thread_id, count, spacing=1)


# -- the scenarios ----------------------------------------------------------------------------------

Scenario = Callable[[Env, Driver], Awaitable[Outcome]]


async def stream_limit(env: Env, face: Driver) -> Outcome:
    key = env.consumer(f"limited-{face.face}", {"read"}, max_streams=2)
    thread_id = await new_thread(env.emulator)
    seed(env, thread_id, 40)
    env.emulator.faults.set_latency("listMessages", 0.3)
    opened = [asyncio.Event(), asyncio.Event()]
    holders = []
    for event in opened:
        async def first(event: asyncio.Event = event) -> None:
            event.set()
            await asyncio.sleep(30)  # hold the stream open
        call = Call("StreamMessages", {"thread_id": thread_id}, params={"limit": 5}, key=key)
        holders.append(asyncio.ensure_future(face.stream(call, first)))
    await asyncio.wait_for(asyncio.gather(*(e.wait() for e in opened)), 10)
    other = await new_thread(env.emulator)
    third = await face.stream(Call("StreamMessages", {"thread_id": other}, key=key))
    third.extra = {"upstream": sum(other in e.path for e in env.emulator.log.entries)}
    for holder in holders:
        holder.cancel()
    await asyncio.gather(*holders, return_exceptions=True)
    env.emulator.faults.set_latency("listMessages", 0.0)
    return third


async def _interrupted_stream(env: Env, face: Driver, key: str,
                              interrupt: Callable[[], Awaitable[None]], thread_id: str = "",
                              backward: bool = False) -> Outcome:
    """A 40-message walk in pages of 5, ``interrupt`` run once the first item arrived; a
    backward walk starts before the newest message."""
    thread_id = thread_id or await new_thread(env.emulator)
    ids = seed(env, thread_id, 40)
    env.emulator.faults.set_latency("listMessages", 0.25)
    params: dict[str, Any] = {"limit": 5, "order": "asc"}
    if backward:
        params["before"] = ids[-1]
    call = Call("StreamMessages", {"thread_id": thread_id}, params=params, key=key)
    outcome = await face.stream(call, interrupt)
    env.emulator.faults.set_latency("listMessages", 0.0)
    # Everything delivered is the list's own order, and the resume point is where it stopped.
    first = ids.index(outcome.ids[0])
    assert outcome.ids == ids[first:first + len(outcome.ids)]
    if backward:
        assert outcome.ids[-1] == ids[-2]  # the page just before the cursor
    return _edges(outcome)


def _edges(outcome: Outcome) -> Outcome:
    """Ids differ between the faces' threads: say how many arrived and whether the resume
    point is the last one delivered (forwards) or the first (backwards)."""
    if outcome.resume is not None:
        direction, cursor = outcome.resume
        edge = outcome.ids[0] if direction == "before" else outcome.ids[-1]
        outcome.resume = (direction, "<edge>" if cursor == edge else cursor)
    outcome.extra = {"delivered": len(outcome.ids)}
    outcome.ids = []
    return outcome


async def revoked_stream(env: Env, face: Driver) -> Outcome:
    name = f"revokee-{face.face}"
    key = env.consumer(name, {"read"})

    async def revoke() -> None:
        env.revoke(name)

    return await _interrupted_stream(env, face, key, revoke)


async def expired_stream(env: Env, face: Driver) -> Outcome:
    name = f"expiring-{face.face}"
    key = env.consumer(name, {"read"})

    async def expire() -> None:
        expires = env.expire_soon(name, 0.05)
        await asyncio.sleep(max(0.0, expires - time.time()) + 0.05)

    return await _interrupted_stream(env, face, key, expire)


async def thread_deleted_mid_stream(env: Env, face: Driver) -> Outcome:
    thread_id = ""

    async def delete() -> None:
        gone = await face.call(Call("DeleteThread", {"thread_id": thread_id}, key=env.writer))
        assert gone.code == "OK"

    made = await face.call(Call("CreateThread", {}, {}, key=env.writer))
    (thread_id,) = made.ids
    outcome = await _interrupted_stream(env, face, env.reader, delete, thread_id=thread_id)
    # The upstream's own error: gRPC names the reason UPSTREAM_NOT_FOUND, REST keeps the
    # upstream's envelope (its code is null), as for every upstream error.
    outcome.reason = None
    return outcome


async def _drained_stream(env: Env, face_name: str, backward: bool = False) -> Outcome:
    """SIGTERM's path (``Gateway.stop``) on a gateway of its own, with a stream open."""
    gateway = await start_gateway(env.settings)
    connected = await connect(gateway)
    stopping: list[asyncio.Future[None]] = []

    async def stop() -> None:
        stopping.append(asyncio.ensure_future(gateway.stop(grace=3.0)))
        await asyncio.sleep(0.05)

    try:
        face = connected.drivers[face_name]
        return await _interrupted_stream(env, face, env.reader, stop, backward=backward)
    finally:
        await connected.close()
        if stopping:
            await stopping[0]
        else:
            await gateway.stop(grace=0.5)


async def drained_forward(env: Env, face: Driver) -> Outcome:
    return await _drained_stream(env, face.face)


async def drained_backward(env: Env, face: Driver) -> Outcome:
    return await _drained_stream(env, face.face, backward=True)


async def audit_line(env: Env, face: Driver) -> Outcome:
    thread_id = await new_thread(env.emulator)
    with structlog.testing.capture_logs() as logs:
        outcome = await face.call(Call("CreateMessage", {"thread_id": thread_id},
                                       {"role": "user", "content": "audited"}, key=env.writer))
    (line,) = [e for e in logs if e["event"] == "audit"]
    assert line["face"] == face.face and line["thread_id"] == thread_id
    assert line["message_id"] == outcome.ids[0]
    outcome.extra = {k: v for k, v in line.items()
                     if k not in {"face", "request_id", "duration_ms", "thread_id", "message_id"}}
    (call_line,) = [e for e in logs if e["event"] == "call"]
    outcome.extra["call_line"] = sorted(k for k in call_line if k != "face")
    outcome.ids = []
    return outcome


async def cache_control(env: Env, face: Driver) -> Outcome:
    thread_id = await new_thread(env.emulator)
    (message_id,) = seed(env, thread_id, 1)
    before = env.emulator.log.count("getMessage")
    seen = []
    for headers in ([], [], [("cache-control", "no-cache")], [("cache-control", "no-store")],
                    []):
        got = await face.call(Call("GetMessage", {"thread_id": thread_id,
                                                  "message_id": message_id},
                                   key=env.reader, headers=headers))
        seen.append(got.cache)
    return Outcome("OK", extra={"cache": seen,
                                "upstream": env.emulator.log.count("getMessage") - before})


async def idempotency_key(env: Env, face: Driver) -> Outcome:
    thread_id = await new_thread(env.emulator)
    before = env.emulator.log.count("createMessage")
    call = Call("CreateMessage", {"thread_id": thread_id}, {"role": "user", "content": "once"},
                key=env.writer, headers=[("idempotency-key", f"key-{face.face}")])
    first, again = await face.call(call), await face.call(call)
    return Outcome(first.code, extra={"same": first.ids == again.ids,
                                      "upstream": env.emulator.log.count("createMessage") - before})


#: Every method a writer may call, the thread's deletion last.
EVERY_METHOD = [*(rpc for rpc, _, _ in ROUTES if not rpc.endswith("Thread")),
                "CreateThread", "GetThread", "UpdateThread", "DeleteThread"]


def _every_method(thread_id: str, message_id: str, file_id: str) -> list[Call]:
    ids = {"thread_id": thread_id, "message_id": message_id, "file_id": file_id}
    paths = {rpc: path for rpc, _, path in ROUTES}
    calls = []
    for rpc in EVERY_METHOD:
        path = paths[rpc]
        body = None
        if rpc == "CreateMessage":
            body = {"role": "user", "content": "q"}
        elif rpc in ("UpdateMessage", "UpdateThread", "CreateThread"):
            body = {"metadata": {"k": "v"}}
        used = {k: v for k, v in ids.items() if "{" + k + "}" in path}
        calls.append(Call(rpc, used, body))
    return calls


async def extra_query_everywhere(env: Env, face: Driver) -> Outcome:
    thread_id = await new_thread(env.emulator)
    message = env.emulator.store.create_message(thread_id, role="user", content="f",
                                                file_ids=["file-abc"])
    forwarded = {}
    for call in _every_method(thread_id, message["id"], "file-abc"):
        call.key, call.extra_query = env.writer, {"xq": "1"}
        env.emulator.log.clear()
        outcome = (await face.stream(call) if call.rpc.startswith("Stream")
                   else await face.call(call))
        entries = env.emulator.log.entries
        forwarded[call.rpc] = (outcome.code, bool(entries) and all(
            e.query.get("xq") == "1" for e in entries))
    return Outcome("OK", extra=forwarded)


async def extra_body_refused(env: Env, face: Driver) -> Outcome:
    thread_id = await new_thread(env.emulator)
    (message_id,) = seed(env, thread_id, 1)
    env.emulator.log.clear()
    create = await face.call(Call("CreateMessage", {"thread_id": thread_id},
                                  {"role": "user", "content": "x"}, key=env.writer,
                                  extra_body={"surprise": 1}))
    update = await face.call(Call("UpdateMessage", {"thread_id": thread_id,
                                                    "message_id": message_id},
                                  {"metadata": {}}, key=env.writer, extra_body={"shadow": 2}))
    return Outcome(create.code, field=create.field,
                   extra={"update": (update.code, update.field),
                          "upstream": env.emulator.log.count()})


async def forwarded_headers(env: Env, face: Driver) -> Outcome:
    thread_id = await new_thread(env.emulator)
    (message_id,) = seed(env, thread_id, 1)
    seen = {}
    for label, call in (
        ("allowed", Call("GetMessage", {"thread_id": thread_id, "message_id": message_id},
                         key=env.reader, headers=[(TAG, "t-1")])),
        ("other", Call("GetMessage", {"thread_id": thread_id, "message_id": message_id},
                       key=env.reader, headers=[("x-not-allowed", "t-2")])),
        # gRPC metadata cannot carry it at all; ``options.extra_headers`` can.
        ("non_ascii", Call("GetMessage", {"thread_id": thread_id, "message_id": message_id},
                           key=env.reader, extra_headers={TAG: "caf\u00e9"})),
    ):
        env.emulator.log.clear()
        outcome = await face.call(call)
        entries = env.emulator.log.entries
        seen[label] = (outcome.code, outcome.field,
                       [e.headers.get(TAG) or e.headers.get("x-not-allowed") for e in entries])
    return Outcome("OK", extra=seen)


async def duplicate_authorization(env: Env, face: Driver) -> Outcome:
    thread_id = await new_thread(env.emulator)
    env.emulator.log.clear()
    value = f"Bearer {env.writer}"
    outcome = await face.call(Call("ListMessages", {"thread_id": thread_id},
                                   headers=[("authorization", value), ("authorization", value)]))
    outcome.extra = {"upstream": env.emulator.log.count()}
    return outcome


async def rate_limit(env: Env, face: Driver) -> Outcome:
    key = env.consumer(f"bursty-{face.face}", {"read"}, rate_per_second=0.01, burst=2)
    thread_id = await new_thread(env.emulator)
    call = Call("ListMessages", {"thread_id": thread_id}, key=key)
    first, second, third = [await face.call(call) for _ in range(3)]
    third.extra = {"before": (first.code, second.code)}
    return third


async def bad_timeout_header(env: Env, face: Driver) -> Outcome:
    thread_id = await new_thread(env.emulator)
    return await face.call(Call("ListMessages", {"thread_id": thread_id}, key=env.reader,
                                headers=[("x-gateway-timeout", "soon")]))


#: name → (scenario, the outcome both faces must give).
SCENARIOS: dict[str, tuple[Scenario, Outcome]] = {
    "stream limit": (stream_limit, Outcome(
        "RESOURCE_EXHAUSTED", "CONSUMER_STREAM_LIMIT", extra={"upstream": 0})),
    "key revoked while a stream is open": (revoked_stream, Outcome(
        "UNAUTHENTICATED", "GATEWAY_KEY_REVOKED", resume=("after", "<edge>"),
        extra={"delivered": 5})),
    "key expires while a stream is open": (expired_stream, Outcome(
        "UNAUTHENTICATED", "GATEWAY_KEY_REVOKED", resume=("after", "<edge>"),
        extra={"delivered": 5})),
    "SIGTERM with a forward stream open": (drained_forward, Outcome(
        "UNAVAILABLE", "GATEWAY_DRAINING", resume=("after", "<edge>"), extra={"delivered": 5})),
    "SIGTERM with a backward stream open": (drained_backward, Outcome(
        "UNAVAILABLE", "GATEWAY_DRAINING", resume=("before", "<edge>"), extra={"delivered": 5})),
    # The second page was read upstream (prefetched) before the delete: ten arrive.
    "thread deleted while a stream walks it": (thread_deleted_mid_stream, Outcome(
        "NOT_FOUND", None, resume=("after", "<edge>"), extra={"delivered": 10})),
    "audit and call lines": (audit_line, Outcome("OK", extra={
        "event": "audit", "log_level": "info", "method": "CreateMessage", "consumer": "writer",
        "key_id": None, "profile": "default", "outcome": "OK", "call_line": []})),
    "cache-control no-cache and no-store": (cache_control, Outcome("OK", extra={
        "cache": ["miss", "hit", "miss", "bypass", "hit"], "upstream": 3})),
    "idempotency key": (idempotency_key, Outcome("OK", extra={"same": True, "upstream": 1})),
    "extra_query on every method": (extra_query_everywhere, Outcome("OK", extra={
        rpc: ("OK", True) for rpc in EVERY_METHOD})),
    "extra_body with unknown fields": (extra_body_refused, Outcome(
        "INVALID_ARGUMENT", field="surprise",
        extra={"update": ("INVALID_ARGUMENT", "shadow"), "upstream": 0})),
    "allow-listed headers pass, others do not": (forwarded_headers, Outcome("OK", extra={
        "allowed": ("OK", None, ["t-1"]), "other": ("OK", None, [None]),
        "non_ascii": ("INVALID_ARGUMENT", TAG, [])})),
    "duplicate authorization": (duplicate_authorization, Outcome(
        "UNAUTHENTICATED", "INVALID_GATEWAY_KEY", extra={"upstream": 0})),
    "rate limit": (rate_limit, Outcome(
        "RESOURCE_EXHAUSTED", "CONSUMER_RATE_LIMITED", extra={"before": ("OK", "OK")})),
    "bad timeout header": (bad_timeout_header, Outcome(
        "INVALID_ARGUMENT", "INVALID_ARGUMENT", field="x-gateway-timeout")),
}


def _normalised(outcome: Outcome, expected: Outcome) -> Outcome:
    """Fields the expectation leaves open (key ids, call-line keys) are compared across faces
    only."""
    if "key_id" in expected.extra:
        outcome = dataclasses.replace(outcome, extra={**outcome.extra, "key_id": None})
    if "call_line" in expected.extra:
        outcome = dataclasses.replace(outcome, extra={**outcome.extra, "call_line": []})
    return outcome


@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_both_faces_give_the_same_outcome(env: Env, name: str) -> None:
    scenario, expected = SCENARIOS[name]
    connected = await connect(env.gateway)
    try:
        outcomes = {face: await scenario(env, driver)
                    for face, driver in connected.drivers.items()}
    finally:
        await connected.close()
    assert _normalised(outcomes["grpc"], expected) == expected
    assert outcomes["rest"] == outcomes["grpc"]
