"""Upstream client transports against a local server answering a fixed 1 KB JSON message.

The upstream client is on every call's path, so its transport is the gateway's first ceiling.
Candidates, each at 1 and 32 concurrent requests, bounded in count and time:

* raw aiohttp (``ClientSession``): the baseline every ratio is measured against;
* the gateway's own sender (``UpstreamHTTP``: an ``httpx.Request`` built per call and handed
  straight to a transport, no ``AsyncClient`` in between) on the gateway's HTTP/1.1 client on
  httptools (``transport = "httptools"``, ``transport_h1.py``, the default);
* the same sender on the gateway's aiohttp transport (``transport = "aiohttp"``);
* ``httpx.AsyncClient`` on that aiohttp transport: what httpx's client layers add;
* httpx on its default transport (httpcore), built the same way (``transport = "httpx"``);
* httpx's default transport with and without ``sniffio`` importable, each in a fresh child process
  so the only difference is the package's presence (see :func:`_hide_sniffio_overlay`).

Cases run in interleaved rounds and each ratio is the median of the per-round ratios
(``common.compare``), so a neighbour's load on a shared machine does not land on one case only.

The server is nginx when it is on the machine or can be unpacked from Debian's ``nginx`` package
into ``.bench/nginx`` (``apt-get download`` + ``dpkg -x``: nothing is installed system-wide and no
service is started); otherwise an aiohttp.web process serving the same body. Either runs in its own
process on 127.0.0.1, so client and server never share an event loop. ``BENCH_NGINX=0`` skips
nginx.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import tempfile
from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import httpx

from gateway.config import UpstreamSettings
from gateway.upstream.http import UpstreamHTTP, build_transport
from tests.bench.common import (
    ROOT,
    Call,
    LoadResult,
    child_env,
    compare,
    drive,
    free_port,
    merge,
    python_args,
    ratio,
    row,
    start_process,
    wait_http,
)

BENCHMARK = "upstream_transport"
BODY_SIZE = 1024
PATH = "/v1/threads/thread_bench/messages/msg_bench"
#: Requests per measurement, by concurrency; each measurement also stops at MAX_SECONDS.
TOTAL = {1: 1000, 32: 3000}
MAX_SECONDS = 15.0
WARMUP = 50
#: Interleaved rounds per comparison (see common.compare).
ROUNDS = 3
CONCURRENCIES = (1, 32)
NGINX_DIR = ROOT / ".bench" / "nginx"
#: The gateway's own transport must keep at least this share of raw aiohttp's throughput.
GATEWAY_TRANSPORT_TARGET = ">= 0.3"


def message_body(size: int = BODY_SIZE) -> bytes:
    """A message object shaped like the upstream's, padded to exactly ``size`` bytes."""
    message: dict[str, Any] = {
        "id": "msg_abc123def456ghi789jkl012", "object": "thread.message", "created_at": 1699017614,
        "thread_id": "thread_abc123def456ghi789jk", "status": "completed",
        "incomplete_details": None, "completed_at": 1699017615, "incomplete_at": None,
        "role": "assistant",
        "content": [{"type": "text", "text": {"value": "", "annotations": []}}],
        "assistant_id": "asst_abc123def456ghi789jkl0", "run_id": "run_abc123def456ghi789jkl01",
        "file_ids": [], "metadata": {"source": "bench"},
    }
    empty = len(json.dumps(message).encode())
    message["content"][0]["text"]["value"] = "x" * (size - empty)
    body = json.dumps(message).encode()
    assert len(body) == size, len(body)
    return body


# --------------------------------------------------------------------------- the local server

def find_nginx() -> str | None:
    """An nginx binary: on PATH, in /usr/sbin, or unpacked earlier into .bench/nginx."""
    for candidate in (shutil.which("nginx"), "/usr/sbin/nginx", str(NGINX_DIR / "usr/sbin/nginx")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def unpack_nginx() -> str | None:
    """Fetch Debian's ``nginx`` package and unpack it under .bench/nginx; None when impossible.

    Unpacking (rather than ``apt-get install``) needs no root, changes nothing outside the
    worktree and starts no system service listening on port 80.
    """
    if not (shutil.which("apt-get") and shutil.which("dpkg")):
        return None
    work = NGINX_DIR.parent / "nginx-download"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        for attempt in range(2):
            fetched = subprocess.run(["apt-get", "download", "-q", "nginx"], cwd=work,
                                     capture_output=True, timeout=120)
            if fetched.returncode == 0:
                break
            if attempt == 0 and os.geteuid() == 0:
                # The package lists may be missing or stale; refresh them once.
                subprocess.run(["apt-get", "update", "-q"], capture_output=True, timeout=180)
        debs = sorted(work.glob("nginx_*.deb"))
        if not debs:
            return None
        subprocess.run(["dpkg", "-x", str(debs[-1]), str(NGINX_DIR)], check=True,
                       capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return find_nginx()


def nginx_config(prefix: Path, port: int, body: bytes) -> str:
    # One single process (no master/worker split) so the server gets one core and the load
    # generator the other; every path nginx would write to is inside the temporary prefix.
    text = body.decode()
    assert "'" not in text and "\\" not in text
    temp_paths = "\n".join(
        f"    {kind}_temp_path {prefix}/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""
daemon off;
master_process off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
{temp_paths}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            default_type application/json;
            return 200 '{text}';
        }}
    }}
}}
"""


FALLBACK_SERVER = """
from aiohttp import web
body = open(sys.argv[2], "rb").read()
async def handler(request):
    return web.Response(body=body, content_type="application/json")
