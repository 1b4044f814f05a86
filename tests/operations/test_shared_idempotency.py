"""The idempotency window in Redis: the in-process store's semantics across processes, and the
fallback to it (with the marker look-up) while Redis is unreachable. Real Redis (127.0.0.1:6379)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable

import grpc
import pytest

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2_grpc as pb_grpc
from gateway import metrics
from gateway.app import start_gateway
from gateway.config import CacheSettings
from gateway.errors import (
    DeadlineExceeded,
    InvalidArgument,
    NotFound,
    Unavailable,
    UpstreamErrorInfo,
)
from gateway.operations.shared_idempotency import SharedIdempotency
from tests.conftest import gateway_settings


def unbounded() -> None:
    return None


def fallbacks(why: str) -> float:
    return metrics.REGISTRY.get_sample_value("gateway_idempotency_fallbacks_total",
                                             {"why": why}) or 0.0


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens once the socket is closed


@pytest.fixture
async def windows(redis_url: str, redis_prefix: str) -> AsyncIterator[
        Callable[..., SharedIdempotency]]:
    made: list[SharedIdempotency] = []

    def make(url: str = redis_url, op_timeout: float = 1.0) -> SharedIdempotency:
        window = SharedIdempotency(url=url, prefix=redis_prefix, window=60.0, max_entries=100,
                                   op_timeout=op_timeout, breaker_seconds=5.0,
                                   max_connections=16)
        made.append(window)
        return window

    yield make
    for window in made:
        await window.close()


class Creates:
    """A create(recover) that records its calls; each made message has a new id."""

    def __init__(self, delay: float = 0.0, fail: BaseException | None = None) -> None:
        self.calls: list[bool] = []
        self.delay, self.fail = delay, fail

    async def __call__(self, recover: bool) -> pb.Message:
        self.calls.append(recover)
        await asyncio.sleep(self.delay)
        if self.fail is not None:
            raise self.fail
        return pb.Message(id=f"msg_{len(self.calls)}")


async def test_same_key_gets_the_first_result_in_every_process(windows) -> None:
    one, two = windows(), windows()
    create = Creates()
    first = await one.run("c", "k", "f1", create, remaining=unbounded)
    again = await two.run("c", "k", "f1", create, remaining=unbounded)
    other = await two.run("c2", "k", "f1", create, remaining=unbounded)
    assert first.id == again.id == "msg_1" and other.id == "msg_2"


async def test_key_reused_with_another_request_is_invalid_argument_everywhere(windows) -> None:
    one, two = windows(), windows()
    slow = asyncio.ensure_future(one.run("c", "k", "f1", Creates(delay=0.2), remaining=unbounded))
    await asyncio.sleep(0.05)
    for window in (one, two):  # pending (locally and in Redis), then done
        with pytest.raises(InvalidArgument) as info:
            await window.run("c", "k", "f2", Creates(), remaining=unbounded)
        assert info.value.details.field_violations[0].field == "request_id"
    await slow
    with pytest.raises(InvalidArgument):
        await two.run("c", "k", "f2", Creates(), remaining=unbounded)


async def test_concurrent_duplicates_across_processes_make_one(windows) -> None:
    one, two = windows(), windows()
    create = Creates(delay=0.1)
    results = await asyncio.gather(*(w.run("c", "k", "f", create, remaining=lambda: 5.0)
                                     for w in [one, two] * 50))
    assert create.calls == [False] and {m.id for m in results} == {"msg_1"}


async def test_duplicate_waits_only_within_its_deadline(windows) -> None:
    one, two = windows(), windows()
    slow = asyncio.ensure_future(one.run("c", "k", "f", Creates(delay=0.5), remaining=unbounded))
    await asyncio.sleep(0.05)
    with pytest.raises(DeadlineExceeded):
        await two.run("c", "k", "f", Creates(), remaining=lambda: 0.1)
    assert (await slow).id == "msg_1"


async def test_ambiguous_failure_next_call_anywhere_recovers_first(windows) -> None:
    one, two = windows(), windows()
    with pytest.raises(Unavailable) as info:
        await one.run("c", "k", "f", Creates(fail=Unavailable("lost")), remaining=unbounded)
    assert info.value.details.metadata["request_id"] == "k"
    create = Creates()
    await two.run("c", "k", "f", create, remaining=unbounded)
    assert create.calls == [True]


async def test_definite_failure_forgets_the_key(windows) -> None:
    one, two = windows(), windows()
    with pytest.raises(NotFound):
        await one.run("c", "k", "f", Creates(fail=NotFound(
            "no thread", upstream=UpstreamErrorInfo(status=404))), remaining=unbounded)
    create = Creates()
    await two.run("c", "k", "f", create, remaining=unbounded)
    assert create.calls == [False]


async def test_a_leader_that_died_is_recovered_after_its_lease(windows, redis_sync,
                                                               redis_prefix) -> None:
    one = windows()
    name = one.slot_key("c", "k")
    # A pending entry whose lease ran out (its leader's process died mid-create).
    redis_sync.set(name, b"pending\nf\nabcd\n1\n", px=60_000)
    create = Creates()
    assert (await one.run("c", "k", "f", create, remaining=unbounded)).id == "msg_1"
    assert create.calls == [True]
    assert redis_sync.get(name).startswith(b"done\nf\n")


async def test_redis_outage_falls_back_to_the_marker_lookup_and_is_counted(windows) -> None:
    window = windows(url=f"redis://127.0.0.1:{closed_port()}/0", op_timeout=0.2)
    before = fallbacks("redis_error") + fallbacks("breaker_open")
    create = Creates(delay=0.05)
    results = await asyncio.gather(*(window.run("c", "k", "f", create, remaining=unbounded)
                                     for _ in range(5)))
    # Every create looks for the upstream marker first (another replica may have made it), and
    # the in-process window still coalesces this process's duplicates.
    assert create.calls == [True] and {m.id for m in results} == {"msg_1"}
    assert fallbacks("redis_error") + fallbacks("breaker_open") >= before + 1
    again = await window.run("c", "k", "f", create, remaining=unbounded)
    assert again.id == "msg_1" and fallbacks("breaker_open") >= 1


async def test_100_duplicate_creates_over_two_gateways_make_one_upstream_create(
    emulator, redis_url, redis_prefix
) -> None:
    """Two gateways sharing one Redis and one emulator: exactly one createMessage upstream, and
    all 100 callers get the same message."""
    settings = gateway_settings(emulator)
    settings = settings.replace("cache", backend="redis", redis_url=redis_url,
                                redis_key_prefix=redis_prefix, redis_op_timeout_seconds=1.0)
    assert CacheSettings().backend == "memory"  # "auto": shared because the cache is on Redis
    gateways = [await start_gateway(settings), await start_gateway(settings)]
    assert all(isinstance(g.shared_idempotency, SharedIdempotency) for g in gateways)
    thread_id = emulator.store.create_thread()["id"]
    emulator.log.clear()
    emulator.faults.add("createMessage", "latency", seconds=0.2, times=1)
    before = fallbacks("redis_error") + fallbacks("breaker_open")
    request = pb.CreateMessageRequest(thread_id=thread_id, role=pb.ROLE_USER, content="once",
                                      request_id="order-42")
    try:
        channels = [grpc.aio.insecure_channel(f"127.0.0.1:{g.grpc_port}") for g in gateways]
        stubs = [pb_grpc.MessagesServiceStub(c) for c in channels]
        replies = await asyncio.gather(*(stubs[i % 2].CreateMessage(request, timeout=10)
                                         for i in range(100)))
        for channel in channels:
            await channel.close()
    finally:
        for g in gateways:
            await g.stop(grace=0.5)
    assert emulator.log.count("createMessage") == 1
    assert len({r.id for r in replies}) == 1 and len(replies) == 100
    assert fallbacks("redis_error") + fallbacks("breaker_open") == before
