"""The Prometheus endpoint on its own port: the series after a few real calls."""

from __future__ import annotations

import grpc
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2_grpc as pb_grpc
from gateway.app import start_gateway
from gateway.config import ConfigError, load_settings
from gateway.upstream.outcomes import route_label
from tests.conftest import EMULATOR_KEY, gateway_settings


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text) for s in family.samples
    }


async def scrape(port: int) -> str:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"http://127.0.0.1:{port}/metrics")
    response.raise_for_status()
    return response.text


async def test_metrics_endpoint_serves_call_upstream_and_stream_series(emulator) -> None:
    settings = gateway_settings(emulator).replace("server", metrics_listen="127.0.0.1:0")
    gw = await start_gateway(settings)
    assert gw.metrics is not None
    port = gw.metrics.port
    thread_id = str(emulator.store.create_thread()["id"])
    ids = emulator.store.seed_messages(thread_id, 5)
    try:
        before = samples(await scrape(port))
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.grpc_port}") as channel:
            stub = pb_grpc.MessagesServiceStub(channel)
            for message_id in ids[:3]:
                await stub.GetMessage(pb.GetMessageRequest(thread_id=thread_id,
                                                           message_id=message_id))
            with pytest.raises(grpc.aio.AioRpcError):
                await stub.GetMessage(pb.GetMessageRequest(thread_id=thread_id,
                                                           message_id="msg_missing"))
            pages = [p async for p in stub.StreamMessages(
                pb.StreamMessagesRequest(thread_id=thread_id, limit=2))]
            assert len(pages) == 3
        text = await scrape(port)
        after = samples(text)

        def delta(name: str, **labels: str) -> float:
            key = (name, tuple(sorted(labels.items())))
            return after.get(key, 0.0) - before.get(key, 0.0)

        anonymous = {"consumer": "anonymous", "profile": "default"}
        assert delta("gateway_calls_total", face="grpc", method="GetMessage", code="OK",
                     **anonymous) == 3
        assert delta("gateway_calls_total", face="grpc", method="GetMessage",
                     code="NOT_FOUND", **anonymous) == 1
        assert delta("gateway_call_duration_seconds_count", face="grpc",
                     method="GetMessage") == 4
        get_route = "GET /threads/{thread_id}/messages/{message_id}"
        assert delta("gateway_upstream_requests_total", operation=get_route, status="200") == 3
        assert delta("gateway_upstream_requests_total", operation=get_route, status="404") == 1
        assert delta("gateway_upstream_requests_total",
                     operation="GET /threads/{thread_id}/messages", status="200") == 3
        assert delta("gateway_upstream_duration_seconds_count", operation=get_route) == 4
        assert delta("gateway_stream_items_total", method="StreamMessages") == 5
        # Labels carry route templates, never ids or keys.
        assert thread_id not in text and ids[0] not in text and EMULATOR_KEY not in text
    finally:
        await gw.stop(grace=0.5)
    with pytest.raises(httpx.ConnectError):
        await scrape(port)


async def test_metrics_endpoint_off_by_default(gateway) -> None:
    assert gateway.metrics is None


def test_metrics_listen_is_validated_naming_the_key() -> None:
    with pytest.raises(ConfigError, match="server.metrics_listen"):
        load_settings(environ={"GATEWAY_SERVER_METRICS_LISTEN": "nonsense"})
    settings = load_settings(environ={"GATEWAY_SERVER_METRICS_LISTEN": "0.0.0.0:9090"})
    assert settings.server.metrics_listen == "0.0.0.0:9090"


def test_route_label_replaces_every_id_with_its_parameter_name() -> None:
    assert route_label("POST", ["threads", "thread_1", "messages"]) == \
        "POST /threads/{thread_id}/messages"
    assert route_label("GET", ["threads", "t", "messages", "m", "files", "f"]) == \
        "GET /threads/{thread_id}/messages/{message_id}/files/{file_id}"


