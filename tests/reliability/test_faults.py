"""The fault suite: one test per upstream fault, through a real gateway to the emulator.

Each test asserts the status the consumer sees, the number of upstream calls (emulator log) and
that nothing is left behind (``Harness.assert_clean``). The run ends with "N of N faults
survived" (tests/reliability/conftest.py).
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import signal
import socket
import sys
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2_grpc as pb_grpc
from gateway import metrics
from gateway.emulator.server import EmulatorServer
from gateway.upstream.http import UpstreamURLs
from tests.conftest import EMULATOR_KEY
from tests.reliability.conftest import Harness, HarnessFactory
from tests.rpc.test_messages_service import details


async def get(h: Harness, thread_id: str, message_id: str, timeout: float | None = 5.0
              ) -> pb.Message:
    return await h.stub.GetMessage(
        pb.GetMessageRequest(thread_id=thread_id, message_id=message_id), timeout=timeout)


async def failing(coro) -> grpc.aio.AioRpcError:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await coro
    return info.value


async def stream_all(h: Harness, thread_id: str, limit: int) -> list[str]:
    ids: list[str] = []
    async for page in h.stub.StreamMessages(
            pb.StreamMessagesRequest(thread_id=thread_id, limit=limit, order=pb.ORDER_ASC),
            timeout=10):
        ids.extend(m.id for m in page.data)
    return ids


def skip_first_request(emulator: EmulatorServer, operation: str) -> None:
    """A no-op fault (0 s of header delay) that consumes the first request, so the next armed
    rule hits the second one: page 2 of a stream rather than page 1."""
    emulator.faults.add(operation, "slow_headers", times=1, seconds=0.0)


# -- 5xx ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_fault_5xx_burst_retried_until_ok(harness: Harness, status: int) -> None:
    thread_id = await harness.thread(1)
    message_id = harness.emulator.store.message_ids(thread_id)[0]
    harness.emulator.faults.add("getMessage", "status", times=2, status=status)
    message = await get(harness, thread_id, message_id)
    assert message.id == message_id
    assert harness.emulator.log.count("getMessage") == 3
    await harness.assert_clean()


async def test_fault_503_on_a_stream_page_refetches_the_same_cursor(harness: Harness) -> None:
    thread_id = await harness.thread(25)
    expected = harness.emulator.store.message_ids(thread_id)
    skip_first_request(harness.emulator, "listMessages")
    harness.emulator.faults.add("listMessages", "status", times=1, status=503)
    ids = await stream_all(harness, thread_id, limit=10)
    assert ids == expected  # every item once, in order
    queries = [e.query.get("after") for e in harness.emulator.log.entries]
    assert queries == [None, expected[9], expected[9], expected[19]]  # page 2 retried, same cursor
    await harness.assert_clean()


async def test_fault_503_storm_opens_the_circuit_then_a_probe_closes_it(
        make_harness: HarnessFactory) -> None:
    # Open long enough that the 20 calls below all meet the open circuit on a loaded machine
    # (with the harness's 0.3 s, a half-open probe could slip in between them).
    harness = await make_harness(circuit_open_seconds=2.0)
    thread_id = await harness.thread(1)
    message_id = harness.emulator.store.message_ids(thread_id)[0]
    rule = harness.emulator.faults.add("getMessage", "status", status=503)
    reasons = []
    for _ in range(20):
        err = await failing(get(harness, thread_id, message_id))
        assert err.code() == grpc.StatusCode.UNAVAILABLE
        reasons.append(details(err)["ErrorInfo"].reason)  # type: ignore[attr-defined]
    # Five consecutive failures open it (two calls' attempts); everything after fails fast.
    assert harness.emulator.log.count("getMessage") == 5
    assert reasons[-1] == "UPSTREAM_CIRCUIT_OPEN"
    started = time.monotonic()
    await failing(get(harness, thread_id, message_id))
    assert time.monotonic() - started < 0.05
    assert metrics.REGISTRY.get_sample_value("gateway_circuit_open", {"profile": "default"}) == 1
    harness.emulator.faults.remove(rule.id)
    await asyncio.sleep(2.05)  # circuit_open_seconds
    assert (await get(harness, thread_id, message_id)).id == message_id
    assert metrics.REGISTRY.get_sample_value("gateway_circuit_open", {"profile": "default"}) == 0
    await harness.assert_clean()


async def test_fault_503_storm_retries_stay_within_the_budget(
        make_harness: HarnessFactory) -> None:
    # Circuit effectively off, so only the budget limits amplification.
    h = await make_harness(circuit_failure_threshold=10_000, retry_budget_burst=5)
    thread_id = await h.thread(1)
    message_id = h.emulator.store.message_ids(thread_id)[0]
    h.emulator.faults.add("getMessage", "status", status=503)
    calls = 100
    for _ in range(calls):
        err = await failing(get(h, thread_id, message_id))
        assert err.code() == grpc.StatusCode.UNAVAILABLE
    upstream = h.emulator.log.count("getMessage")
    assert upstream <= calls * 1.2 + 5  # without a budget: 3 attempts each, 300
    assert upstream > calls
    await h.assert_clean()


# -- 429 and its retry headers ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "min_wait"),
    [
        ({"retry_after_ms": "300"}, 0.3),
        ({"retry_after": "1"}, 1.0),
        ({"retry_after": email.utils.format_datetime(
            __import__("datetime").datetime.now(__import__("datetime").timezone.utc)
            - __import__("datetime").timedelta(seconds=30), usegmt=True)}, 0.0),  # past date
        ({"retry_after": "soon"}, 0.0),       # garbage → backoff
        ({"retry_after": "-5"}, 0.0),         # negative → backoff
        ({"retry_after_ms": "NaN"}, 0.0),     # garbage → backoff
    ],
    ids=["retry-after-ms", "retry-after-seconds", "http-date-past", "garbage", "negative", "nan"],
)
async def test_fault_429_retry_header_obeyed_then_ok(
        harness: Harness, headers: dict[str, str], min_wait: float) -> None:
    thread_id = await harness.thread(1)
    message_id = harness.emulator.store.message_ids(thread_id)[0]
    harness.emulator.faults.add("getMessage", "status", times=1, status=429, **headers)
    started = time.monotonic()
    assert (await get(harness, thread_id, message_id)).id == message_id
    elapsed = time.monotonic() - started
    assert min_wait <= elapsed < min_wait + 0.5
    assert harness.emulator.log.count("getMessage") == 2
    await harness.assert_clean()


@pytest.mark.parametrize("form, seconds", [("http-date", 5), ("seconds", 10)])
async def test_fault_429_retry_after_beyond_the_deadline_answers_at_once(
        harness: Harness, form: str, seconds: int) -> None:
    import datetime

    thread_id = await harness.thread(1)
    message_id = harness.emulator.store.message_ids(thread_id)[0]
    when = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=seconds)
    retry_after = (email.utils.format_datetime(when, usegmt=True) if form == "http-date"
                   else str(seconds))
    harness.emulator.faults.add("getMessage", "status", status=429, retry_after=retry_after)
    started = time.monotonic()
    err = await failing(get(harness, thread_id, message_id, timeout=1.0))
    assert time.monotonic() - started < 0.3  # no sleep at all
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert dict(err.trailing_metadata())["grpc-retry-pushback-ms"].isdigit()
    delay = details(err)["RetryInfo"].retry_delay  # type: ignore[attr-defined]
    assert seconds - 2 <= delay.seconds <= seconds
    assert harness.emulator.log.count("getMessage") == 1
    await harness.assert_clean()


async def test_fault_429_retry_after_over_60s_answers_at_once_with_pushback(
        harness: Harness) -> None:
    thread_id = await harness.thread(1)
    message_id = harness.emulator.store.message_ids(thread_id)[0]
    harness.emulator.faults.add("getMessage", "status", status=429, retry_after="3600")
    started = time.monotonic()
    err = await failing(get(harness, thread_id, message_id, timeout=30))
    assert time.monotonic() - started < 0.3
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert details(err)["RetryInfo"].retry_delay.seconds == 3600  # type: ignore[attr-defined]
    assert dict(err.trailing_metadata())["grpc-retry-pushback-ms"] == "3600000"
    assert harness.emulator.log.count("getMessage") == 1
    await harness.assert_clean()


async def test_fault_503_with_x_should_retry_false_is_not_retried(harness: Harness) -> None:
    thread_id = await harness.thread(1)
    message_id = harness.emulator.store.message_ids(thread_id)[0]
    harness.emulator.faults.add("getMessage", "status", status=503, should_retry=False)
    err = await failing(get(harness, thread_id, message_id))
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    assert harness.emulator.log.count("getMessage") == 1
    await harness.assert_clean()


# -- the connection ------------------------------------------------------------------------------


async def test_fault_reset_before_headers_read_retried(harness: Harness) -> None:
    thread_id = await harness.thread(1)
    message_id = harness.emulator.store.message_ids(thread_id)[0]
    harness.emulator.faults.add("getMessage", "reset", times=1)
    assert (await get(harness, thread_id, message_id)).id == message_id
    assert harness.emulator.log.count("getMessage") == 2
    await harness.assert_clean()


async def test_fault_reset_mid_body_on_a_stream_page_loses_and_repeats_nothing(
        harness: Harness) -> None:
    thread_id = await harness.thread(30)
    expected = harness.emulator.store.message_ids(thread_id)
    skip_first_request(harness.emulator, "listMessages")
    harness.emulator.faults.add("listMessages", "reset_mid_body", times=1, fraction=0.4)
    ids = await stream_all(harness, thread_id, limit=10)
    assert ids == expected
    assert harness.emulator.log.count("listMessages") == 4
    await harness.assert_clean()


async def test_fault_connection_refused_unavailable_fast(
        make_harness: HarnessFactory, emulator: EmulatorServer) -> None:
    h = await make_harness()
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    h.gateway.upstream.client("default").urls = UpstreamURLs(f"http://127.0.0.1:{port}/v1")
    started = time.monotonic()
    err = await failing(get(h, "thread_x", "msg_x", timeout=5))
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    assert time.monotonic() - started < 1.0
    assert emulator.log.count() == 0
    await h.assert_clean()


async def test_fault_slow_headers_per_try_timeout_then_retry_ok(
        make_harness: HarnessFactory) -> None:
    h = await make_harness(per_try_timeout_seconds=0.3)
    thread_id = await h.thread(1)
    message_id = h.emulator.store.message_ids(thread_id)[0]
    h.emulator.faults.add("getMessage", "slow_headers", times=1, seconds=5.0)
    started = time.monotonic()
    assert (await get(h, thread_id, message_id)).id == message_id
    assert time.monotonic() - started < 1.0
    assert h.emulator.log.count("getMessage") == 2
    await h.assert_clean()


async def test_fault_slow_drip_body_bounded_by_the_deadline(harness: Harness) -> None:
    thread_id = await harness.thread(1)
    message_id = harness.emulator.store.message_ids(thread_id)[0]
    harness.emulator.faults.add("getMessage", "slow_body", chunk_size=1, delay=0.02)
    started = time.monotonic()
    err = await failing(get(harness, thread_id, message_id, timeout=0.5))
    assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 0.7
    assert await harness.emulator.log.wait_idle(1.0)  # the upstream saw the disconnect
    assert harness.emulator.log.entries[-1].disconnected
    assert harness.emulator.log.count("getMessage") == 1
    await harness.assert_clean()


async def test_fault_deadline_shorter_than_upstream_latency(harness: Harness) -> None:
    thread_id = await harness.thread(1)
    message_id = harness.emulator.store.message_ids(thread_id)[0]
    harness.emulator.faults.add("getMessage", "latency", seconds=2.0)
    started = time.monotonic()
    err = await failing(get(harness, thread_id, message_id, timeout=0.3))
    assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 0.45
    assert await harness.emulator.log.wait_idle(1.0)
    assert harness.emulator.log.count("getMessage") == 1
    await harness.assert_clean()


# -- the body ------------------------------------------------------------------------------------


async def test_fault_truncated_json_internal_after_retries(harness: Harness) -> None:
    thread_id = await harness.thread(1)
    message_id = harness.emulator.store.message_ids(thread_id)[0]
    harness.emulator.faults.add("getMessage", "truncated_json", fraction=0.5)
    err = await failing(get(harness, thread_id, message_id))
    assert err.code() == grpc.StatusCode.INTERNAL
    assert "not valid JSON" in err.details() and message_id not in err.details()
    assert harness.emulator.log.count("getMessage") == 3
    await harness.assert_clean()


async def test_fault_html_body_once_retried_ok(harness: Harness) -> None:
    thread_id = await harness.thread(1)
    message_id = harness.emulator.store.message_ids(thread_id)[0]
    harness.emulator.faults.add("getMessage", "non_json", times=1)
    assert (await get(harness, thread_id, message_id)).id == message_id
    assert harness.emulator.log.count("getMessage") == 2
    await harness.assert_clean()


async def test_fault_huge_body_resource_exhausted_not_retried(
        make_harness: HarnessFactory) -> None:
    h = await make_harness(upstream={"max_body_bytes": 1024 * 1024})
    thread_id = await h.thread(1)
    h.emulator.faults.add("listMessages", "huge_body", size=4 * 1024 * 1024, chunked=True)
    err = await failing(h.stub.ListMessages(pb.ListMessagesRequest(thread_id=thread_id),
                                            timeout=5))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than the gateway accepts" in err.details()
    assert h.emulator.log.count("listMessages") == 1
    await h.assert_clean()


async def test_fault_non_advancing_cursor_internal_with_resume_point(harness: Harness) -> None:
    thread_id = await harness.thread(15)
    expected = harness.emulator.store.message_ids(thread_id)
    harness.emulator.faults.add("listMessages", "stale_cursor")
    received: list[str] = []
    call = harness.stub.StreamMessages(
        pb.StreamMessagesRequest(thread_id=thread_id, limit=10, order=pb.ORDER_ASC), timeout=5)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for page in call:
            received.extend(m.id for m in page.data)
    assert info.value.code() == grpc.StatusCode.INTERNAL
    assert received == expected[:10]
    assert dict(info.value.trailing_metadata())["resume-after"] == expected[9]
    assert harness.emulator.log.count("listMessages") == 2
    await harness.assert_clean()


async def test_fault_redirect_to_another_host_not_followed(harness: Harness) -> None:
    thread_id = await harness.thread(1)
    message_id = harness.emulator.store.message_ids(thread_id)[0]
    harness.emulator.faults.add("getMessage", "redirect")
    err = await failing(get(harness, thread_id, message_id))
    assert err.code() == grpc.StatusCode.INTERNAL
    assert details(err)["ErrorInfo"].reason == "UPSTREAM_REDIRECT"  # type: ignore[attr-defined]
    assert harness.emulator.log.count() == 1  # nothing followed it, here or anywhere
    await harness.assert_clean()


async def test_fault_rejected_upstream_key_internal_never_unauthenticated(
        harness: Harness) -> None:
    thread_id = await harness.thread(1)
    message_id = harness.emulator.store.message_ids(thread_id)[0]
    harness.emulator.faults.add("getMessage", "status", status=401)
    err = await failing(get(harness, thread_id, message_id))
    assert err.code() == grpc.StatusCode.INTERNAL
    assert EMULATOR_KEY not in err.details()
    assert harness.emulator.log.count("getMessage") == 1
    await harness.assert_clean()


# -- creates ---------------------------------------------------------------------------------------


async def test_fault_create_answer_lost_without_key_not_resent(harness: Harness) -> None:
    thread_id = await harness.thread()
    harness.emulator.faults.add("createMessage", "status", times=1, status=500, run_handler=True)
    err = await failing(harness.stub.CreateMessage(pb.CreateMessageRequest(
        thread_id=thread_id, role=pb.ROLE_USER, content="once"), timeout=5))
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    assert harness.emulator.log.count("createMessage") == 1
    assert len(harness.emulator.store.message_ids(thread_id)) == 1
    await harness.assert_clean()


async def test_fault_create_answer_lost_with_key_recovered_without_duplicate(
        harness: Harness) -> None:
    thread_id = await harness.thread()
    harness.emulator.faults.add("createMessage", "status", times=1, status=500, run_handler=True)
    created = await harness.stub.CreateMessage(pb.CreateMessageRequest(
        thread_id=thread_id, role=pb.ROLE_USER, content="once", request_id="key-1"), timeout=5)
    assert harness.emulator.store.message_ids(thread_id) == [created.id]
    assert harness.emulator.log.count("createMessage") == 1  # found by the look-up, not re-sent
    assert harness.emulator.log.count("listMessages") == 1
    again = await harness.stub.CreateMessage(pb.CreateMessageRequest(
        thread_id=thread_id, role=pb.ROLE_USER, content="once", request_id="key-1"), timeout=5)
    assert again.id == created.id
    assert harness.emulator.log.count() == 2
    await harness.assert_clean()


async def test_fault_create_reset_before_handler_with_key_resent_once(harness: Harness) -> None:
    thread_id = await harness.thread()
    harness.emulator.faults.add("createMessage", "reset", times=1)  # never applied upstream
    created = await harness.stub.CreateMessage(
        pb.CreateMessageRequest(thread_id=thread_id, role=pb.ROLE_USER, content="x"),
        metadata=(("idempotency-key", "key-2"),), timeout=5)
    assert harness.emulator.store.message_ids(thread_id) == [created.id]
    assert harness.emulator.log.count("createMessage") == 2
    assert harness.emulator.log.count("listMessages") == 1  # looked first, found nothing
    await harness.assert_clean()


# -- shutdown --------------------------------------------------------------------------------------


async def _wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            await writer.wait_closed()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


async def test_fault_sigterm_with_streams_in_flight(emulator: EmulatorServer, tmp_path) -> None:  # type: ignore[no-untyped-def]
    thread_id = emulator.store.create_thread()["id"]
    emulator.store.seed_messages(thread_id, 60)
    expected = emulator.store.message_ids(thread_id)
    emulator.faults.set_latency("listMessages", 0.3)
    emulator.faults.set_latency("getMessage", 0.8)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "GATEWAY_SERVER_GRPC_LISTEN": f"127.0.0.1:{port}",
           "GATEWAY_SERVER_GRACE_SECONDS": "3", "GATEWAY_UPSTREAM_BASE_URL": emulator.base_url,
           "GATEWAY_UPSTREAM_API_KEY": EMULATOR_KEY, "GATEWAY_LOGGING_LEVEL": "warning"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "serve", env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        await _wait_port(port)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.MessagesServiceStub(channel)
            health = health_pb2_grpc.HealthStub(channel)
            streams = [stub.StreamMessages(pb.StreamMessagesRequest(
                thread_id=thread_id, limit=10, order=pb.ORDER_ASC), timeout=20) for _ in range(5)]
            firsts = [await s.read() for s in streams]  # every stream is in flight
            unary = asyncio.ensure_future(stub.GetMessage(pb.GetMessageRequest(
                thread_id=thread_id, message_id=expected[0]), timeout=20))
            await asyncio.sleep(0.1)
            proc.send_signal(signal.SIGTERM)
            outcomes = []
            for stream, first in zip(streams, firsts, strict=True):
                received = [m.id for m in first.data]
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    while (page := await stream.read()) is not grpc.aio.EOF:
                        received.extend(m.id for m in page.data)
                outcomes.append((info.value, received))
            for err, received in outcomes:
                assert err.code() == grpc.StatusCode.UNAVAILABLE
                assert dict(err.trailing_metadata())["resume-after"] == received[-1]
                assert received == expected[:len(received)]  # a resumable prefix
            assert (await unary).id == expected[0]  # the unary call finished within grace
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await health.Check(health_pb2.HealthCheckRequest(), timeout=2)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert await asyncio.wait_for(proc.wait(), 5) == 0
        assert await emulator.log.wait_idle(2.0)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.mark.parametrize("body", [
    {"object": "list", "data": "not a list", "first_id": None, "last_id": None, "has_more": False},
    {"object": "list", "first_id": None, "last_id": None, "has_more": False},  # no data
    {"object": "list", "data": [], "first_id": None, "last_id": None},  # no has_more
    {"object": "list", "data": [{"id": 7, "object": "thread.message"}], "has_more": False},
], ids=["data-not-a-list", "no-data", "no-has-more", "item-of-wrong-types"])
async def test_fault_list_of_the_wrong_shape_internal_never_unknown(
        harness: Harness, body: dict[str, object]) -> None:
    thread_id = await harness.thread(1)
    harness.emulator.faults.add("listMessages", "non_json", status=200, body=json.dumps(body))
    err = await failing(harness.stub.ListMessages(pb.ListMessagesRequest(thread_id=thread_id),
                                                  timeout=5))
    assert err.code() == grpc.StatusCode.INTERNAL
    assert details(err)["ErrorInfo"].reason == "UPSTREAM_INVALID_RESPONSE"  # type: ignore[attr-defined]
    # Valid JSON of the wrong shape is the upstream's answer, not a transport accident: sent again
    # it would be the same, so it is not retried (cut or non-JSON bodies are).
    assert harness.emulator.log.count("listMessages") == 1
    await harness.assert_clean()
