"""One log line and one metrics sample per REST call; no Authorization anywhere; deadlines."""

from __future__ import annotations

import httpx
import structlog

from gateway import metrics
from gateway.emulator.server import EmulatorServer
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
