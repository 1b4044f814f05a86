"""``server.workers``: the supervisor and its workers as real processes on loopback ports.

Start (two workers serve one gRPC and one HTTP port), a crashed worker restarted, SIGTERM drained
by every worker, SIGHUP reaching every worker, metrics summed over the workers; and the setting
itself (0, "lots", port 0 refused naming the key; "auto" from the CPUs and the cgroup quota).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2_grpc as pb_grpc
from gateway.config import ConfigError, load_settings
from gateway.config_checks import usable_cpus, worker_count
from gateway.demo import free_port
from tests.cache.conftest import redis_address, redis_prefix, redis_url  # noqa: F401 - fixtures
from tests.conftest import EMULATOR_KEY
from tests.test_metrics import samples

START_SECONDS = 30.0


class Supervised:
    """``gateway serve`` with ``server.workers`` set; its log (stderr) in a file."""

    def __init__(self, tmp_path: Path, base_url: str, workers: int = 2,
                 env: dict[str, str] | None = None) -> None:
        self.grpc_port, self.http_port, self.metrics_port = free_port(), free_port(), free_port()
        self.log_path = tmp_path / "gateway.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve"],
            env={**os.environ, "OPENAI_API_KEY": EMULATOR_KEY,
                 "GATEWAY_SERVER_WORKERS": str(workers),
                 "GATEWAY_SERVER_GRPC_LISTEN": f"127.0.0.1:{self.grpc_port}",
                 "GATEWAY_SERVER_HTTP_LISTEN": f"127.0.0.1:{self.http_port}",
                 "GATEWAY_SERVER_METRICS_LISTEN": f"127.0.0.1:{self.metrics_port}",
                 "GATEWAY_SERVER_GRACE_SECONDS": "3", "GATEWAY_UPSTREAM_BASE_URL": base_url,
                 "GATEWAY_CACHE_BACKEND": "off", **(env or {})},
            stdout=subprocess.DEVNULL, stderr=self._log)

    def lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text().splitlines():
            if line.startswith("{"):
                out.append(json.loads(line))
        return out

    def events(self, event: str) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line.get("event") == event]

    async def wait_for(self, event: str, count: int, seconds: float = START_SECONDS,
                       **fields: Any) -> list[dict[str, Any]]:
        end = time.monotonic() + seconds
        while True:
            found = [e for e in self.events(event)
                     if all(e.get(k) == v for k, v in fields.items())]
            if len(found) >= count:
                return found
            assert time.monotonic() < end, f"{count} x {event} {fields} not logged in {seconds} s"
            assert self.proc.poll() is None, f"supervisor exited {self.proc.returncode}"
            await asyncio.sleep(0.1)

    async def ready(self) -> None:
        """Every worker started its gateway."""
        await self.wait_for("gateway_started", 2)

    async def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        end = time.monotonic() + 30
        while self.proc.poll() is None and time.monotonic() < end:
            await asyncio.sleep(0.1)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()
        return self.proc.returncode


@pytest.fixture
async def supervised(emulator, tmp_path) -> AsyncIterator[Supervised]:
    gateway = Supervised(tmp_path, emulator.base_url)
    try:
        await gateway.ready()
        yield gateway
    finally:
        await gateway.stop()


async def one_call_per_connection(port: int, thread_id: str, count: int,
                                  key: str | None = None) -> list[str]:
    """``count`` GetThread calls, each on a fresh channel (so the kernel spreads them)."""
    ids = []
    metadata = (("authorization", f"Bearer {key}"),) if key else ()
    for _ in range(count):
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            reply = await pb_grpc.ThreadsServiceStub(channel).GetThread(
                pb.GetThreadRequest(thread_id=thread_id), metadata=metadata, timeout=10)
            ids.append(reply.id)
    return ids


def workers_seen(gateway: Supervised, face: str) -> set[int]:
    return {e["worker"] for e in gateway.events("call") if e.get("face") == face}


async def test_two_workers_serve_one_grpc_and_one_http_port(supervised, emulator) -> None:
    thread_id = emulator.store.create_thread()["id"]
    assert await one_call_per_connection(supervised.grpc_port, thread_id, 30) == [thread_id] * 30
    async with httpx.AsyncClient() as http:
        for _ in range(30):
            reply = await http.get(f"http://127.0.0.1:{supervised.http_port}/v1/threads/"
                                   f"{thread_id}", headers={"connection": "close",
                                                             "openai-beta": "assistants=v1"})
            assert reply.status_code == 200
    assert workers_seen(supervised, "grpc") == {0, 1}
    assert workers_seen(supervised, "rest") == {0, 1}
    pids = {e["pid"] for e in supervised.events("worker_started")}
    assert len(pids) == 2 and supervised.proc.pid not in pids


async def test_a_crashed_worker_is_restarted(supervised, emulator) -> None:
    (first, _) = sorted(supervised.events("worker_started"), key=lambda e: e["worker"])
    os.kill(first["pid"], signal.SIGKILL)
    (exited,) = await supervised.wait_for("worker_exited", 1, seconds=10)
    assert exited["worker"] == 0 and exited["exit_code"] == -signal.SIGKILL
    (again,) = await supervised.wait_for("worker_started", 1, seconds=15, restarts=1)
    assert again["worker"] == 0 and again["pid"] != first["pid"]
    await supervised.wait_for("gateway_started", 3)
    thread_id = emulator.store.create_thread()["id"]
    assert await one_call_per_connection(supervised.grpc_port, thread_id, 20) == [thread_id] * 20


async def test_sigterm_drains_every_worker_and_in_flight_calls_finish(supervised,
                                                                      emulator) -> None:
    thread_id = emulator.store.create_thread()["id"]
    emulator.faults.add("getThread", "latency", seconds=1.0, times=4)
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{supervised.grpc_port}")
                for _ in range(4)]
    try:
        calls = [asyncio.ensure_future(pb_grpc.ThreadsServiceStub(c).GetThread(
            pb.GetThreadRequest(thread_id=thread_id), timeout=10)) for c in channels]
        await asyncio.sleep(0.4)  # in flight upstream
        supervised.proc.send_signal(signal.SIGTERM)
        replies = await asyncio.gather(*calls)
        assert {r.id for r in replies} == {thread_id}
    finally:
        for c in channels:
            await c.close()
    assert await supervised.stop() == 0
    assert {e["worker"] for e in supervised.events("gateway_draining")} == {0, 1}
    assert {e["worker"] for e in supervised.events("gateway_stopped")} == {0, 1}
    assert supervised.events("worker_exited") == []  # a drain is no crash: nothing restarted
    assert supervised.events("supervisor_stopped")


async def test_sighup_reaches_every_worker(emulator, tmp_path) -> None:
    store = tmp_path / "credentials.json"

    def create_key(consumer: str) -> str:
        out = subprocess.run([sys.executable, "-m", "gateway", "keys", "--store", str(store),
                              "create", "--consumer", consumer, "--scopes", "read,write"],
                             capture_output=True, text=True, check=True, timeout=60)
        return out.stdout.strip().splitlines()[-1]

    create_key("first")
    gateway = Supervised(tmp_path, emulator.base_url, env={
        "GATEWAY_AUTH_ENABLED": "true", "GATEWAY_AUTH_STORE_PATH": str(store),
        "GATEWAY_AUTH_RELOAD_SECONDS": "3600", "GATEWAY_AUTH_THREAD_ACCESS": "open"})
    try:
        await gateway.ready()
        second = create_key("second")  # only SIGHUP makes the workers read it (reload 1 h)
        gateway.proc.send_signal(signal.SIGHUP)
        loaded = await gateway.wait_for("credentials_loaded", 2, seconds=15, consumers=2)
        assert {e["worker"] for e in loaded} == {0, 1}
        thread_id = emulator.store.create_thread()["id"]
        ids = await one_call_per_connection(gateway.grpc_port, thread_id, 20, key=second)
        assert ids == [thread_id] * 20 and workers_seen(gateway, "grpc") == {0, 1}
    finally:
        assert await gateway.stop() == 0


async def test_sighup_without_auth_ends_no_worker(supervised) -> None:
    """SIGHUP's default action ends a process: without a store each worker must ignore it."""
    supervised.proc.send_signal(signal.SIGHUP)
    ignored = await supervised.wait_for("sighup_ignored", 2, seconds=10)
    assert {e["worker"] for e in ignored} == {0, 1}
    await asyncio.sleep(0.5)
    assert supervised.events("worker_exited") == []


