"""An upstream that costs almost nothing: nginx serving static, spec-valid v1 bodies.

Every body is built here and checked against the emulator's OpenAPI documents
(``gateway/emulator/openapi-messages-v1.yaml``) before nginx starts; the suites then check that the
gateway accepts each of them with real calls. Routes (any thread or message id unless named):

=====================================================  =============================================
``GET  /v1/threads/T/messages/M``                       one ~1 KB message (``message.json``)
``POST /v1/threads/T/messages``                         that message (``return 200``: nginx static
                                                        files refuse POST)
``GET  /v1/threads/T/messages``                         a page of 20 messages (``list.json``)
``GET  /v1/threads/STREAM_THREAD/messages``             a 1,000-message thread in 10 pages of 100,
                                                        picked by ``map $arg_after``: each page's
                                                        ``last_id`` is the next page's cursor
``GET  /v1/threads/T/messages/M/files/F``               one message file
``GET  /v1/threads/T/messages/M/files``                 a list of 5 message files
=====================================================  =============================================

nginx runs as one process (no master), found or unpacked as ``upstream_transport`` does.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.bench.common import ManagedProcess, free_port, start_process, wait_http
from tests.bench.upstream_transport import find_nginx, unpack_nginx

THREAD = "thread_bench00000000000000001"
MESSAGE = "msg_bench000000000000000001"
FILE = "file-bench0000000000000001"
STREAM_THREAD = "thread_benchstream0000000001"
MESSAGE_BYTES = 1024
LIST_PAGE = 20
STREAM_MESSAGES = 1000
STREAM_PAGE = 100
FILES = 5
CREATED_AT = 1699017614
#: The content of the CreateMessage cases.
CREATE_CONTENT = "a benchmark message " * 10


def message(message_id: str, thread_id: str, created_at: int, size: int = MESSAGE_BYTES) -> dict:
    """A completed assistant message padded to ``size`` bytes of compact JSON."""
    body: dict[str, Any] = {
        "id": message_id, "object": "thread.message", "created_at": created_at,
        "thread_id": thread_id, "status": "completed", "incomplete_details": None,
        "completed_at": created_at + 1, "incomplete_at": None, "role": "assistant",
        "content": [{"type": "text", "text": {"value": "", "annotations": []}}],
        "assistant_id": "asst_bench000000000000000001", "run_id": "run_bench00000000000000001",
        "file_ids": [FILE], "metadata": {"source": "bench", "lane": "static"},
    }
    empty = len(compact(body))
    body["content"][0]["text"]["value"] = "lorem ipsum " * ((size - empty) // 12) + "x" * (
        (size - empty) % 12)
    assert len(compact(body)) == size, len(compact(body))
    return body


def message_list(items: list[dict], has_more: bool) -> dict:
    return {"object": "list", "data": items, "first_id": items[0]["id"] if items else None,
            "last_id": items[-1]["id"] if items else None, "has_more": has_more}


def message_file(file_id: str, message_id: str) -> dict:
    return {"id": file_id, "object": "thread.message.file", "created_at": CREATED_AT,
            "message_id": message_id}


def compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def stream_pages() -> list[dict]:
    """The 1,000-message thread as the upstream pages it forward (``after``) in pages of 100."""
    items = [message(f"msg_benchstream{i:012d}", STREAM_THREAD, CREATED_AT + i)
             for i in range(STREAM_MESSAGES)]
    chunks = [items[i:i + STREAM_PAGE] for i in range(0, STREAM_MESSAGES, STREAM_PAGE)]
    return [message_list(chunk, has_more=index < len(chunks) - 1)
            for index, chunk in enumerate(chunks)]


@dataclass(frozen=True)
class Bodies:
    message: bytes
    list_page: bytes
    file: bytes
    files: bytes
    pages: tuple[bytes, ...]

    @property
    def stream_items(self) -> int:
        return STREAM_MESSAGES


def build_bodies() -> Bodies:
    """Every body, each validated against the v1 spec's response schema."""
    from tests.emulator.schemas import validate  # dev dependency: the spec validator

    msg = message(MESSAGE, THREAD, CREATED_AT)
    page = message_list([message(f"msg_benchlist{i:014d}", THREAD, CREATED_AT + i)
                         for i in range(LIST_PAGE)], has_more=True)
    file = message_file(FILE, MESSAGE)
    files = message_list([message_file(f"file-benchlist{i:012d}", MESSAGE) for i in range(FILES)],
                         has_more=False)
    pages = stream_pages()
    validate(msg, "MessageObject")
    validate(page, "ListMessagesResponse")
    validate(file, "MessageFileObject")
    validate(files, "ListMessageFilesResponse")
    for p in pages:
        validate(p, "ListMessagesResponse")
    return Bodies(compact(msg), compact(page), compact(file), compact(files),
                  tuple(compact(p) for p in pages))


