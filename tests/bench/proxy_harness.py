"""The harness of the server-side suites (``proxy_grpc``, ``proxy_rest``, ``proxy_stream``,
``proxy_memory``): processes, targets, interleaved rounds, CPU per call, correctness checks.

A **target** is one thing a C generator loads: a URL on a server process, with what to send (an
h2load frame file and headers, or a wrk script and headers). Each measurement is bounded
(``SECONDS`` of h2load ``-D`` / wrk ``-d``) and brackets the generator with the server process's
CPU time (``/proc/<pid>/stat`` utime + stime, its children included). Every target is measured in
``ROUNDS`` interleaved rounds in rotating order; a ratio is the median of the per-round ratios.

Correctness is checked apart from the generator, which counts HTTP 200 as success whatever the
gRPC status in the trailers says: every target is probed with a real client before it is loaded
(its answer checked), a gRPC target's DATA bytes per call must match that probe's, and for the
gateway its own ``gateway_calls_total`` must show no non-OK code and its
``gateway_upstream_requests_total`` the expected upstream requests per call (a miss goes
upstream, a hit does not). Any failure fails the suite.

**Arms.** ``ARMS`` maps an arm name to extra gateway environment; every gateway case runs once per
arm, each arm in its own gateway process. Adding an arm is one line, e.g.
``"uvloop": {"GATEWAY_SERVER_EVENT_LOOP": "uvloop"}``; ``BENCH_ARMS="name:VAR=value,VAR=value;
name2:..."`` replaces the dict for one run.
"""

from __future__ import annotations

import asyncio
import os
import re
import statistics
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.bench import loadgen
from tests.bench.common import (
    ManagedProcess,
    child_env,
    free_port,
    python_args,
    start_process,
    wait_http,
)
from tests.bench.gateway_unary import wait_serving
from tests.bench.loadgen import GenResult

#: Gateway arms: name -> extra environment of its gateway process.
ARMS: dict[str, dict[str, str]] = {
    "default": {},
}
#: Seconds per measurement and interleaved rounds per target.
SECONDS = float(os.environ.get("BENCH_PROXY_SECONDS", "1"))
ROUNDS = int(os.environ.get("BENCH_PROXY_ROUNDS", "3"))
CONCURRENCIES = (1, 32)
UPSTREAM_KEY = "sk-bench-upstream-key"
#: Floors' uvicorn HTTP parser and event loop; empty: the gateway's defaults (see floors.py).
FLOOR_HTTP = os.environ.get("BENCH_FLOOR_HTTP", "")
FLOOR_LOOP = os.environ.get("BENCH_FLOOR_LOOP", "")


def arms() -> dict[str, dict[str, str]]:
    spec = os.environ.get("BENCH_ARMS", "").strip()
    if not spec:
        return dict(ARMS)
    out: dict[str, dict[str, str]] = {}
    for part in filter(None, (p.strip() for p in spec.split(";"))):
        name, _, assignments = part.partition(":")
        out[name.strip()] = dict(a.split("=", 1) for a in assignments.split(",") if "=" in a)
    return out


def arm_label(case: str, arm: str) -> str:
    return case if arm == "default" and len(arms()) == 1 else f"{case} [{arm}]"


# --------------------------------------------------------------------------- processes

@dataclass
class Gateway:
    arm: str
    proc: ManagedProcess
    grpc_target: str
    http_base: str  # http://127.0.0.1:PORT/v1
    metrics_url: str

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def counters(self) -> dict[str, float]:
        """``gateway_calls_total`` and ``gateway_upstream_requests_total`` series by labels."""
        async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
            text = (await client.get(self.metrics_url)).raise_for_status().text
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith(("gateway_calls_total{", "gateway_upstream_requests_total{")):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out


