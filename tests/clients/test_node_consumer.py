"""A non-Python consumer: clients/node (grpc-js over the shipped descriptor set) against a real
gateway with auth on (tenant-owned threads) and the emulator behind it.

The scenario (clients/node/scenario.js) prints one JSON line per step; this test reads them as
they come, breaks the stream after its first page with an emulator fault, and checks every
answer against the emulator's store."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from gateway.app import start_gateway
from gateway.credentials import store
from gateway.credentials.keys import generate_key
from gateway.credentials.store import StoreData
from gateway.emulator.server import EmulatorServer
from tests.clients.conftest import PAGE_LATENCY, arm_mid_stream_failure
from tests.credentials.helpers import add_consumer, auth_settings

NODE_DIR = Path(__file__).resolve().parents[2] / "clients" / "node"
#: The whole scenario, Node's start-up included, normally takes about two seconds.
SCENARIO_TIMEOUT = 60.0

STEPS = [
    "create_thread", "create_message", "get_message", "update_message", "list_messages",
    "stream_page", "stream_page", "stream_page", "stream_page", "stream_done",
    "get_message_file", "list_message_files", "bad_key", "no_key", "bad_request", "not_found",
    "done",
]


def node_or_skip() -> str:
    node = shutil.which("node")
    missing = None if node else "node is not installed"
    if node and not (NODE_DIR / "node_modules" / ".installed").exists():
        missing = "clients/node/node_modules missing: run `make node-deps` (make test does)"
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(missing)
        pytest.skip(missing)
    assert node
    return node


async def run_scenario(node: str, target: str, key: str, bad_key: str,
                       emulator: EmulatorServer) -> list[dict[str, Any]]:
    env = {**os.environ, "GATEWAY_TARGET": target, "GATEWAY_KEY": key,
           "GATEWAY_BAD_KEY": bad_key}
    proc = await asyncio.create_subprocess_exec(
        node, "scenario.js", cwd=NODE_DIR, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    lines: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(SCENARIO_TIMEOUT):
            while raw := await proc.stdout.readline():
                line = json.loads(raw)
                lines.append(line)
                if line["step"] == "stream_page" and line["page_index"] == 0:
                    # The page fetch in flight is the next one; the fault hits the one after.
                    arm_mid_stream_failure(emulator)
            stderr = await proc.stderr.read()
            code = await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert code == 0, f"node exited {code}; last line {lines[-1] if lines else None}; " \
        f"stderr {stderr.decode()!r}"
    return lines


async def test_node_consumer_calls_streams_resumes_authenticates_and_reads_details(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    node = node_or_skip()
    path = tmp_path / "credentials.json"
    store.write(path, StoreData())
    key = add_consumer(path, "node-team", {"read", "write"})
    bad_key = generate_key().secret  # well-formed, never stored
    emulator.faults.set_latency("listMessages", PAGE_LATENCY)
    gateway = await start_gateway(auth_settings(emulator, path, thread_access="tenant"))
    try:
        lines = await run_scenario(node, f"127.0.0.1:{gateway.grpc_port}", key, bad_key,
                                   emulator)
    finally:
        await gateway.stop(grace=0.5)

    steps = [line["step"] for line in lines]
    assert [s for s in steps if s != "stream_broken"] == STEPS, steps
    # Broken once, after the first page (where exactly depends on which fetch was in flight).
    assert steps.count("stream_broken") == 1, steps
    assert steps.index("stream_page") < steps.index("stream_broken") < steps.index("stream_done")
    step = {line["step"]: line for line in lines}
    thread = step["create_thread"]
    thread_id = thread["id"]
    # The gateway's owner stamp is never shown, the caller's metadata is.
    assert thread["object"] == "thread" and thread["metadata"] == {"team": "node"}
    ids = emulator.store.message_ids(thread_id, "asc")
    assert len(ids) == 8

    created = step["create_message"]
    assert created["id"] == ids[-1]
    assert created["role"] == "ROLE_USER" and created["text"] == "hello from node"
    assert created["file_ids"] == ["file-node-1", "file-node-2"]
    assert created["metadata"] == {"source": "node"}
    assert isinstance(created["created_at"], str) and int(created["created_at"]) > 0
    assert step["get_message"] == {"step": "get_message", "id": created["id"],
                                   "role": "ROLE_USER", "text": "hello from node",
                                   "thread_id": thread_id}
    assert step["update_message"]["metadata"] == {"reviewed": "yes"}
    assert emulator.store.get_message(thread_id, created["id"])["metadata"] == {
        "reviewed": "yes"}

    listed = step["list_messages"]
    assert listed["ids"] == ids[:3] and listed["has_more"] is True
    assert (listed["first_id"], listed["last_id"]) == (ids[0], ids[2])

    # The stream: four pages of two, broken once, resumed from the trailer without a gap or a
    # repeat, and page_index counting on across the resume.
    pages = [line for line in lines if line["step"] == "stream_page"]
    assert [p["page_index"] for p in pages] == [0, 1, 2, 3]
    assert [i for p in pages for i in p["ids"]] == ids
    broken = step["stream_broken"]
    assert broken["code_name"] == "UNAVAILABLE"
    before_break = pages[: lines.index(broken) - lines.index(pages[0])]
    assert broken["resume"] == {"after": before_break[-1]["ids"][-1]}
    assert step["stream_done"] == {"step": "stream_done", "ids": ids, "resumes": 1}
    # 1 ListMessages + 4 pages + the one that failed: nothing fetched twice.
    assert emulator.log.count("listMessages") == 6

    assert step["get_message_file"] == {"step": "get_message_file", "id": "file-node-1",
                                        "object": "thread.message.file",
                                        "message_id": created["id"]}
    assert step["list_message_files"]["ids"] == ["file-node-1", "file-node-2"]

    for name in ("bad_key", "no_key"):
        denied = step[name]
        assert denied["code_name"] == "UNAUTHENTICATED", denied
        assert denied["domain"] == "messages-gateway" and denied["reason"], denied
    bad = step["bad_request"]
    assert bad["code_name"] == "INVALID_ARGUMENT" and bad["domain"] == "messages-gateway"
    assert {v["field"] for v in bad["violations"]} >= {"role", "content"}, bad
    assert all(v["description"] for v in bad["violations"])
    missing = step["not_found"]
    assert missing["code_name"] == "NOT_FOUND" and missing["upstream_status"] == "404", missing
    assert missing["request_id"], missing
