"""S8 and S10 on the wire: random bytes and mutated protobuf sent as the request of every method
of both services (a channel with identity serializers: the bytes go out as they are), gRPC
messages past the 4 MiB bound, metadata past grpc core's limits, and hand-built HTTP/2 frames
whose gRPC message prefix lies (compressed without an encoding, a length beyond the bound).

Only the documented statuses come back - OK, INVALID_ARGUMENT, OUT_OF_RANGE, RESOURCE_EXHAUSTED,
INTERNAL, and NOT_FOUND when random bytes decode as a request for a thread that does not exist -
never UNKNOWN, no hang (every call has a deadline), and health and a valid call work afterwards.
The executions and the status histogram are printed (``-s``).
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from gateway.emulator.server import EmulatorServer
from tests.reliability.conftest import scale
from tests.reliability.test_fuzz import Stack
from tests.security.conftest import secured
from tests.security.test_undecodable_requests import (
    DATA, END_STREAM, PREFACE, SETTINGS, _answered, _frame, _request_headers)

ALLOWED = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OUT_OF_RANGE,
           grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.INTERNAL,
           grpc.StatusCode.NOT_FOUND}
METHODS = [(f"/{service.full_name}/{m.name}", m)
           for service in pb.DESCRIPTOR.services_by_name.values() for m in service.methods]
WIRE = settings(max_examples=scale(600, 60), deadline=None, derandomize=True,
                suppress_health_check=list(HealthCheck))
histogram: Counter[str] = Counter()


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    s = Stack()
    try:
        yield s
    finally:
        s.close()
        print(f"\nS8 wire fuzz: {sum(histogram.values())} executions, "
              f"statuses {dict(sorted(histogram.items()))}")


def _valid(stack: Stack, method: object) -> bytes:
    """A well-formed request of the method, naming the stack's thread and message."""
    cls = getattr(pb, method.input_type.name)  # type: ignore[attr-defined]
    fields = cls.DESCRIPTOR.fields_by_name
    values = {"thread_id": stack.thread_id, "message_id": stack.message_ids[0],
              "file_id": "file-abc", "content": "hi", "role": pb.ROLE_USER, "limit": 2}
    return cls(**{k: v for k, v in values.items() if k in fields}).SerializeToString()


def _send(stack: Stack, path: str, streaming: bool, payload: bytes,
          metadata: tuple[tuple[str, str], ...] = ()) -> grpc.StatusCode:
    try:
        if streaming:
            for _ in stack.channel.unary_stream(path)(payload, timeout=10, metadata=metadata):
                pass
        else:
            stack.channel.unary_unary(path)(payload, timeout=10, metadata=metadata)
    except grpc.RpcError as err:
        return err.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def _healthy(stack: Stack) -> bool:
    """Health SERVING and a valid call served, on a thread of its own (the fuzzed DeleteThread
    may have deleted the stack's)."""
    reply = health_pb2_grpc.HealthStub(stack.channel).Check(health_pb2.HealthCheckRequest(),
                                                            timeout=5)
    thread_id = str(stack.emulator.store.create_thread()["id"])
    (message_id,) = stack.emulator.store.seed_messages(thread_id, 1)
    got = stack.channel.unary_unary("/messages_gateway.v1.MessagesService/GetMessage")(
        pb.GetMessageRequest(thread_id=thread_id, message_id=message_id).SerializeToString(),
        timeout=5)
    return reply.status == health_pb2.HealthCheckResponse.SERVING and bool(got)


def _mutate(valid: bytes, flips: list[tuple[int, int]], cut: int, tail: bytes) -> bytes:
    out = bytearray(valid)
    for position, value in flips:
        if out:
            out[position % len(out)] = value
    return bytes(out[:cut if cut >= 0 else len(out)]) + tail


PAYLOADS = st.one_of(
    st.binary(max_size=512),
    st.tuples(st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=6),
              st.integers(-1, 64), st.binary(max_size=16)),
)


@pytest.mark.parametrize(("path", "method"), METHODS, ids=[p.rsplit("/", 1)[1] for p, _ in METHODS])
def test_random_bytes_and_mutated_protobuf_only_documented_statuses(
        stack: Stack, path: str, method: object) -> None:
    streaming = bool(method.server_streaming)  # type: ignore[attr-defined]
    valid = _valid(stack, method)
    seen: Counter[str] = Counter()

    @WIRE
    @given(payload=PAYLOADS)
    def check(payload: bytes | tuple[list[tuple[int, int]], int, bytes]) -> None:
        raw = payload if isinstance(payload, bytes) else _mutate(valid, *payload)
        code = _send(stack, path, streaming, raw)
        seen[code.name] += 1
        assert code in ALLOWED, f"{path} answered {code.name} to {raw!r}"

    check()
    histogram.update(seen)
    assert seen["INVALID_ARGUMENT"] > 0, seen  # the garbage really was garbage, some of it
    assert _healthy(stack)


