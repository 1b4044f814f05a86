"""R7: a client that pings every second with no call open is sent away (GOAWAY
``too_many_pings``), and the gateway keeps serving everyone else.

The pings come from grpc itself (a raw grpc.aio channel with client keepalive options); a TCP
proxy in front of the gateway reads the HTTP/2 frame headers going each way, so the test sees
the pings sent and the GOAWAY's error code and debug data exactly as they crossed the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import grpc

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from tests.reliability.conftest import HarnessFactory, record_figure

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
PING, GOAWAY = 0x6, 0x7
ENHANCE_YOUR_CALM = 0xB
#: A client pinging every second, with no call, and no cap on pings without data.
ABUSIVE = [("grpc.keepalive_time_ms", 1000), ("grpc.keepalive_timeout_ms", 5000),
           ("grpc.keepalive_permit_without_calls", 1), ("grpc.http2.max_pings_without_data", 0)]


class FrameSniffer:
    """A loopback TCP proxy recording (direction, frame type, payload) of every HTTP/2 frame."""

    def __init__(self, target_port: int) -> None:
        self._target = target_port
        self.frames: list[tuple[str, int, bytes, float]] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target)
        pumps = {asyncio.create_task(self._pump(reader, up_writer, "to_server")),
                 asyncio.create_task(self._pump(up_reader, writer, "to_client"))}
        self._tasks |= pumps
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for task in pumps:
            task.cancel()
        for w in (writer, up_writer):
            w.close()
        self._tasks -= pumps

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    direction: str) -> None:
        buffer = b""
        preface = direction == "to_server"
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while chunk := await reader.read(65536):
                writer.write(chunk)
                await writer.drain()
                buffer += chunk
                if preface:
                    if len(buffer) < len(PREFACE):
                        continue
                    buffer, preface = buffer[len(PREFACE):], False
                while len(buffer) >= 9:  # length (24 bits), type, flags, stream id
                    length = int.from_bytes(buffer[:3], "big")
                    if len(buffer) < 9 + length:
                        break
                    self.frames.append((direction, buffer[3], buffer[9:9 + length],
                                        time.monotonic()))
                    buffer = buffer[9 + length:]

    def of(self, direction: str, kind: int) -> list[tuple[bytes, float]]:
        return [(p, t) for d, k, p, t in self.frames if d == direction and k == kind]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


async def test_keepalive_pings_without_calls_get_goaway_too_many_pings_others_unaffected(
        make_harness: HarnessFactory) -> None:
    h = await make_harness()
    thread_id = await h.thread(3)
    message_id = h.emulator.store.message_ids(thread_id)[0]
    sniffer = FrameSniffer(h.gateway.grpc_port)
    await sniffer.start()
    served = 0
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{sniffer.port}",
                                             options=ABUSIVE) as abusive:
            await asyncio.wait_for(abusive.channel_ready(), 5)
            connected = time.monotonic()
            deadline = connected + 10.0
            while not sniffer.of("to_client", GOAWAY) and time.monotonic() < deadline:
                # Everyone else is served meanwhile.
                got = await h.stub.GetMessage(pb.GetMessageRequest(
                    thread_id=thread_id, message_id=message_id), timeout=5)
                assert got.id == message_id
                served += 1
                await asyncio.sleep(0.1)
            goaways = sniffer.of("to_client", GOAWAY)
            assert goaways, "no GOAWAY within 10 s of pings every second"
            payload, sent_at = goaways[0]
            # GOAWAY: last stream id (4 bytes), error code (4 bytes), debug data.
            assert int.from_bytes(payload[4:8], "big") == ENHANCE_YOUR_CALM
            assert payload[8:] == b"too_many_pings"
            pings = [p for p, t in sniffer.of("to_server", PING) if t <= sent_at]
            assert len(pings) >= 2  # pings every second, answered until the strikes ran out
            # The abusive client itself may call again, on a new connection.
            got = await abusive.unary_unary(
                "/messages_gateway.v1.MessagesService/GetMessage",
                request_serializer=pb.GetMessageRequest.SerializeToString,
                response_deserializer=pb.Message.FromString)(
                pb.GetMessageRequest(thread_id=thread_id, message_id=message_id), timeout=5)
            assert got.id == message_id
    finally:
        await sniffer.close()
    assert served >= 5
    for _ in range(5):  # and after it
        got = await h.stub.GetMessage(pb.GetMessageRequest(
            thread_id=thread_id, message_id=message_id), timeout=5)
        assert got.id == message_id
    await h.assert_clean()
    record_figure("R7", f"GOAWAY ENHANCE_YOUR_CALM too_many_pings after {len(pings)} pings "
                  f"({sent_at - connected:.1f} s); {served} calls of another client served "
                  "meanwhile, all OK")