async def test_metrics_are_served_once_summed_over_the_workers(supervised, emulator) -> None:
    thread_id = emulator.store.create_thread()["id"]
    await one_call_per_connection(supervised.grpc_port, thread_id, 30)
    assert workers_seen(supervised, "grpc") == {0, 1}
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"http://127.0.0.1:{supervised.metrics_port}/metrics")).text
    calls = sum(value for (name, labels), value in samples(text).items()
                if name == "gateway_calls_total" and dict(labels).get("method") == "GetThread"
                and dict(labels).get("code") == "OK" and dict(labels).get("face") == "grpc")
    assert calls == 30.0


async def test_keyed_creates_over_two_worker_processes_make_one_upstream_create(
    emulator, tmp_path, redis_url, redis_prefix
) -> None:
    """The shared idempotency window across real worker processes (cache on Redis)."""
    gateway = Supervised(tmp_path, emulator.base_url, env={
        "GATEWAY_CACHE_BACKEND": "redis", "GATEWAY_CACHE_REDIS_URL": redis_url,
        "GATEWAY_CACHE_REDIS_KEY_PREFIX": redis_prefix,
        "GATEWAY_CACHE_REDIS_OP_TIMEOUT_SECONDS": "1.0"})
    try:
        await gateway.ready()
        thread_id = emulator.store.create_thread()["id"]
        emulator.log.clear()
        emulator.faults.add("createMessage", "latency", seconds=0.3, times=1)
        request = pb.CreateMessageRequest(thread_id=thread_id, role=pb.ROLE_USER, content="x",
                                          request_id="one-order")
        # A local subchannel pool each: channels to one target otherwise share one connection.
        channels = [grpc.aio.insecure_channel(f"127.0.0.1:{gateway.grpc_port}",
                                              options=[("grpc.use_local_subchannel_pool", 1)])
                    for _ in range(16)]
        try:
            replies = await asyncio.gather(*(
                pb_grpc.MessagesServiceStub(channels[i % 16]).CreateMessage(request, timeout=10)
                for i in range(100)))
        finally:
            for channel in channels:
                await channel.close()
        assert emulator.log.count("createMessage") == 1
        assert len({r.id for r in replies}) == 1
        assert workers_seen(gateway, "grpc") == {0, 1}
    finally:
        assert await gateway.stop() == 0


