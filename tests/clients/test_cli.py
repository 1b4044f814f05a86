"""``python -m messages_gateway_client`` as people run it: a subprocess against a real gateway."""

from __future__ import annotations

import asyncio
import io
import json
import os
import pty
import sys
from pathlib import Path

import pytest

from messages_gateway_client.cli import main
from tests.clients.conftest import new_thread

ROOT = Path(__file__).resolve().parents[2]


async def cli(*args: str, env: dict[str, str] | None = None,
              timeout: float = 30.0) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "messages_gateway_client", *args, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def lines(out: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.splitlines()]


async def test_cli_messages_list_prints_json_lines_in_upstream_shape(target, emulator) -> None:
    thread_id, ids = new_thread(emulator, 7)
    code, out, err = await cli("messages", "list", thread_id, "--order", "asc", "--limit", "3",
                               "--target", target)
    assert code == 0, err
    objects = lines(out)
    assert [o["id"] for o in objects] == ids
    first = objects[0]
    assert first["object"] == "thread.message" and first["role"] == "user"
    assert first["status"] == "completed" and first["completed_at"] is None
    assert first["content"] == [{"type": "text",
                                 "text": {"value": "Seed message 0", "annotations": []}}]
    assert first["assistant_id"] is None and first["metadata"] == {}
    assert err == ""  # stdout is a pipe: no progress line


async def test_cli_create_retrieve_update_and_files(target, emulator) -> None:
    thread_id, _ = new_thread(emulator)
    env = {"MESSAGES_GATEWAY_TARGET": target}
    code, out, err = await cli("messages", "create", thread_id, "--content", "hello",
                               "--role", "assistant", "--metadata", "k=v",
                               "--file-id", "file-x", env=env)
    assert code == 0, err
    (created,) = lines(out)
    assert created["role"] == "assistant" and created["metadata"] == {"k": "v"}
    message_id = str(created["id"])
    code, out, _ = await cli("messages", "retrieve", thread_id, message_id, env=env)
    assert code == 0 and lines(out) == [created]
    code, out, _ = await cli("messages", "update", thread_id, message_id, "--metadata", "k=w",
                             env=env)
    assert code == 0 and lines(out)[0]["metadata"] == {"k": "w"}
    code, out, _ = await cli("messages", "files", "list", thread_id, message_id, env=env)
    assert code == 0
    (file_obj,) = lines(out)
    assert file_obj["id"] == "file-x" and file_obj["object"] == "thread.message.file"
    code, out, _ = await cli("messages", "files", "retrieve", thread_id, message_id, "file-x",
                             env=env)
    assert code == 0 and lines(out) == [file_obj]


async def test_cli_failure_prints_status_and_exits_1(target, emulator) -> None:
    thread_id, _ = new_thread(emulator)
    code, out, err = await cli("--target", target, "messages", "retrieve", thread_id, "msg_x",
                               env={"MESSAGES_GATEWAY_KEY": "sk-canary-cli"})
    assert code == 1 and out == ""
    assert "NOT_FOUND" in err and "UPSTREAM_NOT_FOUND" in err
    assert "sk-canary-cli" not in err


def test_cli_bad_usage_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    out, err = io.StringIO(), io.StringIO()
    code = main(["--target", "127.0.0.1:1", "messages", "update", "t", "m",
                 "--metadata", "novalue"], out, err)
    assert code == 2 and "KEY=VALUE" in err.getvalue() and out.getvalue() == ""
    with pytest.raises(SystemExit) as exit_:
        main(["messages", "list", "t", "--order", "sideways"], out, err)
    assert exit_.value.code == 2 and "invalid choice" in capsys.readouterr().err


async def test_cli_timeout_flag_bounds_the_call(target, emulator) -> None:
    thread_id, (message_id,) = new_thread(emulator, 1)
    emulator.faults.add("getMessage", "latency", seconds=3.0, times=1)
    code, _, err = await cli("messages", "retrieve", thread_id, message_id, "--target", target,
                             "--timeout", "0.3")
    assert code == 1 and "DEADLINE_EXCEEDED" in err


async def test_cli_shows_progress_on_stderr_when_stdout_is_a_terminal(target, emulator) -> None:
    thread_id, ids = new_thread(emulator, 6)
    leader, follower = pty.openpty()
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "messages_gateway_client", "messages", "list", thread_id,
            "--limit", "2", "--target", target, cwd=ROOT, stdout=follower, stderr=asyncio.subprocess.PIPE,
        )
        os.close(follower)
        follower = -1
        _, err = await asyncio.wait_for(proc.communicate(), 30)
        output = b""
        while True:  # bounded: the child has exited, the pty holds a finite amount
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)
    assert proc.returncode == 0
    progress = err.decode()
    assert "\r2 messages, 1 pages" in progress and "\r6 messages, 3 pages" in progress
    printed = [json.loads(line) for line in output.decode().splitlines() if line.strip()]
    assert [o["id"] for o in printed] == ids[::-1]