def _value(name: str, **labels: str) -> float:
    from gateway import metrics
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def test_the_consumer_label_is_bounded_by_the_store_and_a_cap() -> None:
    from gateway import metrics
    names = [f"svc-{n:03d}" for n in range(metrics.CONSUMER_LABEL_CAP + 50)]
    try:
        metrics.set_consumer_names(reversed(names))
        assert metrics.consumer_label("svc-000") == "svc-000"
        assert metrics.consumer_label(names[metrics.CONSUMER_LABEL_CAP - 1]) == \
            names[metrics.CONSUMER_LABEL_CAP - 1]
        # Past the cap, and names the store never had, are "other"; no consumer is "anonymous".
        assert metrics.consumer_label(names[metrics.CONSUMER_LABEL_CAP]) == "other"
        assert metrics.consumer_label("not-in-the-store") == "other"
        assert metrics.consumer_label(None) == metrics.consumer_label("") == "anonymous"
    finally:
        metrics.set_consumer_names(())


def test_process_series_are_exported() -> None:
    from gateway import metrics
    from prometheus_client import generate_latest
    text = generate_latest(metrics.REGISTRY).decode()
    for name in ("process_cpu_seconds_total", "process_resident_memory_bytes",
                 "process_open_fds", "python_gc_objects_collected_total", "python_info"):
        assert name in text


async def test_calls_limits_and_cache_carry_consumer_and_profile(emulator, tmp_path) -> None:
    import dataclasses

    from gateway.config import AuthSettings
    from tests.credentials.helpers import add_consumer, auth_settings, bearer

    path = tmp_path / "store.json"
    key = add_consumer(path, "svc-metrics", {"read", "write"}, burst=2, rate_per_second=0.001)
    settings = auth_settings(emulator, path)
    settings = dataclasses.replace(settings, auth=dataclasses.replace(
        settings.auth, rate_per_second=50.0, burst=100))
    assert isinstance(settings.auth, AuthSettings)
    thread_id = str(emulator.store.create_thread()["id"])
    [message_id] = emulator.store.seed_messages(thread_id, 1)
    labels = {"consumer": "svc-metrics", "profile": "default"}
    before = (_value("gateway_calls_total", face="grpc", method="GetMessage", code="OK", **labels),
              _value("gateway_cache_lookups_total", backend="memory", outcome="hit", **labels),
              _value("gateway_rate_limited_total", limit="rate", **labels))
    gw = await start_gateway(settings)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.grpc_port}") as channel:
            stub = pb_grpc.MessagesServiceStub(channel)
            request = pb.GetMessageRequest(thread_id=thread_id, message_id=message_id)
            await stub.GetMessage(request, metadata=bearer(key))  # miss
            await stub.GetMessage(request, metadata=bearer(key))  # hit
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.GetMessage(request, metadata=bearer(key))  # past the burst of 2
            assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        await gw.stop(grace=0.5)
    after = (_value("gateway_calls_total", face="grpc", method="GetMessage", code="OK", **labels),
             _value("gateway_cache_lookups_total", backend="memory", outcome="hit", **labels),
             _value("gateway_rate_limited_total", limit="rate", **labels))
    assert [a - b for a, b in zip(after, before)] == [2, 1, 1]


async def test_stream_gauges_show_an_open_stream_and_its_page_in_flight(emulator) -> None:
    import asyncio

    thread_id = str(emulator.store.create_thread()["id"])
    emulator.store.seed_messages(thread_id, 3)
    gw = await start_gateway(gateway_settings(emulator))
    open_streams = {"face": "grpc", "method": "StreamMessages"}
    try:
        emulator.faults.set_latency("listMessages", 0.5)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.grpc_port}") as channel:
            stub = pb_grpc.MessagesServiceStub(channel)
            call = stub.StreamMessages(pb.StreamMessagesRequest(thread_id=thread_id, limit=2))
            for _ in range(100):
                if _value("gateway_stream_pages_in_flight") >= 1:
                    break
                await asyncio.sleep(0.01)
            assert _value("gateway_streams_open", **open_streams) == 1
            assert _value("gateway_stream_pages_in_flight") == 1
            assert sum(len(p.data) for p in [p async for p in call]) == 3
        assert _value("gateway_streams_open", **open_streams) == 0
        assert _value("gateway_stream_pages_in_flight") == 0
    finally:
        emulator.faults.set_latency("listMessages", 0)
        await gw.stop(grace=0.5)


