"""The upstream sender: requests built once with the base headers, sent straight to the
transport (no httpx client machinery in between)."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import given, strategies as st

from gateway.config import UpstreamSettings
from gateway.headers import UPSTREAM_BASE_HEADERS
from gateway.upstream.http import UpstreamHTTP, UpstreamURLs, build_transport
from gateway.upstream.transport import AiohttpTransport
from gateway.upstream.transport_h1 import H1Transport


def test_requests_carry_the_base_headers_the_call_headers_and_the_timeouts() -> None:
    url = UpstreamURLs("http://up.test/v1").url(["threads", "t/1"], {"limit": "2"})
    request = UpstreamHTTP.build_request(
        "GET", url, headers={"authorization": "Bearer k"}, timeout=3.0, connect_timeout=1.0)
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
    assert isinstance(build_transport(UpstreamSettings()), H1Transport)
    assert isinstance(build_transport(UpstreamSettings(transport="aiohttp")), AiohttpTransport)
    assert isinstance(build_transport(UpstreamSettings(transport="httpx")),
                      httpx.AsyncHTTPTransport)


SEGMENTS = [["threads"], ["threads", "thread_1", "messages"], ["threads", "t", "messages", "m",
            "files", "file-1.x:y"], ["threads", "a/b?c#d%e f", "messages"], ["threads", "é漢"]]
QUERIES = [None, {}, {"limit": "20", "order": "desc"}, {"after": "msg_1", "q": "a b&c=d/é"}]


@pytest.mark.parametrize("base", ["http://127.0.0.1:8099/v1", "https://api.example.test/v1/",
                                  "http://[::1]:9000/base/path", "http://127.0.0.1:8099",
                                  "http://127.0.0.1:8099/"])
@pytest.mark.parametrize("segments", SEGMENTS)
@pytest.mark.parametrize("query", QUERIES)
def test_built_urls_equal_httpx_parsing_the_same_url(
        base: str, segments: list[str], query: dict[str, str] | None) -> None:
    urls = UpstreamURLs(base)
    built = urls.url(segments, query)
    origin = httpx.URL(base)
    parsed = httpx.URL(f"{origin.scheme}://{origin.netloc.decode()}{urls.path(segments)}",
                       params=query)
    assert built == parsed
    assert (built.scheme, built.host, built.port, built.raw_path, built.query) == (
        parsed.scheme, parsed.host, parsed.port, parsed.raw_path, parsed.query)
    assert str(built) == str(parsed)


@given(st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=6),
       st.dictionaries(st.text(min_size=1, max_size=6), st.text(max_size=12), max_size=3))
def test_no_segment_changes_the_host_or_leaves_its_place(
        segments: list[str], query: dict[str, str]) -> None:
    built = UpstreamURLs("http://127.0.0.1:8099/v1").url(segments, query)
    assert built.host == "127.0.0.1" and built.port == 8099
    # Every segment stays one path segment, and the query holds exactly the given pairs.
    assert built.raw_path.split(b"?")[0].count(b"/") == len(segments) + 1
    assert dict(httpx.QueryParams(built.query)) == query


def test_without_the_parse_attribute_urls_are_still_right(monkeypatch: pytest.MonkeyPatch) -> None:
    urls = UpstreamURLs("http://127.0.0.1:8099/v1")
    monkeypatch.setattr(urls, "_parsed", None)
    assert str(urls.url(["threads", "t 1"], {"limit": "2"})) == \
        "http://127.0.0.1:8099/v1/threads/t%201?limit=2"


@pytest.mark.parametrize("base", ["http://127.0.0.1:8099", "http://127.0.0.1:8099/"])
def test_a_base_url_without_a_path_gets_no_double_slash(base: str) -> None:
    assert str(UpstreamURLs(base).url(["threads", "t"])) == "http://127.0.0.1:8099/threads/t"
