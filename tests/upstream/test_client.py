"""The upstream client on httpx's MockTransport: URLs, headers, caps, error mapping, secrets."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from gateway.config import UpstreamSettings
from gateway.context import CallContext
from gateway.errors import (
    DeadlineExceeded,
    Internal,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
)
from gateway.upstream.client import YIELD_BEFORE_PARSE_BYTES, UpstreamClient
from gateway.upstream.retry import parse_retry_after

CANARY = "sk-canary-0123456789abcdef"


def client_for(handler, **settings) -> UpstreamClient:  # type: ignore[no-untyped-def]
    upstream = UpstreamSettings(base_url="http://upstream.test/v1", api_key=CANARY, **settings)
    return UpstreamClient(upstream, transport=httpx.MockTransport(handler))


@pytest.fixture
def call() -> CallContext:
    return CallContext.internal("Test", timeout=5)


async def test_path_ids_are_percent_encoded_and_never_change_the_host(call) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})

    client = client_for(handler)
    await client.request(call, "GET", ["threads", "a/../b?x=1#f", "messages", "@evil.host"])
    await client.aclose()
    url = seen[0].url
    assert url.host == "upstream.test"
    assert url.raw_path == b"/v1/threads/a%2F..%2Fb%3Fx%3D1%23f/messages/%40evil.host"
    assert url.query == b""


async def test_every_request_carries_key_beta_and_configured_org(call) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"ok": True}, headers={"x-request-id": "req_1",
                                                                "x-ratelimit-limit-requests": "5",
                                                                "set-cookie": "a=b"})

    client = client_for(handler, organization="org-1", project="proj-1")
    response = await client.request(call, "POST", ["threads", "t", "messages"],
                                    query={"limit": "5"}, json_body={"role": "user"})
    await client.aclose()
    headers = seen[0].headers
    assert headers["authorization"] == f"Bearer {CANARY}"
    assert headers["openai-beta"] == "assistants=v1"
    assert headers["openai-organization"] == "org-1"
    assert headers["openai-project"] == "proj-1"
    assert json.loads(seen[0].content) == {"role": "user"}
    assert seen[0].url.params["limit"] == "5"
    assert response.body == {"ok": True}
    assert call.upstream_request_id == "req_1"
    assert call.response_headers == {"x-request-id": "req_1", "x-ratelimit-limit-requests": "5"}


async def test_body_over_the_cap_is_resource_exhausted(call) -> None:
    client = client_for(lambda r: httpx.Response(200, content=b"[" + b"1," * 600 + b"1]"),
                        max_body_bytes=1000)
    with pytest.raises(ResourceExhausted):
        await client.request(call, "GET", ["threads", "t"])
    await client.aclose()


async def test_declared_length_over_the_cap_is_refused_before_reading(call) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-length": "999999999"}, content=b"{}")

    client = client_for(handler, max_body_bytes=1000)
    with pytest.raises(ResourceExhausted):
        await client.request(call, "GET", ["threads", "t"])
    await client.aclose()


@pytest.mark.parametrize(("status", "error"), [
    (400, InvalidArgument), (404, NotFound), (429, ResourceExhausted), (500, Unavailable),
    (503, Unavailable), (302, Internal), (401, Internal), (418, Internal),
])
async def test_status_maps_to_one_error_class(call, status: int, error: type) -> None:
    envelope = {"error": {"message": f"quoted {CANARY[:10]}", "type": "t", "param": "limit",
                          "code": "c"}}
    client = client_for(lambda r: httpx.Response(status, json=envelope))
    with pytest.raises(error) as raised:
        await client.request(call, "GET", ["threads", "t"])
    await client.aclose()
    if status in (401, 403):
        assert "quoted" not in raised.value.message  # the upstream may echo part of our key
    if status == 400:
        assert raised.value.details.field_violations[0].field == "limit"


LARGE = YIELD_BEFORE_PARSE_BYTES + 1


def large_body(prefix: str = "", encoding: str = "utf-8") -> bytes:
    """A body past the size that is decoded and parsed in steps of its own."""
    document = json.dumps({"padding": "é" * LARGE, "n": 2 ** 70, "nan": float("nan")})
    return (prefix + document).encode(encoding)


@pytest.mark.parametrize(("content", "encoding"), [
    (large_body(), "utf-8"), (large_body("\ufeff"), "utf-8 with a BOM"),
    (large_body(encoding="utf-16"), "utf-16"),
])
async def test_a_large_body_parses_to_what_a_small_one_would(call, content: bytes,
                                                             encoding: str) -> None:
    """Decoded in a step of its own and parsed as text: the same values ``json.loads`` of the
    bytes gives (an integer past 64 bits stays one, NaN is taken), whatever the encoding."""
    client = client_for(lambda r: httpx.Response(200, content=content))
    body = (await client.request(call, "GET", ["threads", "t"])).body
    await client.aclose()
    assert body["padding"] == "é" * LARGE and body["n"] == 2 ** 70, encoding
    assert body["nan"] != body["nan"]


async def test_a_large_body_that_is_not_json_is_internal(call) -> None:
    content = b'{"padding": "' + b"x" * LARGE + b'", oops}'
    client = client_for(lambda r: httpx.Response(200, content=content))
    with pytest.raises(Internal) as raised:
        await client.request(call, "GET", ["threads", "t"])
    await client.aclose()
    assert raised.value.details.reason == "UPSTREAM_INVALID_RESPONSE"


async def test_unparseable_success_body_is_internal(call) -> None:
    client = client_for(lambda r: httpx.Response(200, content=b"<html>oops</html>"))
    with pytest.raises(Internal) as raised:
        await client.request(call, "GET", ["threads", "t"])
    await client.aclose()
    assert "html" not in raised.value.message


async def test_rejected_key_is_reread_once_from_its_file(call, tmp_path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("sk-old")
    keys_seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        keys_seen.append(request.headers["authorization"])
        if request.headers["authorization"] == "Bearer sk-new":
            return httpx.Response(200, json={})
        return httpx.Response(401, json={"error": {"message": "bad key", "type": "x"}})

    settings = UpstreamSettings(base_url="http://upstream.test/v1", api_key_file=str(key_file))
    client = UpstreamClient(settings, transport=httpx.MockTransport(handler))
    with pytest.raises(Internal):
        await client.request(call, "GET", ["threads", "t"])
    assert keys_seen == ["Bearer sk-old"]  # unchanged file: no second attempt
    key_file.write_text("sk-new")
    await client.request(call, "GET", ["threads", "t"])
    await client.aclose()
    assert keys_seen[-2:] == ["Bearer sk-old", "Bearer sk-new"]


async def test_passed_deadline_fails_before_sending(call) -> None:
    sent: list[httpx.Request] = []
    client = client_for(lambda r: sent.append(r) or httpx.Response(200, json={}))
    call.deadline = time.monotonic() - 1
    with pytest.raises(DeadlineExceeded):
        await client.request(call, "GET", ["threads", "t"])
    await client.aclose()
    assert sent == []


async def test_transport_error_is_unavailable_and_never_quotes_the_key(call) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"refused while sending {request.headers['authorization']}")

    client = client_for(handler)
    with pytest.raises(Unavailable) as raised:
        await client.request(call, "GET", ["threads", "t"])
    await client.aclose()
    assert CANARY not in raised.value.message


@pytest.mark.parametrize(("headers", "seconds"), [
    ({"retry-after-ms": "1500"}, 1.5),
    ({"retry-after": "2"}, 2.0),
    ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
    ({"retry-after": "soon"}, None),
    ({"retry-after": "-3"}, None),
    ({}, None),
])
def test_parse_retry_after(headers: dict[str, str], seconds: float | None) -> None:
    assert parse_retry_after(headers) == seconds