app = web.Application()
app.router.add_get("/{tail:.*}", handler)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""


async def start_server(stack: ExitStack, tmp: Path, body: bytes) -> tuple[str, str]:
    """Start the 1 KB server; returns (url, description)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}{PATH}"
    nginx = None if os.environ.get("BENCH_NGINX") == "0" else (find_nginx() or unpack_nginx())
    if nginx:
        conf = tmp / "nginx.conf"
        conf.write_text(nginx_config(tmp, port, body))
        proc = start_process("nginx", [nginx, "-p", str(tmp), "-e", "stderr", "-c", str(conf)],
                             stack)
        try:
            await wait_http(url, proc, timeout=10)
            version = subprocess.run([nginx, "-v"], capture_output=True, text=True, timeout=10)
            return url, (version.stderr.strip().split(":")[-1].strip() or "nginx") + " (1 process)"
        except RuntimeError as exc:
            print(f"  nginx did not start ({str(exc)[:200]}); using the aiohttp server")
            proc.stop()
    body_file = tmp / "body.json"
    body_file.write_bytes(body)
    proc = start_process("aiohttp server",
                         python_args("-c", FALLBACK_SERVER, str(port), str(body_file)), stack)
    await wait_http(url, proc, timeout=20)
    return url, f"aiohttp {aiohttp.__version__} web server (1 process)"


# --------------------------------------------------------------------------- the clients

def _checked(status: int, size: int) -> None:
    if status != 200 or size != BODY_SIZE:
        raise RuntimeError(f"unexpected answer: HTTP {status}, {size} bytes")


@asynccontextmanager
async def aiohttp_client(url: str) -> AsyncIterator[Call]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as session:
        async def call() -> None:
            async with session.get(url) as response:
                _checked(response.status, len(await response.read()))

        yield call


@asynccontextmanager
async def httpx_client(url: str, transport: str) -> AsyncIterator[Call]:
    """httpx on the transport the gateway would build for ``upstream.transport = transport``."""
    settings = UpstreamSettings(transport=transport)
    async with httpx.AsyncClient(transport=build_transport(settings), trust_env=False) as client:
        async def call() -> None:
            response = await client.get(url)
            _checked(response.status_code, len(response.content))

        yield call


@asynccontextmanager
async def gateway_sender(url: str, transport: str | None = None) -> AsyncIterator[Call]:
    """The gateway's own upstream path: ``UpstreamHTTP`` built as the pool builds it (on the
    default transport, or on ``transport``)."""
    http = UpstreamHTTP(UpstreamSettings() if transport is None
                        else UpstreamSettings(transport=transport))
    target = httpx.URL(url)
    try:
        async def call() -> None:
            response = await http.send(http.build_request("GET", target, headers={},
                                                          timeout=10.0, connect_timeout=5.0))
            try:
                size = sum([len(chunk) async for chunk in response.aiter_bytes()])
            finally:
                await response.aclose()
            _checked(response.status_code, size)

        yield call
    finally:
        await http.aclose()


# --------------------------------------------------------------------------- sniffio on/off

_CHILD_BOOT = """
import json, sys
args = json.loads(sys.argv[1])
if args["overlay"]:
    # Before anything imports anyio or httpcore: the real site-packages leaves sys.path and a copy
    # of it without sniffio takes its place, so sniffio is genuinely absent (a failed import
    # searches the whole path, as it would on an install that lacks the package).
    sys.path[:] = [args["overlay"] if p == args["site_dir"] else p for p in sys.path]
    sys.path_importer_cache.clear()
from tests.bench.upstream_transport import child_main
child_main(args)
"""


def _site_dir() -> Path:
    return Path(httpx.__file__).resolve().parent.parent


def _hide_sniffio_overlay() -> Path:
    """A directory of symlinks to every entry of site-packages except sniffio's."""
    overlay = ROOT / ".bench" / "site-packages-without-sniffio"
    shutil.rmtree(overlay, ignore_errors=True)
    overlay.mkdir(parents=True)
    for entry in _site_dir().iterdir():
        if not entry.name.lower().startswith("sniffio"):
            (overlay / entry.name).symlink_to(entry)
    return overlay


def child_main(args: dict[str, Any]) -> None:
    """In the child: drive httpx's default transport at each concurrency; print one JSON line."""
    importable = importlib.util.find_spec("sniffio") is not None

    async def one(concurrency: int) -> dict[str, Any]:
        async with httpx_client(args["url"], "httpx") as call:
            result = await drive(call, concurrency=concurrency,
                                 total=TOTAL[concurrency] // ROUNDS,
                                 max_seconds=MAX_SECONDS / ROUNDS, warmup=WARMUP)
        return {"requests": result.requests, "errors": result.errors, "seconds": result.seconds,
                "latencies": result.latencies, "first_error": result.first_error}

    async def main() -> dict[str, Any]:
        return {str(c): await one(c) for c in CONCURRENCIES}

    results = asyncio.run(main())
    print(json.dumps({"sniffio_importable": importable, "results": results}))


