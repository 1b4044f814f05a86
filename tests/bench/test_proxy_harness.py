"""The proxy suites' pieces that need no server: bodies, nginx config, arms, checks, figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.bench import proxy_harness as h
from tests.bench import static_upstream as su
from tests.bench.loadgen import GenResult


def test_static_bodies_are_spec_valid_and_the_stream_pages_chain() -> None:
    bodies = su.build_bodies()  # validates every body against the v1 spec
    assert len(bodies.message) == su.MESSAGE_BYTES
    assert len(json.loads(bodies.list_page)["data"]) == su.LIST_PAGE
    pages = [json.loads(p) for p in bodies.pages]
    ids = [m["id"] for p in pages for m in p["data"]]
    assert len(ids) == len(set(ids)) == su.STREAM_MESSAGES
    assert [p["has_more"] for p in pages] == [True] * (len(pages) - 1) + [False]
    for page in pages:
        assert page["first_id"] == page["data"][0]["id"]
        assert page["last_id"] == page["data"][-1]["id"]


def test_nginx_config_maps_each_cursor_to_the_next_page(tmp_path: Path) -> None:
    bodies = su.build_bodies()
    conf = su.nginx_config(tmp_path, 8123, bodies)
    assert "listen 127.0.0.1:8123" in conf
    for index in range(1, len(bodies.pages)):
        cursor = json.loads(bodies.pages[index - 1])["last_id"]
        assert f'"{cursor}" "page-{index:02d}.json";' in conf
    assert "return 200 '" + bodies.message.decode() + "'" in conf


def test_arms_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BENCH_ARMS", raising=False)
    assert h.arms() == h.ARMS
    monkeypatch.setenv("BENCH_ARMS", "asyncio:A=1;uvloop:A=2,B=x=y")
    assert h.arms() == {"asyncio": {"A": "1"}, "uvloop": {"A": "2", "B": "x=y"}}
    assert h.arm_label("case", "uvloop") == "case [uvloop]"


def _target(**kw: Any) -> h.Target:
    return h.Target("t", "grpc", "http://x", proc=None, probe=None,  # type: ignore[arg-type]
                    method="GetMessage", **kw)


def _calls(ok: float, **codes: float) -> dict[str, float]:
    out = {'gateway_calls_total{code="OK",face="grpc",method="GetMessage"}': ok}
    for code, value in codes.items():
        out[f'gateway_calls_total{{code="{code}",face="grpc",method="GetMessage"}}'] = value
    return out


def _gen(requests: int, abandoned: int = 0) -> GenResult:
    return GenResult(requests, 0, 1.0, 1.0, 2.0, abandoned=abandoned)


def test_gateway_check_fails_on_error_codes_and_allows_cut_calls() -> None:
    target = _target()
    h._check_gateway(target, _calls(0), _calls(100, CANCELLED=3), _gen(100, abandoned=3), 32)
    with pytest.raises(RuntimeError, match="INTERNAL"):
        h._check_gateway(target, _calls(0), _calls(100, INTERNAL=1), _gen(100), 32)
    with pytest.raises(RuntimeError, match="CANCELLED"):
        h._check_gateway(target, _calls(0), _calls(100, CANCELLED=9), _gen(100, abandoned=2), 32)
    with pytest.raises(RuntimeError, match="gateway 90 OK"):
        h._check_gateway(target, _calls(0), _calls(90), _gen(100), 32)


def test_gateway_check_counts_upstream_requests_per_call() -> None:
    up = 'gateway_upstream_requests_total{operation="GET /x",status="200"}'
    miss = _target(upstream_per_call=1)
    h._check_gateway(miss, {}, {**_calls(1000), up: 1001}, _gen(1000), 1)
    with pytest.raises(RuntimeError, match="upstream requests"):
        h._check_gateway(miss, {}, {**_calls(1000), up: 3}, _gen(1000), 1)  # answered from cache
    hit = _target(upstream_per_call=0)
    with pytest.raises(RuntimeError, match="upstream requests"):
        h._check_gateway(hit, {}, {**_calls(1000), up: 1000}, _gen(1000), 1)


def test_figures_pool_throughput_and_cpu_per_call() -> None:
    samples = [h.Sample(GenResult(100, 0, 1.0, 1.0, 4.0), 0.1),
               h.Sample(GenResult(300, 0, 1.0, 3.0, 6.0), 0.3)]
    fig = h.figures(samples, items=10)
    assert fig["req_s"] == 200.0 and fig["msg_s"] == 2000
    assert fig["p50_ms"] == 2.0 and fig["p99_ms"] == 5.0
    assert fig["cpu_ms_call"] == 1.0
    base = [h.Sample(GenResult(200, 0, 1.0, 1.0, 1.0), 0.0)] * 2
    assert h.median_ratio(samples, base) == 1.0  # rounds: 0.5 and 1.5
    assert h.p50_delta(samples, base) == 1.0


def test_calls_for_sizes_count_bounded_runs() -> None:
    target = _target()
    assert target.calls_for(32, 2.0) == 64  # no rate seen yet: two per connection
    target.rates[32] = 40.0
    assert target.calls_for(32, 2.0) == 80
    assert target.calls_for(1, 2.0) == 80  # another concurrency's rate until its own is known


class _Proc:
    pid = 1

    def check_alive(self) -> None:
        pass


async def test_measure_retries_once_when_nothing_finished(monkeypatch: pytest.MonkeyPatch) -> None:
    runs: list[float | None] = []

    async def generate(target: Any, concurrency: int, seconds: float | None,
                       requests: int | None) -> GenResult:
        runs.append(seconds)
        return _gen(0) if len(runs) == 1 else _gen(50)

    monkeypatch.setattr(h, "_generate", generate)
    monkeypatch.setattr(h.loadgen, "cpu_seconds", lambda pid: 0.0)
    target = h.Target("t", "http", "http://x", proc=_Proc(), probe=None)  # type: ignore[arg-type]
    sample = await h.measure(target, 32, seconds=1.0)
    assert runs == [1.0, 2.0] and sample.gen.requests == 50

    runs.clear()
    monkeypatch.setattr(h, "_generate", lambda *a: _zero(runs))
    with pytest.raises(RuntimeError, match="0 calls"):
        await h.measure(target, 32, seconds=1.0)
    assert len(runs) == 2  # bounded: one retry only


async def _zero(runs: list[float | None]) -> GenResult:
    runs.append(None)
    return _gen(0)
