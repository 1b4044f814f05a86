"""F14: the upstream refuses the gateway's own key. The key file is re-read and the request sent
once more; a consumer never hears UNAUTHENTICATED for it (INTERNAL), and every refusal is counted
in ``gateway_upstream_key_rejected_total`` (alert ``GatewayUpstreamKeyRejected``,
tests/deploy/test_monitoring.py)."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from gateway import metrics
from tests.reliability.conftest import Harness, HarnessFactory, scale
from tests.rpc.test_messages_service import details


def rejected() -> float:
    return metrics.REGISTRY.get_sample_value("gateway_upstream_key_rejected_total",
                                             {"profile": "default"}) or 0.0


async def keyed_harness(make_harness: HarnessFactory, tmp_path: Path, key: str) -> Harness:
    key_file = tmp_path / "upstream.key"
    key_file.write_text(key)
    h = await make_harness(upstream={"api_key_file": str(key_file)})
    h.emulator.emulator.api_keys.clear()
    h.emulator.emulator.api_keys.add(key)
    return h


async def test_key_rotated_behind_the_gateway_reread_and_retried_once_n_of_n(
        make_harness: HarnessFactory, tmp_path: Path) -> None:
    h = await keyed_harness(make_harness, tmp_path, "sk-rot-start")
    thread_id = await h.thread(1)
    message_id = h.emulator.store.message_ids(thread_id)[0]
    request = pb.GetMessageRequest(thread_id=thread_id, message_id=message_id)
    assert (await h.stub.GetMessage(request, timeout=5)).id == message_id
    rotations = scale(20, 5)
    before, ok = rejected(), 0
    h.emulator.log.clear()
    for i in range(rotations):
        new = f"sk-rot-{i}"
        # The upstream revokes the old key at once; the Secret is updated at the same moment,
        # within the gateway's one-second trust in its last read of the file.
        h.emulator.emulator.api_keys.clear()
        h.emulator.emulator.api_keys.add(new)
        (tmp_path / "upstream.key").write_text(new)
        ok += (await h.stub.GetMessage(request, timeout=5)).id == message_id
    assert ok == rotations  # N of N served
    statuses = [e.status for e in h.emulator.log.entries]
    assert statuses == [401, 200] * rotations  # one retry each, no more
    assert rejected() - before == rotations
    await h.assert_clean()


@pytest.mark.parametrize("rotated", [False, True], ids=["key-unchanged", "new-key-refused-too"])
async def test_key_refused_is_internal_never_unauthenticated_and_counted(
        make_harness: HarnessFactory, tmp_path: Path, rotated: bool) -> None:
    h = await keyed_harness(make_harness, tmp_path, "sk-good")
    thread_id = await h.thread(12)
    message_id = h.emulator.store.message_ids(thread_id)[0]
    h.emulator.emulator.api_keys.clear()
    h.emulator.emulator.api_keys.add("sk-someone-else")
    if rotated:
        (tmp_path / "upstream.key").write_text("sk-also-refused")
    h.emulator.log.clear()
    before = rejected()
    calls = [  # one after the other (a grpc.aio call starts when it is made)
        lambda: h.stub.GetMessage(pb.GetMessageRequest(thread_id=thread_id,
                                                       message_id=message_id), timeout=5),
        lambda: h.stub.ListMessages(pb.ListMessagesRequest(thread_id=thread_id), timeout=5),
    ]
    codes = []
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call()
        codes.append(info.value.code())
        info_ = details(info.value)["ErrorInfo"]
        assert info_.reason == "UPSTREAM_CREDENTIALS_REJECTED"  # type: ignore[attr-defined]
        assert "sk-" not in info.value.details()
    stream = h.stub.StreamMessages(pb.StreamMessagesRequest(thread_id=thread_id, limit=5),
                                   timeout=5)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in stream:
            raise AssertionError("a page was sent")
    codes.append(info.value.code())
    assert codes == [grpc.StatusCode.INTERNAL] * 3
    # Re-read once: the first call finds the new key and sends it again; from then on the key
    # read is the one refused, which is not sent twice.
    sent = 3 + (1 if rotated else 0)
    assert h.emulator.log.count() == sent
    assert {e.status for e in h.emulator.log.entries} == {401}
    assert rejected() - before == sent
    await h.assert_clean()
