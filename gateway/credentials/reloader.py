"""Keeps the credentials snapshot current without a restart.

The store file is checked every ``reload_seconds`` (its inode, size and mtime: the CLI's
``os.replace`` always changes the inode), and ``trigger()`` (wired to SIGHUP) checks at once.
**Bound:** a change is in force for every call that *starts* later than ``reload_seconds`` plus
one file read after the file was replaced. Calls already past authentication are untouched: they
hold the principal they were admitted with.

A store that fails to parse, or disappears, is refused as a whole and the previous snapshot stays in force
(a half-written or hand-broken file must not lock every consumer out, nor let anyone in); the
error is logged and ``gateway_credentials_reload_errors_total`` counts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Collection

import structlog

from gateway import metrics
from gateway.cancellation import cancel_and_wait
from gateway.config import ConfigError
from gateway.config_checks import check_store_exists
from gateway.credentials import store
from gateway.credentials.store import Snapshot, StoreError

log = structlog.get_logger(__name__)

RELOADS = metrics.CREDENTIALS_RELOADS
RELOAD_ERRORS = metrics.CREDENTIALS_RELOAD_ERRORS


def _signature(path: str) -> tuple[int, int, int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns)


class Reloader:
    def __init__(self, path: str, interval: float, profiles: Collection[str] = ()) -> None:
        self.path = path
        self.interval = interval
        self._profiles = frozenset(profiles)
        self._signature: tuple[int, int, int, int] | None = None
        self.snapshot: Snapshot = store.EMPTY
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def current(self) -> Snapshot:
        return self.snapshot

    def load(self) -> bool:
        """Read the store now if it changed; True when a new snapshot is in force."""
        signature = _signature(self.path)
        if signature == self._signature and self._task is not None:
            return False
        if signature is None and self._task is not None:
            # A store that vanished is an accident more often than a decision: keep the last one.
            RELOAD_ERRORS.inc()
            log.error("credentials_store_missing", path=self.path)
            self._signature = signature
            return False
        try:
            data = store.read(self.path)
        except StoreError as exc:
            RELOAD_ERRORS.inc()
            log.error("credentials_reload_failed", path=self.path, error=str(exc))
            self._signature = signature  # do not re-log the same broken file every tick
            return False
        self._signature = signature
        self.snapshot = Snapshot.of(data)
        metrics.set_consumer_names(data.consumers)
        RELOADS.inc()
        unknown = sorted({c.profile for c in data.consumers.values()} - self._profiles)
        log.info("credentials_loaded", path=self.path, consumers=len(data.consumers),
                 keys=len(self.snapshot.by_key_id), unknown_profiles=unknown or None)
        return True

    def start(self) -> None:
        """Load the store and start watching it. At start there is no earlier snapshot to keep:
        a missing or unreadable store is refused (ConfigError) instead of serving no one."""
        check_store_exists(self.path)
        if not self.load():
            raise ConfigError(f"auth.store_path: the credentials store {self.path} could not be "
                              "loaded (see the log line before)")
        self._task = asyncio.get_running_loop().create_task(self._run(), name="credentials-reload")

    def trigger(self) -> None:
        """Check the file now (SIGHUP)."""
        self._wake.set()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._wake.wait()
            self._wake.clear()
            try:
                self.load()
            except Exception:  # a reload bug must not kill reloading for the process's life
                RELOAD_ERRORS.inc()
                log.exception("credentials_reload_error")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait(task)
