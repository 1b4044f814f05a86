"""Issue 19, case 13: upstream cookies were shared across tenants.

The one shared upstream client kept a cookie jar: a ``Set-Cookie`` in one upstream answer (the
live API set Cloudflare's ``__cf_bm`` and ``_cfuvid``) went back on every later upstream request,
whichever consumer or profile made it. Upstream cookies are nobody's state here: no jar, on
either transport.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from gateway.emulator.server import EmulatorServer
from tests.credentials.helpers import bearer
from tests.security.conftest import secured


class CookieUpstream:
    """An HTTP/1.1 upstream (keep-alive) that answers every request with one message and a new
    cookie, and records each request's Cookie header."""

    def __init__(self, message: dict[str, object]) -> None:
        self.body = json.dumps(message).encode()
        self.cookies: list[str | None] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/v1"

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while len(self.cookies) < 50:  # bounded
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
                headers = dict(line.split(": ", 1) for line in
                               head.decode("latin-1").split("\r\n")[1:] if ": " in line)
                lower = {k.lower(): v for k, v in headers.items()}
                await reader.readexactly(int(lower.get("content-length", "0")))
                self.cookies.append(lower.get("cookie"))
                n = len(self.cookies)
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    + f"content-length: {len(self.body)}\r\n".encode()
                    + f"set-cookie: __cf_bm=tenant-secret-{n}; path=/; HttpOnly\r\n".encode()
                    + f"set-cookie: _cfuvid=visitor-{n}; path=/\r\n\r\n".encode() + self.body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            pass
        finally:
            writer.close()


@pytest.mark.parametrize("transport", ["aiohttp", "httptools", "httpx"])
async def test_no_upstream_cookie_reaches_a_later_request(
        emulator: EmulatorServer, tmp_path: Path, transport: str) -> None:
    seed = emulator.store.create_thread()
    emulator.store.seed_messages(seed["id"], 1)
    message = emulator.store.get_message(seed["id"], emulator.store.message_ids(seed["id"])[0])
    upstream = CookieUpstream(message)
    url = await upstream.start()
    try:
        async with secured(emulator, tmp_path, consumers=("other",),
                           upstream={"base_url": url, "transport": transport},
                           cache={"backend": "off"}) as env:
            for key in (env.key, env.keys["other"], env.key, env.keys["other"]):
                call = env.stub.GetMessage(pb.GetMessageRequest(
                    thread_id=str(seed["id"]), message_id=str(message["id"])),
                    metadata=bearer(key), timeout=5)
                assert (await call).id == message["id"]
                # Nor does a consumer see the upstream's cookies.
                assert "set-cookie" not in dict(await call.trailing_metadata())
    finally:
        await upstream.stop()
    assert len(upstream.cookies) == 4
    assert upstream.cookies == [None] * 4
