"""Store changes reach a running gateway without a restart, within the stated bound."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import grpc
import pytest

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2_grpc as pb_grpc
from gateway.credentials import store
from gateway.credentials.reloader import Reloader
from gateway.demo import free_port
from gateway.emulator.server import ThreadedEmulator
from tests.conftest import EMULATOR_KEY
from tests.credentials.helpers import RELOAD_SECONDS, AuthEnv, add_consumer, auth_env, bearer
from tests.rpc.test_messages_service import new_thread

__all__ = ["auth_env"]

#: What the tests allow on top of reload_seconds (one file read plus scheduling on a busy CI box).
SLACK = 0.5


async def test_reloader_new_consumer_admitted_without_restart(auth_env: AuthEnv, emulator) -> None:
    thread_id = await new_thread(emulator)
    key = add_consumer(auth_env.store_path, "late", {"read"})
    written = time.monotonic()
    while True:
        try:
            await auth_env.stub.ListMessages(pb.ListMessagesRequest(thread_id=thread_id),
                                             metadata=bearer(key), timeout=2)
            break
        except grpc.aio.AioRpcError as err:
            assert err.code() == grpc.StatusCode.UNAUTHENTICATED
            assert time.monotonic() - written < RELOAD_SECONDS + SLACK
            await asyncio.sleep(0.02)


async def test_reloader_revocation_under_load_rejects_every_call_after_bound(
    auth_env: AuthEnv, emulator
) -> None:
    """S2: 8 workers call continuously; the key is revoked; every call started more than the
    bound after the revocation is UNAUTHENTICATED, and calls well before it were OK."""
    thread_id = await new_thread(emulator)
    revoked_at: list[float] = []
    outcomes: list[tuple[float, grpc.StatusCode]] = []
    stop_at = time.monotonic() + 3.0

    async def worker() -> None:
        while time.monotonic() < stop_at and len(outcomes) < 5000:
            started = time.monotonic()
            try:
                await auth_env.stub.ListMessages(pb.ListMessagesRequest(thread_id=thread_id),
                                                 metadata=bearer(auth_env.reader_key), timeout=2)
                outcomes.append((started, grpc.StatusCode.OK))
            except grpc.aio.AioRpcError as err:
                outcomes.append((started, err.code()))

    async def revoke() -> None:
        await asyncio.sleep(1.0)
        revoked_at.append(time.monotonic())  # before the write: the reloader may see it at once
        data = store.read(auth_env.store_path)
        key_id = data.consumers["reader"].keys[0].key_id
        store.write(auth_env.store_path, store.revoke_key(data, key_id, time.time()))

    await asyncio.gather(revoke(), *(worker() for _ in range(8)))
    cut = revoked_at[0]
    # A call that started just before the cut may authenticate just after it: leave it out.
    before = [code for started, code in outcomes if started < cut - 0.2]
    after = [code for started, code in outcomes if started > cut + RELOAD_SECONDS + SLACK]
    assert before and set(before) == {grpc.StatusCode.OK}
    assert after and set(after) == {grpc.StatusCode.UNAUTHENTICATED}
    assert all(code in (grpc.StatusCode.OK, grpc.StatusCode.UNAUTHENTICATED)
               for _, code in outcomes)


async def test_reloader_rotation_grace_old_key_valid_then_rejected(
    auth_env: AuthEnv, emulator
) -> None:
    thread_id = await new_thread(emulator)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "keys", "--store", str(auth_env.store_path), "rotate",
        "--consumer", "reader", "--grace", "1.5",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    assert proc.returncode == 0
    new_key = out.decode().strip()
    rotated = time.monotonic()
    assert auth_env.gateway.reloader is not None
    auth_env.gateway.reloader.load()
    for key in (auth_env.reader_key, new_key):
        await auth_env.stub.ListMessages(pb.ListMessagesRequest(thread_id=thread_id),
                                         metadata=bearer(key), timeout=2)
    await asyncio.sleep(max(0.0, rotated + 1.6 - time.monotonic()))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await auth_env.stub.ListMessages(pb.ListMessagesRequest(thread_id=thread_id),
                                         metadata=bearer(auth_env.reader_key), timeout=2)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    await auth_env.stub.ListMessages(pb.ListMessagesRequest(thread_id=thread_id),
                                     metadata=bearer(new_key), timeout=2)


async def test_reloader_broken_store_keeps_previous_snapshot(tmp_path) -> None:
    path = tmp_path / "s.json"
    add_consumer(path, "a", {"read"})
    reloader = Reloader(str(path), 0.05)
    reloader.start()
    try:
        assert set(reloader.current().data.consumers) == {"a"}
        path.write_text("{not json")
        reloader.trigger()
        await asyncio.sleep(0.2)
        assert set(reloader.current().data.consumers) == {"a"}
        os.unlink(path)
        await asyncio.sleep(0.2)
        assert set(reloader.current().data.consumers) == {"a"}
        add_consumer(path, "b", {"read"})
        await asyncio.sleep(0.2)
        assert set(reloader.current().data.consumers) == {"b"}
    finally:
        await reloader.stop()


def test_reloader_sighup_reloads_at_once_in_a_real_process(tmp_path) -> None:
    """reload_seconds is an hour, so only SIGHUP can make the new consumer visible."""
    path = tmp_path / "s.json"
    add_consumer(path, "first", {"read"})
    port = free_port()
    with ThreadedEmulator(api_keys={EMULATOR_KEY}) as emu:
        env = {**os.environ, "OPENAI_API_KEY": EMULATOR_KEY, "GATEWAY_AUTH_ENABLED": "true",
               "GATEWAY_AUTH_STORE_PATH": str(path), "GATEWAY_AUTH_RELOAD_SECONDS": "3600"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--grpc-listen", f"127.0.0.1:{port}",
             "--upstream-url", emu.base_url], env=env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        try:
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                grpc.channel_ready_future(channel).result(timeout=15)
                stub = pb_grpc.MessagesServiceStub(channel)
                request = pb.ListMessagesRequest(thread_id="thread_none")
                key = add_consumer(path, "second", {"read"})
                with pytest.raises(grpc.RpcError) as caught:
                    stub.ListMessages(request, metadata=bearer(key), timeout=2)
                assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
                proc.send_signal(signal.SIGHUP)
                deadline = time.monotonic() + 5.0
                while True:
                    try:
                        stub.ListMessages(request, metadata=bearer(key), timeout=2)
                        code = grpc.StatusCode.OK
                    except grpc.RpcError as err:
                        code = err.code()  # type: ignore[attr-defined]
                    if code != grpc.StatusCode.UNAUTHENTICATED or time.monotonic() > deadline:
                        break
                    time.sleep(0.05)
                assert code == grpc.StatusCode.NOT_FOUND  # authenticated; the thread is unknown
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=20)
        lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
        assert sum(1 for e in lines if e.get("event") == "credentials_loaded") == 2


def test_a_store_that_is_not_utf8_is_refused_at_start_in_one_line(tmp_path) -> None:
    """It raised UnicodeDecodeError through start_gateway: a traceback, not the start refusal."""
    from gateway.config import ConfigError

    path = tmp_path / "s.json"
    path.write_bytes(b"\xff\xfe{}")
    reloader = Reloader(str(path), 0.05)
    with pytest.raises(ConfigError, match="auth.store_path"):
        reloader.start()


async def test_a_store_that_turns_binary_is_one_reload_failure_and_the_snapshot_stays(
        tmp_path) -> None:
    from structlog.testing import capture_logs

    path = tmp_path / "s.json"
    add_consumer(path, "a", {"read"})
    reloader = Reloader(str(path), 0.05)
    reloader.start()
    try:
        with capture_logs() as logs:
            path.write_bytes(b"\xff\xfe" + path.read_bytes())
            reloader.trigger()
            await asyncio.sleep(0.3)
        assert set(reloader.current().data.consumers) == {"a"}
        events = [e["event"] for e in logs if e["event"].startswith("credentials_reload")]
        assert events == ["credentials_reload_failed"]  # once, and no traceback
    finally:
        await reloader.stop()
