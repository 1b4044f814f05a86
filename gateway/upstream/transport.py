"""An httpx transport over one aiohttp ``ClientSession``, with nothing per request it does not use.

httpx stays the interface: the upstream client builds ``httpx.Request`` objects and reads
``httpx.Response`` objects, and the tests swap this transport for ``httpx.MockTransport``. What
this transport leaves out is measured (docs/benchmarks.md, ``make bench``): the httpx-aiohttp
package's transport, under ``httpx.AsyncClient.send``, cost ~0.5 ms of CPU per request on the
bench machine against ~0.2 ms for the same GET through aiohttp alone. The difference is work the
gateway never needs: httpx's auth flow, redirect loop, cookie extraction, event hooks and timeout
merging per request, a fresh ``aiohttp.ClientTimeout`` and a ``str(url)`` → yarl re-parse per
request, and an exception map walked as a table. So:

* no cookie jar (aiohttp's ``DummyCookieJar``): one client serves every consumer, and a cookie
  from one answer must never ride on another consumer's request;
* no redirects (a 3xx is the answer), no proxies or credentials from the environment, no
  decompression by aiohttp (httpx decodes ``Content-Encoding`` while the caller counts the
  decoded bytes against its cap);
* timeouts: the caller bounds each whole exchange with ``asyncio.timeout``; the request's
  ``connect`` timeout goes to aiohttp's socket connect, the others are bounded by that.

Errors are httpx's: a refused or unresolvable connection is ``httpx.ConnectError`` (the request
never left, so even a create may be re-sent), a connection lost mid-exchange ``httpx.ReadError``,
aiohttp's own timeouts ``httpx.ConnectTimeout`` / ``httpx.ReadTimeout``; the aiohttp exception is
kept as the cause.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator

import aiohttp
import httpx
from yarl import URL

__all__ = ["AiohttpTransport"]

_HTTP11 = {"http_version": b"HTTP/1.1"}


def _httpx_error(exc: aiohttp.ClientError) -> httpx.TransportError:
    """The httpx exception for an aiohttp one (most specific class first)."""
    message = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx.ConnectError(message)
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(message)
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return httpx.ReadTimeout(message)
    if isinstance(exc, (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError)):
        return httpx.UnsupportedProtocol(message)
    if isinstance(exc, aiohttp.ClientPayloadError):
        return httpx.RemoteProtocolError(message)
    if isinstance(exc, aiohttp.ClientResponseError):
        # A status line or header aiohttp's parser refused.
        return httpx.RemoteProtocolError(message)
    return httpx.ReadError(message)


class _Body(httpx.AsyncByteStream):
    """An aiohttp response body as an httpx stream; closing it returns the connection to the
    pool when the body was read to its end, and drops the connection otherwise."""

    __slots__ = ("_response",)

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        content = self._response.content
        try:
            while True:
                chunk = await content.readany()
                if not chunk:
                    return
                yield chunk
        except aiohttp.ClientError as exc:
            raise _httpx_error(exc) from exc

    async def aclose(self) -> None:
        self._response.release()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """One aiohttp session (opened in the running loop on first use), HTTP/1.1 keep-alive."""

    def __init__(self, limits: httpx.Limits, ssl_context: ssl.SSLContext | None = None) -> None:
        self._limits = limits
        self.ssl_context = ssl_context or httpx.create_ssl_context(trust_env=False)
        self._session: aiohttp.ClientSession | None = None
        #: connect timeout → its ClientTimeout (one per distinct value, not one per request).
        self._timeouts: dict[float | None, aiohttp.ClientTimeout] = {}

    def _open(self) -> aiohttp.ClientSession:
        limits = self._limits
        connector = aiohttp.TCPConnector(
            limit=limits.max_connections or 0,
            keepalive_timeout=limits.keepalive_expiry,
            ssl=self.ssl_context,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            trust_env=False,
            requote_redirect_url=False,
            # httpx's request carries every header the gateway sends; aiohttp adds none.
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
        )
        return self._session

    def _timeout(self, extensions: dict[str, object]) -> aiohttp.ClientTimeout:
        timeouts = extensions.get("timeout") or {}
        connect = timeouts.get("connect") if isinstance(timeouts, dict) else None
        cached = self._timeouts.get(connect)
        if cached is None:
            cached = aiohttp.ClientTimeout(total=None, sock_connect=connect)
            if len(self._timeouts) < 64:  # a handful of distinct values in practice
                self._timeouts[connect] = cached
        return cached

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._session or self._open()
        body = request.content or None
        try:
            response = await session.request(
                request.method,
                URL(str(request.url), encoded=True),
                headers=request.headers.multi_items(),
                data=body,
                allow_redirects=False,
                timeout=self._timeout(request.extensions),
                compress=None,
            )
        except aiohttp.ClientError as exc:
            raise _httpx_error(exc) from exc
        return httpx.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=_Body(response),
            request=request,
            extensions=_HTTP11,
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