def nginx_config(prefix: Path, port: int, bodies: Bodies) -> str:
    created = bodies.message.decode()
    # Inline in the config: no quote, backslash or variable sign may appear in it.
    assert not set("'\\$") & set(created)
    cursors = "\n".join(
        f'        "{json.loads(bodies.pages[i - 1])["last_id"]}" "page-{i:02d}.json";'
        for i in range(1, len(bodies.pages)))
    NOT_FOUND = compact({"error": {"message": "no such route", "type": "invalid_request_error",
                                   "param": None, "code": None}}).decode()
    temp_paths = "\n".join(f"    {kind}_temp_path {prefix}/{kind};"
                           for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return f"""
daemon off;
master_process off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 10000000;
    keepalive_timeout 120s;
    etag off;
{temp_paths}
    map $arg_after $stream_page {{
        default "page-00.json";
{cursors}
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {prefix}/static;
        default_type application/json;
        location = /v1/threads/{STREAM_THREAD}/messages {{
            try_files /$stream_page =404;
        }}
        location ~ ^/v1/threads/[^/]+/messages/[^/]+/files/[^/]+$ {{
            try_files /file.json =404;
        }}
        location ~ ^/v1/threads/[^/]+/messages/[^/]+/files$ {{
            try_files /files.json =404;
        }}
        location ~ ^/v1/threads/[^/]+/messages/[^/]+$ {{
            try_files /message.json =404;
        }}
        location ~ ^/v1/threads/[^/]+/messages$ {{
            if ($request_method = POST) {{
                return 200 '{created}';
            }}
            try_files /list.json =404;
        }}
        location / {{
            return 404 '{NOT_FOUND}';
        }}
    }}
}}
"""


def write_static(directory: Path, bodies: Bodies) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "message.json").write_bytes(bodies.message)
    (directory / "list.json").write_bytes(bodies.list_page)
    (directory / "file.json").write_bytes(bodies.file)
    (directory / "files.json").write_bytes(bodies.files)
    for index, page in enumerate(bodies.pages):
        (directory / f"page-{index:02d}.json").write_bytes(page)


@dataclass(frozen=True)
class StaticUpstream:
    base_url: str  # ends in /v1
    process: ManagedProcess
    bodies: Bodies
    static_dir: Path
    version: str

    @property
    def message_url(self) -> str:
        return f"{self.base_url}/threads/{THREAD}/messages/{MESSAGE}"

    @property
    def stream_url(self) -> str:
        return f"{self.base_url}/threads/{STREAM_THREAD}/messages"


async def start_static_upstream(stack: ExitStack, prefix: Path) -> StaticUpstream:
    """nginx on a free loopback port; fails naming the command when nginx is unavailable."""
    nginx = find_nginx() or unpack_nginx()
    if nginx is None:
        raise RuntimeError("nginx not found and could not be unpacked; install it with: "
                           "apt-get update && apt-get install -y nginx-light")
    bodies = build_bodies()
    write_static(prefix / "static", bodies)
    port = free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(nginx_config(prefix, port, bodies))
    proc = start_process("nginx", [nginx, "-p", str(prefix), "-e", "stderr", "-c", str(conf)],
                         stack)
    base = f"http://127.0.0.1:{port}/v1"
    await wait_http(f"{base}/threads/{THREAD}/messages/{MESSAGE}", proc, timeout=10)
    version = subprocess.run([nginx, "-v"], capture_output=True, text=True, timeout=10)
    return StaticUpstream(base, proc, bodies, prefix / "static",
                          version.stderr.strip().split(":")[-1].strip() or "nginx")


def write_frames(directory: Path) -> dict[str, Path]:
    """h2load frame files of the cases, from the contract's generated classes."""
    from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
    from tests.bench.loadgen import grpc_frame

    directory.mkdir(parents=True, exist_ok=True)
    requests = {
        "get": pb.GetMessageRequest(thread_id=THREAD, message_id=MESSAGE),
        "list": pb.ListMessagesRequest(thread_id=THREAD, limit=LIST_PAGE),
        "create": pb.CreateMessageRequest(thread_id=THREAD, role=pb.ROLE_USER,
                                          content=CREATE_CONTENT),
        "stream": pb.StreamMessagesRequest(thread_id=STREAM_THREAD, limit=STREAM_PAGE),
    }
    out = {}
    for name, request in requests.items():
        out[name] = directory / f"{name}.bin"
        out[name].write_bytes(grpc_frame(request.SerializeToString()))
    return out


async def _serve(frames_dir: Path, seconds: float) -> None:
    """Serve the static upstream for a by-hand session (profiling: docs/benchmarks.md) until
    SIGINT, SIGTERM or ``seconds``; nginx is stopped either way."""
    import asyncio
    import signal
    import tempfile

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    with ExitStack() as stack:
        prefix = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-static-")))
        upstream = await start_static_upstream(stack, prefix)
        frames = write_frames(frames_dir)
        print(f"upstream: {upstream.base_url} ({upstream.version})")
        print(f"threads: {THREAD} (message {MESSAGE}), {STREAM_THREAD} (1,000 messages)")
        for name, path in frames.items():
            print(f"frame {name}: {path}")
        print(f"serving for {seconds:.0f} s; Ctrl-C or SIGTERM stops", flush=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=seconds)


if __name__ == "__main__":
    import argparse
    import asyncio

    parser = argparse.ArgumentParser(prog="python -m tests.bench.static_upstream")
    parser.add_argument("--frames", default=".bench/frames", help="where to write frame files")
    parser.add_argument("--seconds", type=float, default=3600.0, help="stop after this long")
    args = parser.parse_args()
    asyncio.run(_serve(Path(args.frames), args.seconds))