async def test_redis_rate_limits_hold_across_workers(emulator, tmp_path, redis_url,
                                                     redis_prefix) -> None:
    """auth.limits_backend = "redis": a consumer's burst is one burst for all workers (with
    "local" each worker would grant it in full)."""
    store = tmp_path / "credentials.json"
    out = subprocess.run([sys.executable, "-m", "gateway", "keys", "--store", str(store),
                          "create", "--consumer", "c", "--scopes", "read"],
                         capture_output=True, text=True, check=True, timeout=60)
    key = out.stdout.strip().splitlines()[-1]
    gateway = Supervised(tmp_path, emulator.base_url, env={
        "GATEWAY_AUTH_ENABLED": "true", "GATEWAY_AUTH_STORE_PATH": str(store),
        "GATEWAY_AUTH_THREAD_ACCESS": "open", "GATEWAY_AUTH_RATE_PER_SECOND": "0.1",
        "GATEWAY_AUTH_BURST": "5", "GATEWAY_AUTH_LIMITS_BACKEND": "redis",
        "GATEWAY_AUTH_REDIS_URL": redis_url, "GATEWAY_AUTH_REDIS_PREFIX": redis_prefix})
    try:
        await gateway.ready()
        thread_id = emulator.store.create_thread()["id"]
        codes = []
        for _ in range(20):
            async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.grpc_port}") as channel:
                try:
                    await pb_grpc.ThreadsServiceStub(channel).GetThread(
                        pb.GetThreadRequest(thread_id=thread_id),
                        metadata=(("authorization", f"Bearer {key}"),), timeout=10)
                    codes.append(grpc.StatusCode.OK)
                except grpc.aio.AioRpcError as exc:
                    codes.append(exc.code())
        assert 5 <= codes.count(grpc.StatusCode.OK) <= 6, codes  # burst + at most one refill
        assert set(codes) == {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}
        assert {e["worker"] for e in gateway.events("call")} == {0, 1}
    finally:
        assert await gateway.stop() == 0


async def test_a_worker_whose_start_is_refused_stops_the_supervisor_with_2(emulator,
                                                                         tmp_path) -> None:
    gateway = Supervised(tmp_path, emulator.base_url, env={
        "GATEWAY_AUTH_ENABLED": "true",
        "GATEWAY_AUTH_STORE_PATH": str(tmp_path / "missing.json")})
    end = time.monotonic() + START_SECONDS
    while gateway.proc.poll() is None and time.monotonic() < end:
        await asyncio.sleep(0.1)
    assert await gateway.stop() == 2
    assert gateway.events("worker_start_refused")


@pytest.mark.parametrize("value", ["0", "-1", "lots", "1.5", ""])
def test_workers_must_be_a_whole_number_or_auto(value: str) -> None:
    with pytest.raises(ConfigError, match="server.workers"):
        load_settings(None, environ={"GATEWAY_SERVER_WORKERS": value})


def test_workers_from_the_file(tmp_path) -> None:
    path = tmp_path / "g.toml"
    path.write_text('[server]\nworkers = 3\ngrpc_listen = "127.0.0.1:7000"\n')
    assert worker_count(load_settings(path, environ={}).server.workers) == 3
    path.write_text("[server]\nworkers = true\n")
    with pytest.raises(ConfigError, match="server.workers"):
        load_settings(path, environ={})
    path.write_text("[server]\nworkers = 0\n")
    with pytest.raises(ConfigError, match="server.workers"):
        load_settings(path, environ={})


def test_port_0_cannot_be_shared_by_workers() -> None:
    with pytest.raises(ConfigError, match="server.grpc_listen"):
        load_settings(None, environ={"GATEWAY_SERVER_WORKERS": "2",
                                     "GATEWAY_SERVER_GRPC_LISTEN": "127.0.0.1:0"})


def test_auto_is_the_cpus_or_the_cgroup_quota(tmp_path) -> None:
    assert worker_count("auto", cpus=3) == 3
    cpus = usable_cpus(str(tmp_path))  # no cgroup files: the affinity mask
    assert cpus == len(os.sched_getaffinity(0))
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert usable_cpus(str(tmp_path)) == min(cpus, 2)
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert usable_cpus(str(tmp_path)) == cpus
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("50000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert usable_cpus(str(tmp_path)) == 1
