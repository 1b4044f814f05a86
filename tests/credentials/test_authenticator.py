"""authenticate(): the face-neutral check, without any server."""

from __future__ import annotations

import time

import pytest

from gateway import metrics
from gateway.config import AuthSettings
from gateway.credentials.authenticator import Authenticator
from gateway.credentials import keys as keys_module
from gateway.credentials.keys import generate_key
from gateway.credentials.limits import LocalLimits
from gateway.credentials.store import Consumer, KeyRecord, Snapshot, StoreData
from gateway.errors import PermissionDenied, ResourceExhausted, Unauthenticated

PEER = "ipv4:10.1.2.3:5555"


def make(settings: AuthSettings | None = None, **consumer: object):  # type: ignore[no-untyped-def]
    key = generate_key()
    now = time.time()
    fields = {"keys": (KeyRecord(key.key_id, key.hash, now),), **consumer}
    data = StoreData({"svc": Consumer("svc", frozenset({"read"}), "p1", **fields)})  # type: ignore[arg-type]
    snapshot = Snapshot.of(data)
    settings = settings or AuthSettings(enabled=True, store_path="x")
    auth = Authenticator(lambda: snapshot, LocalLimits(settings.failed_auth_limit,
                                                       settings.failed_auth_window_seconds),
                         settings)
    return auth, key


async def test_authenticate_valid_key_returns_principal_with_profile() -> None:
    auth, key = make()
    principal = await auth.authenticate(f"Bearer {key.secret}", PEER, "read")
    assert (principal.consumer, principal.key_id, principal.profile) == ("svc", key.key_id, "p1")
    assert principal.scopes == frozenset({"read"})
    # The scheme is case-insensitive (RFC 9110); surrounding whitespace is tolerated.
    assert (await auth.authenticate(f"bearer  {key.secret} ", PEER, "read")).consumer == "svc"


async def test_authenticate_1mb_header_rejected_fast_without_lookup() -> None:
    auth, key = make()
    lookups = []
    original = auth._snapshot
    auth._snapshot = lambda: lookups.append(1) or original()  # type: ignore[method-assign]
    headers = ("Bearer " + "x" * 1024 * 1024, "Bearer " + key.secret + " " * 1024 * 1024)
    started = time.perf_counter()
    for header in headers:
        with pytest.raises(Unauthenticated):
            await auth.authenticate(header, PEER, "read")
    assert time.perf_counter() - started < 0.2  # no work proportional to the input
    assert lookups == []


async def test_authenticate_missing_scope_permission_denied_not_counted_as_failure() -> None:
    auth, key = make(AuthSettings(enabled=True, store_path="x", failed_auth_limit=1))
    with pytest.raises(PermissionDenied) as caught:
        await auth.authenticate(f"Bearer {key.secret}", PEER, "write")
    assert caught.value.details.reason == "SCOPE_MISSING"
    assert auth.limits.peer_blocked("10.1.2.3") is None


async def test_authenticate_expired_key_unauthenticated() -> None:
    key = generate_key()
    record = KeyRecord(key.key_id, key.hash, 0.0, expires=time.time() - 1)
    snapshot = Snapshot.of(StoreData({"svc": Consumer("svc", frozenset({"read"}), "default",
                                                      (record,))}))
    auth = Authenticator(lambda: snapshot, LocalLimits(0, 60.0), AuthSettings())
    with pytest.raises(Unauthenticated):
        await auth.authenticate(f"Bearer {key.secret}", PEER, "read")


async def test_authenticate_failures_counted_per_address_not_per_port() -> None:
    auth, key = make(AuthSettings(enabled=True, store_path="x", failed_auth_limit=3))
    for port in (1, 2, 3):
        with pytest.raises(Unauthenticated):
            await auth.authenticate("Bearer nope", f"ipv4:10.1.2.3:{port}", "read")
    # Further failures from the address are refused, whatever the port...
    with pytest.raises(ResourceExhausted) as caught:
        await auth.authenticate("Bearer nope", "ipv4:10.1.2.3:4", "read")
    assert caught.value.details.retry_after is not None
    # ...but a valid key from it is not (tests/security/test_auth_lockout.py).
    assert (await auth.authenticate(f"Bearer {key.secret}", "ipv4:10.1.2.3:5", "read")).consumer
    # Another address is unaffected.
    with pytest.raises(Unauthenticated):
        await auth.authenticate("Bearer nope", "ipv6:[::1]:9", "read")


async def test_authenticate_rate_limit_retry_after_matches_bucket() -> None:
    auth, key = make(rate_per_second=2.0, burst=2)
    for _ in range(2):
        await auth.authenticate(f"Bearer {key.secret}", PEER, "read")
    with pytest.raises(ResourceExhausted) as caught:
        await auth.authenticate(f"Bearer {key.secret}", PEER, "read")
    assert 0.3 < (caught.value.details.retry_after or 0) <= 0.5
    before = sum(s.value for family in metrics.REGISTRY.collect()
                 if family.name == "gateway_rate_limited" for s in family.samples
                 if s.name.endswith("_total") and s.labels["limit"] == "rate")
    assert before >= 1


