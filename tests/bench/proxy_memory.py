"""Gateway memory under load: RSS after 10,000 mixed calls against RSS after 100,000.

One gateway process (the first arm of ``proxy_harness.ARMS``) over the static nginx upstream. The
calls come in blocks of 10,000, each block the same mix, 32 in flight, bounded by count (h2load
``-n``; REST through ``h2load --h1``): gRPC GetMessage hits 6,000, misses 1,000 (``no-cache``),
ListMessages 500 (``no-cache``), CreateMessage 250, REST GET hits 2,000 and misses 250 (weighted to
hits, which are cheap, to keep the suite near a minute). Every call is checked as in the other proxy
suites. The ids are fixed, so the response cache holds a handful of entries throughout: growth is
the gateway's, not a cache filling up. RSS is ``VmRSS`` of ``/proc/<pid>/status`` after block 1 and
after block 10. Target: <= 1.10. ``python -m tests.bench.proxy_memory`` runs it alone.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from tests.bench import loadgen
from tests.bench import proxy_harness as h
from tests.bench import proxy_grpc
from tests.bench.proxy_grpc import CREATE, HIT, LIST, MISS
from tests.bench.static_upstream import MESSAGE, THREAD, start_static_upstream, write_frames

BENCHMARK = "proxy_memory"
BLOCK = 10_000
BLOCKS = 10
CONCURRENCY = 32
REST_HIT = "REST GET hit"
REST_MISS = "REST GET miss (no-cache)"
#: Calls per block, by case; they add up to BLOCK.
MIX = {HIT: 6000, MISS: 1000, LIST: 500, CREATE: 250, REST_HIT: 2000, REST_MISS: 250}
BETA = {"OpenAI-Beta": "assistants=v1"}


async def run() -> list[dict[str, Any]]:
    assert sum(MIX.values()) == BLOCK
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-proxy-mem-")))
        nginx = await start_static_upstream(stack, tmp / "nginx")
        frames = write_frames(tmp / "frames")
        arm, env = next(iter(h.arms().items()))
        gw = await h.start_gateway(stack, nginx.base_url, arm, env)
        targets = proxy_grpc.gateway_targets(gw, frames, lambda c: c)
        url = f"{gw.http_base}/threads/{THREAD}/messages/{MESSAGE}"
        is_message = lambda m: m.get("id") == MESSAGE  # noqa: E731
        no_cache = {**BETA, "Cache-Control": "no-cache"}
        targets[REST_MISS] = h.Target(REST_MISS, "h1", url, gw.proc, h.http_probe(
            url, no_cache, check=is_message, cache="miss"), headers=no_cache, gateway=gw,
            method="GetMessage", upstream_per_call=1)
        targets[REST_HIT] = h.Target(REST_HIT, "h1", url, gw.proc, h.http_probe(
            url, BETA, check=is_message, cache="hit"), headers=dict(BETA), gateway=gw,
            method="GetMessage", upstream_per_call=0)
        for case in (MISS, HIT, LIST, CREATE, REST_MISS, REST_HIT):  # a miss stores, then hits
            targets[case].expect_data = await targets[case].probe()
        rss_start = loadgen.rss_bytes(gw.pid)
        started = time.perf_counter()
        rss: list[int] = []
        calls = 0
        for _ in range(BLOCKS):
            for case, count in MIX.items():
                sample = await h.measure(targets[case], CONCURRENCY, seconds=None,
                                         requests=count)
                calls += sample.gen.requests
            rss.append(loadgen.rss_bytes(gw.pid))
        seconds = time.perf_counter() - started
    mib = 1024 * 1024
    return [{
        "benchmark": BENCHMARK,
        "case": h.arm_label("gateway RSS, 100,000 / 10,000 mixed calls", arm),
        "conc": CONCURRENCY, "calls": calls, "req_s": round(calls / seconds, 1),
        "rss_start_mib": round(rss_start / mib, 1), "rss_10k_mib": round(rss[0] / mib, 1),
        "rss_100k_mib": round(rss[-1] / mib, 1),
        "_rss_per_block_mib": [round(r / mib, 2) for r in rss],
        "ratio": round(rss[-1] / rss[0], 3), "vs": "RSS after 10,000", "target": "<= 1.10",
    }]


if __name__ == "__main__":
    from tests.bench import format_table

    print(format_table(asyncio.run(run())))
