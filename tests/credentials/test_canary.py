"""S6: a canary upstream key and a canary consumer key never appear in anything the gateway
emits — structlog and stdlib log lines, trace spans, stdout/stderr, gRPC status messages, details, initial and
trailing metadata, exception text, Prometheus output, CLI output — nor do their SHA-256 hashes."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import time
from pathlib import Path

import grpc
import pytest
import structlog
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import generate_latest

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2_grpc as pb_grpc
from gateway import metrics
from gateway.__main__ import _parser
from gateway.app import start_gateway
from gateway.config import LoggingSettings, UpstreamSettings
from gateway.credentials import cli, store
from gateway.credentials.keys import generate_key
from gateway.emulator.server import EmulatorServer
from gateway.log import configure_logging
from tests.credentials.helpers import add_consumer, auth_settings, bearer
from tests.rpc.test_messages_service import new_thread

UPSTREAM_CANARY = "sk-canary-" + generate_key().secret[4:]


def _needles(*secrets: str) -> list[str]:
    return [n for s in secrets for n in (s, hashlib.sha256(s.encode()).hexdigest())]


def _rpc_error_text(err: grpc.aio.AioRpcError) -> str:
    return "\n".join([str(err), repr(err), err.details() or "", err.debug_error_string() or "",
                      repr(err.trailing_metadata()), repr(err.initial_metadata())])


async def test_canary_keys_never_appear_in_any_output(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    log_buffer = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    configure_logging(LoggingSettings(level="debug", format="json"), stream=log_buffer)
    # The production chain, but uncached: later tests' capture_logs() must still see events.
    structlog.configure(cache_logger_on_first_use=False)
    emulator = EmulatorServer(api_keys={UPSTREAM_CANARY})
    await emulator.start("127.0.0.1", 0)
    monkeypatch.setenv("MGW_CANARY_UPSTREAM_KEY", UPSTREAM_CANARY)
    seen: list[str] = []
    path = tmp_path / "s.json"
    canary = add_consumer(path, "canary", {"read", "write"})
    reader = add_consumer(path, "reader", {"read"})
    settings = auth_settings(emulator, path, failed_auth_limit=3)
    settings = dataclasses.replace(settings, upstream=UpstreamSettings(
        base_url=emulator.base_url, api_key_env="MGW_CANARY_UPSTREAM_KEY"))
    spans = InMemorySpanExporter()
    gw = await start_gateway(settings, span_exporter=spans)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.grpc_port}") as channel:
            stub = pb_grpc.MessagesServiceStub(channel)
            auth = bearer(canary)

            async def expect_error(call, code: grpc.StatusCode) -> None:  # type: ignore[no-untyped-def]
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    result = call
                    if hasattr(result, "__aiter__"):
                        [p async for p in result]
                    else:
                        await result
                assert caught.value.code() == code
                seen.append(_rpc_error_text(caught.value))

            # Main paths with the canary consumer key, upstream calls with the canary upstream key.
            import httpx
            async with httpx.AsyncClient() as http:
                resp = await http.post(f"{emulator.base_url}/threads", json={}, headers={
                    "authorization": f"Bearer {UPSTREAM_CANARY}", "openai-beta": "assistants=v1"})
            thread_id = resp.json()["id"]
            call = stub.CreateMessage(pb.CreateMessageRequest(
                thread_id=thread_id, role=pb.ROLE_USER, content="c"), metadata=auth)
            created = await call
            seen.append(repr(await call.initial_metadata()) + repr(await call.trailing_metadata()))
            seen.append(str(await stub.GetMessage(pb.GetMessageRequest(
                thread_id=thread_id, message_id=created.id), metadata=auth)))
            seen.append(str(await stub.ListMessages(pb.ListMessagesRequest(thread_id=thread_id),
                                                    metadata=auth)))
            seen.extend([str(p) async for p in stub.StreamMessages(
                pb.StreamMessagesRequest(thread_id=thread_id), metadata=auth)])
            # Errors: invalid argument, not found, upstream 500, mid-stream failure.
            await expect_error(stub.GetMessage(pb.GetMessageRequest(thread_id="", message_id="m"),
                                               metadata=auth), grpc.StatusCode.INVALID_ARGUMENT)
            await expect_error(stub.GetMessage(pb.GetMessageRequest(
                thread_id=thread_id, message_id="msg_missing"), metadata=auth),
                grpc.StatusCode.NOT_FOUND)
            # Outlasts the read retries; no-cache, as the message was just read into the cache.
            emulator.faults.add("getMessage", "status", times=10, status=500)
            await expect_error(stub.GetMessage(pb.GetMessageRequest(
                thread_id=thread_id, message_id=created.id),
                metadata=(*auth, ("cache-control", "no-cache"))), grpc.StatusCode.UNAVAILABLE)
            # The upstream rejects the canary upstream key (its 401 body may quote the key).
            emulator.emulator.api_keys.clear()
            emulator.emulator.api_keys.add("sk-some-other-key")
            await expect_error(stub.ListMessages(pb.ListMessagesRequest(thread_id=thread_id),
                                                 metadata=(*auth, ("cache-control", "no-cache"))),
                               grpc.StatusCode.INTERNAL)
            await expect_error(stub.StreamMessages(pb.StreamMessagesRequest(thread_id=thread_id),
                                                   metadata=auth), grpc.StatusCode.INTERNAL)
            # Auth failures: scope, the upstream key sent as a consumer key, canary with a
            # typo, revoked canary, then the per-peer limit.
            await expect_error(stub.CreateMessage(pb.CreateMessageRequest(
                thread_id=thread_id, role=pb.ROLE_USER, content="c"), metadata=bearer(reader)),
                grpc.StatusCode.PERMISSION_DENIED)
            await expect_error(stub.GetMessage(pb.GetMessageRequest(thread_id="t", message_id="m"),
                                               metadata=bearer(UPSTREAM_CANARY)),
                               grpc.StatusCode.UNAUTHENTICATED)
            await expect_error(stub.GetMessage(pb.GetMessageRequest(thread_id="t", message_id="m"),
                                               metadata=bearer(canary + "x")),
                               grpc.StatusCode.UNAUTHENTICATED)
            data = store.read(path)
            key_id = data.consumers["canary"].keys[0].key_id
            out, err = io.StringIO(), io.StringIO()
            for args in (["list"], ["rotate", "--consumer", "reader", "--grace", "5"],
                         ["revoke", "--key-id", key_id], ["list"]):
                assert cli.run(_parser().parse_args(["keys", "--store", str(path), *args]),
                               out, err) == 0
            seen.extend([out.getvalue(), err.getvalue()])
            assert gw.reloader is not None and gw.reloader.load()
            await expect_error(stub.GetMessage(pb.GetMessageRequest(thread_id="t", message_id="m"),
                                               metadata=auth), grpc.StatusCode.UNAUTHENTICATED)
            await expect_error(stub.GetMessage(pb.GetMessageRequest(thread_id="t", message_id="m"),
                                               metadata=auth), grpc.StatusCode.RESOURCE_EXHAUSTED)
    finally:
        await gw.stop(grace=0.5)
        await emulator.stop()
        time.sleep(0.05)
        root.handlers[:], root.level = saved
        structlog.reset_defaults()
    captured = capfd.readouterr()
    # Every span the run made, whole: names, attributes, status, events, links, resource.
    exported = [span.to_json() for span in spans.get_finished_spans()]
    assert any('"gateway.consumer": "canary"' in text for text in exported)
    assert any("upstream GET" in text for text in exported)
    everything = "\n".join([log_buffer.getvalue(), captured.out, captured.err, *seen, *exported,
                            generate_latest(metrics.REGISTRY).decode()])
    # The capture really holds the run: the audit lines and the rpc lines are there.
    assert '"event": "audit"' in everything and '"consumer": "canary"' in everything
    assert "UPSTREAM_CREDENTIALS_REJECTED" in everything and "INVALID_GATEWAY_KEY" in everything
    for needle in _needles(UPSTREAM_CANARY, canary):
        assert needle not in everything
        assert needle[8:40] not in everything  # no long fragment either
