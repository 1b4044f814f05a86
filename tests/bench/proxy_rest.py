"""The REST face measured from outside: wrk against the gateway and its floors, same run.

The method of ``proxy_grpc`` (nginx static upstream, servers in their own processes, interleaved
rounds, server CPU per call, correctness checked apart from the generator) with wrk (``-t 1``,
1 and 32 connections, ``--latency``; non-2xx answers and socket errors fail the suite). Floors: a
bare Starlette app on uvicorn answering the same ~1 KB JSON from memory, the same app making one
upstream GET per request on the gateway's upstream sender, and on raw aiohttp (reference); nginx
direct. A second gateway on the upstream emulator shows what users see.

Cases: ``GET .../messages/{id}`` miss (``Cache-Control: no-cache``) and hit, ``GET .../messages
?limit=20`` (``no-cache``), a GET with a new query string per request (a wrk Lua script: all
misses, and the cache fills), ``POST .../messages`` (a wrk Lua script sends the body). Targets:
miss >= 0.85 x the bare Starlette proxy and >= 1,000 req/s at 32 connections;
throughput at 32 connections >= at 1. ``python -m tests.bench.proxy_rest`` runs it alone.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from tests.bench import proxy_harness as h
from tests.bench.loadgen import LUA_POST, LUA_UNIQUE, lua_string
from tests.bench.static_upstream import MESSAGE, THREAD, start_static_upstream

BENCHMARK = "proxy_rest"
BETA = {"OpenAI-Beta": "assistants=v1"}
NO_CACHE = {**BETA, "Cache-Control": "no-cache"}
ECHO = "floor: Starlette echo, 1 KB from memory"
PROXY = "floor: bare Starlette proxy, gateway's upstream sender"
PROXY_AIO = "floor: bare Starlette proxy, raw aiohttp"
NGINX = "nginx direct GET (wrk)"
MISS = "GET message miss (no-cache)"
HIT = "GET message hit"
LIST = "GET messages?limit=20 (no-cache)"
CREATE = "POST message (create)"
UNIQUE = "GET message, a new query string each (all misses)"
EMU_MISS = "GET message miss, emulator upstream"
CREATE_BODY = json.dumps({"role": "user", "content": "a benchmark message " * 10})


def gateway_targets(gw: h.Gateway, label: Callable[[str], str], thread: str = THREAD,
                    message: str = MESSAGE) -> dict[str, h.Target]:
    url = f"{gw.http_base}/threads/{thread}/messages"
    one = f"{url}/{message}"
    is_message: Callable[[Any], bool] = lambda m: m.get("id") == message  # noqa: E731
    script = LUA_POST.format(body=lua_string(CREATE_BODY)) + "".join(
        f'wrk.headers["{k}"] = "{v}"\n' for k, v in BETA.items())
    return {
        MISS: h.Target(label(MISS), "http", one, gw.proc, h.http_probe(
            one, NO_CACHE, check=is_message, cache="miss"), headers=dict(NO_CACHE), gateway=gw,
            method="GetMessage", upstream_per_call=1),
        HIT: h.Target(label(HIT), "http", one, gw.proc, h.http_probe(
            one, BETA, check=is_message, cache="hit"), headers=dict(BETA), gateway=gw,
            method="GetMessage", upstream_per_call=0),
        LIST: h.Target(label(LIST), "http", f"{url}?limit=20", gw.proc, h.http_probe(
            f"{url}?limit=20", NO_CACHE, check=lambda p: len(p["data"]) == 20),
            headers=dict(NO_CACHE), gateway=gw, method="ListMessages", upstream_per_call=1),
        UNIQUE: h.Target(label(UNIQUE), "http", one, gw.proc, h.http_probe(
            f"{one}?bench_n=0", BETA, check=is_message, cache="miss"), headers=dict(BETA),
            script=LUA_UNIQUE.format(sep="?"), gateway=gw, method="GetMessage",
            upstream_per_call=1),
        CREATE: h.Target(label(CREATE), "http", url, gw.proc, h.http_probe(
            url, {**BETA, "content-type": "application/json"}, method="POST",
            body=CREATE_BODY.encode(), check=lambda m: bool(m.get("id"))), script=script,
            gateway=gw, method="CreateMessage", upstream_per_call=1),
    }


async def run() -> list[dict[str, Any]]:
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-proxy-rest-")))
        nginx = await start_static_upstream(stack, tmp / "nginx")
        body = nginx.static_dir / "message.json"
        path = f"/v1/threads/{THREAD}/messages/{MESSAGE}"
        is_message: Callable[[Any], bool] = lambda m: m.get("id") == MESSAGE  # noqa: E731
        floors: dict[str, h.Target] = {}
        for case, kind in ((ECHO, "rest-echo"), (PROXY, "rest-proxy-httpx"),
                           (PROXY_AIO, "rest-proxy-aiohttp")):
            proc, port = await h.start_floor(stack, kind, upstream=nginx.message_url, body=body)
            url = f"http://127.0.0.1:{port}{path}"
            floors[case] = h.Target(case, "http", url, proc, h.http_probe(url, check=is_message))
        floors[NGINX] = h.Target(NGINX, "http", nginx.message_url, nginx.process,
                                 h.http_probe(nginx.message_url, check=is_message))
        per_arm: dict[str, dict[str, h.Target]] = {}
        for arm, env in h.arms().items():
            gw = await h.start_gateway(stack, nginx.base_url, arm, env)
            per_arm[arm] = gateway_targets(gw, lambda c, a=arm: h.arm_label(c, a))
        emu_gw, emu_thread, emu_message = await h.start_emulator_gateway(stack)
        emu = gateway_targets(emu_gw, lambda c: EMU_MISS, emu_thread, emu_message)[MISS]
        targets = [*floors.values(), *(t for arm in per_arm.values() for t in arm.values()), emu]
        await h.prepare(targets)
        samples = await h.rounds(targets)
    return rows(samples, per_arm, emu)


def rows(samples: dict[h.Key, list[h.Sample]], per_arm: dict[str, dict[str, h.Target]],
         emu: h.Target) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for c in h.CONCURRENCIES:
        s = {name: samples[(name, c)] for name, conc in samples if conc == c}

        def add(case: str, base: str, target: str, vs: str) -> None:
            out.append(h.result_row(BENCHMARK, case, c, s[case], ratio=h.median_ratio(
                s[case], s[base]), vs=vs, target=target))

        add(ECHO, ECHO, "baseline", "itself")
        add(PROXY, ECHO, "info: the bare proxy floor", "echo floor")
        add(PROXY_AIO, ECHO, "info: raw aiohttp reference", "echo floor")
        add(NGINX, ECHO, "info: latency reference", "echo floor")
        for targets in per_arm.values():
            miss = targets[MISS].name
            at32 = c == 32
            add(miss, PROXY, ">= 0.85" if at32 else "info", "bare Starlette proxy")
            add(miss, ECHO, "info", "echo floor")
            if at32:
                out.append(h.result_row(BENCHMARK, miss, c, s[miss], ratio=sum(
                    x.gen.requests for x in s[miss]) / sum(x.gen.seconds for x in s[miss]),
                    vs="req/s", target=">= 1000"))
            else:
                out.append(h.result_row(BENCHMARK, miss, c, s[miss], ratio=h.p50_delta(
                    s[miss], s[NGINX]), vs="nginx direct: +ms p50", target="info"))
            add(targets[HIT].name, ECHO, "info", "echo floor")
            add(targets[UNIQUE].name, PROXY, "info: unmodelled query forwarded, cache key "
                "includes it", "bare Starlette proxy")
            add(targets[LIST].name, PROXY, "info: one upstream GET, 20 messages",
                "bare Starlette proxy")
            add(targets[CREATE].name, PROXY, "info: one upstream POST", "bare Starlette proxy")
        add(emu.name, next(iter(per_arm.values()))[MISS].name, "info: what users see",
            "miss on nginx")
    # Throughput must not fall as concurrency rises: c32 over c1, round by round.
    for targets in per_arm.values():
        for case in (MISS, HIT, UNIQUE, LIST, CREATE):
            name = targets[case].name
            out.append(h.result_row(BENCHMARK, name, 32, samples[(name, 32)], ratio=h.median_ratio(
                samples[(name, 32)], samples[(name, 1)]), vs="itself at 1 conn.",
                target=">= 1.0"))
    return out


if __name__ == "__main__":
    from tests.bench import format_table

    print(format_table(asyncio.run(run())))
