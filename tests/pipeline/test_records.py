"""One log line and one metrics sample per REST call; no Authorization anywhere; deadlines."""

from __future__ import annotations

import httpx
import structlog
from hypothesis import given
from hypothesis import strategies as st

from gateway import metrics
from gateway.context import CallContext
from gateway.emulator.server import EmulatorServer
from gateway.pipeline import records
from tests.rest.conftest import new_thread

SECRET = "sk-consumer-secret-do-not-log"


def _calls(method: str, code: str) -> float:
    return metrics.REGISTRY.get_sample_value(
        "gateway_calls_total", {"face": "rest", "method": method, "code": code,
                                "consumer": "anonymous", "profile": "default"}) or 0.0


async def test_call_logs_one_line_without_authorization_and_counts_metrics(
    http: httpx.AsyncClient, emulator: EmulatorServer
) -> None:
    thread_id = await new_thread(emulator)
    before_ok = _calls("CreateMessage", "OK")
    before_bad = _calls("GetMessage", "NOT_FOUND")
    with structlog.testing.capture_logs() as logs:
        ok = await http.post(f"/threads/{thread_id}/messages", json={"role": "user", "content": "x"},
                             headers={"authorization": f"Bearer {SECRET}",
                                      "x-request-id": "trace-1"})
        missing = await http.get(f"/threads/{thread_id}/messages/msg_nope",
                                 headers={"authorization": f"Bearer {SECRET}"})
    assert ok.status_code == 200 and missing.status_code == 404
    lines = [e for e in logs if e["event"] == "call"]
    assert [(e["method"], e["code"], e["http_status"]) for e in lines] == [
        ("CreateMessage", "OK", 200), ("GetMessage", "NOT_FOUND", 404)]
    assert lines[0]["upstream_calls"] == 1 and lines[0]["upstream_status"] == 200
    assert ok.headers["x-gateway-request-id"] == "trace-1"
    assert SECRET not in repr(logs)
    assert _calls("CreateMessage", "OK") == before_ok + 1
    assert _calls("GetMessage", "NOT_FOUND") == before_bad + 1


async def test_stream_call_logs_items_once_when_it_ends(
    http: httpx.AsyncClient, emulator: EmulatorServer
) -> None:
    thread_id = await new_thread(emulator)
    emulator.store.seed_messages(thread_id, 25)
    with structlog.testing.capture_logs() as logs:
        response = await http.get(f"/threads/{thread_id}/messages:stream", params={"limit": 10})
    assert len(response.text.splitlines()) == 25
    lines = [e for e in logs if e["event"] == "call"]
    assert len(lines) == 1
    assert lines[0]["method"] == "StreamMessages" and lines[0]["items"] == 25
    assert lines[0]["upstream_calls"] == 3


async def test_timeout_header_bounds_the_upstream_wait(
    http: httpx.AsyncClient, emulator: EmulatorServer
) -> None:
    thread_id = await new_thread(emulator)
    emulator.faults.add("getMessage", "latency", times=1, seconds=2.0)
    response = await http.get(f"/threads/{thread_id}/messages/msg_1",
                              headers={"x-gateway-timeout": "0.2"})
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "deadline_exceeded"
    assert response.elapsed.total_seconds() < 1.5


async def test_a_client_gone_mid_body_is_cancelled_not_an_internal_error(
    rest_gateway, emulator: EmulatorServer
) -> None:
    """A POST whose body never arrives whole (the client left, or its body timed out) is a
    CANCELLED / 499 call line, with no traceback (Starlette's ClientDisconnect was INTERNAL)."""
    import asyncio

    thread_id = await new_thread(emulator)
    with structlog.testing.capture_logs() as logs:
        reader, writer = await asyncio.open_connection("127.0.0.1", rest_gateway.http_port)
        writer.write((f"POST /v1/threads/{thread_id}/messages HTTP/1.1\r\nHost: x\r\n"
                      "OpenAI-Beta: assistants=v1\r\nContent-Type: application/json\r\n"
                      "Content-Length: 100\r\n\r\n{\"role\": ").encode())
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.close()
        for _ in range(50):
            if any(e["event"] == "call" for e in logs):
                break
            await asyncio.sleep(0.05)
    (line,) = [e for e in logs if e["event"] == "call"]
    assert (line["code"], line["http_status"]) == ("CANCELLED", 499)
    assert not [e for e in logs if e["event"] == "call_unexpected_error"]
    assert emulator.log.count("createMessage") == 0


