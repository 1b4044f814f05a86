"""The circuit breaker's states, with a fake clock."""

from __future__ import annotations

import pytest

from gateway.errors import Unavailable
from gateway.upstream.circuit import CircuitBreaker, State


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def fail(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        breaker.attempt().failure()


def test_circuit_opens_after_threshold_consecutive_failures() -> None:
    breaker = CircuitBreaker("p1", threshold=3, open_seconds=5, clock=Clock())
    fail(breaker, 2)
    breaker.attempt().success()  # resets the count
    fail(breaker, 2)
    assert breaker.state is State.CLOSED
    fail(breaker, 1)
    assert breaker.state is State.OPEN
    with pytest.raises(Unavailable) as info:
        breaker.attempt()
    assert info.value.details.reason == "UPSTREAM_CIRCUIT_OPEN"
    assert info.value.details.retry_after == pytest.approx(5.0)


def test_circuit_half_open_lets_one_probe_and_its_success_closes() -> None:
    clock = Clock()
    breaker = CircuitBreaker("p2", threshold=1, open_seconds=5, clock=clock)
    fail(breaker, 1)
    clock.now += 5
    probe = breaker.attempt()
    assert breaker.state is State.HALF_OPEN
    with pytest.raises(Unavailable):
        breaker.attempt()  # only one probe at a time
    probe.success()
    assert breaker.state is State.CLOSED


def test_circuit_failed_probe_reopens() -> None:
    clock = Clock()
    breaker = CircuitBreaker("p3", threshold=1, open_seconds=5, clock=clock)
    fail(breaker, 1)
    clock.now += 5
    breaker.attempt().failure()
    assert breaker.state is State.OPEN
    with pytest.raises(Unavailable):
        breaker.attempt()


def test_circuit_abandoned_probe_lets_the_next_call_probe() -> None:
    clock = Clock()
    breaker = CircuitBreaker("p4", threshold=1, open_seconds=5, clock=clock)
    fail(breaker, 1)
    clock.now += 5
    with breaker.attempt():
        pass  # cancelled: no verdict
    with breaker.attempt() as probe:
        probe.success()
    assert breaker.state is State.CLOSED
