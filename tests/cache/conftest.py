"""Redis for the cache tests: the real one on 127.0.0.1:6379, one key prefix per test.

If that Redis does not answer, a throwaway ``redis-server`` is started on a free loopback port
when the binary is installed; otherwise the Redis tests fail loudly under CI (``CI=true``) and
are skipped with a loud message elsewhere. Every test's keys are deleted afterwards.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis

from tests.cache.proxy import TcpProxy

DEFAULT_REDIS = ("127.0.0.1", 6379)


def _ping(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def redis_address() -> Iterator[tuple[str, int]]:
    """A reachable Redis (host, port): the machine's, or one started for this session."""
    if _ping(*DEFAULT_REDIS):
        yield DEFAULT_REDIS
        return
    binary = shutil.which("redis-server")
    if binary is None:
        message = "Redis is not reachable on 127.0.0.1:6379 and redis-server is not installed"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        print(f"\n!!! SKIPPING REDIS CACHE TESTS: {message} !!!", file=sys.stderr)
        pytest.skip(message)
    port = _free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not _ping("127.0.0.1", port):
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.fail("redis-server was started but never answered PING")
            time.sleep(0.05)
        yield ("127.0.0.1", port)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def redis_url(redis_address: tuple[str, int]) -> str:
    host, port = redis_address
    return f"redis://{host}:{port}/0"


@pytest.fixture
def redis_prefix(redis_address: tuple[str, int]) -> Iterator[str]:
    """A key prefix unique to this test; everything under it is deleted afterwards."""
    prefix = f"mgw-test-{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = redis.Redis(host=redis_address[0], port=redis_address[1])
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def redis_sync(redis_address: tuple[str, int]) -> Iterator[redis.Redis]:
    client = redis.Redis(host=redis_address[0], port=redis_address[1])
    yield client
    client.close()


@pytest.fixture
async def redis_proxy(redis_address: tuple[str, int]) -> AsyncIterator[TcpProxy]:
    """A TCP proxy to the real Redis; closing it is 'Redis went away' without stopping Redis."""
    proxy = TcpProxy(*redis_address)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()
