"""A circuit breaker per upstream profile: after repeated failures, fail fast.

Closed: calls go through; ``threshold`` consecutive availability failures (5xx, 408, unreachable,
a per-try timeout) open it. Open: calls fail at once with UNAVAILABLE and RetryInfo for the time
left, so a dead upstream costs consumers nothing but a round trip to the gateway. After
``open_seconds`` the circuit is half-open: exactly one call (the probe) goes through; its success
closes the circuit, its failure opens it again. A probe that ends without a verdict (the consumer
cancelled) lets the next call probe at once, so the circuit can never stick half-open.

Rate limiting (429) and client errors are not failures: the upstream is up and answering.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import Enum

import structlog

from gateway import metrics
from gateway.errors import Unavailable

log = structlog.get_logger(__name__)

#: ErrorInfo reason of a call refused by an open circuit (nothing was sent upstream).
CIRCUIT_OPEN_REASON = "UPSTREAM_CIRCUIT_OPEN"


class State(Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Attempt:
    """One call's pass through the breaker; report ``success()`` or ``failure()`` once."""

    __slots__ = ("_breaker", "_probe", "_done")

    def __init__(self, breaker: CircuitBreaker, probe: bool) -> None:
        self._breaker = breaker
        self._probe = probe
        self._done = False

    def success(self) -> None:
        if not self._done:
            self._done = True
            self._breaker._success()

    def failure(self) -> None:
        if not self._done:
            self._done = True
            self._breaker._failure(self._probe)

    def __enter__(self) -> Attempt:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._done and self._probe:
            self._breaker._abandon_probe()


class CircuitBreaker:
    def __init__(
        self,
        profile: str,
        *,
        threshold: int = 5,
        open_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.profile = profile
        self.threshold = threshold
        self.open_seconds = open_seconds
        self._clock = clock
        self.state = State.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False
        metrics.CIRCUIT_STATE.labels(profile).set(0)

    def attempt(self) -> Attempt:
        """Admit one call or raise Unavailable (fast) while open."""
        if self.state is State.CLOSED:
            return Attempt(self, probe=False)
        left = self._opened_at + self.open_seconds - self._clock()
        if self.state is State.OPEN and left <= 0:
            self._set(State.HALF_OPEN)
        if self.state is State.HALF_OPEN and not self._probing:
            self._probing = True
            return Attempt(self, probe=True)
        raise Unavailable(
            "the upstream is failing; the gateway is not sending requests to it for now",
            reason=CIRCUIT_OPEN_REASON,
            retry_after=max(left, 0.0) if self.state is State.OPEN else self.open_seconds,
        )

    def _success(self) -> None:
        self._failures = 0
        self._probing = False
        if self.state is not State.CLOSED:
            self._set(State.CLOSED)

    def _failure(self, probe: bool) -> None:
        self._failures += 1
        if probe:
            self._probing = False
        if probe or (self.state is State.CLOSED and self._failures >= self.threshold):
            self._opened_at = self._clock()
            self._set(State.OPEN)

    def _abandon_probe(self) -> None:
        self._probing = False

    def _set(self, state: State) -> None:
        if state is not self.state:
            log.warning("upstream_circuit", profile=self.profile, state=state.value)
        self.state = state
        metrics.CIRCUIT_STATE.labels(self.profile).set(0 if state is State.CLOSED else 1)


class Circuits:
    """One breaker per upstream profile (``Call.tenant``), created on first use."""

    def __init__(self, *, threshold: int = 5, open_seconds: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._threshold = threshold
        self._open_seconds = open_seconds
        self._clock = clock
        self._breakers: dict[str, CircuitBreaker] = {}

    def get(self, profile: str) -> CircuitBreaker:
        breaker = self._breakers.get(profile)
        if breaker is None:
            breaker = CircuitBreaker(profile, threshold=self._threshold,
                                     open_seconds=self._open_seconds, clock=self._clock)
            self._breakers[profile] = breaker
        return breaker
