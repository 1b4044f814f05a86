"""Tracing end to end with the real OTLP/gRPC exporter (the ``otlp`` extra) sending to a
``TraceService`` receiver in the test (tests/otlp_receiver.py), on loopback: one REST and one
gRPC trace, streams included, arrive whole, with the resource the settings name. The trees
shown in docs/observability.md are this test's (``pytest -s`` prints them)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import grpc
import httpx

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2_grpc as pb_grpc
from gateway.app import start_gateway
from gateway.config import TracingSettings
from gateway.emulator.server import EmulatorServer
from tests.credentials.helpers import add_consumer, auth_settings, bearer
from tests.otlp_receiver import Receiver, render
from tests.rest.conftest import BETA, new_thread

REST_TRACE = "0af7651916cd43dd8448eb211c80319c"
GRPC_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def _parent(trace_id: str) -> str:
    return f"00-{trace_id}-b7ad6b7169203331-01"


async def test_spans_reach_an_otlp_receiver_over_grpc(emulator: EmulatorServer,
                                                     tmp_path: Path) -> None:
    receiver = Receiver()
    port = await receiver.start()
    path = tmp_path / "store.json"
    key = add_consumer(path, "svc-a", {"read", "write"})
    settings = auth_settings(emulator, path).replace("server", http_listen="127.0.0.1:0")
    settings = dataclasses.replace(settings, tracing=TracingSettings(
        enabled=True, otlp_endpoint=f"http://127.0.0.1:{port}", service_name="gw-test",
        resource_attributes=("deployment.environment=test",)))
    gw = await start_gateway(settings)
    try:
        thread_id = await new_thread(emulator)
        headers = {**BETA, "authorization": f"Bearer {key}", "traceparent": _parent(REST_TRACE)}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.http_port}/v1",
                                     headers=headers, timeout=10.0) as http:
            for n in range(3):
                created = await http.post(f"/threads/{thread_id}/messages",
                                          json={"role": "user", "content": f"m{n}"})
                assert created.status_code == 200
            message_id = created.json()["id"]
            assert (await http.get(f"/threads/{thread_id}/messages/{message_id}")).status_code \
                == 200
            streamed = await http.get(f"/threads/{thread_id}/messages:stream",
                                      params={"limit": 2})
            assert streamed.status_code == 200
        metadata = (*bearer(key), ("traceparent", _parent(GRPC_TRACE)))
        # One retried read on the gRPC side: the trace shows both attempts.
        emulator.faults.add("getMessage", "status", times=1, status=503)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.grpc_port}") as channel:
            stub = pb_grpc.MessagesServiceStub(channel)
            await stub.GetMessage(pb.GetMessageRequest(thread_id=thread_id,
                                                       message_id=message_id),
                                  metadata=(*metadata, ("cache-control", "no-cache")))
            pages = [p async for p in stub.StreamMessages(
                pb.StreamMessagesRequest(thread_id=thread_id, limit=2), metadata=metadata)]
            assert sum(len(p.data) for p in pages) == 3
    finally:
        await gw.stop(grace=0.5)  # flushes the batch to the receiver
        await receiver.stop()
    assert receiver.requests >= 1
    rest, grpc_spans = receiver.trace(REST_TRACE), receiver.trace(GRPC_TRACE)
    assert {r.resource["service.name"] for r in receiver.spans} == {"gw-test"}
    assert {r.resource["deployment.environment"] for r in receiver.spans} == {"test"}
    rest_calls = [r.span.name for r in rest if r.attributes.get("gateway.face") == "rest"]
    assert rest_calls == ["CreateMessage"] * 3 + ["GetMessage", "StreamMessages"]
    grpc_calls = [r.span.name for r in grpc_spans if r.attributes.get("gateway.face") == "grpc"]
    assert grpc_calls == ["GetMessage", "StreamMessages"]
    names = {r.span.name for r in grpc_spans}
    assert {"authenticate", "cache.lookup", "stream.page",
            "upstream GET /threads/{thread_id}/messages/{message_id}",
            "upstream GET /threads/{thread_id}/messages"} <= names
    attempts = [r.attributes for r in grpc_spans
                if r.span.name == "upstream GET /threads/{thread_id}/messages/{message_id}"]
    assert [(a["gateway.upstream.attempt"], a["http.response.status_code"]) for a in attempts] \
        == [(1, 503), (2, 200)]
    # Every span but the calls has its parent in the same trace; the calls continue the consumer's.
    for spans in (rest, grpc_spans):
        ids = {r.span.span_id for r in spans}
        for r in spans:
            if r.attributes.get("gateway.face"):
                assert r.span.parent_span_id.hex() == "b7ad6b7169203331"
            else:
                assert r.span.parent_span_id in ids
    print(f"\nREST trace {REST_TRACE}\n{render(rest)}\n\ngRPC trace {GRPC_TRACE}\n"
          f"{render(grpc_spans)}")
