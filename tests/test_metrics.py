"""The Prometheus endpoint on its own port: the series after a few real calls."""

from __future__ import annotations

import grpc
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from clients.generated.messages_gateway.v1 import messages_pb2 as pb
from clients.generated.messages_gateway.v1 import messages_pb2_grpc as pb_grpc
from gateway.app import start_gateway
from gateway.config import ConfigError, load_settings
from gateway.upstream.client import route_label
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

        assert delta("gateway_calls_total", face="grpc", method="GetMessage", code="OK") == 3
        assert delta("gateway_calls_total", face="grpc", method="GetMessage",
                     code="NOT_FOUND") == 1
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
