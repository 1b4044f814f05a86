"""Helpers every benchmark suite shares: a bounded load driver, percentiles, loopback processes.

A suite measures a candidate and its baseline in the same run with :func:`drive`, and reports rows
built with :func:`row`. Servers under test run as separate processes (:func:`start_process`) so the
load generator never shares their event loop or their GIL; every process is stopped when the
``ExitStack`` it was registered with closes, whatever happened in between.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
import statistics
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, ExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

#: The repository root (the load generator's and child processes' working directory).
ROOT = Path(__file__).resolve().parents[2]


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of values, nearest-rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n * q / 100), at least the first
    return ordered[int(min(rank, len(ordered))) - 1]


@dataclass(frozen=True, slots=True)
class LoadResult:
    concurrency: int
    requests: int
    errors: int
    seconds: float
    latencies: tuple[float, ...]
    #: The first failure seen, for the report (a benchmark that errors measures nothing useful).
    first_error: str = ""

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    def figures(self) -> dict[str, Any]:
        """The figures every load row carries (latencies in milliseconds)."""
        return {
            "concurrency": self.concurrency,
            "requests": self.requests,
            "errors": self.errors,
            "rps": round(self.rps, 1),
            "p50_ms": round(percentile(self.latencies, 50) * 1000, 3),
            "p99_ms": round(percentile(self.latencies, 99) * 1000, 3),
        }


async def drive(
    call: Callable[[], Awaitable[object]],
    *,
    concurrency: int,
    total: int,
    max_seconds: float,
    warmup: int = 0,
) -> LoadResult:
    """Run ``call`` ``total`` times from ``concurrency`` workers, stopping early at ``max_seconds``.

    Each worker starts its next request as soon as its previous one ends (a closed loop: the
    figure is what the system sustains, not what an arrival rate would queue up). ``warmup``
    requests run first, unmeasured, so pools are open and code paths warm.
    """
    for _ in range(warmup):
        await call()
    latencies: list[float] = []
    errors = 0
    first_error = ""
    issued = 0
    started = time.perf_counter()
    deadline = started + max_seconds

    async def worker() -> None:
        nonlocal issued, errors, first_error
        while issued < total and time.perf_counter() < deadline:
            issued += 1
            t0 = time.perf_counter()
            try:
                await call()
            except Exception as exc:  # counted and reported, never hidden
                errors += 1
                first_error = first_error or f"{type(exc).__name__}: {exc}"[:200]
                continue
            latencies.append(time.perf_counter() - t0)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return LoadResult(concurrency, len(latencies), errors, elapsed, tuple(latencies), first_error)


def merge(results: Sequence[LoadResult]) -> LoadResult:
    """One result from several rounds of the same case: counts and latencies pooled."""
    return LoadResult(
        results[0].concurrency,
        sum(r.requests for r in results),
        sum(r.errors for r in results),
        sum(r.seconds for r in results),
        tuple(x for r in results for x in r.latencies),
        next((r.first_error for r in results if r.first_error), ""),
    )


Call = Callable[[], Awaitable[object]]
#: Opens a client (its pool, its channel) and yields the call to measure; closed after a round.
ClientFactory = Callable[[], AbstractAsyncContextManager[Call]]


@asynccontextmanager
async def fixed(call: Call) -> AsyncIterator[Call]:
    """A factory body for a call whose client outlives the comparison."""
    yield call


@dataclass
class Comparison:
    #: Each case's figures, pooled over the rounds.
    results: dict[str, LoadResult] = field(default_factory=dict)
    #: Each case's throughput over the baseline's, the median of the per-round ratios.
    ratios: dict[str, float] = field(default_factory=dict)


async def compare(
    cases: Mapping[str, ClientFactory],
    *,
    baseline: str,
    concurrency: int,
    total: int,
    max_seconds: float,
    rounds: int = 3,
    warmup: int = 50,
) -> Comparison:
    """Measure every case against ``baseline`` in interleaved rounds.

    The machine may be shared (CI, other work), and its background load drifts over seconds.
    Running the cases in turn, several times, in a rotating order, and taking the median of the
    per-round ratios keeps a drift from landing on one case only.
    """
    names = list(cases)
    per_round: dict[str, list[LoadResult]] = {name: [] for name in names}
    for index in range(rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            async with cases[name]() as call:
                per_round[name].append(await drive(
                    call, concurrency=concurrency, total=max(1, total // rounds),
                    max_seconds=max_seconds / rounds, warmup=warmup))
    comparison = Comparison()
    for name in names:
        comparison.results[name] = merge(per_round[name])
        comparison.ratios[name] = statistics.median(
            ratio(mine, base) for mine, base in zip(per_round[name], per_round[baseline]))
    return comparison


def row(benchmark: str, case: str, result: LoadResult, *, ratio: float, target: str,
        **extra: Any) -> dict[str, Any]:
    """One report row: the load figures, anything the suite adds, the ratio and its target."""
    return {"benchmark": benchmark, "case": case, **result.figures(), **extra,
            "ratio": round(ratio, 3), "target": target}


def ratio(candidate: LoadResult, baseline: LoadResult) -> float:
    """Throughput of the candidate as a fraction of the baseline's."""
    return candidate.rps / baseline.rps if baseline.rps > 0 else float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ManagedProcess:
    """A child process whose output goes to a temporary file (a full pipe would stall it)."""

    def __init__(self, name: str, proc: subprocess.Popen[bytes], output: Any) -> None:
        self.name = name
        self.proc = proc
        self._output = output

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        self._output.flush()
        self._output.seek(0)
        return self._output.read().decode(errors="replace")[-4000:]

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {self.output()}")

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout)
        self._output.close()


def start_process(name: str, args: Sequence[str], stack: ExitStack, *,
                  env: dict[str, str] | None = None) -> ManagedProcess:
    """Start ``args`` from the repository root; it is stopped when ``stack`` closes."""
    output = tempfile.TemporaryFile()
    proc = subprocess.Popen(list(args), cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                            stdout=output, stderr=subprocess.STDOUT)
    managed = ManagedProcess(name, proc, output)
    stack.callback(managed.stop)
    return managed


def python_args(*args: str) -> list[str]:
    """A command running this interpreter (the venv's) with ``args``."""
    return [sys.executable, *args]


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    return env


async def wait_http(url: str, proc: ManagedProcess, timeout: float = 20.0) -> None:
    """Wait until ``url`` answers (any status) or fail naming the process."""
    end = time.monotonic() + timeout
    async with httpx.AsyncClient(trust_env=False, timeout=1.0) as client:
        while time.monotonic() < end:
            proc.check_alive()
            try:
                await client.get(url)
                return
            except httpx.TransportError:
                await asyncio.sleep(0.05)
    raise RuntimeError(f"{proc.name} did not answer {url} within {timeout} s: {proc.output()}")
