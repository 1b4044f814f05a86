"""The one upstream HTTP client: builds safe URLs, bounds every exchange, maps failures.

One sender per process (``gateway.upstream.http.UpstreamHTTP``), opened at start-up and closed
at shutdown. httpx is the interface (its ``Request``/``Response`` types and ``MockTransport``
serve the tests); the transport under it is the gateway's own: by default its HTTP/1.1 client on
httptools (transport_h1.py), measured cheapest per request (docs/benchmarks.md), or its transport
over aiohttp (transport.py).

Every exchange, body included, runs inside ``asyncio.timeout(remaining deadline)``: httpx's own
read timeout applies per chunk, so a slowly dripping body would otherwise never time out.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import structlog

from gateway import metrics
from gateway.context import CallContext
from gateway.config import ReliabilitySettings, UpstreamSettings
from gateway.errors import DeadlineExceeded, Internal, Unavailable, UpstreamErrorInfo
from gateway.tracing import traced_attempts
from gateway.upstream.admission import Admission, admission_limit
from gateway.upstream.body import read_capped
from gateway.upstream.circuit import CircuitBreaker, Circuits
from gateway.upstream.http import UpstreamHTTP, UpstreamURLs
from gateway.upstream.outcomes import (
    as_text,
    is_real_timeout,
    key_rejected,
    loads,
    never_sent,
    route_label,
    too_large,
    upstream_error,
    upstream_series,
)
from gateway.upstream.retry import (
    AttemptFailed,
    RetryBudget,
    RetryPolicy,
    call_with_retries,
)

log = structlog.get_logger(__name__)

#: Seconds a read of the key file is trusted before the file is looked at again.
KEY_FILE_RECHECK_SECONDS = 1.0
#: Bodies from this size on are decoded and parsed in loop steps of their own. Measured (tests/reliability/
#: test_loop_lag.py): a 15 MiB body's parse takes ~20-30 ms of CPU, and with the end of its read
#: in the same step the loop was blocked 64 ms. A thread would not help: orjson and json hold
#: the GIL while they parse, so the loop waits just the same (measured: 98 ms on the loop, 72 ms
#: in a thread). 1 MiB parses in ~2 ms, so smaller bodies need no extra step.
YIELD_BEFORE_PARSE_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class UpstreamResponse:
    status: int
    body: Any
    headers: dict[str, str]


class Upstream(Protocol):
    """What the operations need of the upstream: one client, or the pool of profile clients."""

    @property
    def settings(self) -> UpstreamSettings: ...  # pragma: no cover - protocol

    async def request(
        self,
        ctx: CallContext,
        method: str,
        segments: Sequence[str],
        *,
        query: Mapping[str, str] | None = None,
        json_body: Any = None,
        extra_headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
        recover: Callable[[], Awaitable[Any | None]] | None = None,
    ) -> UpstreamResponse: ...  # pragma: no cover - protocol


class KeySource:
    """The upstream key, re-read from its file when the file changes (Secret rotation)."""

    def __init__(self, settings: UpstreamSettings) -> None:
        self._settings = settings
        self._key = ""
        self._checked = 0.0

    def current(self) -> str:
        now = time.monotonic()
        if not self._key or now - self._checked > KEY_FILE_RECHECK_SECONDS:
            self.refresh()
        return self._key

    def refresh(self) -> str:
        self._checked = time.monotonic()
        try:
            self._key = self._settings.resolve_api_key()
        except (OSError, UnicodeDecodeError):
            # Keep the last good key: a Secret being swapped is briefly absent (or half written).
            log.warning("upstream_key_file_unreadable", path=self._settings.api_key_file)
        return self._key


class UpstreamClient:
    """Sends one request to the upstream messages API and returns its parsed JSON."""

    def __init__(
        self,
        settings: UpstreamSettings,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        default_timeout: float = 60.0,
        reliability: ReliabilitySettings | None = None,
        http: UpstreamHTTP | None = None,
        admission: Admission | None = None,
    ) -> None:
        """``http``: a client shared with other profiles' clients (the caller closes it); the
        credentials go on each request, never on the shared client."""
        self.settings = settings
        r = reliability or ReliabilitySettings()
        self.policy = RetryPolicy.from_settings(r)
        self.budget = RetryBudget(r.retry_budget_ratio, r.retry_budget_burst)
        self.circuits = Circuits(threshold=r.circuit_failure_threshold,
                                 open_seconds=r.circuit_open_seconds)
        # Shared when several profiles share one connection pool: the bound is the pool's.
        self.admission = admission or Admission(
            admission_limit(r.max_upstream_concurrency, settings.max_connections),
            r.admission_wait_seconds)
        self.keys = KeySource(settings)
        self._default_timeout = default_timeout
        self.urls = UpstreamURLs(settings.base_url)
        self._owns_http = http is None
        self._http = http or UpstreamHTTP(settings, transport)

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def request(
        self,
        ctx: CallContext,
        method: str,
        segments: Sequence[str],
        *,
        query: Mapping[str, str] | None = None,
        json_body: Any = None,
        extra_headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
        recover: Callable[[], Awaitable[Any | None]] | None = None,
    ) -> UpstreamResponse:
        """One upstream exchange, retried per the policy, bounded by the call's deadline.

        ``idempotent`` (default: GET) allows re-sending a request that reached the upstream;
        ``recover`` (idempotent creates) is asked before such a re-send whether the first one
        took effect after all, and its non-None body is the answer.
        """
        url = self.urls.url(segments, query)
        content = None
        if json_body is not None:
            content = json.dumps(json_body, separators=(",", ":"), ensure_ascii=False).encode()
        breaker = self.circuits.get(ctx.tenant)
        operation = route_label(method, segments)

        async def attempt() -> UpstreamResponse:
            return await self._attempt(ctx, method, url, content, extra_headers, breaker,
                                       operation=operation)

        if ctx.trace is not None:  # each attempt in a span of its own, its traceparent sent
            attempt = traced_attempts(ctx, method, operation, extra_headers, lambda headers: (
                self._attempt(ctx, method, url, content, headers, breaker,
                              operation=operation)))

        async def recovered() -> UpstreamResponse | None:
            assert recover is not None
            body = await recover()
            return None if body is None else UpstreamResponse(200, body, {})

        return await call_with_retries(
            attempt,
            policy=self.policy,
            budget=self.budget,
            idempotent=method == "GET" if idempotent is None else idempotent,
            remaining=ctx.remaining,
            recover=recovered if recover is not None else None,
        )

    async def _attempt(
        self,
        ctx: CallContext,
        method: str,
        url: httpx.URL,
        content: bytes | None,
        extra_headers: Mapping[str, str] | None,
        breaker: CircuitBreaker,
        *,
        operation: str,
        key_retried: bool = False,
    ) -> UpstreamResponse:
        """One exchange; a failure worth retrying is raised as AttemptFailed."""
        left = ctx.require_time()
        budget = self._default_timeout if left is None else left
        per_try = self.policy.per_try_timeout
        limit = min(budget, per_try) if per_try else budget
        headers = self._headers(extra_headers)
        if content is not None:
            headers["content-type"] = "application/json"
        request = self._http.build_request(
            method, url, content=content, headers=headers, timeout=limit,
            connect_timeout=min(self.settings.connect_timeout_seconds, limit),
        )
        with breaker.attempt() as verdict:
            async with self.admission.slot(left):
                started = time.monotonic()
                outcome = "error"
                try:
                    async with asyncio.timeout(limit):
                        status, raw, resp_headers = await self._exchange(request)
                    outcome = str(status)
                except TimeoutError:
                    verdict.failure()
                    raise self._timed_out(limit < budget) from None
                except httpx.TransportError as exc:
                    if isinstance(exc, httpx.TimeoutException) and is_real_timeout(exc):
                        verdict.failure()
                        raise self._timed_out(limit < budget) from None
                    verdict.failure()
                    raise AttemptFailed(
                        Unavailable("the upstream could not be reached",
                                    reason="UPSTREAM_UNREACHABLE"),
                        retryable=True, sent=not never_sent(exc), reason="connection",
                    ) from exc
                finally:
                    requests, latency = upstream_series(operation, outcome)
                    requests.inc()
                    latency.observe(time.monotonic() - started)
            ctx.record_upstream(status, resp_headers)
            if status >= 500 or status == 408:
                verdict.failure()
            else:
                verdict.success()
        if key_rejected(status):
            metrics.UPSTREAM_KEY_REJECTED.labels(ctx.tenant).inc()  # alerted on: page someone
        if key_rejected(status) and not key_retried:
            # The key may have just been rotated: read it again once before failing.
            old = headers.get("authorization")
            self.keys.refresh()
            if self._headers(None).get("authorization") != old:
                return await self._attempt(ctx, method, url, content, extra_headers,
                                           breaker, operation=operation, key_retried=True)
        if 200 <= status < 300:
            body: bytes | bytearray | str = raw
            if len(raw) >= YIELD_BEFORE_PARSE_BYTES:
                # The read's last step, the decode and the parse: three loop steps, each
                # touching at most one body's worth of new memory (outcomes.as_text).
                await asyncio.sleep(0)
                body = as_text(raw)
                del raw
                await asyncio.sleep(0)
            try:
                return UpstreamResponse(status, self._parse(status, body, resp_headers),
                                        resp_headers)
            except Internal as exc:
                # A cut or garbled body is a transport accident as often as a bug: retry it.
                raise AttemptFailed(exc, retryable=True, sent=True, reason="invalid_body") from None
        error = upstream_error(status, raw, resp_headers,
                               sent_key=headers["authorization"][len("Bearer "):])
        if self.policy.retryable_status(status, resp_headers):
            raise AttemptFailed(error, retryable=True, sent=True, reason=f"http_{status}",
                                retry_after=error.details.retry_after)
        raise error

    @staticmethod
    def _timed_out(per_try: bool) -> Exception:
        if per_try:
            return AttemptFailed(
                Unavailable("the upstream did not answer in time", reason="UPSTREAM_TIMEOUT"),
                retryable=True, sent=True, reason="per_try_timeout",
            )
        return DeadlineExceeded("the upstream did not answer within the call's deadline")

    def _headers(self, extra: Mapping[str, str] | None) -> dict[str, str]:
        headers = dict(extra or {})
        headers["authorization"] = f"Bearer {self.keys.current()}"
        headers["openai-beta"] = self.settings.beta
        if self.settings.organization:
            headers["openai-organization"] = self.settings.organization
        if self.settings.project:
            headers["openai-project"] = self.settings.project
        return headers

    async def _exchange(self, request: httpx.Request
                        ) -> tuple[int, bytes | bytearray, dict[str, str]]:
        response = await self._http.send(request)
        try:
            cap = self.settings.max_body_bytes
            headers = {k.lower(): v for k, v in response.headers.items()}
            declared = headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > cap:
                raise too_large()
            # The transport's stream, decoded in bounded steps (gateway/upstream/body.py): the
            # cap counts decoded bytes and is checked every step, so a compressed bomb stops at
            # the cap. httpx's decoders only for an encoding body.py does not decode.
            encoding = headers.get("content-encoding", "").strip().lower()
            raw = await read_capped(response.stream, encoding, cap,
                                    fallback=response.aiter_bytes)
            return response.status_code, raw, headers
        finally:
            # Always hand the connection back (or drop it), whatever interrupted the read. What
            # ``response.aclose()`` does, without its per-call context manager (which only tags a
            # RequestError with the request; ~3 % of the gateway's own work on a miss).
            if not response.is_closed:
                response.is_closed = True
                await response.stream.aclose()  # type: ignore[union-attr]

    @staticmethod
    def _parse(status: int, raw: bytes | bytearray | str, headers: dict[str, str]) -> Any:
        """A 2xx body as JSON; one that is not JSON is the upstream's fault."""
        try:
            return loads(raw)
        except ValueError:
            raise Internal(
                "the upstream returned a response that is not valid JSON",
                reason="UPSTREAM_INVALID_RESPONSE",
                upstream=UpstreamErrorInfo(status=status, request_id=headers.get("x-request-id")),
            ) from None
