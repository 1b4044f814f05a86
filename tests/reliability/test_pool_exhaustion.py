"""R5: pool exhaustion. Five times the upstream pool in concurrent calls on a slow upstream, then
back to normal: the excess is refused fast, nothing is poisoned, success is 100 % again at once."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from tests.reliability.conftest import HarnessFactory, record_figure


@pytest.mark.parametrize("transport", ["aiohttp", "httptools", "httpx"])
async def test_pool_exhaustion_5x_the_pool_refused_fast_then_full_success_again(
        make_harness: HarnessFactory, transport: str) -> None:
    """R5: five times the upstream pool's size in concurrent calls on a slow upstream, with
    only ``upstream.max_connections`` set (admission left at its default): the excess is refused
    at once instead of queueing in the pool, calls cut by their deadline mid-request poison
    nothing, and once the upstream is fast again every call succeeds."""
    pool = 4
    h = await make_harness(upstream={"max_connections": pool, "max_keepalive_connections": pool,
                                     "transport": transport})
    thread_id = await h.thread(1)
    message_id = h.emulator.store.message_ids(thread_id)[0]
    request = pb.GetMessageRequest(thread_id=thread_id, message_id=message_id)
    h.emulator.faults.set_latency("getMessage", 1.0)

    async def timed(timeout: float) -> tuple[grpc.StatusCode, float]:
        started = time.monotonic()
        try:
            await h.stub.GetMessage(request, timeout=timeout)
            code = grpc.StatusCode.OK
        except grpc.aio.AioRpcError as err:
            code = err.code()
        return code, time.monotonic() - started

    # Five times the pool on a 1 s upstream: the pool's worth served, the rest refused at once.
    done = await asyncio.gather(*(timed(5.0) for _ in range(5 * pool)))
    codes = [code for code, _ in done]
    assert codes.count(grpc.StatusCode.OK) == pool, codes
    assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) == 4 * pool, codes
    refused = sorted(t for code, t in done if code == grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert refused[-1] < 0.5  # admission's 0.05 s wait, not a queue in the pool (1 s)
    assert h.emulator.log.count("getMessage") == pool
    assert await h.emulator.log.wait_idle(2.0)
    # Again, with deadlines that cut the admitted requests mid-exchange (what poisons pools).
    h.emulator.log.clear()
    codes = [code for code, _ in await asyncio.gather(*(timed(0.5) for _ in range(5 * pool)))]
    assert set(codes) <= {grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert codes.count(grpc.StatusCode.DEADLINE_EXCEEDED) >= pool, codes
    assert h.emulator.log.count("getMessage") == pool
    assert await h.emulator.log.wait_idle(2.0)
    assert all(e.disconnected for e in h.emulator.log.entries)
    h.emulator.faults.set_latency("getMessage", 0)
    normal = time.monotonic()
    recovered: float | None = None
    for _ in range(50):  # rounds of a full pool: all OK once nothing is held or poisoned
        codes = [code for code, _ in await asyncio.gather(*(timed(5.0) for _ in range(pool)))]
        if set(codes) == {grpc.StatusCode.OK}:
            recovered = time.monotonic() - normal
            break
    assert recovered is not None and recovered < 1.0
    for _ in range(5):
        assert [c for c, _ in await asyncio.gather(*(timed(5.0) for _ in range(pool)))] == [
            grpc.StatusCode.OK] * pool
    await h.assert_clean()
    record_figure("R5", f"{transport}: 5x the pool of {pool}: {4 * pool} of {5 * pool} refused "
                  f"RESOURCE_EXHAUSTED, slowest refusal {refused[-1] * 1000:.0f} ms; success "
                  f"100 % again {recovered * 1000:.0f} ms after the upstream recovered")
