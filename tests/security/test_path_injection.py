"""S7, SSRF and path injection: hostile ``thread_id`` / ``message_id`` / ``file_id`` values over
both faces, and attempts to point the upstream request at another host through metadata and
headers.

Each hostile id is INVALID_ARGUMENT (gRPC, ``BadRequest`` naming the field) or 400 naming it as
``param`` (REST, the value percent-encoded in its path segment so it reaches the route as sent),
before any upstream request: the emulator's log does not grow. Override attempts are refused
(a forbidden ``extra_headers`` name) or ignored: every upstream request the calls made goes to
the configured emulator under ``/v1/threads/{valid id}/...``, and a second listener, named as the
target of every override, is never contacted.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote

import grpc
import httpx
import pytest

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2_grpc as pb_grpc
from gateway.emulator.server import EmulatorServer
from tests.credentials.helpers import bearer
from tests.rpc.test_messages_service import details
from tests.security.conftest import Secured, secured

#: Hostile ids, by name. Every one must be refused naming its field.
HOSTILE = {
    "dotdot_slash": "../",
    "dotdot_path": "../../threads/thread_other",
    "encoded_dotdot": "%2e%2e/",
    "encoded_dotdot_slash": "%2e%2e%2f",
    "double_encoded": "%252e%252e%252f",
    "absolute_url": "http://127.0.0.2:8099/v1/threads",
    "scheme_relative": "//127.0.0.2/v1",
    "userinfo": "thread_x@127.0.0.2",
    "query": "thread_x?x=1",
    "fragment": "thread_x#frag",
    "crlf": "thread_x\r\nHost: 127.0.0.2",
    "lf": "thread_x\nX-Injected: 1",
    "nul": "thread_x\x00",
    "space": "thread x",
    "backslash": "thread_x\\..\\y",
    "slash": "thread_x/messages",
    "cyrillic_e": "thr\u0435ad_x",
    "fullwidth_underscore": "thread\uff3fx",
    "fullwidth_dots": "\uff0e\uff0e",
    "division_slash": "thread_x\u2215y",
    "one_dot_leader": "\u2024\u2024",
    "rtl_override": "thread_\u202ex",
    "zero_width": "thread_\u200bx",
    "10kb": "a" * 10_240,
}
FIELDS = ("thread_id", "message_id", "file_id")
#: The only upstream paths a valid call may make (ids from the emulator's alphabet).
_ID = r"[A-Za-z0-9_\-]+"
ALLOWED_PATH = re.compile(
    rf"^/v1/threads(/{_ID}(/messages(/{_ID}(/files(/{_ID})?)?)?)?)?$")


def _violations(err: grpc.aio.AioRpcError) -> set[str]:
    return {v.field for v in details(err)["BadRequest"].field_violations}  # type: ignore[attr-defined]


async def _grpc_refusals(env: Secured, field: str, value: str) -> list[str]:
    """Every RPC that takes ``field``, called with ``value`` in it: the problems seen."""
    ids = {"thread_id": env.thread_id, "message_id": env.message_id, "file_id": "file-abc",
           field: value}
    threads = pb_grpc.ThreadsServiceStub(env.channel)
    calls = [env.stub.GetMessageFile(pb.GetMessageFileRequest(**ids), metadata=bearer(env.key),
                                     timeout=5)]
    if field != "file_id":
        calls.append(env.stub.UpdateMessage(pb.UpdateMessageRequest(
            thread_id=ids["thread_id"], message_id=ids["message_id"]),
            metadata=bearer(env.key), timeout=5))
    if field == "thread_id":
        calls += [
            env.stub.CreateMessage(pb.CreateMessageRequest(
                thread_id=value, role=pb.ROLE_USER, content="x"), metadata=bearer(env.key),
                timeout=5),
            threads.DeleteThread(pb.DeleteThreadRequest(thread_id=value),
                                 metadata=bearer(env.key), timeout=5),
            threads.UpdateThread(pb.UpdateThreadRequest(thread_id=value),
                                 metadata=bearer(env.key), timeout=5),
        ]
    problems = []
    for call in calls:
        try:
            await call
            problems.append("OK")
        except grpc.aio.AioRpcError as err:
            if err.code() != grpc.StatusCode.INVALID_ARGUMENT:
                problems.append(err.code().name)
            elif field not in _violations(err):
                problems.append(f"names {_violations(err)}")
    return problems


@pytest.mark.parametrize("field", FIELDS)
async def test_hostile_ids_over_grpc_are_invalid_argument_naming_the_field(
        emulator: EmulatorServer, tmp_path: Path, field: str) -> None:
    async with secured(emulator, tmp_path) as env:
        before = emulator.log.count()
        found = {name: await _grpc_refusals(env, field, value) for name, value in HOSTILE.items()}
        assert {n: p for n, p in found.items() if p} == {}
        assert emulator.log.count() == before, "a hostile id reached the upstream"
        assert await env.consumer_ok()


def _rest_paths(env: Secured, field: str, value: str) -> list[tuple[str, str]]:
    """(HTTP method, raw path) of every route that takes ``field``, ``value`` percent-encoded
    whole in its segment."""
    t, m, f = (quote(value, safe="") if field == name else default for name, default in (
        ("thread_id", env.thread_id), ("message_id", env.message_id), ("file_id", "file-abc")))
    paths = [("GET", f"/v1/threads/{t}/messages/{m}/files/{f}")]
    if field != "file_id":
        paths += [("GET", f"/v1/threads/{t}/messages/{m}"), ("POST", f"/v1/threads/{t}/messages/{m}"),
                  ("GET", f"/v1/threads/{t}/messages/{m}/files:stream")]
    if field == "thread_id":
        # (AdoptThread wants the admin scope, checked before the request: 403 for this key.)
        paths += [("GET", f"/v1/threads/{t}"), ("DELETE", f"/v1/threads/{t}"),
                  ("POST", f"/v1/threads/{t}"), ("POST", f"/v1/threads/{t}/messages"),
                  ("GET", f"/v1/threads/{t}/messages"), ("GET", f"/v1/threads/{t}/messages:stream")]
    return paths


def _rest_body(method: str, path: str) -> dict[str, object] | None:
    if method != "POST":
        return None
    return {"role": "user", "content": "x"} if path.endswith("/messages") else {}


@pytest.mark.parametrize("field", FIELDS)
async def test_hostile_ids_over_rest_are_400_naming_the_field(
        emulator: EmulatorServer, tmp_path: Path, field: str) -> None:
    async with secured(emulator, tmp_path, server={"http_listen": "127.0.0.1:0"}) as env:
        before = emulator.log.count()
        headers = {"authorization": f"Bearer {env.key}", "openai-beta": "assistants=v1"}
        problems = {}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{env.gateway.http_port}",
                                     timeout=5) as http:
            for name, value in HOSTILE.items():
                for method, path in _rest_paths(env, field, value):
                    got = await http.request(method, httpx.URL(path), headers=headers,
                                             json=_rest_body(method, path))
                    param = got.json().get("error", {}).get("param") if got.content else None
                    # The server decodes the path before routing: a '/' in the id (sent as
                    # %2F) splits the segment: the gateway answers 404 "Invalid URL" (or the
                    # router 405, for a method the decoded path has no route for).
                    routed_away = "/" in value and got.status_code in (404, 405) and param is None
                    if not (got.status_code == 400 and param == field) and not routed_away:
                        problems[(name, method, path[:80])] = (got.status_code, param)
        assert problems == {}
        assert emulator.log.count() == before, "a hostile id reached the upstream"


@pytest.mark.parametrize("raw", ["../", "%2e%2e/", "..%2f", "%2e%2e%2f..%2f", "?x=1", "#f",
                                 "%0d%0aHost:%20127.0.0.2"])
async def test_rest_unencoded_traversal_never_leaves_the_route_table(
        emulator: EmulatorServer, tmp_path: Path, raw: str) -> None:
    """Written into the URL as is: whatever route (or none) it resolves to, the upstream sees only
    allowed paths on its own host, and nothing is created or deleted."""
    async with secured(emulator, tmp_path, server={"http_listen": "127.0.0.1:0"}) as env:
        emulator.log.clear()
        messages = len(emulator.store.message_ids(env.thread_id))
        headers = {"authorization": f"Bearer {env.key}", "openai-beta": "assistants=v1"}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{env.gateway.http_port}",
                                     timeout=5) as http:
            for method, path in (
                    ("GET", f"/v1/threads/{env.thread_id}/messages/{raw}"),
                    ("POST", f"/v1/threads/{env.thread_id}/messages/{raw}"),
                    ("DELETE", f"/v1/threads/{raw}{env.thread_id}"),
                    ("GET", f"/v1/threads/{env.thread_id}/messages/{env.message_id}/files/{raw}")):
                got = await http.request(method, httpx.URL(path), headers=headers,
                                         json={"metadata": {"k": "v"}} if method == "POST" else None)
                assert got.status_code in (200, 400, 404, 405), (path, got.status_code, got.text)
                assert "location" not in got.headers
        outside = [e.path for e in emulator.log.entries if not ALLOWED_PATH.match(e.path)]
        assert outside == []
        assert len(emulator.store.message_ids(env.thread_id)) == messages
        assert emulator.store.message_ids(env.thread_id) is not None  # not deleted


@pytest.mark.parametrize("path", ["/v1/threads/", "/v1/threads/{t}/", "/v1/threads/{t}/messages/",
                                  "/v1/threads/{t}/messages/../", "/v1/threads/{t}/messages/{m}/"])
async def test_a_trailing_slash_is_404_never_a_redirect_to_the_host_header(
        emulator: EmulatorServer, tmp_path: Path, path: str) -> None:
    """Starlette's slash redirect built its Location from the client's Host header: any link
    through the gateway could send the consumer (and a shared cache in front) to another host."""
    async with secured(emulator, tmp_path, server={"http_listen": "127.0.0.1:0"}) as env:
        url = f"http://127.0.0.1:{env.gateway.http_port}" + path.format(
            t=env.thread_id, m=env.message_id)
        headers = {"authorization": f"Bearer {env.key}", "openai-beta": "assistants=v1",
                   "host": "127.0.0.2:9"}
        async with httpx.AsyncClient(timeout=5) as http:
            got = await http.get(httpx.URL(url), headers=headers)
        assert got.status_code == 404 and "location" not in got.headers, (got, got.headers)
        assert got.json()["error"]["type"] == "invalid_request_error"


#: Names a consumer might try to steer the upstream request with; the values name the decoy.
OVERRIDE_HEADERS = ("host", "x-forwarded-host", "x-forwarded-proto", "forwarded", "x-original-url",
                    "x-rewrite-url", "x-http-method-override", "x-upstream-url", "base-url",
                    "openai-base-url", "x-openai-base-url", "x-gateway-upstream", "x-real-ip",
                    "x-forwarded-server", "x-host", "location", "referer")


async def test_override_attempts_through_metadata_and_headers_reach_only_the_configured_host(
        emulator: EmulatorServer, tmp_path: Path) -> None:
    async with EmulatorServer() as decoy:
        target = decoy.base_url
        hostport = target.split("//", 1)[1].split("/", 1)[0]
        values = {name: (hostport if name in ("host", "x-forwarded-host", "x-host",
                                              "x-forwarded-server") else target)
                  for name in OVERRIDE_HEADERS}
        async with secured(emulator, tmp_path, server={"http_listen": "127.0.0.1:0"}) as env:
            emulator.log.clear()
            metadata = [*bearer(env.key), *((n, v) for n, v in values.items() if n != "host")]
            got = await env.stub.GetMessage(pb.GetMessageRequest(
                thread_id=env.thread_id, message_id=env.message_id), metadata=metadata, timeout=5)
            assert got.id == env.message_id
            # Through the per-call options: refused, naming the header; nothing sent.
            for name in ("host", "x-forwarded-host", "forwarded", "openai-base-url"):
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await env.stub.GetMessage(pb.GetMessageRequest(
                        thread_id=env.thread_id, message_id=env.message_id,
                        options=pb.RequestOptions(extra_headers={name: values[name]})),
                        metadata=bearer(env.key), timeout=5)
                assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert _violations(caught.value) == {f"options.extra_headers[{name!r}]"}
            # extra_query passes through as a query parameter: the path and the host stay.
            listed = await env.stub.ListMessages(pb.ListMessagesRequest(
                thread_id=env.thread_id, options=pb.RequestOptions(
                    extra_query={"url": target, "host": hostport})),
                metadata=bearer(env.key), timeout=5)
            assert [m.id for m in listed.data] == [env.message_id]
            headers = {"authorization": f"Bearer {env.key}", "openai-beta": "assistants=v1",
                       **values}
            async with httpx.AsyncClient(timeout=5) as http:
                base = f"http://127.0.0.1:{env.gateway.http_port}/v1/threads/{env.thread_id}"
                rest = await http.get(f"{base}/messages/{env.message_id}", headers=headers)
                assert rest.status_code == 200 and rest.json()["id"] == env.message_id
                rest = await http.get(f"{base}/messages", headers=headers,
                                      params={"url": target, "base_url": target})
                assert rest.status_code == 200, rest.text
                # An absolute-form request target naming the decoy: only its path is used.
                absolute = await http.get(f"{base}/messages", headers=headers, extensions={
                    "target": f"{target}/threads/{env.thread_id}/messages".encode()})
                assert absolute.status_code in (200, 400, 404), absolute.text
            own = f"127.0.0.1:{emulator.port}"
            entries = emulator.log.entries
            assert len(entries) >= 4
            assert [e.path for e in entries if not ALLOWED_PATH.match(e.path)] == []
            assert {e.headers.get("host") for e in entries} == {own}
            assert [e.headers for e in entries if any(hostport in str(v) for v in
                                                      e.headers.values())] == []
        assert decoy.log.count() == 0
