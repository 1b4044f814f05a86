"""Issue 19, case 5: the failed-authentication lockout was a denial of service.

20 junk keys from one address locked every valid key from that address out for 60 s (everyone
behind one NAT, ingress or sidecar). Failures are now counted per address *and* per presented key
id, and a block only turns further *failures* into RESOURCE_EXHAUSTED: a valid key is always
checked, and admitted.
"""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import pytest

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from gateway.config import AuthSettings
from gateway.credentials.authenticator import Authenticator
from gateway.credentials.keys import generate_key
from gateway.credentials.limits import LocalLimits
from gateway.credentials.store import Consumer, KeyRecord, Snapshot, StoreData
from gateway.emulator.server import EmulatorServer
from gateway.errors import ResourceExhausted, Unauthenticated
from tests.credentials.helpers import bearer
from tests.rpc.test_messages_service import details
from tests.security.conftest import metric, secured


async def test_junk_keys_from_one_address_do_not_lock_out_a_valid_key(
        emulator: EmulatorServer, tmp_path: Path) -> None:
    async with secured(emulator, tmp_path, auth={"failed_auth_limit": 5,
                                                 "failed_auth_window_seconds": 30.0}) as env:
        request = pb.GetMessageRequest(thread_id=env.thread_id, message_id=env.message_id)
        codes = []
        for i in range(20):  # the attacker shares the valid consumer's address (loopback)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await env.stub.GetMessage(request, metadata=bearer(f"junk-{i}"), timeout=5)
            codes.append(caught.value.code())
        assert codes == ([grpc.StatusCode.UNAUTHENTICATED] * 5
                         + [grpc.StatusCode.RESOURCE_EXHAUSTED] * 15)
        assert details(caught.value)["ErrorInfo"].reason == "AUTH_FAILURES_EXCEEDED"  # type: ignore[attr-defined]
        before = emulator.log.count("getMessage")
        got = await env.stub.GetMessage(request, metadata=bearer(env.key), timeout=5)
        assert got.id == env.message_id
        assert await env.consumer_ok() and await env.health_ok()
        assert emulator.log.count("getMessage") <= before + 1  # the junk never went upstream
        # Still blocked for further failures.
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await env.stub.GetMessage(request, metadata=bearer("junk-again"), timeout=5)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def _authenticator(limit: int) -> tuple[Authenticator, str, str]:
    key = generate_key()
    record = KeyRecord(key.key_id, key.hash, time.time())
    snapshot = Snapshot.of(StoreData({"svc": Consumer("svc", frozenset({"read"}), "default",
                                                      (record,))}))
    settings = AuthSettings(enabled=True, store_path="x", failed_auth_limit=limit)
    auth = Authenticator(lambda: snapshot, LocalLimits(limit, 60.0), settings)
    forged = key.secret[:-4] + ("AAAA" if not key.secret.endswith("AAAA") else "BBBB")
    return auth, key.secret, forged


async def test_guesses_at_one_key_id_from_many_addresses_are_blocked_per_key_id() -> None:
    auth, secret, forged = _authenticator(limit=3)
    before = metric("gateway_auth_failures_total", reason="key_blocked")
    for n in range(3):
        with pytest.raises(Unauthenticated):
            await auth.authenticate(f"Bearer {forged}", f"ipv4:10.0.0.{n}:1000", "read")
    with pytest.raises(ResourceExhausted) as caught:
        await auth.authenticate(f"Bearer {forged}", "ipv4:10.0.0.99:1000", "read")
    assert caught.value.details.reason == "AUTH_FAILURES_EXCEEDED"
    assert metric("gateway_auth_failures_total", reason="key_blocked") == before + 1
    # The key's owner, from a fresh address or one of the guessers', is admitted.
    for peer in ("ipv4:10.0.0.98:1000", "ipv4:10.0.0.1:1000"):
        assert (await auth.authenticate(f"Bearer {secret}", peer, "read")).consumer == "svc"
    # Another (unknown) key id from a fresh address is not affected.
    with pytest.raises(Unauthenticated):
        await auth.authenticate(f"Bearer {generate_key().secret}", "ipv4:10.0.0.97:1", "read")


async def test_a_blocked_address_still_admits_a_remembered_key() -> None:
    auth, secret, forged = _authenticator(limit=2)
    peer = "ipv4:10.0.0.5:1"
    assert await auth.authenticate(f"Bearer {secret}", peer, "read")  # remembered from now on
    for _ in range(2):
        with pytest.raises(Unauthenticated):
            await auth.authenticate("Bearer junk", peer, "read")
    assert auth.admit_remembered(f"Bearer {secret}", "read") is not None
    assert (await auth.authenticate(f"Bearer {secret}", peer, "read")).consumer == "svc"
    with pytest.raises(ResourceExhausted):
        await auth.authenticate("Bearer junk", peer, "read")
