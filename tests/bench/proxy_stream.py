"""StreamMessages of a 1,000-message thread (10 upstream pages of 100) measured from outside.

nginx serves the thread's pages (``static_upstream``: ``map $arg_after`` picks the page after the
cursor), so the figure is the gateway's own cost per stream. h2load loads the gRPC stream (the whole
response is one "request" to it; its DATA bytes must be the probe's), h2load ``--h1`` the REST
NDJSON endpoint, bounded by count (sized from the last run's rate) so that no stream is cut when the
run ends. The floor is a bare grpc.aio stream of the same pages (``floors.py`` ``grpc-stream``): one
upstream GET per page on the gateway's upstream sender, the page's JSON parsed for its cursor, the
page answered prebuilt - the stack's transport, JSON and framing cost without JSON -> protobuf
conversion. A second floor (``grpc-stream-convert``) also converts each page with the gateway's own
decoder: what is left between it and the gateway is the gateway's own work per stream. 1 and 32
streams at once; messages per second. Target: the gateway's stream >= 0.6 x the bare stream. A last row checks how the gateway records NDJSON streams their client cut
(it must be CANCELLED, nothing else). ``python -m tests.bench.proxy_stream`` runs it alone.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import grpc
import httpx

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2_grpc as pb_grpc
from tests.bench import loadgen
from tests.bench import proxy_harness as h
from tests.bench.proxy_grpc import SERVICE
from tests.bench.static_upstream import (
    STREAM_MESSAGES,
    STREAM_PAGE,
    STREAM_THREAD,
    start_static_upstream,
    write_frames,
)

BENCHMARK = "proxy_stream"
FLOOR = "floor: bare grpc.aio stream of the same pages"
CONVERT = "floor: that stream converting each page as the gateway does (JSON -> protobuf)"
GRPC = "StreamMessages (gRPC)"
REST = "messages:stream (REST NDJSON)"
PAGES = STREAM_MESSAGES // STREAM_PAGE
#: A stream takes 10-30 ms alone and ~0.5 s among 32: each measurement runs twice as long.
STREAM_SECONDS = 2 * h.SECONDS
CUT = "messages:stream cut by its client mid-stream (wrk's end of run)"
CUT_RUNS = 2
REQUEST = pb.StreamMessagesRequest(thread_id=STREAM_THREAD, limit=STREAM_PAGE)


def grpc_stream_probe(target: str) -> Any:
    """The whole stream through a real client: 1,000 messages in order; 5 + bytes per page."""
    async def probe() -> int:
        async with grpc.aio.insecure_channel(target) as channel:
            stub = pb_grpc.MessagesServiceStub(channel)
            pages = [page async for page in stub.StreamMessages(REQUEST, timeout=30)]
        ids = [m.id for page in pages for m in page.data]
        if len(ids) != STREAM_MESSAGES or len(set(ids)) != STREAM_MESSAGES:
            raise RuntimeError(f"stream on {target}: {len(ids)} messages in {len(pages)} pages")
        return sum(5 + len(page.SerializeToString()) for page in pages)
    return probe


def ndjson_probe(url: str) -> Any:
    async def probe() -> int:
        count = 0
        async with httpx.AsyncClient(trust_env=False, timeout=30) as client:
            async with client.stream("GET", url, headers={"OpenAI-Beta": "assistants=v1"}) as r:
                r.raise_for_status()
                async for line in r.aiter_lines():
                    if line:
                        json.loads(line)
                        count += 1
        if count != STREAM_MESSAGES:
            raise RuntimeError(f"NDJSON stream {url}: {count} lines")
        return 0
    return probe


async def cut_streams(target: h.Target) -> dict[str, Any]:
    """NDJSON streams whose client leaves mid-stream: how the gateway records them. A consumer
    gone is CANCELLED (499); any other code is a fault. Not a load figure: a timed wrk run ends
    by closing its connections, so each run cuts up to one stream per connection."""
    assert target.gateway is not None
    before = await target.gateway.counters()
    for _ in range(CUT_RUNS):
        await asyncio.to_thread(loadgen.run_wrk, target.url, concurrency=4, seconds=1,
                                headers=target.headers)
    await asyncio.sleep(0.5)  # the gateway records a call when its stream has unwound
    after = await target.gateway.counters()
    codes: dict[str, int] = {}
    for key, value in after.items():
        if (key.startswith("gateway_calls_total{") and 'face="rest"' in key
                and 'method="StreamMessages"' in key and 'code="OK"' not in key):
            code = key.split('code="', 1)[1].split('"', 1)[0]
            codes[code] = codes.get(code, 0) + round(value - before.get(key, 0.0))
    cut = sum(codes.values())
    wrong = cut - codes.get("CANCELLED", 0)
    return {"benchmark": BENCHMARK, "case": target.name.replace(REST, CUT), "conc": 4,
            "calls": cut, "codes": ", ".join(f"{k} {v}" for k, v in sorted(codes.items()) if v),
            "ratio": round(wrong / cut, 3) if cut else 0.0, "vs": "share not CANCELLED",
            "target": "<= 0"}


async def run() -> list[dict[str, Any]]:
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-proxy-stream-")))
        nginx = await start_static_upstream(stack, tmp / "nginx")
        frame = write_frames(tmp / "frames")["stream"]
        pages = sorted(nginx.static_dir.glob("page-*.json"))
        proc, port = await h.start_floor(stack, "grpc-stream", upstream=nginx.stream_url,
                                         pages=pages)
        floor = h.Target(FLOOR, "grpc", f"http://127.0.0.1:{port}{SERVICE}/StreamMessages", proc,
                         grpc_stream_probe(f"127.0.0.1:{port}"), frame, items=STREAM_MESSAGES)
        proc, port = await h.start_floor(stack, "grpc-stream-convert", upstream=nginx.stream_url,
                                         pages=pages)
        convert = h.Target(CONVERT, "grpc", f"http://127.0.0.1:{port}{SERVICE}/StreamMessages",
                           proc, grpc_stream_probe(f"127.0.0.1:{port}"), frame,
                           items=STREAM_MESSAGES)
        per_arm: dict[str, tuple[h.Target, h.Target]] = {}
        for arm, env in h.arms().items():
            gw = await h.start_gateway(stack, nginx.base_url, arm, env)
            ndjson = (f"{gw.http_base}/threads/{STREAM_THREAD}/messages:stream"
                      f"?limit={STREAM_PAGE}")
            per_arm[arm] = (
                h.Target(h.arm_label(GRPC, arm), "grpc",
                         f"http://{gw.grpc_target}{SERVICE}/StreamMessages", gw.proc,
                         grpc_stream_probe(gw.grpc_target), frame, gateway=gw,
                         method="StreamMessages", upstream_per_call=PAGES, items=STREAM_MESSAGES),
                # Count-bounded (h2load --h1), not wrk: wrk cuts the streams in flight when its
                # time is up, and a cut NDJSON stream is a different case (see docs).
                h.Target(h.arm_label(REST, arm), "h1", ndjson, gw.proc, ndjson_probe(ndjson),
                         headers={"OpenAI-Beta": "assistants=v1"}, gateway=gw,
                         method="StreamMessages", upstream_per_call=PAGES, items=STREAM_MESSAGES),
            )
        targets = [floor, convert, *(t for pair in per_arm.values() for t in pair)]
        await h.prepare(targets)
        samples = await h.rounds(targets, seconds=STREAM_SECONDS)
        cut_rows = [await cut_streams(rest_target) for _, rest_target in per_arm.values()]
    out: list[dict[str, Any]] = []
    for c in h.CONCURRENCIES:
        def add(case: str, base: str, target: str, vs: str) -> None:
            out.append(h.result_row(BENCHMARK, case, c, samples[(case, c)], items=STREAM_MESSAGES,
                                    ratio=h.median_ratio(samples[(case, c)], samples[(base, c)]),
                                    vs=vs, target=target))

        add(FLOOR, FLOOR, "baseline", "itself")
        add(CONVERT, FLOOR, "info: the conversion's share", "bare stream")
        for grpc_target, rest_target in per_arm.values():
            add(grpc_target.name, FLOOR, ">= 0.6", "bare stream")
            add(grpc_target.name, CONVERT, "info: the stream's own work", "converting stream")
            add(rest_target.name, grpc_target.name, "info: REST / gRPC", "gateway gRPC stream")
    return out + cut_rows


if __name__ == "__main__":
    from tests.bench import format_table

    print(format_table(asyncio.run(run())))
