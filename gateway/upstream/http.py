"""The process's HTTP client for the upstream: transport, pool limits, and no cookies.

One client serves every consumer and profile, so it keeps no state of anyone's: no cookie jar
(neither httpx's nor aiohttp's session jar), no redirects, no proxies or credentials from the
environment. The credentials go on each request, never on the client.
"""

from __future__ import annotations

from http.cookiejar import CookieJar
from typing import Any

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from gateway.config import UpstreamSettings

__all__ = ["build_http_client", "build_transport"]


def build_transport(settings: UpstreamSettings) -> httpx.AsyncBaseTransport:
    limits = httpx.Limits(
        max_connections=settings.max_connections,
        max_keepalive_connections=settings.max_keepalive_connections,
        keepalive_expiry=settings.keepalive_expiry_seconds,
    )
    if settings.transport == "aiohttp":
        transport = AiohttpTransport(limits=limits, trust_env=False)

        def session() -> aiohttp.ClientSession:
            # The transport's own session, but without aiohttp's cookie jar (built lazily, in
            # the running loop, as the transport would).
            connector = aiohttp.TCPConnector(keepalive_timeout=limits.keepalive_expiry,
                                             ssl=transport.ssl_context,
                                             limit=limits.max_connections or 0)
            return aiohttp.ClientSession(connector=connector,
                                         cookie_jar=aiohttp.DummyCookieJar())

        transport.client = session
        return transport
    return httpx.AsyncHTTPTransport(limits=limits, trust_env=False)


class _NoCookies(CookieJar):
    """A jar that never keeps or sends a cookie. One client serves every consumer and profile:
    a cookie one upstream answer set (Cloudflare's ``__cf_bm``, ``_cfuvid``) would otherwise go
    back on everyone's later requests. It also skips the jar's parsing of each answer."""

    def extract_cookies(self, response: Any, request: Any) -> None:
        return None

    def set_cookie(self, cookie: Any) -> None:
        return None

    def add_cookie_header(self, request: Any) -> None:
        return None


def build_http_client(
    settings: UpstreamSettings, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    """The process's httpx client: no redirects, no proxies from the environment, no auth, no
    cookies (neither httpx's jar nor aiohttp's)."""
    return httpx.AsyncClient(
        transport=transport or build_transport(settings),
        follow_redirects=False,
        trust_env=False,
        cookies=_NoCookies(),
        headers={"user-agent": "messages-gateway/0.1"},
    )
