"""The gRPC face measured from outside: h2load against the gateway and its floors, same run.

Upstream: nginx serving static v1 bodies (``static_upstream``), so the figure is the gateway's own
cost. Servers, each its own process: the gateway (``python -m gateway serve``, one per arm, see
``proxy_harness.ARMS``), a bare grpc.aio echo answering the ~1 KB message from memory (and the same
echo in the stream-unary shape the gateway's call admission uses), the gateway's own server, call
admission, face and pipeline over operations that answer at once (the "shell": a hit without its
operation, ``floors.py grpc-gateway-shell``), a bare grpc.aio proxy making one
upstream GET per call on the gateway's upstream sender (and with one request built once), the same
on raw aiohttp, and a second gateway on the upstream emulator (``python -m gateway emulator``, what
users see; labelled so). nginx direct is wrk's GET of the same message, the latency reference.

Cases at 1 and 32 calls in flight (h2load ``-c 1 -m 1`` / ``-c 4 -m 8``): GetMessage miss (``cache-
control: no-cache``: fetched fresh, stored), GetMessage hit, ListMessages page of 20 (``no-cache``),
CreateMessage. Targets: miss >= 0.45 x echo floor and >= 0.85 x the bare proxy on the
gateway's sender at 32; hit >= 0.8 x echo floor at 32; a miss at 1 caller <= +1.0 ms p50 over nginx
direct. ``python -m tests.bench.proxy_grpc`` runs it alone.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import grpc

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2_grpc as pb_grpc
from tests.bench import proxy_harness as h
from tests.bench.loadgen import grpc_frame
from tests.bench.static_upstream import (
    CREATE_CONTENT,
    FILE,
    FILES,
    MESSAGE,
    THREAD,
    start_static_upstream,
    write_frames,
)

BENCHMARK = "proxy_grpc"
SERVICE = "/messages_gateway.v1.MessagesService"
NO_CACHE = {"cache-control": "no-cache"}
ECHO = "floor: grpc.aio echo, 1 KB from memory"
ECHO_READ = "floor: that echo as stream-unary + context.read() (admission's shape)"
ECHO_TRAILERS = "floor: that shape + the three trailers every answer carries"
SHELL = "floor: the gateway's server, admission, face and pipeline; operations answer at once"
PROXY = "floor: bare grpc.aio proxy, gateway's upstream sender"
PROXY_TRANSPORT = "floor: bare grpc.aio proxy, one prebuilt request"
PROXY_AIO = "floor: bare grpc.aio proxy, raw aiohttp"
NGINX = "nginx direct GET (wrk)"
MISS = "GetMessage miss (no-cache)"
HIT = "GetMessage hit"
LIST = "ListMessages page of 20 (no-cache)"
CREATE = "CreateMessage"
EMU_MISS = "GetMessage miss, emulator upstream"


def write_frame(directory: Path, name: str, message: Any) -> Path:
    path = directory / f"{name}.bin"
    path.write_bytes(grpc_frame(message.SerializeToString()))
    return path


def grpc_probe(target: str, method: str, request: Any, check: Callable[[Any], bool], *,
               metadata: tuple[tuple[str, str], ...] = (), cache: str = "") -> Callable[
                   [], Awaitable[int]]:
    """A real call; its answer checked (and ``x-cache`` when given); returns 5 + reply bytes."""
    async def probe() -> int:
        async with grpc.aio.insecure_channel(target) as channel:
            stub = pb_grpc.MessagesServiceStub(channel)
            call = getattr(stub, method)(request, metadata=metadata, timeout=10)
            reply = await call
            if not check(reply):
                raise RuntimeError(f"{method} on {target} answered {str(reply)[:300]}")
            if cache:
                # The gateway sends its response headers as trailing metadata.
                got = dict([*(await call.initial_metadata() or ()),
                            *(await call.trailing_metadata() or ())]).get("x-cache")
                if got != cache:
                    raise RuntimeError(f"{method} on {target}: x-cache {got!r}, not {cache!r}")
            return 5 + len(reply.SerializeToString())
    return probe


def gateway_targets(gw: h.Gateway, frames: dict[str, Path], label: Callable[[str], str],
                    thread: str = THREAD, message: str = MESSAGE) -> dict[str, h.Target]:
    url = f"http://{gw.grpc_target}{SERVICE}"
    get = pb.GetMessageRequest(thread_id=thread, message_id=message)
    is_message: Callable[[Any], bool] = lambda m: m.id == message  # noqa: E731
    meta = tuple(NO_CACHE.items())
    return {
        MISS: h.Target(label(MISS), "grpc", f"{url}/GetMessage", gw.proc, grpc_probe(
            gw.grpc_target, "GetMessage", get, is_message, metadata=meta, cache="miss"),
            frames["get"], dict(NO_CACHE), gateway=gw, method="GetMessage", upstream_per_call=1),
        HIT: h.Target(label(HIT), "grpc", f"{url}/GetMessage", gw.proc, grpc_probe(
            gw.grpc_target, "GetMessage", get, is_message, cache="hit"), frames["get"],
            gateway=gw, method="GetMessage", upstream_per_call=0),
        LIST: h.Target(label(LIST), "grpc", f"{url}/ListMessages", gw.proc, grpc_probe(
            gw.grpc_target, "ListMessages", pb.ListMessagesRequest(thread_id=thread, limit=20),
            lambda r: len(r.data) == 20, metadata=meta), frames["list"], dict(NO_CACHE),
            gateway=gw, method="ListMessages", upstream_per_call=1),
        CREATE: h.Target(label(CREATE), "grpc", f"{url}/CreateMessage", gw.proc, grpc_probe(
            gw.grpc_target, "CreateMessage", create_request(thread), lambda m: bool(m.id)),
            frames["create"], gateway=gw, method="CreateMessage", upstream_per_call=1),
    }


async def check_file_bodies(gw: h.Gateway) -> None:
    """The static file bodies, which no case loads, accepted by the gateway (real calls)."""
    await grpc_probe(gw.grpc_target, "GetMessageFile", pb.GetMessageFileRequest(
        thread_id=THREAD, message_id=MESSAGE, file_id=FILE), lambda f: f.id == FILE)()
    await grpc_probe(gw.grpc_target, "ListMessageFiles", pb.ListMessageFilesRequest(
        thread_id=THREAD, message_id=MESSAGE), lambda r: len(r.data) == FILES)()


def create_request(thread: str) -> pb.CreateMessageRequest:
    return pb.CreateMessageRequest(thread_id=thread, role=pb.ROLE_USER, content=CREATE_CONTENT)


async def run() -> list[dict[str, Any]]:
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-proxy-grpc-")))
        nginx = await start_static_upstream(stack, tmp / "nginx")
        body = nginx.static_dir / "message.json"
        frames = write_frames(tmp / "frames")
        get = pb.GetMessageRequest(thread_id=THREAD, message_id=MESSAGE)
        is_message: Callable[[Any], bool] = lambda m: m.id == MESSAGE  # noqa: E731
        floors: dict[str, h.Target] = {}
        for case, kind in ((ECHO, "grpc-echo"), (ECHO_READ, "grpc-echo-read"),
                           (ECHO_TRAILERS, "grpc-echo-trailers"), (SHELL, "grpc-gateway-shell"),
                           (PROXY, "grpc-proxy-httpx"), (PROXY_TRANSPORT, "grpc-proxy-transport"),
                           (PROXY_AIO, "grpc-proxy-aiohttp")):
            proc, port = await h.start_floor(stack, kind, upstream=nginx.message_url, body=body)
            floors[case] = h.Target(case, "grpc", f"http://127.0.0.1:{port}{SERVICE}/GetMessage",
                                    proc, grpc_probe(f"127.0.0.1:{port}", "GetMessage", get,
                                                     is_message), frames["get"])

        floors[NGINX] = h.Target(NGINX, "http", nginx.message_url, nginx.process,
                                 h.http_probe(nginx.message_url))
        per_arm: dict[str, dict[str, h.Target]] = {}
        for arm, env in h.arms().items():
            gw = await h.start_gateway(stack, nginx.base_url, arm, env)
            await check_file_bodies(gw)
            per_arm[arm] = gateway_targets(gw, frames, lambda c, a=arm: h.arm_label(c, a))
        emu_gw, emu_thread, emu_message = await h.start_emulator_gateway(stack)
        emu_frames = {"get": write_frame(tmp, "emu-get", pb.GetMessageRequest(
            thread_id=emu_thread, message_id=emu_message)), "list": frames["list"],
            "create": frames["create"]}
        emu = gateway_targets(emu_gw, emu_frames, lambda c: EMU_MISS, emu_thread, emu_message)[MISS]
        targets = [*floors.values(), *(t for arm in per_arm.values() for t in arm.values()), emu]
        await h.prepare(targets)
        samples = await h.rounds(targets)
    return rows(samples, floors, per_arm, emu)


def rows(samples: dict[h.Key, list[h.Sample]], floors: dict[str, h.Target],
         per_arm: dict[str, dict[str, h.Target]], emu: h.Target) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for c in h.CONCURRENCIES:
        s = {name: samples[(name, c)] for name, conc in samples if conc == c}
        echo = s[ECHO]

        def add(case: str, base: str, target: str, vs: str | None = None) -> None:
            out.append(h.result_row(BENCHMARK, case, c, s[case], ratio=h.median_ratio(
                s[case], s[base]), vs=vs or base.split(",")[0], target=target))

        add(ECHO, ECHO, "baseline", "itself")
        add(ECHO_READ, ECHO, "info: the gateway's handler shape alone", "echo floor")
        add(ECHO_TRAILERS, ECHO, "info: the gRPC work of every gateway answer", "echo floor")
        add(SHELL, ECHO, "info: a hit without its operation", "echo floor")
        add(PROXY, ECHO, "info: the bare proxy floor", "echo floor")
        add(PROXY_TRANSPORT, ECHO, "info: without building a request per call", "echo floor")
        add(PROXY_AIO, ECHO, "info: raw aiohttp reference", "echo floor")
        add(NGINX, ECHO, "info: latency reference", "echo floor")
        for arm, targets in per_arm.items():
            miss, hit = targets[MISS].name, targets[HIT].name
            at32 = c == 32
            add(miss, ECHO, ">= 0.45" if at32 else "info", "echo floor")
            add(miss, PROXY, ">= 0.85" if at32 else "info", "bare proxy")
            if c == 1:
                out.append(h.result_row(
                    BENCHMARK, miss, c, s[miss], ratio=h.p50_delta(s[miss], s[NGINX]),
                    vs="nginx direct: +ms p50", target="<= 1.0"))
            add(hit, ECHO, ">= 0.8" if at32 else "info", "echo floor")
            add(hit, ECHO_TRAILERS, "info: the hit's own work", "shape + trailers")
            add(hit, SHELL, "info: the operation (validation, cache look-up)", "gateway shell")
            add(targets[LIST].name, PROXY, "info: one upstream GET, 20 messages",
                "bare proxy")
            add(targets[CREATE].name, PROXY, "info: one upstream POST", "bare proxy")
        first = next(iter(per_arm.values()))[MISS].name
        add(emu.name, first, "info: what users see", "miss on nginx")
    return out


if __name__ == "__main__":
    from tests.bench import format_table

    print(format_table(asyncio.run(run())))
    print(json.dumps({"arms": h.arms()}))
