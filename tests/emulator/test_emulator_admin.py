"""The admin API, the request log, the ids, and the ``serve`` entry point."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from gateway.emulator import EmulatorServer, ids
from gateway.emulator.server import parse_listen

from .conftest import API_KEY, HEADERS
from .schemas import validate

REPO = Path(__file__).resolve().parents[2]


def test_id_shapes() -> None:
    assert ids.THREAD_ID_RE.match(ids.thread_id())
    assert ids.MESSAGE_ID_RE.match(ids.message_id())
    assert ids.FILE_ID_RE.match(ids.file_id())
    assert ids.REQUEST_ID_RE.match(ids.request_id())
    assert len({ids.message_id() for _ in range(10_000)}) == 10_000


async def test_seed_and_insert(upstream: EmulatorServer, admin: httpx.AsyncClient, client: httpx.AsyncClient) -> None:
    thread = (await admin.post("/threads", json={"id": "thread_fixed", "metadata": {"k": "v"}})).json()
    assert thread["id"] == "thread_fixed"
    assert (await admin.post("/threads", json={"id": "thread_fixed"})).status_code == 400
    seeded = (await admin.post("/threads/thread_fixed/seed", json={"count": 10_000, "run_id": "run_1"})).json()
    assert seeded["count"] == 10_000
    page = (await client.get("/threads/thread_fixed/messages", params={"limit": 100, "run_id": "run_1"})).json()
    assert page["first_id"] == seeded["last_id"] and page["has_more"] is True
    validate(page, "ListMessagesResponse")

    raw = {"role": "assistant", "content": [], "status": "in_progress", "created_at": 1, "file_ids": ["file-q"]}
    inserted = (await admin.post("/threads/thread_fixed/messages", json={"messages": [raw, {"role": "user", "content": []}]})).json()
    assert [m["status"] if "status" in m else None for m in inserted["data"]] == ["in_progress", None]
    oldest = (await client.get("/threads/thread_fixed/messages", params={"order": "asc", "limit": 1})).json()
    assert oldest["data"][0]["id"] == inserted["data"][0]["id"]
    files = (await client.get(f"/threads/thread_fixed/messages/{oldest['first_id']}/files")).json()
    assert files["data"][0]["id"] == "file-q"
    assert (await admin.post("/threads/thread_nope/seed", json={"count": 1})).status_code == 404
    assert (await admin.delete("/store")).status_code == 200
    assert (await client.get("/threads/thread_fixed/messages")).status_code == 404


async def test_log(upstream: EmulatorServer, admin: httpx.AsyncClient, client: httpx.AsyncClient) -> None:
    tid = upstream.store.create_thread()["id"]
    await client.get(f"/threads/{tid}/messages", params={"limit": "5"})
    await client.get(f"/threads/{tid}/messages/msg_x")
    await client.get(f"/threads/{tid}/messages", headers={"Authorization": "Bearer bad"})
    await admin.get("/health")  # admin calls are not logged
    assert upstream.log.count() == 3
    assert upstream.log.count("listMessages") == 2 and upstream.log.count("getMessage") == 1
    first = upstream.log.entries[0]
    assert (first.operation, first.method, first.status, first.query) == ("listMessages", "GET", 200, {"limit": "5"})
    assert first.path == f"/v1/threads/{tid}/messages" and not first.disconnected and first.finished
    assert [e.status for e in upstream.log.entries] == [200, 404, 401]
    assert upstream.log.in_flight == 0
    listed = (await admin.get("/log", params={"operation": "listMessages"})).json()
    assert listed["count"] == 2 and len(listed["entries"]) == 2 and listed["in_flight"] == 0
    assert (await admin.delete("/log")).status_code == 200
    assert upstream.log.count() == 0 and upstream.log.entries == []


async def test_log_names_the_key_by_an_id_never_the_key(
    upstream: EmulatorServer, admin: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    """Rotation tests tell which key each request carried from the log's ``key_id``: an id
    made with a per-emulator secret, so neither the key nor its plain hash is in the log."""
    tid = upstream.store.create_thread()["id"]
    await client.get(f"/threads/{tid}/messages")
    await client.get(f"/threads/{tid}/messages", headers={"Authorization": "Bearer sk-other-key"})
    await client.get(f"/threads/{tid}/messages", headers={"Authorization": ""})
    good, other, none = upstream.log.entries
    assert good.key_id == upstream.emulator.key_id(API_KEY) and good.status == 200
    assert other.key_id == upstream.emulator.key_id("sk-other-key") != good.key_id
    assert other.status == 401 and none.key_id is None
    assert EmulatorServer().emulator.key_id(API_KEY) != good.key_id  # per-emulator secret
    logged = (await admin.get("/log")).text
    assert good.key_id in logged
    for needle in (API_KEY, hashlib.sha256(API_KEY.encode()).hexdigest()[:12]):
        assert needle not in logged


def test_parse_listen() -> None:
    assert parse_listen("127.0.0.1:8099") == ("127.0.0.1", 8099)
    assert parse_listen("[::1]:80") == ("::1", 80)
    with pytest.raises(ValueError):
        parse_listen("8099")


def test_serve_process_until_sigterm() -> None:
    env = {**os.environ, "EMULATOR_API_KEYS": "sk-one, sk-two"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.emulator", "127.0.0.1:0"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line.startswith("emulator listening on http://127.0.0.1:"), line
        assert "sk-one" not in line
        base_url = line.split()[3]
        with httpx.Client(base_url=base_url) as c:
            ok = c.post("/threads", headers={**HEADERS, "Authorization": "Bearer sk-two"})
            assert ok.status_code == 200
            assert c.post("/threads", headers=HEADERS).status_code == 401
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()