@pytest.mark.parametrize("size", [4 * 1024 * 1024 + 1, 5 * 1024 * 1024])
@pytest.mark.parametrize("streaming", [False, True])
def test_a_request_over_4_mib_is_resource_exhausted(stack: Stack, size: int, streaming: bool
                                                    ) -> None:
    """S10: the bound is grpc core's (``grpc.max_receive_message_length``), before any decode."""
    path = ("/messages_gateway.v1.MessagesService/StreamMessages" if streaming
            else "/messages_gateway.v1.MessagesService/CreateMessage")
    request = pb.CreateMessageRequest(thread_id=stack.thread_id, role=pb.ROLE_USER,
                                      content="x" * size).SerializeToString()
    before = stack.emulator.log.count()
    code = _send(stack, path, streaming, request)
    histogram[code.name] += 1
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert stack.emulator.log.count() == before
    assert _healthy(stack)


@pytest.mark.parametrize("name", ["x-padding", "authorization"])
@pytest.mark.parametrize("size", [9 * 1024, 12 * 1024, 64 * 1024, 256 * 1024])
def test_metadata_past_8_kib_is_served_or_resource_exhausted(stack: Stack, name: str, size: int
                                                             ) -> None:
    """S10: grpc core's soft limit (8 KiB) refuses some calls with RESOURCE_EXHAUSTED, its hard
    limit (16 KiB) all of them; a call under the hard limit that passes is served as usual (auth
    is off here, so even a huge authorization value is not looked at)."""
    thread_id = str(stack.emulator.store.create_thread()["id"])
    (message_id,) = stack.emulator.store.seed_messages(thread_id, 1)
    request = pb.GetMessageRequest(thread_id=thread_id, message_id=message_id)
    codes = Counter(_send(stack, "/messages_gateway.v1.MessagesService/GetMessage", False,
                          request.SerializeToString(), ((name, "A" * size),)).name
                    for _ in range(5))
    histogram.update(codes)
    if size > 16 * 1024:
        assert codes == Counter(RESOURCE_EXHAUSTED=5), codes
    else:
        assert set(codes) <= {"OK", "RESOURCE_EXHAUSTED"}, codes
    assert _healthy(stack)


# -- the gRPC message prefix itself, on hand-built HTTP/2 frames --------------------------------

GET_MESSAGE = "/messages_gateway.v1.MessagesService/GetMessage"


def _raw_call(port: int, message: bytes) -> str | None:
    sock = socket.create_connection(("127.0.0.1", port), timeout=2)
    try:
        sock.sendall(PREFACE + _frame(SETTINGS, 0, 0, b"") + _request_headers(port, GET_MESSAGE)
                     + _frame(DATA, END_STREAM, 1, message))
        return _answered(sock, 4.0)
    finally:
        sock.close()


PREFIXES = {
    "compressed_without_encoding": b"\x01" + struct.pack(">I", 4) + b"\x1f\x8b\x00\x00",
    "unknown_flag_byte": b"\x7f" + struct.pack(">I", 2) + b"\x0a\x00",
    "length_over_the_bound": b"\x00" + struct.pack(">I", 5 * 1024 * 1024) + b"\x0a\x00",
    "length_max": b"\x00" + b"\xff\xff\xff\xff" + b"\x0a\x00",
    "prefix_cut": b"\x00\x00\x00",
    "two_messages": (b"\x00" + struct.pack(">I", 2) + b"\x0a\x00") * 2,
}


@pytest.mark.parametrize("name", sorted(PREFIXES))
async def test_lying_grpc_message_prefix_is_answered_and_server_healthy(
        emulator: EmulatorServer, tmp_path: Path, name: str) -> None:
    async with secured(emulator, tmp_path, server={"request_timeout_seconds": 1.0}) as env:
        before = emulator.log.count()
        answer = await asyncio.wait_for(
            asyncio.to_thread(_raw_call, env.gateway.grpc_port, PREFIXES[name]), 10)
        histogram[f"raw:{answer}"] += 1
        assert answer in ("trailers", "rst_stream", "goaway", "closed"), answer
        assert emulator.log.count() == before
        assert await env.consumer_ok() and await env.health_ok()