async def start_gateway(stack: ExitStack, upstream_base: str, arm: str,
                        extra_env: Mapping[str, str]) -> Gateway:
    """``python -m gateway serve``: both faces, metrics on, auth off, logging at warning."""
    grpc_port, http_port, metrics_port = free_port(), free_port(), free_port()
    # The arm's environment wins over these defaults.
    env = child_env(**{"OPENAI_API_KEY": UPSTREAM_KEY, "GATEWAY_LOGGING_LEVEL": "warning",
                       "GATEWAY_AUTH_ENABLED": "false",
                       "GATEWAY_SERVER_METRICS_LISTEN": f"127.0.0.1:{metrics_port}",
                       **extra_env})
    target = f"127.0.0.1:{grpc_port}"
    proc = start_process(f"gateway [{arm}]", python_args(
        "-m", "gateway", "serve", "--grpc-listen", target, "--http-listen",
        f"127.0.0.1:{http_port}", "--upstream-url", upstream_base), stack, env=env)
    await wait_serving(target, proc)
    await wait_http(f"http://127.0.0.1:{metrics_port}/metrics", proc)
    return Gateway(arm, proc, target, f"http://127.0.0.1:{http_port}/v1",
                   f"http://127.0.0.1:{metrics_port}/metrics")


async def start_emulator_gateway(stack: ExitStack) -> tuple[Gateway, str, str]:
    """The emulator with one ~1 KB message, and a default-arm gateway in front of it."""
    port = free_port()
    base = f"http://127.0.0.1:{port}/v1"
    emulator = start_process("emulator", python_args(
        "-m", "gateway", "emulator", "--listen", f"127.0.0.1:{port}"), stack,
        env=child_env(EMULATOR_API_KEYS=UPSTREAM_KEY))
    await wait_http(f"http://127.0.0.1:{port}/_emulator/health", emulator)
    headers = {"authorization": f"Bearer {UPSTREAM_KEY}", "openai-beta": "assistants=v1"}
    async with httpx.AsyncClient(headers=headers, trust_env=False, timeout=10) as client:
        thread = (await client.post(f"{base}/threads", json={})).raise_for_status().json()["id"]
        message = (await client.post(f"{base}/threads/{thread}/messages", json={
            "role": "user", "content": "benchmark message " * 50,
            "metadata": {"source": "bench"}})).raise_for_status().json()["id"]
    arm, env = next(iter(arms().items()))
    return await start_gateway(stack, base, arm, env), thread, message


async def start_floor(stack: ExitStack, kind: str, *, upstream: str = "", body: Path | None = None,
                      pages: Sequence[Path] = ()) -> tuple[ManagedProcess, int]:
    """A floor server process (``tests/bench/floors.py``); returns it and its port once up."""
    port = free_port()
    args = ["-m", "tests.bench.floors", kind, "--port", str(port)]
    if FLOOR_HTTP:
        args += ["--http", FLOOR_HTTP]
    if FLOOR_LOOP:
        args += ["--loop", FLOOR_LOOP]
    if upstream:
        args += ["--upstream", upstream]
    if body is not None:
        args += ["--body", str(body)]
    if pages:
        args += ["--pages", *map(str, pages)]
    proc = start_process(f"floor {kind}", python_args(*args), stack, env=child_env())
    if kind.startswith("grpc"):
        await _wait_port(port, proc)
    else:
        await wait_http(f"http://127.0.0.1:{port}/", proc)
    return proc, port


