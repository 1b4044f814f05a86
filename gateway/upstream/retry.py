"""Upstream retries: an immutable policy, a shared retry budget and the loop that applies them.

The rules (docs/reliability.md "Retries", gRFC A6, Envoy):

* Only failures that say "try again" are retried: connection errors, 408, 429 and 5xx, or whatever
  the upstream's ``x-should-retry`` header says. A request that was sent is retried only when the
  operation is idempotent (reads; creates that carry an idempotency key, see
  ``gateway.operations.idempotency``); one that never left the gateway (connection refused) always
  may be.
* The wait is the upstream's ``retry-after-ms`` / ``retry-after`` (seconds or an HTTP-date), or
  else full-jitter exponential backoff. A wait longer than ``max_retry_after`` or longer than the
  time left before the consumer's deadline is not slept on: the consumer gets the failure at once,
  with the wait as RetryInfo, and decides for itself.
* Every retry spends a token from a budget shared by all requests; each request earns
  ``ratio`` tokens. During an outage retries therefore add at most ``burst + ratio × requests``
  upstream calls instead of multiplying them by the attempt count.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

import structlog

from gateway import metrics
from gateway.config import ReliabilitySettings
from gateway.errors import GatewayError

log = structlog.get_logger(__name__)

T = TypeVar("T")

#: Upstream HTTP statuses that mean "the same request may succeed later".
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently one upstream exchange is retried (python-api-core style:
    immutable; derive a changed copy with :meth:`with_changes`)."""

    max_attempts: int = 3
    initial_backoff: float = 0.05
    max_backoff: float = 2.0
    multiplier: float = 2.0
    max_retry_after: float = 60.0
    per_try_timeout: float = 0.0
    retryable_statuses: frozenset[int] = field(default=RETRYABLE_STATUSES)

    @classmethod
    def from_settings(cls, settings: ReliabilitySettings) -> RetryPolicy:
        return cls(
            max_attempts=settings.max_attempts,
            initial_backoff=settings.initial_backoff_seconds,
            max_backoff=settings.max_backoff_seconds,
            max_retry_after=settings.max_retry_after_seconds,
            per_try_timeout=settings.per_try_timeout_seconds,
        )

    def with_changes(self, **changes: object) -> RetryPolicy:
        from dataclasses import replace

        return replace(self, **changes)  # type: ignore[arg-type]

    def backoff(self, retry: int, rng: Callable[[], float] = random.random) -> float:
        """Full jitter: uniform in [0, min(max_backoff, initial × multiplier^retry))."""
        ceiling = min(self.max_backoff, self.initial_backoff * self.multiplier ** min(retry, 32))
        return ceiling * rng()

    def retryable_status(self, status: int, headers: Mapping[str, str]) -> bool:
        """Whether an HTTP answer invites a retry; ``x-should-retry`` overrides the status rule,
        except that a rejected key (401/403) is never retried here (credentials handle it)."""
        if status in (401, 403):
            return False
        verdict = should_retry_header(headers)
        if verdict is not None:
            return verdict
        return status in self.retryable_statuses


class RetryBudget:
    """A token bucket shared by every upstream request of one client (gRFC A6 throttling, Envoy
    retry budgets): a retry costs one token, a request earns ``ratio`` tokens, at most ``burst``
    are held. The event loop is single-threaded, so no lock is needed."""

    def __init__(self, ratio: float = 0.2, burst: int = 10) -> None:
        self.ratio = ratio
        self.burst = float(burst)
        self._tokens = float(burst)

    @property
    def tokens(self) -> float:
        return self._tokens

    def earn(self) -> None:
        self._tokens = min(self.burst, self._tokens + self.ratio)

    def try_spend(self) -> bool:
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class AttemptFailed(Exception):
    """One attempt failed. ``error`` is what the consumer sees if no retry follows; ``sent`` is
    False only when the request provably never reached the upstream (connection refused)."""

    def __init__(
        self,
        error: GatewayError,
        *,
        retryable: bool,
        sent: bool,
        reason: str,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(error.message)
        self.error = error
        self.retryable = retryable
        self.sent = sent
        self.reason = reason
        self.retry_after = retry_after


def should_retry_header(headers: Mapping[str, str]) -> bool | None:
    """``x-should-retry: true|false``; anything else is ignored."""
    value = headers.get("x-should-retry", "").strip().lower()
    if value == "true":
        return True
    if value == "false":
        return False
    return None


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds the upstream asks for: ``retry-after-ms`` first, then ``retry-after`` as seconds or
    an HTTP-date. Garbage, negative or non-finite values are ignored (None: back off instead);
    a date in the past means "now" (0)."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        seconds = _number(raw_ms)
        if seconds is not None:
            return seconds / 1000.0
    raw = headers.get("retry-after")
    if raw is None:
        return None
    seconds = _number(raw)
    if seconds is not None:
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(raw.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _number(text: str) -> float | None:
    try:
        value = float(text.strip())
    except ValueError:
        return None
    if not math.isfinite(value) or value < 0:
        return None
    return value


def _deny(failure: AttemptFailed, why: str, wait: float | None) -> GatewayError:
    """The consumer's error when a retry is not attempted, with the wait as RetryInfo."""
    metrics.UPSTREAM_RETRIES_DENIED.labels(why).inc()
    if wait is not None and failure.error.details.retry_after is None:
        failure.error.details.retry_after = wait
    return failure.error


async def call_with_retries(
    attempt: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy,
    budget: RetryBudget,
    idempotent: bool,
    remaining: Callable[[], float | None],
    recover: Callable[[], Awaitable[T | None]] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """Run ``attempt`` until it succeeds or a retry is not allowed, then raise the last error.

    ``recover`` runs before re-sending a request that may have taken effect upstream (an
    idempotent create whose answer was lost); a non-None result ends the loop with it.
    """
    budget.earn()
    failures = 0
    while True:
        try:
            return await attempt()
        except AttemptFailed as failure:
            failures += 1
            if not failure.retryable or (failure.sent and not idempotent):
                raise failure.error from None
            wait = failure.retry_after
            if wait is not None and wait > policy.max_retry_after:
                raise _deny(failure, "retry_after_too_long", wait) from None
            if failures >= policy.max_attempts:
                raise _deny(failure, "attempts", None) from None
            if wait is None:
                wait = policy.backoff(failures - 1)
            left = remaining()
            if left is not None and wait >= left:
                raise _deny(failure, "deadline", wait) from None
            if not budget.try_spend():
                log.warning("upstream_retry_budget_exhausted", reason=failure.reason)
                raise _deny(failure, "budget", None) from None
            metrics.UPSTREAM_RETRIES.labels(failure.reason).inc()
            await sleep(wait)
            if recover is not None and failure.sent:
                found = await recover()
                if found is not None:
                    return found