async def test_authenticate_sees_a_reloaded_store_at_once_despite_the_principal_cache() -> None:
    key = generate_key()
    record = KeyRecord(key.key_id, key.hash, time.time())

    def snapshot_with(scopes: frozenset[str], profile: str, revoked: float | None = None
                      ) -> Snapshot:
        keyed = KeyRecord(record.key_id, record.hash, record.created, revoked=revoked)
        return Snapshot.of(StoreData({"svc": Consumer("svc", scopes, profile, (keyed,))}))

    current = [snapshot_with(frozenset({"read"}), "p1")]
    settings = AuthSettings(enabled=True, store_path="x")
    auth = Authenticator(lambda: current[0], LocalLimits(5, 60.0), settings)
    header = f"Bearer {key.secret}"
    assert (await auth.authenticate(header, PEER, "read")).profile == "p1"
    assert (await auth.authenticate(header, PEER, "read")).profile == "p1"  # cached
    current[0] = snapshot_with(frozenset({"read", "write"}), "p2")  # what a reload does
    principal = await auth.authenticate(header, PEER, "write")
    assert (principal.profile, principal.scopes) == ("p2", frozenset({"read", "write"}))
    current[0] = snapshot_with(frozenset({"read", "write"}), "p2", revoked=time.time())
    with pytest.raises(Unauthenticated):
        await auth.authenticate(header, PEER, "read")


async def test_remembered_key_still_refuses_a_wrong_secret_and_skips_the_hash_when_right(
        monkeypatch: pytest.MonkeyPatch) -> None:
    auth, key = make()
    header = f"Bearer {key.secret}"
    assert (await auth.authenticate(header, PEER, "read")).consumer == "svc"
    hashed: list[str] = []
    original = keys_module.matches
    monkeypatch.setattr(keys_module, "matches",
                        lambda presented, stored: hashed.append(stored) or original(presented, stored))
    # The same key again: compared with the remembered value, no SHA-256.
    assert (await auth.authenticate(header, PEER, "read")).consumer == "svc"
    assert hashed == []
    # Same key id, one secret character changed: the full check runs and refuses it.
    last = key.secret[-1]
    forged = key.secret[:-1] + ("A" if last != "A" else "B")
    with pytest.raises(Unauthenticated):
        await auth.authenticate(f"Bearer {forged}", PEER, "read")
    assert len(hashed) == 1
    # A non-ASCII secret under a known key id is refused, not a crash in compare_digest.
    with pytest.raises(Unauthenticated):
        await auth.authenticate(f"Bearer {key.secret[:-1]}é", PEER, "read")
    # And the right key is still admitted afterwards.
    assert (await auth.authenticate(header, PEER, "read")).consumer == "svc"


async def test_remembered_key_expires_on_time_without_a_store_change() -> None:
    key = generate_key()
    now = [1000.0]
    record = KeyRecord(key.key_id, key.hash, 0.0, expires=1010.0)  # a rotated key's grace
    snapshot = Snapshot.of(StoreData({"svc": Consumer("svc", frozenset({"read"}), "default",
                                                      (record,))}))
    auth = Authenticator(lambda: snapshot, LocalLimits(0, 60.0), AuthSettings(),
                         clock=lambda: now[0])
    header = f"Bearer {key.secret}"
    assert (await auth.authenticate(header, PEER, "read")).consumer == "svc"
    assert (await auth.authenticate(header, PEER, "read")).consumer == "svc"  # remembered
    now[0] = 1010.0
    with pytest.raises(Unauthenticated):
        await auth.authenticate(header, PEER, "read")


async def test_admit_remembered_takes_only_the_plain_repeat_and_still_enforces_every_rule() -> None:
    auth, key = make(rate_per_second=1.0, burst=2)
    header = f"Bearer {key.secret}"
    assert auth.admit_remembered(header, "read") is None  # never verified yet
    assert (await auth.authenticate(header, PEER, "read")).consumer == "svc"  # token 1
    principal = auth.admit_remembered(header, "read")  # token 2, no coroutine, no hash
    assert principal is not None and principal.consumer == "svc"
    # Out of tokens: the fast path declines and the full path reports the limit.
    assert auth.admit_remembered(header, "read") is None
    with pytest.raises(ResourceExhausted):
        await auth.authenticate(header, PEER, "read")
    # A scope the consumer lacks, another spelling of the header, a near-miss value: declined.
    auth2, key2 = make()
    header2 = f"Bearer {key2.secret}"
    await auth2.authenticate(header2, PEER, "read")
    assert auth2.admit_remembered(header2, "write") is None
    with pytest.raises(PermissionDenied):
        await auth2.authenticate(header2, PEER, "write")
    assert auth2.admit_remembered(f"bearer {key2.secret}", "read") is None
    assert auth2.admit_remembered(header2[:-1] + "é", "read") is None
    assert auth2.admit_remembered(header2 + " ", "read") is None
    assert auth2.admit_remembered(header2, "read") is not None


async def test_admit_remembered_forgets_everything_when_the_store_changes() -> None:
    key = generate_key()
    record = KeyRecord(key.key_id, key.hash, time.time())
    snapshots = [Snapshot.of(StoreData({"svc": Consumer("svc", frozenset({"read"}), "p1",
                                                        (record,))}))]
    auth = Authenticator(lambda: snapshots[0], LocalLimits(0, 60.0), AuthSettings())
    header = f"Bearer {key.secret}"
    await auth.authenticate(header, PEER, "read")
    assert auth.admit_remembered(header, "read") is not None
    revoked = KeyRecord(record.key_id, record.hash, record.created, revoked=time.time())
    snapshots[0] = Snapshot.of(StoreData({"svc": Consumer("svc", frozenset({"read"}), "p1",
                                                          (revoked,))}))
    assert auth.admit_remembered(header, "read") is None
    with pytest.raises(Unauthenticated):
        await auth.authenticate(header, PEER, "read")
