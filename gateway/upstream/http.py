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

import re
from collections.abc import Mapping, Sequence
from urllib.parse import quote

import httpx

from gateway.config import UpstreamSettings
from gateway.headers import UPSTREAM_BASE_HEADERS
from gateway.upstream.transport import AiohttpTransport
from gateway.upstream.transport_h1 import H1Transport

__all__ = ["UpstreamHTTP", "UpstreamURLs", "build_transport"]

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})

#: Segments made only of these need no percent-encoding (every id the gateway validates).
_PLAIN_SEGMENT = re.compile(r"[A-Za-z0-9_.~-]+")


class UpstreamURLs:
    """URLs under one base URL, as ``httpx.URL`` objects built without a parse per request.

    ``httpx.URL(str)`` validates and parses the whole string in Python: ~12 µs, twice that with
    ``params=`` (a tenth of the gateway's own CPU per proxied call). The base URL is parsed once;
    each request's URL is that parse with its own path and query, which are percent-encoded
    here: every segment whole (``quote(..., safe="")`` encodes ``/``, ``?``, ``#`` and ``%``, so
    no id can change the path, the query or the host), the query by ``httpx.QueryParams``. The
    result equals ``httpx.URL`` of the same string (tests/upstream/test_http.py).
    """

    def __init__(self, base_url: str) -> None:
        self.base = httpx.URL(base_url.rstrip("/"))
        # "/" for a base URL without a path: the segments bring their own slashes.
        self._path = self.base.raw_path.decode("ascii").rstrip("/")
        # httpx.URL keeps its parse in ``_uri_reference`` (a NamedTuple); httpx is pinned, and
        # without it every URL is parsed as a string instead.
        self._parsed = getattr(self.base, "_uri_reference", None)

    def path(self, segments: Sequence[str]) -> str:
        return self._path + "".join(
            "/" + (s if _PLAIN_SEGMENT.fullmatch(s) else quote(s, safe="")) for s in segments)

    def url(self, segments: Sequence[str], query: Mapping[str, str] | None = None) -> httpx.URL:
        path = self.path(segments)
        encoded = str(httpx.QueryParams(query)) if query else None
        if self._parsed is None:
            return self.base.copy_with(raw_path=(path + ("?" + encoded if encoded else ""))
                                       .encode("ascii"))
        url = httpx.URL.__new__(httpx.URL)
        url._uri_reference = self._parsed._replace(path=path, query=encoded)
        return url


def build_transport(settings: UpstreamSettings) -> httpx.AsyncBaseTransport:
    limits = httpx.Limits(
        max_connections=settings.max_connections,
        max_keepalive_connections=settings.max_keepalive_connections,
        keepalive_expiry=settings.keepalive_expiry_seconds,
    )
    if settings.transport == "aiohttp":
        return AiohttpTransport(limits)
    if settings.transport == "httptools":
        return H1Transport(limits)
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
        url: httpx.URL | str,
        *,
        headers: Mapping[str, str],
        content: bytes | None = None,
        timeout: float,
        connect_timeout: float,
    ) -> httpx.Request:
        if isinstance(url, str):
            url = httpx.URL(url)
        merged = dict(UPSTREAM_BASE_HEADERS)
        merged.update(headers)
        # The headers httpx would add itself (Host; Content-Length for a body, and for a POST
        # without one), set here: with ``stream=`` httpx adds none and skips re-building the
        # header list three times (~8 µs a request).
        merged["host"] = url.netloc.decode("ascii")
        if content:
            merged["content-length"] = str(len(content))
        elif method in _BODY_METHODS:
            merged["content-length"] = "0"
        request = httpx.Request(
            method, url, headers=list(merged.items()), stream=httpx.ByteStream(content or b""),
            extensions={"timeout": {"connect": connect_timeout, "read": timeout,
                                    "write": timeout, "pool": timeout}},
        )
        request.read()  # ``request.content`` is the body, as with ``content=``
        return request

    async def send(self, request: httpx.Request) -> httpx.Response:
        """The answer with its body unread: the caller reads it and always closes it."""
        return await self.transport.handle_async_request(request)

    async def aclose(self) -> None:
        await self.transport.aclose()
