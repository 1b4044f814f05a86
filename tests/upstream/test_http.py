"""The upstream sender: requests built once with the base headers, sent straight to the
transport (no httpx client machinery in between)."""

from __future__ import annotations

import httpx

from gateway.config import UpstreamSettings
from gateway.headers import UPSTREAM_BASE_HEADERS
from gateway.upstream.http import UpstreamHTTP, build_transport
from gateway.upstream.transport import AiohttpTransport


def test_requests_carry_the_base_headers_the_call_headers_and_the_timeouts() -> None:
    request = UpstreamHTTP.build_request(
        "GET", "http://up.test/v1/threads/t%2F1", headers={"authorization": "Bearer k"},
        params={"limit": "2"}, timeout=3.0, connect_timeout=1.0)
    assert str(request.url) == "http://up.test/v1/threads/t%2F1?limit=2"
    for name, value in UPSTREAM_BASE_HEADERS:
        assert request.headers[name] == value
    assert request.headers["authorization"] == "Bearer k"
    assert request.extensions["timeout"] == {"connect": 1.0, "read": 3.0, "write": 3.0,
                                             "pool": 3.0}


async def test_send_hands_the_request_to_the_transport_as_built() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={"ok": True})

    http = UpstreamHTTP(UpstreamSettings(), httpx.MockTransport(handler))
    request = http.build_request("POST", "http://up.test/v1/x", headers={}, content=b"{}",
                                 timeout=1.0, connect_timeout=1.0)
    response = await http.send(request)
    assert response.status_code == 201 and seen == [request]
    await response.aread()
    await http.aclose()


def test_the_transport_setting_picks_the_transport() -> None:
    assert isinstance(build_transport(UpstreamSettings()), AiohttpTransport)
    assert isinstance(build_transport(UpstreamSettings(transport="httpx")),
                      httpx.AsyncHTTPTransport)
