"""S6 on the REST face and on the fault paths: a canary upstream key and a canary consumer key run
through representative faults on both faces - upstream 401/403, 400/404/409/429/5xx whose
messages quote the upstream key (an upstream that echoes the request's ``Authorization``), per-try
timeouts, bodies that are not JSON or cut short and carry the key, a redirect whose ``Location``
carries it, an upstream 5xx body echoing it, and bad consumer keys (typo, the upstream key sent
as a consumer key, a revoked canary) - and neither key nor its SHA-256 (nor a 32-character
fragment) appears in the log lines (JSON, captured), the trace spans, the Prometheus exposition,
gRPC status messages, details and metadata, REST bodies and headers, or exception text.

``tests/credentials/test_canary.py`` runs the gRPC main paths and the key CLI the same way.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import structlog
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import generate_latest

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2_grpc as pb_grpc
from gateway import metrics
from gateway.app import start_gateway
from gateway.config import LoggingSettings, UpstreamSettings
from gateway.credentials import store
from gateway.emulator.server import EmulatorServer
from gateway.log import configure_logging
from tests.credentials.helpers import add_consumer, auth_settings, bearer
from tests.credentials.test_canary import UPSTREAM_CANARY, _needles, _rpc_error_text

#: (name, fault operation, fault kind, parameters, gRPC code, HTTP status); ``{key}`` in a
#: parameter becomes the upstream canary.
FAULTS: list[tuple[str, str, str, dict[str, Any], str, int]] = [
    ("upstream_401_quoting_key", "getMessage", "status",
     {"status": 401, "message": "Incorrect API key provided: {key}"}, "INTERNAL", 500),
    ("upstream_403_quoting_key", "getMessage", "status",
     {"status": 403, "message": "Key {key} may not use this project", "code": "{key}"},
     "INTERNAL", 500),
    ("upstream_400_quoting_key", "getMessage", "status",
     {"status": 400, "message": "Bad header Authorization: Bearer {key}", "type": "{key}"},
     "INVALID_ARGUMENT", 400),
    ("upstream_404_quoting_key", "getMessage", "status",
     {"status": 404, "message": "No message for key {key}"}, "NOT_FOUND", 404),
    ("upstream_409_quoting_key", "modifyMessage", "status",
     {"status": 409, "message": "locked by {key}"}, "ABORTED", 409),
    ("upstream_429_quoting_key", "getMessage", "status",
     {"status": 429, "message": "Rate limit for {key}", "code": "insufficient_quota"},
     "RESOURCE_EXHAUSTED", 429),
    ("upstream_500_quoting_key", "getMessage", "status",
     {"status": 500, "message": "trace: authorization={key}"}, "UNAVAILABLE", 503),
    ("upstream_503_quoting_key", "listMessages", "status",
     {"status": 503, "message": "upstream of {key} down", "headers": {"x-debug": "{key}"}},
     "UNAVAILABLE", 503),
    ("slow_headers_timeout", "getMessage", "slow_headers", {"seconds": 2.0}, "UNAVAILABLE", 503),
    ("non_json_echoing_key", "getMessage", "non_json",
     {"status": 200, "body": "<html>Authorization: Bearer {key}</html>"}, "INTERNAL", 500),
    ("non_json_500_echoing_key", "listMessages", "non_json",
     {"status": 502, "body": "<pre>headers: {{'authorization': 'Bearer {key}'}}</pre>"},
     "UNAVAILABLE", 503),
    ("truncated_json", "listMessages", "truncated_json", {"fraction": 0.5}, "INTERNAL", 500),
    ("redirect_with_key", "getMessage", "redirect",
     {"status": 302, "location": "http://127.0.0.2:9/steal?key={key}"}, "INTERNAL", 500),
    ("reset", "listMessages", "reset", {}, "UNAVAILABLE", 503),
]


def _with_key(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("{key}", UPSTREAM_CANARY)
    if isinstance(value, dict):
        return {k: _with_key(v) for k, v in value.items()}
    return value


@dataclasses.dataclass
class Capture:
    seen: list[str] = dataclasses.field(default_factory=list)

    async def grpc(self, call: Awaitable[Any] | Any) -> str:
        try:
            if hasattr(call, "__aiter__"):
                [p async for p in call]
            else:
                await call
        except grpc.aio.AioRpcError as err:
            self.seen.append(_rpc_error_text(err))
            return err.code().name
        return "OK"

    def rest(self, response: httpx.Response) -> int:
        self.seen.append(f"{response.status_code} {response.headers!r} {response.text}")
        return response.status_code


async def test_canaries_never_appear_on_any_fault_path_of_either_face(
    tmp_path: Path, capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log_buffer = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    configure_logging(LoggingSettings(level="debug", format="json"), stream=log_buffer)
    structlog.configure(cache_logger_on_first_use=False)
    emulator = EmulatorServer(api_keys={UPSTREAM_CANARY})
    await emulator.start("127.0.0.1", 0)
    monkeypatch.setenv("MGW_CANARY_UPSTREAM_KEY", UPSTREAM_CANARY)
    path = tmp_path / "s.json"
    canary = add_consumer(path, "canary", {"read", "write"})
    settings = auth_settings(emulator, path, failed_auth_limit=50)
    settings = dataclasses.replace(settings, upstream=UpstreamSettings(
        base_url=emulator.base_url, api_key_env="MGW_CANARY_UPSTREAM_KEY",
    )).replace("server", http_listen="127.0.0.1:0")
    settings = settings.replace("reliability", initial_backoff_seconds=0.01,
                                max_backoff_seconds=0.02, circuit_failure_threshold=10**6,
                                per_try_timeout_seconds=0.3)
    spans = InMemorySpanExporter()
    gw = await start_gateway(settings, span_exporter=spans)
    capture = Capture()
    outcomes: dict[str, tuple[str, int]] = {}
    try:
        thread = emulator.store.create_thread()
        thread_id = str(thread["id"])
        (message_id,) = emulator.store.seed_messages(thread_id, 1)
        auth = bearer(canary)
        rest_headers = {"authorization": f"Bearer {canary}", "openai-beta": "assistants=v1",
                        "cache-control": "no-cache"}
        base = f"http://127.0.0.1:{gw.http_port}/v1/threads/{thread_id}/messages"
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.grpc_port}") as channel, \
                httpx.AsyncClient(timeout=10) as http:
            stub = pb_grpc.MessagesServiceStub(channel)
            no_cache = (*auth, ("cache-control", "no-cache"))

            def grpc_call(operation: str) -> Any:
                if operation == "listMessages":
                    return stub.ListMessages(pb.ListMessagesRequest(thread_id=thread_id),
                                             metadata=no_cache, timeout=5)
                if operation == "modifyMessage":
                    return stub.UpdateMessage(pb.UpdateMessageRequest(
                        thread_id=thread_id, message_id=message_id,
                        metadata=pb.Metadata(entries={"k": "v"})), metadata=auth, timeout=5)
                return stub.GetMessage(pb.GetMessageRequest(
                    thread_id=thread_id, message_id=message_id), metadata=no_cache, timeout=5)

            rest_calls: dict[str, Callable[[], Awaitable[httpx.Response]]] = {
                "listMessages": lambda: http.get(base, headers=rest_headers),
                "modifyMessage": lambda: http.post(f"{base}/{message_id}", headers=rest_headers,
                                                   json={"metadata": {"k": "v"}}),
                "getMessage": lambda: http.get(f"{base}/{message_id}", headers=rest_headers),
            }
            for name, operation, kind, params, code, status in FAULTS:
                for face in ("grpc", "rest"):
                    emulator.faults.clear()
                    emulator.faults.add(operation, kind, **_with_key(params))
                    got = (await capture.grpc(grpc_call(operation)) if face == "grpc"
                           else capture.rest(await rest_calls[operation]()))
                    outcomes[f"{face}:{name}"] = (got, code if face == "grpc" else status)
            emulator.faults.clear()
            # Bad consumer keys on both faces.
            for key in (canary + "x", UPSTREAM_CANARY, canary[:-1], f"{canary} {canary}"):
                outcomes[f"grpc:bad_key:{len(key)}"] = (await capture.grpc(stub.GetMessage(
                    pb.GetMessageRequest(thread_id=thread_id, message_id=message_id),
                    metadata=bearer(key), timeout=5)), "UNAUTHENTICATED")
                outcomes[f"rest:bad_key:{len(key)}"] = (capture.rest(await http.get(
                    f"{base}/{message_id}", headers={**rest_headers,
                                                     "authorization": f"Bearer {key}"})), 401)
            # The streams: whole, then refused at their first page by an upstream quoting the key.
            emulator.store.seed_messages(thread_id, 3)
            for fault, code, status in ((False, "OK", 200), (True, "UNAVAILABLE", 503)):
                emulator.faults.clear()
                if fault:
                    emulator.faults.add("listMessages", "status", status=500,
                                        message=f"x {UPSTREAM_CANARY}")
                outcomes[f"grpc:stream:{fault}"] = (await capture.grpc(stub.StreamMessages(
                    pb.StreamMessagesRequest(thread_id=thread_id, limit=1), metadata=auth,
                    timeout=5)), code)
                outcomes[f"rest:stream:{fault}"] = (capture.rest(await http.get(
                    f"{base}:stream", params={"limit": 1}, headers=rest_headers)), status)
            emulator.faults.clear()
            # The canary revoked: both faces refuse it.
            data = store.read(path)
            store.write(path, store.revoke_key(data, data.consumers["canary"].keys[0].key_id,
                                               time.time()))
            assert gw.reloader is not None and gw.reloader.load()
            outcomes["grpc:revoked"] = (await capture.grpc(grpc_call("getMessage")),
                                        "UNAUTHENTICATED")
            outcomes["rest:revoked"] = (capture.rest(await rest_calls["getMessage"]()), 401)
    finally:
        await gw.stop(grace=0.5)
        await emulator.stop()
        time.sleep(0.05)
        root.handlers[:], root.level = saved
        structlog.reset_defaults()
    wrong = {k: v for k, v in outcomes.items() if v[0] != v[1]}
    assert wrong == {}
    captured = capfd.readouterr()
    exported = [span.to_json() for span in spans.get_finished_spans()]
    assert any("upstream GET" in text for text in exported)
    everything = "\n".join([log_buffer.getvalue(), captured.out, captured.err, *capture.seen,
                            *exported, generate_latest(metrics.REGISTRY).decode()])
    # The capture really holds the run: the fault outcomes and the audit lines are there.
    for reason in ("UPSTREAM_CREDENTIALS_REJECTED", "UPSTREAM_INVALID_RESPONSE",
                   "UPSTREAM_REDIRECT", "INVALID_GATEWAY_KEY", '"event": "audit"'):
        assert reason in everything, reason
    leaks = [n[:6] for n in _needles(UPSTREAM_CANARY, canary)
             if n in everything or n[8:40] in everything]
    if leaks:  # where: the lines that hold a key, the key masked
        sources = {"log": log_buffer.getvalue(), "out": captured.out, "err": captured.err,
                   "answers": "\n".join(capture.seen), "spans": "\n".join(exported)}
        where = [f"{src}: {line[:200]}" for src, text in sources.items()
                 for line in text.splitlines() for n in _needles(UPSTREAM_CANARY, canary)
                 if n[8:40] in line]
        for n in _needles(UPSTREAM_CANARY, canary):
            where = [w.replace(n, "<KEY>").replace(n[8:40], "<KEY>") for w in where]
        pytest.fail(f"canary found {leaks}: {where[:10]}")
