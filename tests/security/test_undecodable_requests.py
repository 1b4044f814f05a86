"""Issue 19, case 9 (the wire part): requests the gateway cannot decode.

Corrupt protobuf or invalid UTF-8 in a string field came back UNKNOWN with no log line; a gRPC
message that declares 100 bytes and ends after 5 got no answer until the client gave up. Now the
first is INVALID_ARGUMENT with an ``rpc_refused`` line, the second is answered when the request
timeout passes (the connection is not held for ever), and health and a valid consumer keep working.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from pathlib import Path

import grpc
import pytest
import structlog

from gateway.emulator.server import EmulatorServer
from gateway.rpc import admission
from tests.credentials.helpers import bearer
from tests.security.conftest import Secured, metric, secured

GET_MESSAGE = "/messages_gateway.v1.MessagesService/GetMessage"
STREAM_MESSAGES = "/messages_gateway.v1.MessagesService/StreamMessages"


@pytest.fixture(autouse=True)
def _fresh_line_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(admission, "_lines", {"second": 0, "written": 0, "skipped": 0})


BAD = {
    "corrupt": b"\xff\xff\xff\xff",
    "bad_utf8_thread_id": b"\x0a\x02\xff\xfe",
    "truncated_field": b"\x0a\x40thread",
}


@pytest.mark.parametrize("method", [GET_MESSAGE, STREAM_MESSAGES])
@pytest.mark.parametrize("name", sorted(BAD))
async def test_undecodable_request_is_invalid_argument_with_a_log_line(
        emulator: EmulatorServer, tmp_path: Path, method: str, name: str) -> None:
    before = metric("gateway_calls_refused_total", reason="undecodable_request")
    async with secured(emulator, tmp_path) as env:
        upstream = emulator.log.count()
        with structlog.testing.capture_logs() as logs:
            if method == GET_MESSAGE:
                call = env.channel.unary_unary(method)(BAD[name], metadata=bearer(env.key),
                                                       timeout=5)
            else:
                call = env.channel.unary_stream(method)(BAD[name], metadata=bearer(env.key),
                                                        timeout=5)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call if method == GET_MESSAGE else [m async for m in call]
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "decode" in (caught.value.details() or "")
        lines = [e for e in logs if e["event"] == "rpc_refused"]
        assert [e["reason"] for e in lines] == ["undecodable_request"]
        assert metric("gateway_calls_refused_total", reason="undecodable_request") == before + 1
        assert emulator.log.count() == upstream
        assert await env.consumer_ok() and await env.health_ok()


# -- a raw HTTP/2 client: just enough to send a gRPC request and see whether it is answered ----

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY = 0x0, 0x1, 0x3, 0x4, 0x6, 0x7
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1


def _frame(kind: int, flags: int, stream: int, payload: bytes, declared: int | None = None
           ) -> bytes:
    length = len(payload) if declared is None else declared
    return struct.pack(">I", length)[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + (
        payload)


def _literal(name: str, value: str) -> bytes:
    """HPACK literal header field without indexing, new name, no Huffman (lengths < 127)."""
    return b"\x00" + bytes([len(name)]) + name.encode() + bytes([len(value)]) + value.encode()


def _request_headers(port: int, path: str) -> bytes:
    block = b"".join(_literal(n, v) for n, v in (
        (":method", "POST"), (":scheme", "http"), (":path", path),
        (":authority", f"127.0.0.1:{port}"), ("content-type", "application/grpc"),
        ("te", "trailers")))
    return _frame(HEADERS, END_HEADERS, 1, block)


def _answered(sock: socket.socket, within: float) -> str | None:
    """Read frames until stream 1 ends (trailers with END_STREAM, RST_STREAM) or the connection
    does (GOAWAY, close); the way it ended, or None if nothing did within ``within`` s."""
    sock.settimeout(within)
    buffer = b""
    deadline = time.monotonic() + within
    try:
        while time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                return "closed"
            buffer += chunk
            while len(buffer) >= 9:
                length = int.from_bytes(buffer[:3], "big")
                if len(buffer) < 9 + length:
                    break
                kind, flags = buffer[3], buffer[4]
                stream = int.from_bytes(buffer[5:9], "big") & 0x7FFFFFFF
                if kind == SETTINGS and not flags & ACK:
                    sock.sendall(_frame(SETTINGS, ACK, 0, b""))
                elif kind == HEADERS and stream == 1 and flags & END_STREAM:
                    return "trailers"
                elif kind == RST_STREAM and stream == 1:
                    return "rst_stream"
                elif kind == GOAWAY:
                    return "goaway"
                buffer = buffer[9 + length:]
    except (TimeoutError, socket.timeout):
        return None
    except ConnectionResetError:
        return "closed"
    return None


def _send_truncated(port: int, path: str, *, frame_cut: bool) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=2)
    sock.sendall(PREFACE + _frame(SETTINGS, 0, 0, b"") + _request_headers(port, path))
    message = b"\x00" + struct.pack(">I", 100) + b"\x0a\x03abc"[:5]  # declares 100, sends 5
    if frame_cut:
        # The HTTP/2 frame itself declares 100 bytes of payload; 10 are sent.
        sock.sendall(_frame(DATA, 0, 1, message, declared=100))
    else:
        sock.sendall(_frame(DATA, 0, 1, message))
    return sock


@pytest.mark.parametrize("frame_cut", [False, True], ids=["grpc_message_cut", "http2_frame_cut"])
@pytest.mark.parametrize("path", [GET_MESSAGE, STREAM_MESSAGES])
async def test_truncated_request_is_answered_not_held(
        emulator: EmulatorServer, tmp_path: Path, path: str, frame_cut: bool) -> None:
    async with secured(emulator, tmp_path, server={"request_timeout_seconds": 1.0}) as env:
        with structlog.testing.capture_logs() as logs:
            socks = [await asyncio.to_thread(_send_truncated, env.gateway.grpc_port, path,
                                             frame_cut=frame_cut) for _ in range(3)]
            try:
                # Meanwhile the gateway serves everyone else.
                assert await env.consumer_ok() and await env.health_ok()
                started = time.monotonic()
                answers = await asyncio.gather(*(asyncio.to_thread(_answered, s, 4.0)
                                                 for s in socks))
            finally:
                for s in socks:
                    s.close()
        assert None not in answers, answers
        assert time.monotonic() - started < 3.0
        if not frame_cut:
            assert answers == ["trailers"] * 3
            refused = [e for e in logs if e["event"] == "rpc_refused"]
            assert [e["reason"] for e in refused] == ["request_timeout"] * 3
        assert await _still_serving(env)


async def _still_serving(env: Secured) -> bool:
    return await env.consumer_ok() and await env.health_ok()
