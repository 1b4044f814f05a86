"""The soak's verdict on made-up before/after samples: each gate fails the soak on its own, at
its bound and not below it."""

from __future__ import annotations

import dataclasses

import pytest

from tests.reliability.soak_gates import (
    FD_TOLERANCE,
    HEAP_GROWTH_PERCENT,
    RSS_GROWTH_PERCENT,
    TASK_TOLERANCE,
    Sample,
    failures,
    plateaus,
    settled,
)

WARM = Sample(rss=100 * 2**20, fds=40, pool=0, tasks=30, heap=20 * 2**20)


def verdict(end: Sample, *, in_flight: int = 0, unknown: int = 0) -> list[str]:
    return failures(WARM, end, in_flight=in_flight, unknown=unknown, pool_bound=20)


def test_a_clean_end_passes() -> None:
    wobble = dataclasses.replace(WARM, rss=int(WARM.rss * 1.049), fds=WARM.fds + FD_TOLERANCE,
                                 pool=20, tasks=WARM.tasks + TASK_TOLERANCE,
                                 heap=int(WARM.heap * 1.199))
    assert verdict(wobble) == []
    assert verdict(dataclasses.replace(WARM, rss=WARM.rss // 2, fds=10, pool=0, tasks=3,
                                       heap=WARM.heap // 2)) == []


@pytest.mark.parametrize(("change", "expected"), [
    ({"rss": int(WARM.rss * (1 + RSS_GROWTH_PERCENT / 100))}, "RSS grew +5.00 %"),
    ({"heap": int(WARM.heap * (1 + HEAP_GROWTH_PERCENT / 100))}, "native heap grew +20.00 %"),
    ({"fds": WARM.fds + FD_TOLERANCE + 1}, "file descriptors grew by 3"),
    ({"pool": 21}, "21 socket(s) to the upstream"),
    ({"tasks": WARM.tasks + TASK_TOLERANCE + 1}, "asyncio tasks grew by 3"),
])
def test_each_resource_gate_fails_the_soak_alone(change: dict[str, int], expected: str) -> None:
    [reason] = verdict(dataclasses.replace(WARM, **change))
    assert expected in reason


def test_requests_in_flight_and_unknown_calls_fail_the_soak() -> None:
    [reason] = verdict(WARM, in_flight=1)
    assert "1 upstream request(s) still in flight" in reason
    [reason] = verdict(WARM, unknown=2)
    assert "2 call(s) ended UNKNOWN" in reason
    assert len(verdict(dataclasses.replace(WARM, tasks=99, fds=99), in_flight=3)) == 3


def test_settled_is_the_fd_and_task_tolerance() -> None:
    assert settled(WARM, dataclasses.replace(WARM, fds=WARM.fds + FD_TOLERANCE, pool=0))
    assert not settled(WARM, dataclasses.replace(WARM, fds=WARM.fds + FD_TOLERANCE + 1))
    assert not settled(WARM, dataclasses.replace(WARM, tasks=WARM.tasks + TASK_TOLERANCE + 1))


def test_memory_is_judged_on_the_plateaus_not_on_one_sample() -> None:
    # A swing: the warm-up sample caught the heap at the bottom, the end one at the top.
    low = dataclasses.replace(WARM, heap=17 * 2**20)
    high = dataclasses.replace(WARM, heap=22 * 2**20)
    assert failures(low, high, in_flight=0, unknown=0, pool_bound=20)
    swinging = [(WARM.rss, (17 + 5 * (i % 2)) * 2**20) for i in range(30)]
    warm, end = plateaus(low, high, swinging)
    assert failures(warm, end, in_flight=0, unknown=0, pool_bound=20) == []
    # A steady leak of 10 % of RSS a third still fails: the thirds' medians are two thirds apart.
    leaking = [(int(WARM.rss * (1 + 0.1 * i / 10)), WARM.heap) for i in range(30)]
    warm, end = plateaus(WARM, WARM, leaking)
    [reason] = failures(warm, end, in_flight=0, unknown=0, pool_bound=20)
    assert "RSS grew" in reason
    # Too few readings to take thirds of: the quiet samples decide.
    assert plateaus(low, high, swinging[:5]) == (low, high)