async def test_thread_calls_name_their_thread_in_the_audit_line(http: httpx.AsyncClient) -> None:
    with structlog.testing.capture_logs() as logs:
        made = (await http.post("/threads", json={})).json()
        await http.delete(f"/threads/{made['id']}")
    audits = [e for e in logs if e["event"] == "audit"]
    assert [(e["method"], e["thread_id"], e["message_id"]) for e in audits] == [
        ("CreateThread", made["id"], None), ("DeleteThread", made["id"], None)]


def test_a_consumer_leaving_the_labelled_names_is_counted_as_other_at_once() -> None:
    """The metric children are cached by consumer name: a store change must clear them."""
    from gateway.context import CallContext
    from gateway.pipeline import records

    def count(consumer: str) -> float:
        return metrics.REGISTRY.get_sample_value("gateway_calls_total", {
            "face": "internal", "method": "LabelTest", "code": "OK", "consumer": consumer,
            "profile": "default"}) or 0.0

    ctx = CallContext(method="LabelTest", consumer="svc-label")
    try:
        metrics.set_consumer_names(["svc-label"])
        records.finish(ctx, "OK", 200)
        assert count("svc-label") == 1
        metrics.set_consumer_names(["svc-else"])  # past the cap, or removed from the store
        records.finish(ctx, "OK", 200)
        assert count("svc-label") == 1 and count("other") == 1
    finally:
        metrics.set_consumer_names(())


async def test_an_ndjson_client_gone_while_the_next_page_is_fetched_is_cancelled(
    rest_gateway, emulator: EmulatorServer
) -> None:
    """A client that leaves an NDJSON stream while the gateway waits for the next upstream page
    is a CANCELLED / 499 call line with no error. Starlette's cancel scope cancels the stream's
    task again while the page fetch is being cancelled; the pipeline stopped waiting for the
    fetch, the walk was closed while still running ("asynchronous generator is already
    running"), and the call was INTERNAL with a traceback in 1 to 7 of 8 cut streams."""
    import asyncio

    thread = emulator.store.create_thread()
    emulator.store.seed_messages(thread["id"], 30)
    emulator.faults.set_latency("listMessages", 0.3)
    cuts = 6
    with structlog.testing.capture_logs() as logs:
        for _ in range(cuts):
            reader, writer = await asyncio.open_connection("127.0.0.1", rest_gateway.http_port)
            writer.write((f"GET /v1/threads/{thread['id']}/messages:stream?limit=5 HTTP/1.1\r\n"
                          "Host: x\r\nOpenAI-Beta: assistants=v1\r\n\r\n").encode())
            await asyncio.wait_for(reader.readuntil(b'"object":"thread.message"'), 5)
            await asyncio.sleep(0.1)  # the next page is being fetched (0.3 s per page)
            writer.transport.abort()
        for _ in range(100):  # bounded: up to 5 s for every line
            if len([e for e in logs if e["event"] == "call"]) == cuts:
                break
            await asyncio.sleep(0.05)
    lines = [e for e in logs if e["event"] == "call"]
    assert [(e["code"], e["http_status"]) for e in lines] == [("CANCELLED", 499)] * cuts
    assert not [e for e in logs if e["event"] == "call_unexpected_error"]


def _lines_of(ctx: CallContext) -> list[dict[str, object]]:
    with structlog.testing.capture_logs() as logs:
        records.finish(ctx, "OK", 200)
    return [e for e in logs if e["event"] in ("call", "audit")]


def test_the_lines_carry_a_request_s_ids_bounded_and_printable() -> None:
    long_id = "thread_" + "a" * 300  # the request named it; validation comes later
    ctx = CallContext(method="GetMessage", face="grpc", thread_id=long_id,
                      message_id="msg_\x1b[2J")
    lines = _lines_of(ctx)
    assert len(lines) == 2
    for line in lines:
        assert line["thread_id"] == long_id[:records.MAX_LOGGED_ID_CHARS]
        assert line["message_id"] == repr("msg_\x1b[2J")
    assert _lines_of(CallContext(method="GetMessage", thread_id="thread_a"))[1][
        "thread_id"] == "thread_a"


@given(st.text(max_size=300))
def test_any_id_is_logged_cut_and_printable(value: str) -> None:
    logged = records._bounded(value)
    assert logged.isprintable()
    assert logged == value[:records.MAX_LOGGED_ID_CHARS] or logged == repr(
        value[:records.MAX_LOGGED_ID_CHARS])
