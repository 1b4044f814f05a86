"""gateway/loop_lag.py: the sampler sees a blocked loop, tells CPU work from a stalled process,
and runs as long as the gateway does."""

from __future__ import annotations

import asyncio
import mmap
import time

import pytest

from gateway import metrics
from gateway.app import start_gateway
from gateway.emulator.server import EmulatorServer
from gateway.loop_lag import LAG_INTERVAL_SECONDS, LoopLagSampler
from tests.conftest import gateway_settings


def _lag_count() -> float:
    return metrics.REGISTRY.get_sample_value("gateway_event_loop_lag_seconds_count") or 0.0


def _spin_cpu(seconds: float) -> None:
    """Block the loop with CPU work: until this thread has used ``seconds`` of CPU (a loaded
    machine may stretch the wall time, never the CPU time)."""
    start = time.thread_time()
    while time.thread_time() - start < seconds:  # reading the clock is a system call: rarely
        sum(range(10_000))


async def _samples(sampler: LoopLagSampler, count: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while sampler.samples < count and time.monotonic() < deadline:
        await asyncio.sleep(sampler.interval)
    assert sampler.samples >= count


async def test_sampler_a_cpu_bound_block_shows_as_lag_backed_by_cpu() -> None:
    sampler = LoopLagSampler(0.005)
    sampler.start()
    try:
        await _samples(sampler, 3)
        sampler.take_worst()
        _spin_cpu(0.12)
        await _samples(sampler, sampler.samples + 2)
        worst = sampler.take_worst()
        assert worst.lag >= 0.11
        assert worst.cpu_backed >= 0.1  # the loop's own work, not the machine's
        assert worst.cpu_user >= 0.1  # in user mode: its own code
    finally:
        await sampler.stop()


async def test_sampler_a_stall_without_cpu_shows_as_lag_only() -> None:
    """A blocking sleep (the process not running, as when a loaded machine does not schedule
    it) is lag, but not the loop's CPU work."""
    sampler = LoopLagSampler(0.005)
    sampler.start()
    try:
        await _samples(sampler, 3)
        sampler.take_worst()
        time.sleep(0.12)
        await _samples(sampler, sampler.samples + 2)
        worst = sampler.take_worst()
        assert worst.lag >= 0.11
        assert worst.cpu_backed < 0.06
    finally:
        await sampler.stop()


async def test_sampler_counts_the_pages_a_step_touches_for_the_first_time() -> None:
    """A step that writes 16 MiB of new memory takes ~4,096 page faults (each one CPU time on
    a VM); the sampler reports them next to the lag."""
    sampler = LoopLagSampler(0.005)
    sampler.start()
    try:
        await _samples(sampler, 3)
        quiet = sampler.take_worst().page_faults
        with mmap.mmap(-1, 16 << 20) as block:  # new pages whatever malloc keeps
            for offset in range(0, len(block), mmap.PAGESIZE):
                block[offset] = 1
        await _samples(sampler, sampler.samples + 2)
        worst = sampler.take_worst()
        assert worst.page_faults >= 4000 > quiet
        # The faults are the kernel's time: the step's CPU is more than its user-mode part.
        assert worst.cpu_user < worst.cpu_backed
    finally:
        await sampler.stop()


async def test_sampler_take_worst_starts_again_and_observes_the_histogram() -> None:
    before = _lag_count()
    sampler = LoopLagSampler(0.005)
    sampler.start()
    sampler.start()  # a second start is a no-op, not a second task
    try:
        await _samples(sampler, 10)
        assert sampler.take_worst().lag < 1.0
        assert sampler.take_worst().lag == 0.0  # nothing sampled since
        assert _lag_count() - before >= 10
        assert len([t for t in asyncio.all_tasks() if t.get_name() == "loop-lag-sampler"]) == 1
    finally:
        await sampler.stop()
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "loop-lag-sampler"]


def test_sampler_interval_must_be_positive() -> None:
    with pytest.raises(ValueError):
        LoopLagSampler(0.0)


async def test_gateway_samples_its_loop_while_it_runs(emulator: EmulatorServer) -> None:
    gw = await start_gateway(gateway_settings(emulator))
    try:
        assert gw.loop_lag is not None and gw.loop_lag.interval == LAG_INTERVAL_SECONDS
        await _samples(gw.loop_lag, 3)
    finally:
        await gw.stop(grace=0.2)
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "loop-lag-sampler"]
