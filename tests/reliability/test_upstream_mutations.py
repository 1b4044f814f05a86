"""S9: upstream JSON mutations the spec's schemas cannot generate - nesting 100,000 levels deep,
numbers no float or int conversion takes (1e400, a 100,000-digit integer, beyond Python's
int-string limit), invalid UTF-8, lone surrogates - served by the emulator in place of a real
answer, on 2xx answers (the body is the resource) and on error answers (the status decides).

Every call on both faces ends OK or INTERNAL ``UPSTREAM_INVALID_RESPONSE`` (never the generic
INTERNAL of an unexpected exception, never UNKNOWN, never a hang), an error answer keeps the status
its HTTP status maps to, and the gateway serves a plain call afterwards. The parse itself (the
gateway's ``loads`` and the JSON → proto conversion) is timed and its memory peak measured per body.
"""

from __future__ import annotations

import json
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import pytest

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2_grpc as pb_grpc
from gateway.app import start_gateway
from gateway.emulator.server import EmulatorServer
from gateway.upstream import wire
from gateway.upstream.outcomes import loads
from gateway.upstream.wire import WireFormatError
from tests.rest.conftest import BETA, base_url, rest_settings
from tests.rpc.test_messages_service import details

DEPTH = 100_000
DIGITS = 100_000
#: Seconds a call may take before it counts as a hang (retries of a bad body included).
CALL_BOUND = 5.0
#: The parse of one mutated body (under 1 MB each): time and memory, loaded-machine headroom.
PARSE_SECONDS_BOUND = 1.0
PARSE_PEAK_BOUND = 64 * 1024 * 1024
HOLE = "\x00hole\x00"  # a placeholder a mutation's raw bytes replace


def _deep_array() -> bytes:
    return b"[" * DEPTH + b"]" * DEPTH


def _deep_object() -> bytes:
    return b'{"a":' * DEPTH + b"1" + b"}" * DEPTH


#: name → (field of the message replaced, raw JSON bytes put there); field None = the whole body.
MUTATIONS: dict[str, tuple[str | None, Callable[[], bytes]]] = {
    "deep_array_body": (None, _deep_array),
    "deep_object_body": (None, _deep_object),
    "deep_array_in_metadata": ("metadata", lambda: b'{"k":' + _deep_array() + b"}"),
    "deep_object_in_content": ("content", _deep_object),
    "float_1e400_created_at": ("created_at", lambda: b"1e400"),
    "float_minus_1e400_created_at": ("created_at", lambda: b"-1e400"),
    "int_100k_digits_created_at": ("created_at", lambda: b"9" * DIGITS),
    "int_100k_digits_in_metadata": ("metadata", lambda: b'{"k":' + b"7" * DIGITS + b"}"),
    "nan_created_at": ("created_at", lambda: b"NaN"),
    "invalid_utf8_id": ("id", lambda: b'"msg_\xff\xfe"'),
    "invalid_utf8_metadata": ("metadata", lambda: b'{"k":"\xc3\x28"}'),
    "overlong_utf8_thread_id": ("thread_id", lambda: b'"\xc0\xaf\xc0\xaf"'),
    "lone_high_surrogate_id": ("id", lambda: b'"\\ud800"'),
    "lone_low_surrogate_metadata_value": ("metadata", lambda: b'{"k":"\\udfff"}'),
    "lone_surrogate_metadata_key": ("metadata", lambda: b'{"\\ud83d":"v"}'),
    "raw_surrogate_bytes_role": ("role", lambda: b'"\xed\xa0\x80"'),
}


def mutated(good: dict[str, Any], name: str, envelope: bool) -> bytes:
    """The message ``good`` with one field's JSON replaced by the mutation's raw bytes; inside a
    list page's ``data`` when ``envelope``."""
    field, make = MUTATIONS[name]
    if field is None:
        body = make()
        return b'{"object":"list","data":[' + body + b'],"has_more":false}' if envelope else body
    message = {**good, field: HOLE}
    doc: Any = ({"object": "list", "data": [message], "first_id": good["id"],
                 "last_id": good["id"], "has_more": False} if envelope else message)
    return json.dumps(doc).encode().replace(json.dumps(HOLE).encode(), make())


@dataclass
class Faces:
    emulator: EmulatorServer
    stub: pb_grpc.MessagesServiceStub
    http: httpx.AsyncClient
    thread_id: str
    message_id: str
    good: dict[str, Any]


@pytest.fixture
async def faces(emulator: EmulatorServer) -> AsyncIterator[Faces]:
    settings = rest_settings(emulator).replace(
        "reliability", initial_backoff_seconds=0.01, max_backoff_seconds=0.05,
        circuit_failure_threshold=10**6)
    gw = await start_gateway(settings)
    thread_id = str(emulator.store.create_thread()["id"])
    (message_id,) = emulator.store.seed_messages(thread_id, 1)
    good = emulator.store.get_message(thread_id, message_id)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.grpc_port}") as channel, \
                httpx.AsyncClient(base_url=base_url(gw), headers=BETA, timeout=10.0) as http:
            yield Faces(emulator, pb_grpc.MessagesServiceStub(channel), http, thread_id,
                        message_id, dict(good))
    finally:
        await gw.stop(grace=0.5)


