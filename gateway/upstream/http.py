"""The process's HTTP sender for the upstream: one transport, its pool limits, no state.

One sender serves every consumer and profile, so it keeps no state of anyone's: no cookie jar,
no redirects, no proxies or credentials from the environment. The credentials go on each
request, never on the sender.

The interface is httpx's: requests are ``httpx.Request`` objects handed straight to an httpx
transport (``handle_async_request``), and answers are ``httpx.Response`` objects; any httpx
transport fits, ``httpx.MockTransport`` in the tests. ``httpx.AsyncClient.send`` is not in the
path: its auth flow, redirect loop, cookie jar, event hooks and per-request timeout merging are
machinery the gateway never uses, and cost ~0.15 ms of CPU per request on the bench machine
(docs/benchmarks.md).
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from gateway.config import UpstreamSettings
from gateway.headers import UPSTREAM_BASE_HEADERS
from gateway.upstream.transport import AiohttpTransport

__all__ = ["UpstreamHTTP", "build_transport"]


def build_transport(settings: UpstreamSettings) -> httpx.AsyncBaseTransport:
    limits = httpx.Limits(
        max_connections=settings.max_connections,
        max_keepalive_connections=settings.max_keepalive_connections,
        keepalive_expiry=settings.keepalive_expiry_seconds,
    )
    if settings.transport == "aiohttp":
        return AiohttpTransport(limits)
    return httpx.AsyncHTTPTransport(limits=limits, trust_env=False)


class UpstreamHTTP:
    """Builds upstream requests and sends them on one transport."""

    def __init__(
        self, settings: UpstreamSettings, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.transport = transport or build_transport(settings)

    @staticmethod
    def build_request(
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None = None,
        content: bytes | None = None,
        timeout: float,
        connect_timeout: float,
    ) -> httpx.Request:
        merged = dict(UPSTREAM_BASE_HEADERS)
        merged.update(headers)
        return httpx.Request(
            method, url, params=params, content=content, headers=merged,
            extensions={"timeout": {"connect": connect_timeout, "read": timeout,
                                    "write": timeout, "pool": timeout}},
        )

    async def send(self, request: httpx.Request) -> httpx.Response:
        """The answer with its body unread: the caller reads it and always closes it."""
        return await self.transport.handle_async_request(request)

    async def aclose(self) -> None:
        await self.transport.aclose()