def run_child(url: str, overlay: Path | None) -> dict[int, LoadResult]:
    """One round of httpx's default transport in a fresh interpreter, sniffio hidden or not."""
    args = {"url": url, "site_dir": str(_site_dir()), "overlay": str(overlay) if overlay else ""}
    done = subprocess.run(python_args("-c", _CHILD_BOOT, json.dumps(args)), cwd=ROOT,
                          env=child_env(), capture_output=True, text=True,
                          timeout=2 * MAX_SECONDS + 60)
    if done.returncode != 0:
        raise RuntimeError(f"child measurement failed: {done.stderr[-2000:]}")
    answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if answer["sniffio_importable"] != (overlay is None):
        raise RuntimeError(f"sniffio importable={answer['sniffio_importable']} in a child that "
                           f"should {'' if overlay is None else 'not '}have it")
    return {int(c): LoadResult(int(c), r["requests"], r["errors"], r["seconds"],
                               tuple(r["latencies"]), r["first_error"])
            for c, r in answer["results"].items()}


async def sniffio_comparison(url: str) -> dict[int, tuple[LoadResult, LoadResult, float]]:
    """(installed, absent, median ratio absent/installed) per concurrency, over ROUNDS rounds."""
    overlay = _hide_sniffio_overlay()
    rounds: list[tuple[dict[int, LoadResult], dict[int, LoadResult]]] = []
    for index in range(ROUNDS):
        # Alternate which mode goes first so a drift in background load hits both alike.
        if index % 2 == 0:
            present = await asyncio.to_thread(run_child, url, None)
            absent = await asyncio.to_thread(run_child, url, overlay)
        else:
            absent = await asyncio.to_thread(run_child, url, overlay)
            present = await asyncio.to_thread(run_child, url, None)
        rounds.append((present, absent))
    shutil.rmtree(overlay, ignore_errors=True)
    return {
        c: (merge([p[c] for p, _ in rounds]), merge([a[c] for _, a in rounds]),
            statistics.median(ratio(a[c], p[c]) for p, a in rounds))
        for c in CONCURRENCIES
    }


# --------------------------------------------------------------------------- the suite

BASELINE = "aiohttp ClientSession"
GATEWAY_TRANSPORT = "gateway sender: httpx.Request on its httptools transport (default)"
GATEWAY_AIOHTTP = "gateway sender on its aiohttp transport"
ASYNC_CLIENT = "httpx.AsyncClient on the gateway's aiohttp transport"
HTTPX_DEFAULT = "httpx default transport (httpcore)"
SNIFFIO_PRESENT = "httpx default, sniffio installed (fresh process)"
SNIFFIO_ABSENT = "httpx default, sniffio absent (fresh process)"
TARGETS = {BASELINE: "baseline", GATEWAY_TRANSPORT: GATEWAY_TRANSPORT_TARGET,
           GATEWAY_AIOHTTP: "info: the other transport", ASYNC_CLIENT: "info: httpx's client layers",
           HTTPX_DEFAULT: "info: the alternative"}


async def run() -> list[dict[str, Any]]:
    body = message_body()
    rows: list[dict[str, Any]] = []
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-upstream-")))
        url, server = await start_server(stack, tmp, body)
        print(f"  server: {server} at {url}")
        cases = {
            BASELINE: lambda: aiohttp_client(url),
            GATEWAY_TRANSPORT: lambda: gateway_sender(url, "httptools"),
            GATEWAY_AIOHTTP: lambda: gateway_sender(url, "aiohttp"),
            ASYNC_CLIENT: lambda: httpx_client(url, "aiohttp"),
            HTTPX_DEFAULT: lambda: httpx_client(url, "httpx"),
        }
        for concurrency in CONCURRENCIES:
            comparison = await compare(cases, baseline=BASELINE, concurrency=concurrency,
                                       total=TOTAL[concurrency], max_seconds=MAX_SECONDS,
                                       rounds=ROUNDS, warmup=WARMUP)
            for name in cases:
                rows.append(row(BENCHMARK, name, comparison.results[name],
                                ratio=comparison.ratios[name], target=TARGETS[name],
                                vs=BASELINE.split()[0], _server=server))
        for concurrency, (present, absent, absent_ratio) in (await sniffio_comparison(url)).items():
            base = next(r for r in rows if r["case"] == BASELINE and r["concurrency"] == concurrency)
            rows.append(row(BENCHMARK, SNIFFIO_PRESENT, present,
                            ratio=present.rps / base["rps"], target="info: why sniffio is pinned",
                            vs=BASELINE.split()[0], _server=server))
            rows.append(row(BENCHMARK, SNIFFIO_ABSENT, absent, ratio=absent_ratio,
                            target="info: why sniffio is pinned", vs="sniffio installed",
                            _server=server))
    return rows
