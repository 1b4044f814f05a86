"""Event-loop health: how late the loop wakes a sleeping task, as a histogram.

Both faces, the upstream client and the cache share one loop per process, so one callback that
runs long (a large parse, a synchronous library call) delays every call in the process. A task
sleeps ``interval`` seconds again and again and records how much later than asked it woke:
``gateway_event_loop_lag_seconds``. On an idle loop that is the timer's resolution (~1 ms); a
blocking call of X ms shows as up to X ms.

What it cannot tell apart: the loop blocked by its own code, and the process not scheduled at
all (a CPU-starved container). ``cpu_backed`` is the part of a wake-up's lateness the loop's
thread spent on the CPU, i.e. its own work: the tests bound that one (tests/test_loop_lag.py,
tests/reliability/test_loop_lag.py), since a machine shared with other work delays the process
as a whole. ``page_faults`` is how many pages the loop's thread touched for the first time
meanwhile: on a VM each is a fault the thread pays for on the CPU (measured ~2.7 µs on memory
used before, ~10 µs on memory new since boot, 10-13 µs in a large fragmented process), so a
step that allocates tens of MiB at once is slow by that alone. ``cpu_user`` is the user-mode
part of that CPU: the loop's own code, without the kernel's work for it.
"""

from __future__ import annotations

import asyncio
import resource
from dataclasses import dataclass

from gateway import metrics
from gateway.cancellation import cancel_and_wait

__all__ = ["LAG_INTERVAL_SECONDS", "LagSample", "LoopLagSampler"]

#: Seconds between wake-ups in production: ten a second cost nothing measurable, and a block of
#: 50 ms or more overlaps a wake-up at least half of the time, so a recurring one shows at once.
LAG_INTERVAL_SECONDS = 0.1


@dataclass(frozen=True, slots=True)
class LagSample:
    """The worst wake-ups since the last ``take_worst`` (each figure its own maximum)."""

    #: Seconds later than asked (wall clock).
    lag: float = 0.0
    #: The most of a wake-up's lateness the loop thread could have spent on the CPU (its CPU
    #: time during the sleep, capped at the lateness): work on the loop, to within one interval.
    cpu_backed: float = 0.0
    #: The most minor page faults the loop thread took in one wake-up's interval.
    page_faults: int = 0
    #: The most of a wake-up's lateness the loop thread spent running in user mode: its own
    #: code, without the kernel's work for it (backing new pages, freeing them).
    cpu_user: float = 0.0


def _thread_usage() -> tuple[float, float, int]:
    """The calling thread's user and system CPU seconds and minor page faults so far (one
    system call)."""
    usage = resource.getrusage(resource.RUSAGE_THREAD)
    return usage.ru_utime, usage.ru_stime, usage.ru_minflt


class LoopLagSampler:
    """Samples the running loop's lag until stopped; observes each sample in the histogram."""

    def __init__(self, interval: float = LAG_INTERVAL_SECONDS, *, observe: bool = True) -> None:
        if interval <= 0:
            raise ValueError("interval must be > 0")
        self.interval = interval
        self._observe = observe
        self._task: asyncio.Task[None] | None = None
        self._worst = LagSample()
        self.samples = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(),
                                                                name="loop-lag-sampler")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait(task)

    def take_worst(self) -> LagSample:
        """The worst sample since the last call (and start again from nothing)."""
        worst, self._worst = self._worst, LagSample()
        return worst

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self.interval
        histogram = metrics.EVENT_LOOP_LAG
        while True:
            started, (user_started, system_started, faults_started) = (loop.time(),
                                                                       _thread_usage())
            await asyncio.sleep(interval)
            lag = max(0.0, loop.time() - started - interval)
            # The loop thread's CPU time during the sleep, capped at the lateness, bounds how much
            # of the lateness was its own work rather than the process not being scheduled.
            user, system, faults = _thread_usage()
            user -= user_started
            sample = LagSample(lag, min(lag, user + system - system_started),
                               faults - faults_started, min(lag, user))
            self.samples += 1
            if self._observe:
                histogram.observe(lag)
            worst = self._worst
            if (sample.lag > worst.lag or sample.cpu_backed > worst.cpu_backed
                    or sample.page_faults > worst.page_faults
                    or sample.cpu_user > worst.cpu_user):
                self._worst = LagSample(max(lag, worst.lag),
                                        max(sample.cpu_backed, worst.cpu_backed),
                                        max(sample.page_faults, worst.page_faults),
                                        max(sample.cpu_user, worst.cpu_user))
