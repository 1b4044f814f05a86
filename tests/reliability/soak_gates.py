"""The soak's gates: what the gateway process must look like at the end of a soak against the
same process after warm-up (docs/reliability.md, "Tests and soak"). Fds, sockets and tasks are
compared in two samples taken with no call in flight; memory (RSS and native heap) as the
medians of readings taken under traffic in the first and the last third of the run after
warm-up (``plateaus``): one quiet sample catches garbage not yet collected and buffers kept,
which swing the heap by ±3 MiB of ~18 (17-23 MiB from one second to the next under traffic), and
a warm-up sample at the bottom of that swing failed a clean gateway. Kept apart from the traffic so the verdict can be tested on made-up samples
(``tests/reliability/test_soak_gates.py``).

Why these measures:

* **RSS** is what the kernel charges the process, native allocations included, but also the
  allocator's slack (freed memory glibc keeps or returns when it pleases).
* **The native heap** (``gateway_malloc_in_use_bytes``, glibc's ``mallinfo2``): the bytes malloc
  has handed out and not had back, gRPC core's included (grpc/grpc#43360 leaks ``grpc_op``
  arrays in C), without that slack. tracemalloc would see the Python heap only, and memray is a
  diagnosis tool, not a gate (it is not in the pinned lock, and tracking every allocation slows
  the gateway several times on a 2-core machine, which changes the traffic it is measured
  under): ``SOAK_GATEWAY_WRAP`` runs it by hand once a gate fires, to say where the growth is.
* **File descriptors** from ``/proc/PID/fd``, less the sockets to the upstream: those are the
  connection pool, and checked apart (the soak expires idle connections after a second, so
  none is left once it has waited for that; a socket still open is a leaked connection).
* **asyncio tasks** from ``gateway_event_loop_tasks`` on the gateway's metrics port.
* **Upstream requests in flight** from the emulator's request log: every request the gateway
  started has ended once its callers have.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace

#: The bounds, defined once. RSS: growth after warm-up that fails the soak. Fds and tasks: how
#: many more than after warm-up (a timer or a closing socket caught mid-way; a leak of one per
#: thousand calls is hundreds).
RSS_GROWTH_PERCENT = 5.0
#: Native heap growth that fails the soak. The heap is the smaller figure (~18 MiB): 20 % is
#: ~3.6 MiB, about what the RSS bound is in bytes.
HEAP_GROWTH_PERCENT = 20.0
#: Fewest memory readings per third for ``plateaus`` to use them rather than the quiet samples.
MIN_READINGS = 2
FD_TOLERANCE = 2
TASK_TOLERANCE = 2


@dataclass(frozen=True)
class Sample:
    """The gateway process at one moment with no call in flight."""

    rss: int
    #: Open file descriptors other than the sockets to the upstream.
    fds: int
    #: Sockets to the upstream (the idle connection pool).
    pool: int
    #: ``gateway_event_loop_tasks``.
    tasks: int
    #: ``gateway_malloc_in_use_bytes``: the native heap.
    heap: int

    def describe(self) -> str:
        return (f"RSS {self.rss / 2**20:.1f} MiB, native heap {self.heap / 2**20:.1f} MiB, "
                f"{self.fds} fds + {self.pool} upstream sockets, {self.tasks} tasks")


def plateaus(warm: Sample, end: Sample,
             readings: Sequence[tuple[int, int]]) -> tuple[Sample, Sample]:
    """``warm`` and ``end`` with their RSS and heap replaced by the medians of the first and the
    last third of ``readings`` ((RSS, heap) pairs in time order, taken under traffic after
    warm-up). A steady leak still shows (two thirds of its growth); a swing does not. Too few
    readings: the quiet samples as they are."""
    third = len(readings) // 3
    if third < MIN_READINGS:
        return warm, end

    def median(part: Sequence[tuple[int, int]], field: int) -> int:
        return int(statistics.median(reading[field] for reading in part))

    first, last = readings[:third], readings[-third:]
    return (replace(warm, rss=median(first, 0), heap=median(first, 1)),
            replace(end, rss=median(last, 0), heap=median(last, 1)))


def rss_growth(warm: Sample, end: Sample) -> float:
    return (end.rss - warm.rss) / warm.rss * 100


def heap_growth(warm: Sample, end: Sample) -> float:
    return (end.heap - warm.heap) / warm.heap * 100 if warm.heap else 0.0


def settled(warm: Sample, end: Sample) -> bool:
    """Whether the end sample is within the fd and task tolerances (the soak polls for this a
    few seconds before judging, so work finishing just after the last call is not a leak)."""
    return end.fds - warm.fds <= FD_TOLERANCE and end.tasks - warm.tasks <= TASK_TOLERANCE


def failures(warm: Sample, end: Sample, *, in_flight: int, unknown: int,
             pool_bound: int) -> list[str]:
    """Why the soak fails, one line each; empty = it passes."""
    found = []
    if in_flight:
        found.append(f"{in_flight} upstream request(s) still in flight at the end "
                     "(the emulator's log)")
    growth = rss_growth(warm, end)
    if growth >= RSS_GROWTH_PERCENT:
        found.append(f"gateway RSS grew {growth:+.2f} % after warm-up "
                     f"(limit {RSS_GROWTH_PERCENT:.0f} %)")
    heap = heap_growth(warm, end)
    if heap >= HEAP_GROWTH_PERCENT:
        found.append(f"gateway native heap grew {heap:+.2f} % after warm-up "
                     f"({warm.heap / 2**20:.1f} -> {end.heap / 2**20:.1f} MiB; limit "
                     f"{HEAP_GROWTH_PERCENT:.0f} %)")
    if end.fds - warm.fds > FD_TOLERANCE:
        found.append(f"gateway file descriptors grew by {end.fds - warm.fds} after warm-up "
                     f"({warm.fds} -> {end.fds}, upstream sockets aside; tolerance "
                     f"{FD_TOLERANCE})")
    if end.pool > pool_bound:
        found.append(f"{end.pool} socket(s) to the upstream open with no call in flight "
                     f"and the pool's keep-alive expired (at most {pool_bound})")
    if end.tasks - warm.tasks > TASK_TOLERANCE:
        found.append(f"gateway asyncio tasks grew by {end.tasks - warm.tasks} after warm-up "
                     f"({warm.tasks} -> {end.tasks}; tolerance {TASK_TOLERANCE})")
    if unknown:
        found.append(f"{unknown} call(s) ended UNKNOWN (an exception escaped a handler)")
    return found
