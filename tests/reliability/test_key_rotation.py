"""S1: the central upstream key rotated under streaming and unary load, without a restart.

The key file is swapped (written aside, then renamed over, as a Secret's mount swaps its link)
while callers stream and read; the upstream accepts both keys until it revokes the old one,
``REVOKE_AFTER`` seconds later (the plan's 5 s under ``make stress``), or at the swap itself
(the gateway learns of the rotation from a 401). The emulator's log names the key of each
request by a key id, never the key: the proof that every request after the cut-over carries
the new key, and that no call needed more than one extra upstream request.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from pathlib import Path

import grpc
import pytest

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from tests.conftest import EMULATOR_KEY
from tests.reliability.conftest import Harness, HarnessFactory, record_figure, scale

NEW_KEY = "sk-rotated-upstream-key-2"
#: Seconds from the swap to the revocation of the old key; load goes on this long after it.
REVOKE_AFTER = scale(5, 3)
AFTER_REVOCATION = 1.0
WORKERS = scale(16, 6)


class Load:
    """Unary GetMessage and StreamMessages callers; every call names objects no other call
    names (its own message, its own thread), so each upstream request belongs to one call."""

    def __init__(self, h: Harness, messages: list[str], thread_id: str, threads: list[str]) -> None:
        self.h, self.thread_id = h, thread_id
        self.messages, self.threads = iter(messages), iter(threads)
        self.calls = 0
        self.errors: list[str] = []
        self.stop = asyncio.Event()

    async def unary(self) -> None:
        for message_id in self.messages:
            if self.stop.is_set():
                return
            await self.call(self.h.stub.GetMessage(pb.GetMessageRequest(
                thread_id=self.thread_id, message_id=message_id), timeout=10))

    async def streams(self) -> None:
        for thread_id in self.threads:
            if self.stop.is_set():
                return
            await self.call(self._stream(thread_id))

    async def _stream(self, thread_id: str) -> None:
        async for _ in self.h.stub.StreamMessages(
                pb.StreamMessagesRequest(thread_id=thread_id, limit=10), timeout=10):
            pass

    async def call(self, awaitable: object) -> None:
        try:
            await awaitable  # type: ignore[misc]
        except grpc.aio.AioRpcError as err:
            self.errors.append(f"{err.code().name}: {err.details()}")
        self.calls += 1


@pytest.mark.parametrize("revoke_after", [REVOKE_AFTER, 0],
                         ids=["revoked-later", "revoked-at-swap"])
async def test_upstream_key_rotation_under_load(
        make_harness: HarnessFactory, tmp_path: Path, revoke_after: float) -> None:
    key_file = tmp_path / "upstream-key"
    key_file.write_text(EMULATOR_KEY + "\n")
    h = await make_harness(upstream={"api_key_file": str(key_file)})
    keys = h.emulator.emulator.api_keys
    old_id, new_id = (h.emulator.emulator.key_id(k) for k in (EMULATOR_KEY, NEW_KEY))
    big = await h.thread(4000)
    threads = [await h.thread(25) for _ in range(600)]
    load = Load(h, h.emulator.store.message_ids(big), big, threads)
    workers = [asyncio.ensure_future(load.unary() if i % 2 else load.streams())
               for i in range(WORKERS)]

    await asyncio.sleep(1.0)
    calls_before = load.calls
    keys.add(NEW_KEY)  # the upstream accepts both ...
    if not revoke_after:
        keys.discard(EMULATOR_KEY)  # ... or only the new one from the swap on
    staged = tmp_path / "upstream-key.new"
    staged.write_text(NEW_KEY + "\n")
    swapped_at = time.time()
    os.replace(staged, key_file)
    if revoke_after:
        await asyncio.sleep(revoke_after)
        keys.discard(EMULATOR_KEY)
    revoked_at = time.time()
    calls_at_revocation = load.calls
    await asyncio.sleep(AFTER_REVOCATION)
    load.stop.set()
    await asyncio.wait_for(asyncio.gather(*workers), 15)

    assert load.errors == []
    assert calls_before > 0 and load.calls - calls_at_revocation >= WORKERS, load.calls
    entries = h.emulator.log.entries
    cut_over = next(i for i, e in enumerate(entries) if e.key_id == new_id)
    adoption = entries[cut_over].started_at - swapped_at
    assert {e.key_id for e in entries[:cut_over]} == {old_id}
    # Every request after the cut-over carries the new key.
    assert [e.key_id for e in entries[cut_over:] if e.key_id != new_id] == []
    # At most one extra upstream request per call, and only for a refused key.
    sent = Counter((e.path, tuple(sorted(e.query.items()))) for e in entries)
    refused = Counter((e.path, tuple(sorted(e.query.items()))) for e in entries
                      if e.status == 401)
    assert max(sent.values()) <= 2 and max(refused.values(), default=0) <= 1
    assert all(sent[k] == 1 + refused[k] for k in sent)
    if revoke_after:
        # Adopted before the revocation: not one request refused.
        assert not refused and adoption < revoke_after
        assert all(e.key_id == new_id for e in entries if e.started_at >= revoked_at)
    else:
        # Refused until the gateway re-read the file: each of those calls was retried once.
        assert refused
    when = f"revoked {revoke_after} s after" if revoke_after else "revoked at the swap"
    record_figure("S1", f"key rotation ({when}): "
                  f"{load.calls} calls, 0 errors, adoption {adoption * 1000:.0f} ms after the "
                  f"swap, {sum(refused.values())} calls retried once on a 401, "
                  f"{len(entries) - cut_over} of {len(entries)} upstream requests on the new key")
    await h.assert_clean()