async def _grpc(faces: Faces, operation: str) -> tuple[str, str | None]:
    try:
        if operation == "getMessage":
            await faces.stub.GetMessage(pb.GetMessageRequest(
                thread_id=faces.thread_id, message_id=faces.message_id), timeout=CALL_BOUND)
        elif operation == "listMessages":
            await faces.stub.ListMessages(pb.ListMessagesRequest(thread_id=faces.thread_id),
                                          timeout=CALL_BOUND)
        else:
            [p async for p in faces.stub.StreamMessages(pb.StreamMessagesRequest(
                thread_id=faces.thread_id), timeout=CALL_BOUND)]
    except grpc.aio.AioRpcError as err:
        info = details(err).get("ErrorInfo")
        return err.code().name, getattr(info, "reason", None)
    return "OK", None


REST_CODES = {200: "OK", 404: "NOT_FOUND", 500: "INTERNAL", 503: "UNAVAILABLE"}


async def _rest(faces: Faces, operation: str) -> tuple[str, str | None]:
    path = f"/threads/{faces.thread_id}/messages"
    if operation == "getMessage":
        path += f"/{faces.message_id}"
    elif operation == "streamMessages":
        path += ":stream"
    got = await faces.http.get(path, timeout=CALL_BOUND)
    code = REST_CODES.get(got.status_code, str(got.status_code))
    if operation == "streamMessages" and got.status_code == 200:
        last = json.loads(got.text.strip().splitlines()[-1]) if got.text.strip() else {}
        if "error" in last:  # a stream's failure after its 200 is its last line
            return REST_CODES.get(last["status"], str(last["status"])), last["error"]["code"]
        return "OK", None
    if got.status_code == 200:
        return "OK", None
    return code, str(got.json()["error"]["code"]).upper()


CALLS = [("getMessage", "getMessage", False), ("listMessages", "listMessages", True),
         ("listMessages", "streamMessages", True)]


@pytest.mark.parametrize("name", sorted(MUTATIONS))
async def test_mutated_2xx_body_is_ok_or_internal_invalid_response(faces: Faces, name: str
                                                                   ) -> None:
    outcomes = []
    for upstream_op, call, envelope in CALLS:
        body = mutated(faces.good, name, envelope)
        for face, run in (("grpc", _grpc), ("rest", _rest)):
            faces.emulator.faults.clear()
            faces.emulator.faults.add(upstream_op, "non_json", status=200, body=body,
                                      content_type="application/json")
            started = time.monotonic()
            code, reason = await run(faces, call)
            elapsed = time.monotonic() - started
            outcomes.append((face, call, code, reason, round(elapsed, 3)))
            assert elapsed < CALL_BOUND, outcomes
            assert code in ("OK", "INTERNAL"), outcomes
            if code == "INTERNAL":
                assert reason == "UPSTREAM_INVALID_RESPONSE", outcomes
    faces.emulator.faults.clear()
    assert await _grpc(faces, "getMessage") == ("OK", None)
    assert await _rest(faces, "listMessages") == ("OK", None)
    print(f"S9 {name}: {outcomes}")


@pytest.mark.parametrize("status", [404, 500])
@pytest.mark.parametrize("name", ["deep_array_body", "deep_object_body",
                                  "int_100k_digits_in_metadata", "invalid_utf8_id",
                                  "lone_high_surrogate_id"])
async def test_mutated_error_body_keeps_the_status_mapping(faces: Faces, name: str, status: int
                                                           ) -> None:
    """The HTTP status decides an error answer; a body that does not parse is no envelope."""
    want = {404: "NOT_FOUND", 500: "UNAVAILABLE"}[status]
    body = mutated(faces.good, name, False)
    for face, run in (("grpc", _grpc), ("rest", _rest)):
        faces.emulator.faults.clear()
        faces.emulator.faults.add("getMessage", "non_json", status=status, body=body,
                                  content_type="application/json")
        code, reason = await run(faces, "getMessage")
        assert code == want, (face, code, reason)
    faces.emulator.faults.clear()
    assert await _grpc(faces, "getMessage") == ("OK", None)


def _parse(raw: bytes, envelope: bool) -> str:
    parse = wire.message_list_from_json if envelope else wire.message_from_json
    try:
        parse(loads(raw))
    except (ValueError, RecursionError, WireFormatError) as exc:
        return type(exc).__name__
    return "parsed"


def test_parse_time_and_memory_per_mutated_body_bounded() -> None:
    """The gateway's own parse of each body: the slowest and the largest peak, reported."""
    good = {"id": "msg_x", "object": "thread.message", "created_at": 1, "thread_id": "thread_x",
            "status": "completed", "incomplete_details": None, "completed_at": 1,
            "incomplete_at": None, "role": "user", "content": [], "assistant_id": None,
            "run_id": None, "file_ids": [], "metadata": {}}
    figures = []
    for name in sorted(MUTATIONS):
        for envelope in (False, True):
            raw = mutated(good, name, envelope)
            tracemalloc.start()
            started = time.perf_counter()
            result = _parse(raw, envelope)
            seconds = time.perf_counter() - started
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            figures.append((seconds, peak, name, envelope, result, len(raw)))
    slowest = max(figures)
    largest = max(figures, key=lambda f: f[1])
    print(f"S9 parse: {len(figures)} bodies; slowest {slowest[0] * 1000:.1f} ms ({slowest[2]}), "
          f"largest peak {largest[1] / 1024:.0f} KiB ({largest[2]}, {largest[5]} bytes)")
    assert slowest[0] < PARSE_SECONDS_BOUND, slowest
    assert largest[1] < PARSE_PEAK_BOUND, largest