async def _wait_port(port: int, proc: ManagedProcess, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        proc.check_alive()
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            await writer.wait_closed()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise RuntimeError(f"{proc.name} did not listen on {port}: {proc.output()}")


# --------------------------------------------------------------------------- targets

@dataclass
class Target:
    """One loadable thing. ``probe`` runs a real call and returns the expected DATA bytes per
    gRPC call (0 for HTTP); ``upstream_per_call`` is checked on a gateway target."""

    name: str
    face: str  # "grpc" (h2load), "http" (wrk) or "h1" (h2load --h1: count-bounded HTTP/1.1 GETs)
    url: str
    proc: ManagedProcess
    probe: Callable[[], Awaitable[int]]
    frame: Path | None = None
    headers: dict[str, str] = field(default_factory=dict)
    script: str = ""
    gateway: Gateway | None = None
    method: str = ""  # the gateway's method label
    upstream_per_call: float | None = None
    items: int = 1  # messages per call (streams)
    expect_data: int = 0
    #: Calls per second seen at each concurrency ("h1" targets size their next run by it).
    rates: dict[int, float] = field(default_factory=dict)

    def calls_for(self, concurrency: int, seconds: float) -> int:
        """An "h1" run's call count: about ``seconds`` at the last rate seen (2 per connection
        before any)."""
        rate = self.rates.get(concurrency) or max(self.rates.values(), default=0.0)
        return max(2 * concurrency, round(rate * seconds)) if rate else 2 * concurrency


@dataclass(frozen=True)
class Sample:
    gen: GenResult
    cpu_seconds: float


def _series_sum(counters: Mapping[str, float], prefix: str, **labels: str) -> float:
    total = 0.0
    for name, value in counters.items():
        if name.startswith(prefix) and all(f'{k}="{v}"' in name for k, v in labels.items()):
            total += value
    return total


_NON_OK = re.compile(r'code="(?!OK")')


def _check_gateway(target: Target, before: Mapping[str, float], after: Mapping[str, float],
                   gen: GenResult, concurrency: int) -> None:
    """No failed call (beyond the calls the generator itself abandoned when its time was up,
    which the gateway counts CANCELLED), every generator success an OK call, and the expected
    upstream requests per call."""
    calls = gen.requests
    changed = {k: v - before.get(k, 0.0) for k, v in after.items()
               if k.startswith("gateway_calls_total{") and _NON_OK.search(k)
               and v != before.get(k, 0.0)}
    cancelled = sum(v for k, v in changed.items() if 'code="CANCELLED"' in k)
    failed = sum(changed.values()) - cancelled
    # wrk does not say how many requests it left in flight: at most one per connection.
    abandoned = gen.abandoned if target.face != "http" else concurrency
    if failed or cancelled > abandoned + 1:
        raise RuntimeError(f"{target.name}: the gateway failed calls ({abandoned} abandoned "
                           f"by the generator): {changed}")
    ok = (_series_sum(after, "gateway_calls_total{", code="OK", method=target.method)
          - _series_sum(before, "gateway_calls_total{", code="OK", method=target.method))
    if ok < calls:
        raise RuntimeError(f"{target.name}: generator counted {calls} calls, gateway {ok:.0f} OK")
    if target.upstream_per_call is not None:
        sent = (_series_sum(after, "gateway_upstream_requests_total{", status="200")
                - _series_sum(before, "gateway_upstream_requests_total{", status="200"))
        expected = target.upstream_per_call * ok
        slack = 5.0 + target.upstream_per_call * (abandoned + 1)
        if abs(sent - expected) > max(slack, 0.02 * expected):
            raise RuntimeError(f"{target.name}: {sent:.0f} upstream requests for {ok:.0f} calls, "
                               f"expected {target.upstream_per_call:g} per call")


def http_probe(url: str, headers: Mapping[str, str] | None = None, *, method: str = "GET",
               body: bytes | None = None, check: Callable[[Any], bool] = lambda _: True,
               cache: str = "") -> Callable[[], Awaitable[int]]:
    """A real HTTP call: 2xx, JSON the check accepts, ``x-cache`` when given; returns 0."""
    async def probe() -> int:
        async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
            response = await client.request(method, url, headers=headers, content=body)
        if not response.is_success or not check(response.json()):
            raise RuntimeError(f"{method} {url}: HTTP {response.status_code} "
                               f"{response.text[:300]}")
        if cache and response.headers.get("x-cache") != cache:
            raise RuntimeError(f"{method} {url}: x-cache {response.headers.get('x-cache')!r}, "
                               f"not {cache!r}")
        return 0
    return probe


async def measure(target: Target, concurrency: int, seconds: float | None = SECONDS,
                  requests: int | None = None) -> Sample:
    """One bounded generator run against ``target``, with the server's CPU and every check."""
    target.proc.check_alive()
    if target.face == "h1" and seconds is not None:
        # Bounded by count, sized to last about ``seconds``: no call is cut at the end.
        seconds, requests = None, target.calls_for(concurrency, seconds)
    for _ in range(2):
        before = await target.gateway.counters() if target.gateway else {}
        cpu0 = loadgen.cpu_seconds(target.proc.pid)
        gen = await _generate(target, concurrency, seconds, requests)
        cpu = loadgen.cpu_seconds(target.proc.pid) - cpu0
        if gen.requests or gen.errors or seconds is None:
            break
        # Not one call finished in the window and none failed: the machine was overloaded
        # (a neighbour's burst). Once more, twice as long, before calling it a failure.
        seconds *= 2
    target.proc.check_alive()
    target.rates[concurrency] = gen.rps
    if gen.errors or gen.requests == 0:
        raise RuntimeError(f"{target.name} at {concurrency}: {gen.requests} calls, "
                           f"{gen.errors} errors ({gen.first_error})")
    if target.expect_data:
        # Every success brings the probe's bytes; calls cut at the end of a timed run may add
        # part of theirs. A call answered with an error status brings none.
        low = gen.requests * target.expect_data * 0.99
        high = (gen.requests + gen.abandoned) * target.expect_data * 1.01 + 64
        if not low <= gen.data_bytes <= high:
            raise RuntimeError(f"{target.name}: {gen.data_bytes} response bytes for "
                               f"{gen.requests} calls of {target.expect_data} (+{gen.abandoned} "
                               f"cut): calls answered with an error status?")
    if target.gateway:
        _check_gateway(target, before, await target.gateway.counters(), gen, concurrency)
    return Sample(gen, cpu)


async def _generate(target: Target, concurrency: int, seconds: float | None,
                    requests: int | None) -> GenResult:
    if target.face in ("grpc", "h1"):
        assert (target.frame is not None) == (target.face == "grpc")
        return await asyncio.to_thread(loadgen.run_h2load, target.url, target.frame,
                                       concurrency=concurrency, seconds=seconds,
                                       requests=requests, headers=target.headers)
    assert seconds is not None, "wrk runs are bounded by time"
    return await asyncio.to_thread(loadgen.run_wrk, target.url, concurrency=concurrency,
                                   seconds=seconds, headers=target.headers, script=target.script)


async def prepare(targets: Sequence[Target]) -> None:
    """Probe every target once with a real client (answers checked) and warm it up briefly."""
    for target in targets:
        target.expect_data = await target.probe()
        await measure(target, 4, seconds=0.3)


Key = tuple[str, int]  # (target name, concurrency)


async def rounds(targets: Sequence[Target], concurrencies: Sequence[int] = CONCURRENCIES,
                 n: int = ROUNDS, seconds: float = SECONDS) -> dict[Key, list[Sample]]:
    """Every (target, concurrency) in ``n`` interleaved rounds, the order rotating each round."""
    items = [(t, c) for c in concurrencies for t in targets]
    out: dict[Key, list[Sample]] = {(t.name, c): [] for t, c in items}
    for index in range(n):
        shift = (index * max(1, len(items) // n)) % len(items)
        for target, concurrency in items[shift:] + items[:shift]:
            out[(target.name, concurrency)].append(await measure(target, concurrency, seconds))
    return out


# --------------------------------------------------------------------------- figures

def figures(samples: Sequence[Sample], items: int = 1) -> dict[str, Any]:
    """Throughput pooled over the rounds; p50/p99 the median over rounds; CPU per call."""
    calls = sum(s.gen.requests for s in samples)
    seconds = sum(s.gen.seconds for s in samples)
    cpu = sum(s.cpu_seconds for s in samples)
    rate = calls / seconds if seconds else 0.0
    out: dict[str, Any] = {"req_s": round(rate, 1)}
    if items > 1:
        out["msg_s"] = round(rate * items, 0)
    out.update({
        "p50_ms": round(statistics.median(s.gen.p50_ms for s in samples), 3),
        "p99_ms": round(statistics.median(s.gen.p99_ms for s in samples), 3),
        "cpu_ms_call": round(cpu / calls * 1000, 3) if calls else float("nan"),
        "calls": calls,
    })
    return out


def median_ratio(mine: Sequence[Sample], base: Sequence[Sample]) -> float:
    return statistics.median(m.gen.rps / b.gen.rps for m, b in zip(mine, base) if b.gen.rps)


def p50_delta(mine: Sequence[Sample], base: Sequence[Sample]) -> float:
    """Median over rounds of (candidate p50 - baseline p50), in ms."""
    return statistics.median(m.gen.p50_ms - b.gen.p50_ms for m, b in zip(mine, base))


def result_row(benchmark: str, case: str, concurrency: int, samples: Sequence[Sample], *,
               ratio: float, vs: str, target: str, items: int = 1, **extra: Any) -> dict[str, Any]:
    return {"benchmark": benchmark, "case": case, "conc": concurrency,
            **figures(samples, items), **extra, "ratio": round(ratio, 3), "vs": vs,
            "target": target}