async def test_the_retry_budget_gauge_follows_the_budget(emulator) -> None:
    thread_id = str(emulator.store.create_thread()["id"])
    [message_id] = emulator.store.seed_messages(thread_id, 1)
    gw = await start_gateway(gateway_settings(emulator))
    try:
        assert _value("gateway_upstream_retry_budget_tokens", profile="default") == 10
        emulator.faults.add("getMessage", "status", times=1, status=503)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.grpc_port}") as channel:
            stub = pb_grpc.MessagesServiceStub(channel)
            await stub.GetMessage(pb.GetMessageRequest(thread_id=thread_id,
                                                       message_id=message_id))
        assert _value("gateway_upstream_retry_budget_tokens", profile="default") == 9
    finally:
        await gw.stop(grace=0.5)


async def test_the_event_loop_tasks_gauge_counts_the_loops_tasks(emulator) -> None:
    """The soak's task-leak gate reads this gauge: tasks left on the loop show up in it."""
    import asyncio

    gw = await start_gateway(gateway_settings(emulator))
    try:
        before = _value("gateway_event_loop_tasks")
        assert before == len(asyncio.all_tasks())
        parked = [asyncio.ensure_future(asyncio.sleep(60)) for _ in range(7)]
        assert _value("gateway_event_loop_tasks") == before + 7
        for task in parked:
            task.cancel()
        await asyncio.wait(parked)
        assert _value("gateway_event_loop_tasks") == before
    finally:
        await gw.stop(grace=0.5)


def test_every_series_is_documented_in_docs_metrics_md() -> None:
    from pathlib import Path

    from gateway import metrics
    doc = (Path(__file__).parent.parent / "docs" / "metrics.md").read_text()
    names = set()
    for family in metrics.REGISTRY.collect():
        name = family.name + ("_total" if family.type == "counter" else "")
        names.add(name)
    undocumented = sorted(n for n in names if f"`{n}`" not in doc)
    assert undocumented == []


async def test_readyz_says_why_the_gateway_is_not_ready(emulator, tmp_path, monkeypatch) -> None:
    """gRPC health has no reason field: the metrics port's /readyz names it (profile and reason,
    never the path or a key)."""
    import asyncio

    from gateway.upstream import startup

    monkeypatch.setattr(startup, "KEY_RECHECK_SECONDS", 0.1)
    key_file = tmp_path / "api-key"
    key_file.write_bytes(b"\xff\xfe")  # unreadable: not UTF-8
    settings = gateway_settings(emulator).replace("server", metrics_listen="127.0.0.1:0")
    settings = settings.replace("upstream", api_key="", api_key_file=str(key_file))
    gw = await start_gateway(settings)
    try:
        assert gw.metrics is not None
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.metrics.port}") as http:
            response = await http.get("/readyz")
            assert response.status_code == 503
            assert response.json() == {"ready": False, "reasons": [
                {"reason": "upstream_key_file_unreadable", "profile": "default"}]}
            assert str(key_file) not in response.text
            assert "gateway_upstream_key_missing" in (await http.get("/metrics")).text
            key_file.write_text(EMULATOR_KEY)
            for _ in range(60):
                response = await http.get("/readyz")
                if response.status_code == 200:
                    break
                await asyncio.sleep(0.05)
            assert response.json() == {"ready": True, "reasons": []}
            await gw.grpc.not_serving()
            assert (await http.get("/readyz")).json()["reasons"] == [{"reason": "draining"}]
    finally:
        await gw.stop(grace=0.5)
