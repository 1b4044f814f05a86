"""Issue 19, case 6: X-Forwarded-For was trusted from any peer on the REST face.

uvicorn rewrites the client address from ``X-Forwarded-For`` by default: a blocked client got
through by adding the header, and an attacker could have failures counted against any address it
named. Forwarded headers are now believed only from the proxies named in
``server.trusted_proxies`` (none by default).
"""

from __future__ import annotations

from pathlib import Path

import httpx

from gateway.emulator.server import EmulatorServer
from tests.security.conftest import Secured, secured

LIMITS = {"failed_auth_limit": 3, "failed_auth_window_seconds": 30.0}


async def _junk(env: Secured, forwarded: str | None = None) -> int:
    url = (f"http://127.0.0.1:{env.gateway.http_port}/v1/threads/{env.thread_id}/messages/"
           f"{env.message_id}")
    headers = {"authorization": "Bearer junk", "openai-beta": "assistants=v1"}
    if forwarded:
        headers["x-forwarded-for"] = forwarded
    async with httpx.AsyncClient(timeout=5) as http:
        return (await http.get(url, headers=headers)).status_code


async def test_forwarded_for_from_an_untrusted_peer_is_ignored(
        emulator: EmulatorServer, tmp_path: Path) -> None:
    async with secured(emulator, tmp_path, auth=LIMITS,
                       server={"http_listen": "127.0.0.1:0"}) as env:
        limits = env.gateway.authenticator.limits  # type: ignore[union-attr]
        # Naming a victim's address does not charge the victim...
        assert [await _junk(env, "10.1.1.1") for _ in range(3)] == [401] * 3
        assert limits.peer_blocked("10.1.1.1") is None
        # ...the failures are the sender's own, and a header does not get it out of its block.
        assert limits.peer_blocked("127.0.0.1") is not None
        assert await _junk(env, "10.9.9.9") == 429
        assert await _junk(env, "10.9.9.9, 10.8.8.8") == 429
        assert await env.consumer_ok() and await env.health_ok()


async def test_forwarded_for_from_a_trusted_proxy_names_the_client(
        emulator: EmulatorServer, tmp_path: Path) -> None:
    async with secured(emulator, tmp_path, auth=LIMITS,
                       server={"http_listen": "127.0.0.1:0",
                               "trusted_proxies": ("127.0.0.1",)}) as env:
        limits = env.gateway.authenticator.limits  # type: ignore[union-attr]
        assert [await _junk(env, "10.1.1.1") for _ in range(3)] == [401] * 3
        assert limits.peer_blocked("10.1.1.1") is not None
        assert limits.peer_blocked("127.0.0.1") is None
        assert await _junk(env, "10.2.2.2") == 401  # another client behind the proxy


def test_trusted_proxies_must_be_addresses_or_networks() -> None:
    import pytest

    from gateway.config import ConfigError, load_settings

    with pytest.raises(ConfigError, match="server.trusted_proxies"):
        load_settings(None, environ={"GATEWAY_SERVER_TRUSTED_PROXIES": "*"})
    settings = load_settings(None, environ={"GATEWAY_SERVER_TRUSTED_PROXIES": "10.0.0.0/8, ::1"})
    assert settings.server.trusted_proxies == ("10.0.0.0/8", "::1")
