"""C5 and C6: real signals on gateway processes with streams in flight.

C5, graceful shutdown: SIGTERM with 50 streams open. Health turns NOT_SERVING first (a Watch
sees it before any stream ends); after the drain delay (calls are still served during it, so
that balancers notice) a new stream is refused UNAVAILABLE before any upstream request, and once
the listener is closed new connections are refused UNAVAILABLE; every in-flight stream ends
UNAVAILABLE with ``resume-after`` naming its last item (or completes); the unary call in flight
finishes within the grace; each stream's call record (written in the pipeline's ``finally``,
grpc#37239) is in the log; the process exits 0 within drain delay + grace.

C6, resume correctness: concurrent typed-client streams over one long thread while gateways are
stopped at random moments, by SIGTERM or by ``kill -9``: each stream's concatenated items equal
the emulator's ground truth, 0 gaps, 0 duplicates.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from messages_gateway_client import AsyncMessagesGatewayClient
from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2_grpc as pb_grpc
from gateway.emulator.server import EmulatorServer
from tests.reliability.conftest import record_figure, scale
from tests.reliability.gateway_process import GatewayProcess

DRAIN_DELAY, GRACE = 0.5, 3.0
#: The client reconnects quickly to a restarted gateway (grpc's own backoff starts at 1 s).
FAST_RECONNECT = [("grpc.initial_reconnect_backoff_ms", 100),
                  ("grpc.min_reconnect_backoff_ms", 100), ("grpc.max_reconnect_backoff_ms", 300)]


async def test_sigterm_with_50_streams_not_serving_first_then_resumable_ends(
        emulator: EmulatorServer) -> None:
    thread_id = emulator.store.create_thread()["id"]
    expected = emulator.store.seed_messages(thread_id, 60)
    other = emulator.store.create_thread()["id"]  # the stream refused while draining
    emulator.store.seed_messages(other, 5)
    emulator.faults.set_latency("listMessages", 0.3)  # 12 pages of 5: seconds of walk left
    emulator.faults.set_latency("getMessage", 1.0)
    gateway = GatewayProcess(emulator, server_drain_delay_seconds=str(DRAIN_DELAY),
                             server_grace_seconds=str(GRACE), logging_level="info")
    try:
        await gateway.start()
        async with grpc.aio.insecure_channel(gateway.target) as channel:
            stub = pb_grpc.MessagesServiceStub(channel)
            watch = health_pb2_grpc.HealthStub(channel).Watch(
                health_pb2.HealthCheckRequest(service="messages_gateway.v1.MessagesService"))
            assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
            streams = [stub.StreamMessages(pb.StreamMessagesRequest(
                thread_id=thread_id, limit=5, order=pb.ORDER_ASC), timeout=30) for _ in range(50)]
            received = [[m.id for m in (await s.read()).data] for s in streams]
            unary = asyncio.ensure_future(stub.GetMessage(pb.GetMessageRequest(
                thread_id=thread_id, message_id=expected[0]), timeout=10))
            await asyncio.sleep(0.2)  # the unary call is in flight upstream
            sent = time.monotonic()
            gateway.send(signal.SIGTERM)
            assert (await watch.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING
            not_serving = time.monotonic()

            async def finish(stream: grpc.aio.UnaryStreamCall, got: list[str]
                             ) -> tuple[grpc.aio.AioRpcError | None, float]:
                try:
                    while (page := await stream.read()) is not grpc.aio.EOF:
                        got.extend(m.id for m in page.data)
                except grpc.aio.AioRpcError as err:
                    return err, time.monotonic()
                return None, time.monotonic()

            ends = [asyncio.ensure_future(finish(s, got))
                    for s, got in zip(streams, received, strict=True)]
            await asyncio.wait(ends, return_when=asyncio.FIRST_COMPLETED)
            # The drain delay is over (streams end): a new call is refused, nothing sent on.
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                async for _ in stub.StreamMessages(pb.StreamMessagesRequest(thread_id=other),
                                                   timeout=5):
                    raise AssertionError("a page was sent while draining")
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            outcomes = await asyncio.gather(*ends)
            assert (await unary).id == expected[0]  # finished within the grace
        resumable = completed = 0
        for (err, ended), got in zip(outcomes, received, strict=True):
            assert ended >= not_serving  # health went NOT_SERVING before any stream ended
            assert got == expected[:len(got)]  # in order, nothing lost or repeated
            if err is None:
                assert got == expected
                completed += 1
                continue
            assert err.code() == grpc.StatusCode.UNAVAILABLE, err
            assert dict(err.trailing_metadata())["resume-after"] == got[-1]
            resumable += 1
        assert resumable + completed == 50
        # After the listener closed: refused.
        async with grpc.aio.insecure_channel(gateway.target) as late:
            with pytest.raises(grpc.aio.AioRpcError) as closed:
                await pb_grpc.MessagesServiceStub(late).GetMessage(pb.GetMessageRequest(
                    thread_id=thread_id, message_id=expected[0]), timeout=1)
            assert closed.value.code() == grpc.StatusCode.UNAVAILABLE
        assert await gateway.wait(DRAIN_DELAY + GRACE + 5) == 0
        shutdown = time.monotonic() - sent
        assert shutdown < DRAIN_DELAY + GRACE + 2
        assert await emulator.log.wait_idle(2.0)
        # Nothing fetched for the refused stream; the drained ones stopped fetching.
        assert all(e.path.split("/")[3] != other for e in emulator.log.entries)
        # Each stream fetched what it received, plus at most the page in flight and the one
        # prefetched when it ended.
        pages = sum(len(got) // 5 for got in received)
        assert pages <= emulator.log.count("listMessages") <= pages + 2 * 50
        # Every drained stream's finally ran: its call record is in the log.
        assert gateway.calls("StreamMessages", "UNAVAILABLE") >= resumable
        assert gateway.calls("GetMessage", "OK") == 1
    finally:
        await gateway.close()
    record_figure("C5", f"SIGTERM with 50 streams: NOT_SERVING first, {resumable} of 50 ended "
                  f"UNAVAILABLE with resume-after, {completed} completed, the unary call in "
                  f"flight finished; shutdown {shutdown:.2f} s (drain delay {DRAIN_DELAY} s)")


def busiest(emulator: EmulatorServer, exclude: set[int]) -> int:
    """The gateway that made the most of the last 50 upstream requests (by its organization
    header), among those not being restarted."""
    recent = [e.headers.get("openai-organization", "") for e in emulator.log.entries[-50:]]
    counts = {n: recent.count(f"org-gw{n}") for n in range(3) if n not in exclude}
    return max(counts, key=lambda n: counts[n])


async def test_resume_across_sigterm_and_kill_9_yields_the_ground_truth(
        emulator: EmulatorServer) -> None:
    """Three gateways behind one round-robin target; each disruption stops the one serving most
    streams (kill -9 and SIGTERM alternating) at a random moment, and it is started again in
    the background while the others serve, so the streams resume at once rather than waiting
    for a restart."""
    rng = random.Random(6)
    thread_id = emulator.store.create_thread()["id"]
    truth = emulator.store.seed_messages(thread_id, scale(2000, 200))
    emulator.faults.set_latency("listMessages", 0.05)  # pages of 5: 2 s of walk at CI scale
    # Each gateway names itself to the upstream (its organization header), so the emulator's
    # log says which one serves the streams at the moment: that one is stopped.
    gateways = [GatewayProcess(emulator, server_grace_seconds="1", logging_level="warning",
                               upstream_organization=f"org-gw{n}") for n in range(3)]
    disruptions = scale(12, 2)
    restarts: dict[int, asyncio.Future[None]] = {}
    try:
        await asyncio.gather(*(g.start() for g in gateways))
        target = "ipv4:" + ",".join(g.target for g in gateways)
        async with AsyncMessagesGatewayClient(
                target, timeout=120, max_retries=30, max_resumes=3 * disruptions,
                channel_options=FAST_RECONNECT) as client:
            streams = [client.messages.list(thread_id, limit=5, order="asc")
                       for _ in range(scale(20, 6))]

            async def walk(stream) -> list[str]:  # type: ignore[no-untyped-def]
                return [m.id async for m in stream]

            walks = [asyncio.ensure_future(walk(s)) for s in streams]
            for number in range(disruptions):
                await asyncio.sleep(rng.uniform(0.2, 0.6))
                assert not any(w.done() for w in walks), "a walk ended before the disruptions"
                victim = busiest(emulator, exclude=set(restarts))
                gateways[victim].send(signal.SIGTERM if number % 2 else signal.SIGKILL)
                await gateways[victim].wait()
                restarts[victim] = asyncio.ensure_future(gateways[victim].start())
                for n in [n for n in restarts if n != victim]:  # one down at a time
                    await restarts.pop(n)
            results = await asyncio.wait_for(asyncio.gather(*walks), 120)
            await asyncio.gather(*restarts.values())
    finally:
        for g in gateways:
            await g.close()
    for got in results:
        assert got == truth  # 0 gaps, 0 duplicates, in order
    resumes = [s.resumes for s in streams]
    assert sum(resumes) >= disruptions  # each disruption broke streams that then resumed
    record_figure("C6", f"{len(streams)} streams x {disruptions} disruptions (kill -9 and SIGTERM "
                  f"alternating, random moments, 3 gateways): {sum(resumes)} resumes, every "
                  f"stream equal to the ground truth ({len(truth)} items): 0 gaps, 0 duplicates")
